"""complaint: feedback kinds and the zh + en lexicon on user turns."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from detectors import Detector
from loraloop.events import FeedbackKind

if TYPE_CHECKING:
    from conftest import Chat


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("你们就是骗子，我要投诉！", "骗子"),
        ("我 要 退 款", "退款"),
        ("再不处理我就打12315", "12315"),
        ("This is a total RIP-OFF.", "rip off"),
        ("I want a refund, now", "refund"),
        ("I'm going to file a complaint with your manager", "file a complaint"),
        ("Ｔｈｉｓ　ｉｓ　ａ　ｓｃａｍ", "scam"),
        ("我要refund", "refund"),
    ],
)
def test_user_turn_in_the_lexicon_fires(chat: Chat, text: str, matched: str) -> None:
    chat.bot("您好")

    signals = chat.user(text)

    assert [s.detector for s in signals] == [Detector.COMPLAINT]
    assert signals[0].evidence["matched"] == matched
    assert signals[0].evidence["source"] == "turn"
    assert signals[0].evidence["text"] == text
    assert signals[0].risk_weight == chat.settings.risk_weights.complaint


@pytest.mark.parametrize(
    "text",
    [
        "请问会员有什么权益？",
        "这个套餐怎么收费",
        "Is this ticket refundable?",
        "I'd like the scampi, please",
        "What a fraudulently good deal",
        "Can you recommend a laptop?",
    ],
)
def test_unrelated_or_near_miss_text_does_not_fire(chat: Chat, text: str) -> None:
    chat.bot("Hello")

    assert chat.user(text) == []


def test_assistant_turns_are_not_scanned(chat: Chat) -> None:
    assert chat.bot("如需退款，请在订单页申请；we can refund within 7 days.") == []
    assert chat.state.fired == {}


@pytest.mark.parametrize(
    "kind", [FeedbackKind.COMPLAINT, FeedbackKind.REFUND_REQUEST, FeedbackKind.DISPUTE]
)
def test_complaint_feedback_fires(chat: Chat, kind: FeedbackKind) -> None:
    chat.user("hello there")
    chat.bot(version="v7")

    signals = chat.feedback(kind, comment="charged twice")

    assert [s.detector for s in signals] == [Detector.COMPLAINT]
    assert signals[0].evidence == {
        "event_id": "conv-1-e3",
        "source": "feedback",
        "kind": kind.value,
        "turn_index": 1,
        "comment": "charged twice",
    }
    assert signals[0].model_version == "v7"
    assert signals[0].user_id == "user-1"


@pytest.mark.parametrize("kind", [FeedbackKind.THUMBS_UP, FeedbackKind.THUMBS_DOWN])
def test_votes_are_not_complaints(chat: Chat, kind: FeedbackKind) -> None:
    assert chat.feedback(kind, comment="退款") == []


def test_fires_once_per_conversation(chat: Chat) -> None:
    chat.bot()
    chat.user("骗子！我要投诉")
    chat.feedback(FeedbackKind.COMPLAINT)
    chat.user("I want a refund")

    assert chat.fired() == [Detector.COMPLAINT]


def test_lexicon_comes_from_settings(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(complaint_terms=("terrible service", "差劲"))

    assert chat.user("I want a refund") == []
    assert [s.detector for s in chat.user("Terrible   service!")] == [Detector.COMPLAINT]


def test_same_signal_id_whichever_complaint_arrives_first(
    make_chat: Callable[..., Chat],
) -> None:
    """A redelivery may interleave the turns and feedback topics differently."""
    turn_first, feedback_first = make_chat("conv-7"), make_chat("conv-7")
    for chat in (turn_first, feedback_first):
        chat.bot("您好")
    first = turn_first.user("我要投诉") + turn_first.feedback(FeedbackKind.REFUND_REQUEST)
    second = feedback_first.feedback(FeedbackKind.REFUND_REQUEST) + feedback_first.user("我要投诉")

    assert len(first) == len(second) == 1
    assert first[0].evidence["source"] == "turn"
    assert second[0].evidence["source"] == "feedback"
    assert first[0].signal_id == second[0].signal_id
