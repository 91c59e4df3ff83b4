"""Event order in the capture core (issue 17) and first versions of events (issue 16 item 5)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from analytics.rows import COLUMNS
from detectors.config import DetectorSettings
from detectors.order import END_OF_TIME
from loraloop.settings import StreamSettings
from streams.capture_core import CaptureCore, Processed, RawMessage
from streams.state_store import STATE_TABLE
from streams.watermark import Reading, Watermarks
from tests.unit.streams.test_capture_core import FakeClock, past_the_start

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
IDLE_S = 1.0
CID = "conv-1"


def _stream(**changes: Any) -> StreamSettings:
    return StreamSettings(**{"event_order": True, "watermark_idle_s": IDLE_S, **changes})


def _core(stream: StreamSettings) -> CaptureCore:
    """A core past its start, whose clock moves past the idle time at every batch."""
    core = CaptureCore(stream, DetectorSettings(), cache_size=100, clock=FakeClock(10 * IDLE_S))
    past_the_start(core)
    return core


def _batch(core: CaptureCore, messages: list[RawMessage], stored: Any = None) -> Processed:
    core.begin(messages)
    return core.finish(stored or {}, {})


def _message(topic: str, offset: int, payload: dict[str, Any]) -> RawMessage:
    return RawMessage(topic, 0, offset, orjson.dumps(payload))


def _turn(
    index: int, role: str = "user", text: str = "Where is my parcel?", **over: Any
) -> RawMessage:
    payload: dict[str, Any] = {
        "event_id": f"t{index}",
        "ts": (T0 + timedelta(seconds=index)).isoformat(),
        "conversation_id": CID,
        "user_id": "u1",
        "turn_index": index,
        "role": role,
        "text": text,
    }
    if role == "assistant":
        payload["model_version"] = "model_v1"
    payload.update(over)
    return _message("llm.turns", index, payload)


def _handoff(index: int, offset: int = 0) -> RawMessage:
    payload = {
        "event_id": f"h{index}",
        "ts": (T0 + timedelta(seconds=index)).isoformat(),
        "conversation_id": CID,
        "user_id": "u1",
        "turn_index": index,
        "initiated_by": "user",
    }
    return _message("llm.handoffs", offset, payload)


def _complaint(at: int, offset: int = 0) -> RawMessage:
    payload = {
        "event_id": f"f{at}",
        "ts": (T0 + timedelta(seconds=at)).isoformat(),
        "conversation_id": CID,
        "user_id": "u1",
        "kind": "complaint",
    }
    return _message("llm.feedback", offset, payload)


def _rows(processed: Processed, table: str) -> list[dict[str, Any]]:
    encoded = processed.rows.get(table)
    if encoded is None:
        return []
    return [
        dict(zip(COLUMNS[table], orjson.loads(line), strict=True))
        for line in encoded.data.split(b"\n")
    ]


def _signals(*processed: Processed) -> list[tuple[str, int | None]]:
    return [(r["detector"], r["turn_index"]) for p in processed for r in _rows(p, "signals")]


def test_a_handoff_read_before_the_turns_it_follows_escalates_as_in_order() -> None:
    """The new user's case: the handoff topic was read first, and sudden_escalation was missed."""
    chat = [_turn(0), _turn(1, role="assistant", text="Let me check.")]
    for ordered in (True, False):
        core = _core(_stream(allowed_lateness_s=5.0, event_order=ordered))
        first = _batch(core, [_handoff(2)])
        second = _batch(core, chat)
        flushed = _batch(core, [])  # the stream is idle: the pending events are final
        fired = _signals(first, second, flushed)
        if ordered:
            assert fired == [("sudden_escalation", 2)]
            assert first.rows.keys() >= {"handoffs", STATE_TABLE}  # stored at once, held
            assert "conversations" not in first.rows
        else:  # arrival order, as before: the handoff came before the bot had spoken
            assert fired == []


def test_the_watermark_releases_what_every_topic_has_passed() -> None:
    core = _core(_stream(allowed_lateness_s=0.0))
    clock_free = _batch(core, [_turn(0), _turn(1, role="assistant"), _complaint(1)])
    # The turns topic has reached 1 s, the feedback topic 1 s: both final at lateness 0.
    assert clock_free.pending == 0
    assert _signals(clock_free) == [("complaint", None)]


def test_an_event_later_than_the_lateness_is_stored_flagged_counted_once() -> None:
    core = _core(_stream(allowed_lateness_s=0.0))
    _batch(core, [_turn(i) for i in range(4)])  # released: the frontier is at 3 s

    late = _batch(core, [_complaint(1)])
    again = _batch(core, [_complaint(1)])  # redelivered

    assert [r["event_id"] for r in _rows(late, "feedback")] == ["f1"]  # stored
    (flag,) = _rows(late, "late_events")
    assert (flag["event_id"], flag["topic"], flag["conversation_id"]) == ("f1", "llm.feedback", CID)
    assert flag["frontier_ts"].startswith("2026-11-01T09:00:03")
    assert late.late == {"llm.feedback": 1}
    assert _signals(late) == [("complaint", None)]  # applied where it landed
    assert again.rows.keys() == set()  # nothing lost, nothing duplicated
    assert again.late == {}


def test_a_redelivery_writes_nothing_and_a_changed_duplicate_is_a_conflict() -> None:
    core = _core(_stream(allowed_lateness_s=math.inf))
    first = _batch(core, [_turn(0)])
    same = _batch(core, [_turn(0)])
    changed = _batch(core, [_turn(0, text="rewritten after approval")])
    second_turn = _batch(core, [_turn(0, event_id="t0-new", text="another turn 0")])

    assert [r["event_id"] for r in _rows(first, "turns")] == ["t0"]
    assert same.rows == {}
    assert same.letters == []
    assert "turns" not in changed.rows
    assert [letter.error for letter in changed.letters] == [
        "conflict: event_id t0 already stored with different content"
    ]
    assert changed.letters[0].source_topic == "llm.turns"
    assert "turns" not in second_turn.rows
    assert [letter.error for letter in second_turn.letters] == [
        f"conflict: turn_index 0 of conversation {CID} already stored as event_id t0"
    ]


def test_pending_events_are_released_after_a_restart_from_the_stored_state() -> None:
    before = _core(_stream(allowed_lateness_s=math.inf))
    held = _batch(before, [_complaint(5)])
    (state,) = _rows(held, STATE_TABLE)
    assert state["pending"] == 1
    assert held.pending == 1
    assert _signals(held) == []

    after = CaptureCore(
        _stream(allowed_lateness_s=math.inf),
        DetectorSettings(),
        cache_size=100,
        clock=FakeClock(10),
    )
    needs = after.begin([])
    assert needs.restore  # a fresh core asks for the stored states with pending events
    after.finish({CID: state["state"]}, {})
    assert after.pending == 1
    released = _batch(after, [])  # its partition is idle: final

    assert _signals(released) == [("complaint", None)]
    assert released.pending == 0
    assert [r["pending"] for r in _rows(released, STATE_TABLE)] == [0]
    assert not after.begin([]).restore  # once per start (and per rebalance: clear())


def test_a_watermark_is_the_slowest_topics_time_minus_the_lateness() -> None:
    clock = FakeClock()
    marks = Watermarks(["a", "b", "c"], lateness_s=2.0, idle_s=IDLE_S, clock=clock)
    marks.observe([(0, "a", 10_000_000), (0, "b", 7_000_000)])
    assert marks.of(0) is None  # "c" not read yet since the start: it holds the partition
    clock.now += IDLE_S
    marks.observe([(0, "a", 11_000_000), (0, "b", 8_000_000)])
    assert marks.of(0) == 6_000_000  # "c" idle: the slowest of a and b, minus 2 s
    clock.now += IDLE_S
    marks.tick()
    assert marks.of(0) == END_OF_TIME  # nothing read for the idle time: all final
    assert marks.of(1) == END_OF_TIME


def _reading(
    assigned: list[tuple[int, str]], caught_up: list[tuple[int, str]] | None = None
) -> Reading:
    return Reading(frozenset(assigned), frozenset(assigned if caught_up is None else caught_up))


TOPICS = ["llm.turns", "llm.feedback", "llm.handoffs", "llm.qa", "llm.outcomes"]


def test_a_topic_not_read_to_its_end_is_never_idle() -> None:
    """After a restart one topic's backlog may be read long after the others': until the
    consumer has read it to its end it holds its partition back, however long it is silent,
    so its events are not made late by idleness."""
    clock = FakeClock()
    marks = Watermarks(["a", "b"], lateness_s=2.0, idle_s=IDLE_S, clock=clock)
    behind = _reading([(0, "a"), (0, "b")], caught_up=[(0, "a")])
    marks.observe([(0, "a", 10_000_000)], behind)
    for _ in range(3):
        clock.now += IDLE_S
        marks.observe([(0, "a", 20_000_000)], behind)
        assert marks.of(0) is None  # "b" has a backlog and delivered nothing yet
    marks.observe([(0, "b", 9_000_000)], behind)
    assert marks.of(0) == 7_000_000  # b's own time decides
    clock.now += IDLE_S
    marks.observe([(0, "a", 21_000_000)], _reading([(0, "a"), (0, "b")]))
    assert marks.of(0) == 19_000_000  # b read to its end and silent for idle_s: idle
    clock.now += IDLE_S
    marks.observe([], behind)  # new records on b, not delivered yet: it holds again
    assert marks.of(0) == 7_000_000


def test_a_partition_not_held_here_has_no_watermark_however_long_it_is_silent() -> None:
    clock = FakeClock()
    marks = Watermarks(["a", "b"], lateness_s=2.0, idle_s=IDLE_S, clock=clock)
    for _ in range(5):  # a restarted worker waiting out the dead member's session
        clock.now += IDLE_S
        marks.observe([], _reading([]))
        assert marks.of(0) is None
    marks.observe([], _reading([(1, "a"), (1, "b")]))
    assert marks.of(0) is None  # partition 0 went to another worker
    assert marks.of(1) is None  # just assigned: its topics count from now
    clock.now += IDLE_S
    marks.observe([], _reading([(1, "a"), (1, "b")]))
    assert marks.of(1) == END_OF_TIME  # read to their end and silent: the stream ended


def _restored_complaint() -> str:
    """The stored state of a conversation whose complaint is pending, its turns unread."""
    before = _core(_stream())
    held = _batch(before, [_complaint(20)])
    (state,) = _rows(held, STATE_TABLE)
    assert state["pending"] == 1
    return str(state["state"])


def test_a_restarted_worker_releases_nothing_before_its_partitions_are_read() -> None:
    """The SIGKILL flake of issue 17: a restarted worker ticked for longer than the idle
    time before its partitions were assigned, called every partition idle and released
    the restored complaint before the turn it follows, whose complaint then came second."""
    stored = _restored_complaint()
    clock = FakeClock()
    after = CaptureCore(_stream(), DetectorSettings(), cache_size=100, clock=clock)
    for _ in range(5):  # no assignment yet: nothing to restore, nothing released
        clock.now += IDLE_S
        needs = after.begin([], _reading([]))
        assert not needs.restore
        assert _signals(after.finish({}, {})) == []
    everything = [(0, t) for t in TOPICS]
    backlog = _reading(everything, caught_up=[(0, t) for t in TOPICS if t != "llm.turns"])
    assert after.begin([], backlog).restore
    assert _signals(after.finish({CID: stored}, {})) == []
    assert after.pending == 1
    for _ in range(3):  # the turns' backlog is still being read: the complaint waits
        clock.now += IDLE_S
        after.begin([], backlog)
        assert _signals(after.finish({}, {})) == []
    after.begin([_turn(0, text="I want a refund now")], backlog)
    after.finish({}, {})
    clock.now += IDLE_S
    after.begin([], _reading(everything))
    released = after.finish({}, {})
    assert _signals(released) == [("complaint", 0)]  # the turn's, as in the clean run
    assert released.pending == 0


def test_restored_states_of_partitions_held_elsewhere_are_left_to_their_worker() -> None:
    stored = _restored_complaint()  # partition 0
    core = CaptureCore(_stream(), DetectorSettings(), cache_size=100, clock=FakeClock(IDLE_S))
    assert core.begin([], _reading([(1, t) for t in TOPICS])).restore
    core.finish({CID: stored}, {})
    assert core.pending == 0
    assert len(core) == 0
