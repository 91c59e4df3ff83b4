"""ConversationState: idempotent replays, bounded size, JSON round trip, deterministic ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from detectors import ConversationState, Detector, DetectorSettings, apply, new_state, signal_id
from detectors.exceptions import (
    ConversationMismatchError,
    StateFormatError,
    UnsupportedEventError,
)
from loraloop.events import (
    MAX_TEXT_CHARS,
    Acceptance,
    Feedback,
    FeedbackKind,
    Outcome,
    OutcomeKind,
    Role,
    Tier,
    UserProfile,
)

if TYPE_CHECKING:
    from conftest import Chat

T_STEP = timedelta(seconds=1)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def golden(chat: Chat) -> None:
    """A conversation that makes most detectors fire."""
    for ask in ["我的订单什么时候发货？", "订单什么时候能发货啊", "请问我的订单什么时候发货呢"]:
        chat.user(ask)
        chat.bot()
    chat.user("到底什么时候发货？我的订单")
    chat.bot(version="v2")
    chat.user("你们是骗子吧")
    chat.feedback(FeedbackKind.THUMBS_DOWN, tier=Tier.VIP)
    chat.qa(Acceptance.REJECT)


def test_golden_conversation_signals(chat: Chat) -> None:
    golden(chat)

    assert chat.fired() == [
        Detector.REPEATED_FOLLOWUP,
        Detector.COMPLAINT,
        Detector.HIGH_VALUE_DOWNVOTE,
        Detector.QA_FLAG,
    ]
    assert [s.model_version for s in chat.signals] == ["v1", "v2", "v2", "v2"]
    assert chat.state.user_tier is Tier.VIP
    assert chat.state.user_turns == 5
    assert chat.state.assistant_turns == 4
    assert chat.state.other_events == 2


@pytest.mark.parametrize("role", [Role.USER, Role.ASSISTANT])
def test_applying_a_turn_twice_changes_nothing(chat: Chat, role: Role) -> None:
    chat.bot()
    for _ in range(2):
        chat.user("when will my order ship?")
        chat.bot()
    event = chat.turn(role, "when will my order ship???", "v1")
    chat.settings = chat.settings.model_copy(update={"repeat_min_turns": 2})
    once, first = apply(chat.state, event, settings=chat.settings)

    twice, second = apply(once, event, settings=chat.settings)

    assert twice == once
    assert second == []
    assert [s.detector for s in first] == (
        [Detector.REPEATED_FOLLOWUP] if role is Role.USER else []
    )


def test_replaying_a_whole_conversation_changes_nothing(
    make_chat: Callable[..., Chat], settings: DetectorSettings
) -> None:
    recorder = make_chat()
    events: list[Any] = []
    original_send = recorder.send

    def recording_send(event: Any, *, user_tier: Tier | None = None) -> Any:
        events.append((event, user_tier))
        return original_send(event, user_tier=user_tier)

    recorder.send = recording_send  # type: ignore[method-assign]
    golden(recorder)
    state = recorder.state

    for event, tier in events:
        state, signals = apply(state, event, settings=settings, user_tier=tier)
        assert signals == []
    assert state == recorder.state


def test_non_turn_event_ids_are_remembered(chat: Chat) -> None:
    chat.qa(Acceptance.RISK)
    event = Feedback(
        event_id="fb-1",
        ts=chat.state.last_ts + T_STEP,  # type: ignore[operator]
        conversation_id="conv-1",
        user_id="user-1",
        kind=FeedbackKind.COMPLAINT,
    )
    once, _ = apply(chat.state, event, settings=chat.settings)

    twice, second = apply(once, event, settings=chat.settings)

    assert (twice, second) == (once, [])
    assert once.other_events == 2


def test_late_turn_inside_the_window_is_applied(chat: Chat) -> None:
    late = chat.turn(Role.ASSISTANT, "answer", "v-old")
    chat.user("first")
    chat.bot(version="v-new")

    chat.send(late)

    assert chat.state.assistant_turns == 2
    assert chat.state.model_version == "v-new"
    assert chat.state.assistant_turn_indices == (0, 2)


def test_turn_older_than_a_full_window_counts_as_replay(
    make_chat: Callable[..., Chat],
) -> None:
    chat = make_chat(applied_window=4)
    old = chat.turn(Role.USER, "very old")
    for _ in range(4):
        chat.bot()

    assert chat.send(old) == []
    assert chat.state.user_turns == 0


def test_state_stays_bounded_over_ten_thousand_turns(chat: Chat) -> None:
    s = chat.settings
    long_text = ("为什么还没有发货 why has it not shipped " * 600)[:MAX_TEXT_CHARS]
    for i in range(5000):
        chat.user(f"question number {i} about my order {i * 7}" if i % 2 else long_text)
        chat.bot()
    for _ in range(300):
        chat.feedback(FeedbackKind.THUMBS_UP)

    state = chat.state
    assert state.user_turns == 5000
    assert len(state.prints) == s.max_fingerprints
    assert len(state.assistant_turn_indices) == s.max_fingerprints
    assert len(state.applied_turns) == s.applied_window
    assert len(state.recent_event_ids) == s.applied_window
    assert max(len(p.shingles) for p in state.prints) <= s.max_fingerprint_chars
    assert len(json.dumps(state.to_dict())) < 64_000


def test_round_trips_through_json(chat: Chat) -> None:
    golden(chat)

    data = json.loads(json.dumps(chat.state.to_dict()))

    assert ConversationState.from_dict(data) == chat.state
    assert data["prints"][0][1] == sorted(data["prints"][0][1])


def test_a_restored_state_keeps_detecting(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(repeat_min_turns=1)
    chat.user("When will my order ship?")
    chat.bot()
    chat.state = ConversationState.from_dict(json.loads(json.dumps(chat.state.to_dict())))

    assert [s.detector for s in chat.user("when does my order ship")] == [
        Detector.REPEATED_FOLLOWUP
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"format": 99},
        {"prints": [[1]]},
        {"user_tier": "gold"},
        {"last_ts": "2025-01-01T00:00:00"},
        {"fired": None},
    ],
)
def test_unreadable_state_raises_state_format_error(chat: Chat, change: dict[str, Any]) -> None:
    golden(chat)
    data = {**chat.state.to_dict(), **change}

    with pytest.raises(StateFormatError, match="drop the entry"):
        ConversationState.from_dict(data)


def test_signal_ids_are_deterministic(make_chat: Callable[..., Chat]) -> None:
    first, again, other = make_chat("conv-1"), make_chat("conv-1"), make_chat("conv-2")
    for chat in (first, again, other):
        golden(chat)

    ids = [s.signal_id for s in first.signals]
    assert ids == [s.signal_id for s in again.signals]
    assert not set(ids) & {s.signal_id for s in other.signals}
    assert len(set(ids)) == len(ids)
    complaint = first.signals[1]
    assert ids[1] == signal_id("complaint", "conv-1", complaint.risk_weight)


def test_signal_id_depends_on_each_part() -> None:
    base = signal_id("complaint", "c", 0.5)

    assert len(base) == 32
    assert base == signal_id("complaint", "c", 0.5)
    variants = [("qa_flag", "c", 0.5), ("complaint", "d", 0.5), ("complaint", "c", 1.0)]
    assert base not in {signal_id(*parts) for parts in variants}
    assert len({signal_id(*parts) for parts in variants}) == len(variants)


def test_latest_activity_time_is_kept(chat: Chat) -> None:
    chat.user("hi")
    late = chat.state.last_ts
    early = chat.turn(Role.ASSISTANT, "x", "v1").model_copy(
        update={"ts": late - timedelta(hours=1)}  # type: ignore[operator]
    )

    chat.send(early)

    assert chat.state.last_ts == late


def test_event_of_another_conversation_is_refused(chat: Chat) -> None:
    other = chat.turn(Role.USER, "hi").model_copy(update={"conversation_id": "conv-2"})

    with pytest.raises(ConversationMismatchError, match="conversation_id"):
        apply(chat.state, other, settings=chat.settings)


def test_user_profiles_are_refused(settings: DetectorSettings) -> None:
    profile = UserProfile(event_id="p1", ts=T0, user_id="u", tier=Tier.VIP, lifetime_value=1.0)

    with pytest.raises(UnsupportedEventError, match="user_tier"):
        apply(new_state("c"), profile, settings=settings)  # type: ignore[arg-type]


def test_outcomes_are_counted_without_signals(chat: Chat, settings: DetectorSettings) -> None:
    outcome = Outcome(
        event_id="o1",
        ts=T0,
        conversation_id="conv-1",
        user_id="user-1",
        kind=OutcomeKind.REFUND,
        value=10.0,
    )

    state, signals = apply(chat.state, outcome, settings=settings)

    assert signals == []
    assert state.other_events == 1
    assert state.user_id == "user-1"
