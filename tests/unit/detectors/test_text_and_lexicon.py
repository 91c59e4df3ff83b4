"""Normalization, fingerprints, similarity and lexicon matching, in Chinese and English."""

from __future__ import annotations

import zlib

import pytest

from detectors import DetectorSettings
from detectors.lexicon import COMPLAINT_TERMS, HUMAN_DEMAND_TERMS, compile_lexicon, find_term
from detectors.repeated_followup import fingerprint
from detectors.text import dice, is_cjk, normalize, shingles


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ｗｈｅｒｅ　ＩＳ　my order？？", "where is my order"),
        ("我 的 订单，在哪里？", "我的订单在哪里"),
        ("rip-off!!!  (really)", "rip off really"),
        ("我要refund_now", "我要refund now"),
        ("...", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_cjk_detection() -> None:
    assert is_cjk("我的订单")
    assert is_cjk("我的订单 ok")
    assert not is_cjk("where is my 订单")
    assert not is_cjk("")


def test_shingles_are_stable_crc32_values() -> None:
    assert shingles("abcd", 3) == frozenset({zlib.crc32(b"abc"), zlib.crc32(b"bcd")})
    assert shingles("ab", 3) == frozenset({zlib.crc32(b"ab")})
    assert shingles("", 3) == frozenset()


def test_dice_bounds() -> None:
    a, b = shingles("abcdef", 2), shingles("uvwxyz", 2)

    assert dice(a, a) == 1.0
    assert dice(a, b) == 0.0
    assert dice(frozenset(), frozenset()) == 0.0
    assert dice(shingles("abcd", 2), shingles("abce", 2)) == pytest.approx(2 * 2 / 6)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("我的订单什么时候发货？", "订单什么时候能发货啊"),
        ("怎么申请退款", "退款怎么申请"),
        ("When will my order ship?", "when does my order ship"),
        ("How do I reset my password?", "how can I reset my password"),
    ],
)
def test_paraphrases_are_near_duplicates(settings: DetectorSettings, left: str, right: str) -> None:
    a, b = fingerprint(normalize(left), settings), fingerprint(normalize(right), settings)

    assert a is not None
    assert b is not None
    assert dice(a, b) >= settings.similarity_threshold


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("我的订单什么时候发货？", "我的发票什么时候能开"),
        ("我的订单什么时候发货？", "怎么修改收货地址"),
        ("When will my order ship?", "When will my invoice be sent?"),
        ("How do I reset my password?", "How do I change my email?"),
    ],
)
def test_different_questions_are_not(settings: DetectorSettings, left: str, right: str) -> None:
    a, b = fingerprint(normalize(left), settings), fingerprint(normalize(right), settings)

    assert a is not None
    assert b is not None
    assert dice(a, b) < settings.similarity_threshold


def test_fingerprint_is_bounded(settings: DetectorSettings) -> None:
    text = normalize("".join(chr(0x4E00 + i) for i in range(5000)))

    prints = fingerprint(text, settings)

    assert prints is not None
    assert len(prints) <= settings.max_fingerprint_chars


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i want a refund", "refund"),
        ("is it refundable", None),
        ("scampi", None),
        ("what a scam", "scam"),
        ("我要退款", "退款"),
        ("退款流程", "退款"),
        ("rip off", "rip off"),
        ("ripoff", "ripoff"),
    ],
)
def test_complaint_terms(text: str, expected: str | None) -> None:
    assert find_term(text, COMPLAINT_TERMS) == expected


def test_human_demand_terms() -> None:
    assert find_term("please let me talk to a human", HUMAN_DEMAND_TERMS) == "talk to a human"
    assert find_term("帮我转人工", HUMAN_DEMAND_TERMS) == "转人工"
    assert find_term("humane treatment", HUMAN_DEMAND_TERMS) is None


def test_empty_lexicon_matches_nothing() -> None:
    assert compile_lexicon(()) is None
    assert find_term("refund", ()) is None
    assert find_term("refund", ("   ",)) is None
