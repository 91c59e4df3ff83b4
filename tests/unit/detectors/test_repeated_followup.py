"""repeated_followup on golden conversations in Chinese and English."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from detectors import Detector

if TYPE_CHECKING:
    from conftest import Chat

ZH_ASKS = [
    "我的订单什么时候发货？",
    "订单什么时候能发货啊",
    "请问我的订单什么时候发货呢",
    "到底什么时候发货？我的订单",
]
EN_ASKS = [
    "When will my order ship?",
    "when does my order ship",
    "When will my order be shipped??",
    "I asked, when will my order ship?",
]
ZH_DIFFERENT = ["我的订单什么时候发货？", "怎么修改收货地址", "会员有什么权益", "发票可以开专票吗"]
EN_DIFFERENT = [
    "When will my order ship?",
    "How do I change my delivery address?",
    "What are the membership benefits?",
    "Can I get a VAT invoice for this purchase?",
]


def play(chat: Chat, asks: list[str]) -> list[list[str]]:
    """Each ask followed by a bot answer; the detectors fired per ask."""
    fired = []
    for ask in asks:
        fired.append([s.detector for s in chat.user(ask)])
        chat.bot()
    return fired


@pytest.mark.parametrize("asks", [ZH_ASKS, EN_ASKS], ids=["zh", "en"])
def test_fires_on_the_nth_repeat(chat: Chat, asks: list[str]) -> None:
    fired = play(chat, asks)

    assert fired == [[], [], [], [Detector.REPEATED_FOLLOWUP]]
    signal = chat.signals[0]
    assert signal.turn_index == 6
    assert signal.model_version == "v1"
    assert signal.risk_weight == chat.settings.risk_weights.repeated_followup
    assert signal.evidence["repeat_turns"] == 3
    assert signal.evidence["text"] == asks[3]
    assert signal.evidence["matched_turn_index"] in {0, 2, 4}
    assert signal.evidence["similarity"] >= chat.settings.similarity_threshold


@pytest.mark.parametrize("asks", [ZH_ASKS, EN_ASKS], ids=["zh", "en"])
def test_one_repeat_short_of_n_does_not_fire(chat: Chat, asks: list[str]) -> None:
    play(chat, asks[:3])

    assert chat.state.repeat_turns == 2
    assert chat.signals == []


@pytest.mark.parametrize("asks", [ZH_DIFFERENT, EN_DIFFERENT], ids=["zh", "en"])
def test_different_questions_are_not_repeats(chat: Chat, asks: list[str]) -> None:
    play(chat, asks)

    assert chat.state.repeat_turns == 0
    assert chat.signals == []


def test_repeats_without_an_answer_between_do_not_count(chat: Chat) -> None:
    chat.bot("您好，有什么可以帮您？")
    for ask in ZH_ASKS:
        chat.user(ask)

    assert chat.state.repeat_turns == 0
    assert chat.signals == []


def test_a_repeat_needs_only_one_answer_after_the_earlier_ask(chat: Chat) -> None:
    chat.user(EN_ASKS[0])
    chat.user(EN_ASKS[1])
    chat.bot()
    chat.user(EN_ASKS[2])

    assert chat.state.repeat_turns == 1


@pytest.mark.parametrize("ack", ["好的", "谢谢", "ok", "thanks!"])
def test_short_acknowledgements_are_never_repeats(chat: Chat, ack: str) -> None:
    for _ in range(5):
        chat.user(ack)
        chat.bot()

    assert chat.state.repeat_turns == 0
    assert chat.state.prints == ()


def test_fires_once_per_conversation(chat: Chat) -> None:
    play(chat, ZH_ASKS + ZH_ASKS)

    assert chat.state.repeat_turns == 7
    assert chat.fired() == [Detector.REPEATED_FOLLOWUP]


def test_threshold_n_comes_from_settings(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(repeat_min_turns=1)

    fired = play(chat, EN_ASKS[:2])

    assert fired == [[], [Detector.REPEATED_FOLLOWUP]]


def test_repeats_of_different_questions_add_up(chat: Chat) -> None:
    play(chat, [ZH_ASKS[0], EN_ASKS[0], ZH_ASKS[1], EN_ASKS[1], ZH_ASKS[2]])

    assert chat.fired() == [Detector.REPEATED_FOLLOWUP]
