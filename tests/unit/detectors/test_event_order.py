"""EventOrder: events held in event order, released by a watermark; duplicates and conflicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from detectors.exceptions import StateFormatError
from detectors.order import (
    END_OF_TIME,
    Admission,
    EventOrder,
    content_digest,
    event_key,
)
from loraloop.events import Feedback, FeedbackKind, Handoff, HandoffInitiator, Role, Tier, Turn

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
WINDOW = 8


def _turn(
    index: int, *, text: str = "hello", event_id: str | None = None, at: int | None = None
) -> Turn:
    return Turn(
        event_id=event_id or f"t{index}",
        ts=T0 + timedelta(seconds=index if at is None else at),
        conversation_id="c",
        user_id="u",
        turn_index=index,
        role=Role.USER,
        text=text,
    )


def _handoff(index: int, *, at: int) -> Handoff:
    return Handoff(
        event_id=f"h{index}",
        ts=T0 + timedelta(seconds=at),
        conversation_id="c",
        user_id="u",
        turn_index=index,
        initiated_by=HandoffInitiator.USER,
    )


def _us(seconds: int) -> int:
    return event_key(_turn(0, at=seconds))[0]


def _admit(order: EventOrder, event: Turn | Handoff | Feedback) -> tuple[EventOrder, Admission]:
    admitted = order.admit(event, digest=content_digest(event), tier=None, window=WINDOW)
    return admitted.order, admitted.admission


def test_events_are_released_in_event_order_whatever_the_arrival() -> None:
    order = EventOrder()
    for event in [_handoff(3, at=3), _turn(2), _turn(0), _turn(1)]:
        order, admission = _admit(order, event)
        assert admission is Admission.PENDING

    order, released = order.release(_us(2), max_pending=WINDOW, window=WINDOW)

    assert [h.event.event_id for h in released] == ["t0", "t1", "t2"]
    assert [h.event.event_id for h in order.pending] == ["h3"]
    assert order.frontier == event_key(_turn(2))


def test_the_key_orders_by_time_then_turn_index_then_kind() -> None:
    feedback = Feedback(
        event_id="a-feedback", ts=T0, conversation_id="c", user_id="u", kind=FeedbackKind.COMPLAINT
    )
    same_instant = [feedback, _handoff(1, at=0), _turn(1, at=0), _turn(0, at=0)]

    ordered = sorted(same_instant, key=event_key)

    # Turns by index, a handoff after the turn at its index, an event without index last.
    assert [e.event_id for e in ordered] == ["t0", "t1", "h1", "a-feedback"]


def test_an_event_behind_the_frontier_is_late() -> None:
    order, _ = _admit(EventOrder(), _turn(5))
    order, _ = order.release(END_OF_TIME, max_pending=WINDOW, window=WINDOW)

    order, admission = _admit(order, _turn(4))

    assert admission is Admission.LATE
    assert order.pending == ()
    assert [s.event_id for s in order.seen] == ["t5", "t4"]


def test_a_redelivery_is_a_duplicate_pending_or_released() -> None:
    order, _ = _admit(EventOrder(), _turn(0))
    assert _admit(order, _turn(0))[1] is Admission.DUPLICATE
    order, _ = order.release(END_OF_TIME, max_pending=WINDOW, window=WINDOW)
    assert _admit(order, _turn(0))[1] is Admission.DUPLICATE


@pytest.mark.parametrize("released", [False, True])
def test_changed_content_under_a_known_id_is_a_conflict(released: bool) -> None:
    order, _ = _admit(EventOrder(), _turn(0, text="first"))
    if released:
        order, _ = order.release(END_OF_TIME, max_pending=WINDOW, window=WINDOW)

    admitted = order.admit(
        changed := _turn(0, text="rewritten"),
        digest=content_digest(changed),
        tier=None,
        window=WINDOW,
    )

    assert admitted.admission is Admission.CONFLICT
    assert admitted.reason == "conflict: event_id t0 already stored with different content"
    assert admitted.order is order  # the first version stays


def test_a_second_turn_at_a_taken_index_is_a_conflict() -> None:
    order, _ = _admit(EventOrder(), _turn(3))

    admitted = order.admit(
        other := _turn(3, event_id="t3-bis"), digest=content_digest(other), tier=None, window=8
    )

    assert admitted.admission is Admission.CONFLICT
    assert (
        admitted.reason == "conflict: turn_index 3 of conversation c already stored as event_id t3"
    )


def test_beyond_max_pending_the_oldest_are_released() -> None:
    order = EventOrder()
    for index in range(5):
        order, _ = _admit(order, _turn(index))

    order, released = order.release(None, max_pending=2, window=WINDOW)

    assert [h.event.event_id for h in released] == ["t0", "t1", "t2"]
    assert len(order.pending) == 2


def test_the_seen_window_is_bounded() -> None:
    order = EventOrder()
    for index in range(20):
        order, _ = _admit(order, _turn(index))
    order, _ = order.release(END_OF_TIME, max_pending=100, window=WINDOW)
    assert len(order.seen) == WINDOW


def test_round_trips_through_json() -> None:
    order, _ = _admit(EventOrder(), _turn(0))
    order, _ = order.release(END_OF_TIME, max_pending=WINDOW, window=WINDOW)
    order = order.admit(_turn(1), digest="d", tier=Tier.VIP, window=WINDOW).order

    again = EventOrder.from_dict(json.loads(json.dumps(order.to_dict())))

    assert again == order
    assert EventOrder.from_dict(None) == EventOrder()
    with pytest.raises(StateFormatError, match="drop the entry"):
        EventOrder.from_dict({"pending": [], "frontier": None, "seen": [[1]]})
