"""PII masking on realistic Chinese and English text, and what must stay unmasked."""

from __future__ import annotations

from datetime import date

import pytest

from loraloop.pii import (
    PiiKind,
    find_pii,
    id_checksum_ok,
    luhn_ok,
    mask_pii,
    plausible_birth_date,
)

VALID_ID = "11010519491231002X"
VALID_ID_2 = "44030519900101123X"
LEAP_DAY_ID = "310115200002290048"
BAD_CHECKSUM_ID = "110105194912310021"
FEB_30_ID = "110105199002301231"  # valid check character, impossible date
FUTURE_ID = "110105209912311232"  # valid check character, born in 2099

VISA = "4111111111111111"
UNIONPAY_19 = "6222021234567890128"
UNIONPAY_16 = "6228480012345671"
AMEX = "378282246310005"
LUHN_INVALID = "6222021234567890"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的手机号是13812345678，麻烦回电", "我的手机号是[PHONE]，麻烦回电"),
        ("电话：138 1234 5678", "电话：[PHONE]"),
        ("联系 +86 139-1234-5678 或 0086 15012345678", "联系 [PHONE] 或 [PHONE]"),
        ("+8618612345678", "[PHONE]"),
        ("全角１３８１２３４５６７８也算", "全角[PHONE]也算"),
        ("Call me on +44 20 7946 0958 tomorrow", "Call me on [PHONE] tomorrow"),
        ("US office: +1 (415) 555-2671.", "US office: [PHONE]."),
        ("Reach me at +49-30-1234-5678", "Reach me at [PHONE]"),
        ("邮箱 zhang.san+vip@example.com.cn 谢谢", "邮箱 [EMAIL] 谢谢"),
        ("mail John.Doe@mail.co.uk, thanks", "mail [EMAIL], thanks"),
        ("13812345678@163.com", "[EMAIL]"),
        (f"身份证号{VALID_ID}，请核实", "身份证号[ID]，请核实"),
        (f"ID: {VALID_ID.lower()}", "ID: [ID]"),
        (f"证件 {VALID_ID_2} / {LEAP_DAY_ID}", "证件 [ID] / [ID]"),
        (f"卡号{UNIONPAY_19}退款", "卡号[CARD]退款"),
        ("卡号 6222 0212 3456 7890 128", "卡号 [CARD]"),
        (f"card {VISA} expires 12/27", "card [CARD] expires 12/27"),
        ("card 4111-1111-1111-1111 please", "card [CARD] please"),
        (f"银联 {UNIONPAY_16}", "银联 [CARD]"),
        (f"Amex {AMEX} or 3782 822463 10005", "Amex [CARD] or [CARD]"),
        (
            f"客户王先生，手机13912345678，身份证{VALID_ID}，卡号{VISA}，邮箱wang@qq.com",
            "客户王先生，手机[PHONE]，身份证[ID]，卡号[CARD]，邮箱[EMAIL]",
        ),
    ],
)
def test_masks(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "这款手机现在只要¥1999，原价￥2999",
        "The plan is $299 per year, or $1,299.00 for five years",
        "2024年5月1日下单，2024-05-01 10:30 发货",
        "订单数量 3 件，共 12000 元",
        "订单号SO13812345678已发货",
        "order 20240501123456789 shipped",
        f"流水号{LUHN_INVALID}",
        "card 4111 1111 1111 1112 was declined",
        f"编号{BAD_CHECKSUM_ID}",
        f"编号{FEB_30_ID}",
        f"编号{FUTURE_ID}",
        "growth of +5% and +12 new stores",
        "tracking 1234567890123 (starts with 1, not a card range)",
        "version 1.3.8.1234 released",
        "会员号138123456789",  # 12 digits: not a mobile
        "a@b is not an e-mail address",
        "",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert find_pii(text) == []
    assert mask_pii(text) == text


def test_matches_carry_kind_span_and_original_value() -> None:
    text = f"手机１３８１２３４５６７８，卡{VISA}"
    found = find_pii(text)
    assert [m.kind for m in found] == [PiiKind.PHONE, PiiKind.CARD]
    for match in found:
        assert text[match.start : match.end] == match.value
    assert found[0].value == "１３８１２３４５６７８"


def test_overlap_keeps_the_longer_finding() -> None:
    found = find_pii("13812345678@163.com")
    assert [(m.kind, m.start, m.end) for m in found] == [(PiiKind.EMAIL, 0, 19)]


def test_id_wins_over_card_on_the_same_digits() -> None:
    found = find_pii(VALID_ID_2)
    assert [m.kind for m in found] == [PiiKind.ID]


def test_tokens() -> None:
    assert [k.token for k in PiiKind] == ["[EMAIL]", "[ID]", "[CARD]", "[PHONE]"]


@pytest.mark.parametrize(
    ("number", "ok"),
    [(VALID_ID, True), (VALID_ID.lower(), True), (LEAP_DAY_ID, True), (BAD_CHECKSUM_ID, False)],
)
def test_id_checksum(number: str, ok: bool) -> None:
    assert id_checksum_ok(number) is ok


@pytest.mark.parametrize(
    ("yyyymmdd", "ok"),
    [
        ("19491231", True),
        ("20000229", True),
        ("19000101", True),
        ("18991231", False),
        ("19900230", False),
        ("19901301", False),
        ("20250102", False),
    ],
)
def test_plausible_birth_date(yyyymmdd: str, ok: bool) -> None:
    assert plausible_birth_date(yyyymmdd, today=date(2025, 1, 1)) is ok


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        (VISA, True),
        (UNIONPAY_19, True),
        (AMEX, True),
        (LUHN_INVALID, False),
        ("4111111111111112", False),
    ],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok
