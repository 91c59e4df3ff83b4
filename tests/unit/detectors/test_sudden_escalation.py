"""sudden_escalation: handoffs and demands for a human with no earlier problem signal."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from detectors import Detector
from loraloop.events import Acceptance, HandoffInitiator, RiskLevel

if TYPE_CHECKING:
    from conftest import Chat


@pytest.mark.parametrize(
    ("text", "matched"),
    [
        ("转人工", "转人工"),
        ("请帮我联系人工客服！！", "人工客服"),
        ("Can I talk to a HUMAN please?", "talk to a human"),
        ("I need a real person, not a bot", "real person"),
    ],
)
def test_user_demand_right_after_the_bot_fires(chat: Chat, text: str, matched: str) -> None:
    chat.user("hi")
    chat.bot(version="v3")

    signals = chat.user(text)

    assert [s.detector for s in signals] == [Detector.SUDDEN_ESCALATION]
    signal = signals[0]
    assert signal.evidence["matched"] == matched
    assert signal.evidence["turns_from_assistant"] == 1
    assert signal.model_version == "v3"
    assert signal.turn_index == 2


@pytest.mark.parametrize("initiator", list(HandoffInitiator))
def test_handoff_event_fires(chat: Chat, initiator: HandoffInitiator) -> None:
    chat.user("我想问一下物流")
    chat.bot()

    signals = chat.handoff(initiator)

    assert [s.detector for s in signals] == [Detector.SUDDEN_ESCALATION]
    assert signals[0].evidence["source"] == "handoff"
    assert signals[0].evidence["initiated_by"] == initiator.value


@pytest.mark.parametrize(
    "text",
    [
        "请问人工智能课程多少钱",
        "I am a real estate agent",
        "What does your human resources team do?",
    ],
)
def test_unrelated_text_does_not_fire(chat: Chat, text: str) -> None:
    chat.bot()

    assert chat.user(text) == []


def test_not_sudden_after_an_earlier_problem_signal(chat: Chat) -> None:
    chat.bot()
    chat.user("这是欺诈")
    chat.bot()

    assert chat.user("转人工") == []
    assert chat.handoff() == []
    assert chat.fired() == [Detector.COMPLAINT]


def test_not_sudden_after_a_qa_flag(chat: Chat) -> None:
    chat.bot()
    chat.qa(Acceptance.RISK, RiskLevel.LOW)

    assert chat.handoff() == []


def test_a_demand_that_is_also_a_complaint_is_a_complaint(chat: Chat) -> None:
    chat.bot()

    signals = chat.user("Scam! Let me talk to a human")

    assert [s.detector for s in signals] == [Detector.COMPLAINT]


def test_without_an_assistant_turn_it_is_routing(chat: Chat) -> None:
    assert chat.user("转人工") == []
    assert chat.handoff() == []


@pytest.mark.parametrize(("gap", "fires"), [(6, True), (7, False)])
def test_only_within_k_turns_of_the_bot(chat: Chat, gap: int, fires: bool) -> None:
    chat.bot()
    for i in range(gap - 1):
        chat.user(f"msg {i}")

    signals = chat.user("talk to a human")

    assert chat.settings.escalation_window_turns == 6
    assert bool(signals) is fires


def test_window_k_comes_from_settings(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(escalation_window_turns=0)
    chat.bot()

    assert chat.handoff() == []


def test_fires_once_per_conversation(chat: Chat) -> None:
    chat.bot()
    chat.user("转人工")
    chat.handoff()

    assert chat.fired() == [Detector.SUDDEN_ESCALATION]
