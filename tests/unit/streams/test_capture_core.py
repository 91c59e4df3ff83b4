"""The capture core: decoding, detection and the state cache, without I/O."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from analytics.rows import COLUMNS
from detectors.config import DetectorSettings
from loraloop.events import Tier
from loraloop.settings import StreamSettings
from streams.capture_core import CaptureCore, CaptureOrderError, RawMessage
from streams.state_store import STATE_TABLE


def _turn(
    offset: int, conversation: str, *, index: int | None = None, role: str = "user"
) -> RawMessage:
    payload = {
        "event_id": f"e{offset}",
        "ts": f"2026-11-01T10:00:{offset:02d}.123456Z",
        "conversation_id": conversation,
        "user_id": f"u-{conversation}",
        "turn_index": offset if index is None else index,
        "role": role,
        "text": "where is my refund? I want to file a complaint",
    }
    if role == "assistant":
        payload["model_version"] = "model_v1"
    return RawMessage("llm.turns", 0, offset, orjson.dumps(payload))


def _thumbs_down(offset: int, conversation: str) -> RawMessage:
    payload = {
        "event_id": f"f{offset}",
        "ts": f"2026-11-01T10:01:{offset:02d}Z",
        "conversation_id": conversation,
        "user_id": f"u-{conversation}",
        "turn_index": 1,
        "kind": "thumbs_down",
    }
    return RawMessage("llm.feedback", 0, offset, orjson.dumps(payload))


class FakeClock:
    """A monotonic clock that moves only when told (``step`` seconds per reading)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


IDLE_S = 1.0
QUICK = StreamSettings(event_order=True, allowed_lateness_s=0, watermark_idle_s=IDLE_S)
"""No lateness, and every topic but the batch's own is idle by the next reading."""


def _core(
    cache_size: int = 100, *, stream: StreamSettings = QUICK, clock: FakeClock | None = None
) -> CaptureCore:
    core = CaptureCore(
        stream,
        DetectorSettings(),
        cache_size=cache_size,
        clock=clock or FakeClock(step=10 * IDLE_S),
    )
    past_the_start(core)
    return core


def past_the_start(core: CaptureCore) -> None:
    """As if an event had been read a while ago: an unread topic holds its partition no longer."""
    core._watermarks.observe([(99, "llm.turns", 0)])  # a far partition
    _flush(core)


def _flush(core: CaptureCore, tiers: dict[str, Tier] | None = None) -> Any:
    """An empty batch (the agent's tick on an idle stream): every pending event is final."""
    core.begin([])
    return core.finish({}, tiers or {})


def _rows(processed: Any, table: str) -> list[list[Any]]:
    encoded = processed.rows[table]
    rows = [orjson.loads(line) for line in encoded.data.split(b"\n")]
    assert len(rows) == encoded.count
    assert all(len(row) == len(COLUMNS[table]) for row in rows)
    return rows


def _state_of(processed: Any, conversation: str) -> dict[str, Any]:
    (state,) = [orjson.loads(r[1]) for r in _rows(processed, STATE_TABLE) if r[0] == conversation]
    return dict(state["s"])


def test_begin_names_what_the_warehouse_must_supply() -> None:
    core = _core()
    needs = core.begin([_turn(0, "c1"), _thumbs_down(1, "c2"), RawMessage("llm.turns", 0, 2, b"{")])
    assert needs.missing == ["c1", "c2"]
    assert needs.tier_users == ["u-c2"]  # a thumbs-down without a tier
    assert needs.user_ids == ["u-c1", "u-c2"]
    (letter,) = needs.letters
    assert (letter.source_topic, letter.offset) == ("llm.turns", 2)


def test_finish_builds_encoded_rows_and_caches_the_new_states() -> None:
    core = _core()
    core.begin([_turn(0, "c1"), _turn(1, "c1", role="assistant"), _thumbs_down(2, "c2")])
    processed = core.finish({}, {"u-c2": Tier.VIP})
    assert sorted(processed.touched) == ["c1", "c2"]
    assert processed.events == 3
    assert _state_of(processed, "c1")["model_version"] == "model_v1"
    turns = _rows(processed, "turns")
    assert [r[0] for r in turns] == ["e0", "e1"]
    assert turns[0][1] == "2026-11-01T10:00:00.123456+00:00"  # RFC 3339, microseconds kept
    assert list(processed.rows)[-1] == STATE_TABLE  # states are written last
    assert processed.pending == 1  # the thumbs-down is after the turns' watermark: held
    flushed = _flush(core)
    assert flushed.signals["high_value_downvote"] == 1  # the tier known at arrival was used
    assert flushed.pending == 0
    assert len(core) == 2
    assert core.begin([_turn(3, "c1", index=2)]).missing == []  # cached now


def test_a_stored_state_is_picked_up_where_it_left_off() -> None:
    first = _core()
    first.begin([_turn(0, "c1"), _turn(1, "c1", role="assistant")])
    stored = {"c1": orjson.dumps({"p": 0, **_entry_of(first, "c1")}).decode()}
    second = _core()  # e.g. after a restart: nothing cached
    assert second.begin([_turn(2, "c1", index=2)]).missing == ["c1"]
    processed = second.finish(stored, {})
    assert _state_of(processed, "c1")["user_turns"] == 2


def _entry_of(core: CaptureCore, conversation: str) -> dict[str, Any]:
    processed = core.finish({}, {})
    (row,) = [r for r in _rows(processed, STATE_TABLE) if r[0] == conversation]
    data = orjson.loads(row[1])
    return {"s": data["s"], "r": data["r"]}


def test_an_unreadable_stored_state_starts_the_conversation_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = _core()
    core.begin([_turn(0, "c1")])
    with caplog.at_level(logging.WARNING):
        processed = core.finish({"c1": '{"p": 0, "s": {"format": 99}}'}, {})
    assert _state_of(processed, "c1")["user_turns"] == 1
    assert "unreadable stored state" in caplog.text


def test_clear_between_begin_and_finish_keeps_the_batch_consistent() -> None:
    core = _core()
    core.begin([_turn(0, "c1")])
    core.finish({}, {})
    core.begin([_turn(1, "c1", index=1)])  # c1 was cached when the batch began
    core.clear()  # a rebalance while the batch waits for the warehouse
    processed = core.finish({}, {})
    assert _state_of(processed, "c1")["user_turns"] == 2  # not restarted from nothing
    assert len(core) == 1  # only what this batch wrote is cached after the clear


def test_finish_without_begin_is_refused() -> None:
    core = _core()
    with pytest.raises(CaptureOrderError, match="call begin"):
        core.finish({}, {})


def test_the_cache_stays_within_its_size() -> None:
    core = _core(cache_size=3)
    core.begin([_turn(i, f"c{i}") for i in range(5)])
    core.finish({}, {})
    assert len(core) == 3
    assert core.begin([_turn(9, "c0", index=1)]).missing == ["c0"]  # evicted first
