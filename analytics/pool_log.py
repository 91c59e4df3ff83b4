"""Reading and appending a sample's audit log (``sample_transitions``).

A sample's current status is the ``to_status`` of its latest non-proposal row by
``(ts, seq)``; a sample with no row yet is at the status capture wrote into
``samples`` (``captured``). The stream writes no capture row, so the first move
made here also writes the capture row (seq 0, role system, at the sample's
``created_at``), which keeps every log replayable by ``lifecycle.replay_status``.
Timestamps of new rows never go backwards within a sample, so ``(ts, seq)``
order is append order even when event times run ahead of the clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from analytics.warehouse import Warehouse
from loraloop.lifecycle import ActorKind, Role, SampleStatus, Transition, build_transition

TRANSITION_COLUMNS: Final = (
    "transition_id", "sample_id", "seq", "from_status", "to_status", "action", "actor", "role",
    "actor_kind", "reason", "evidence", "proposal", "ts",
)  # fmt: skip

CAPTURE_ACTOR: Final = "sampler"
"""The actor of a backfilled capture row when the sample does not say who sampled it."""


def utc(value: datetime) -> datetime:
    """ClickHouse returns naive UTC datetimes: make them aware."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def evidence_json(evidence: dict[str, Any]) -> str:
    return orjson.dumps(evidence, option=orjson.OPT_SORT_KEYS, default=str).decode()


@dataclass(frozen=True, slots=True)
class LogState:
    """Where a sample's log stands: status, the next seq, the latest ts, the capture row."""

    status: SampleStatus
    next_seq: int
    last_ts: datetime | None
    has_capture: bool
    created_at: datetime
    sampled_by: str
    transition_ids: frozenset[str] = frozenset()
    conversation_id: str = ""
    """The conversation the sample was captured from (``samples.conversation_id``)."""

    def next_ts(self, now: datetime) -> datetime:
        """``now``, or the latest row's ts when the log already runs ahead of the clock."""
        return now if self.last_ts is None or now >= self.last_ts else self.last_ts


def read_state(warehouse: Warehouse, sample_id: str) -> LogState | None:
    """The log state of ``sample_id``; None when capture has not written the sample."""
    return read_states(warehouse, [sample_id]).get(sample_id)


def read_states(warehouse: Warehouse, sample_ids: Iterable[str]) -> dict[str, LogState]:
    """Log states of the samples capture has written, by id (two queries for any number)."""
    ids = sorted(set(sample_ids))
    if not ids:
        return {}
    samples = warehouse.query(
        "SELECT sample_id, any(status), any(created_at), any(sampled_by), any(conversation_id) "
        "FROM samples FINAL "
        "WHERE sample_id IN {ids:Array(String)} GROUP BY sample_id",
        {"ids": ids},
    ).result_rows
    logs: dict[str, list[Sequence[Any]]] = defaultdict(list)
    for row in warehouse.query(
        "SELECT sample_id, seq, to_status, proposal, ts, action, transition_id "
        "FROM sample_transitions FINAL WHERE sample_id IN {ids:Array(String)} "
        "ORDER BY sample_id, ts, seq",
        {"ids": ids},
    ).result_rows:
        logs[str(row[0])].append(row[1:])
    return {
        str(sid): replace(
            _state_of(status, created_at, sampled_by, logs.get(str(sid), [])),
            conversation_id=str(conversation_id),
        )
        for sid, status, created_at, sampled_by, conversation_id in samples
    }


def _state_of(
    captured_status: str, created_at: datetime, sampled_by: str, rows: list[Sequence[Any]]
) -> LogState:
    moves = [r for r in rows if not r[2]]
    status = SampleStatus(moves[-1][1] if moves else captured_status or SampleStatus.CAPTURED)
    return LogState(
        status=status,
        next_seq=max((int(r[0]) for r in rows), default=-1) + 1,
        last_ts=max((utc(r[3]) for r in rows), default=None),
        has_capture=any(r[4] == "capture" for r in moves),
        created_at=utc(created_at),
        sampled_by=str(sampled_by),
        transition_ids=frozenset(str(r[5]) for r in rows),
    )


def capture_row(sample_id: str, state: LogState) -> Transition:
    """The capture row the stream did not write (seq 0, deterministic)."""
    return build_transition(
        sample_id,
        None,
        SampleStatus.CAPTURED,
        actor=CAPTURE_ACTOR,
        role=Role.SYSTEM,
        actor_kind=ActorKind.SYSTEM,
        seq=0,
        ts=state.created_at,
        evidence={"backfilled": True, "sampled_by": state.sampled_by},
    )


def ensure_capture(warehouse: Warehouse, sample_id: str, state: LogState) -> LogState:
    """Write the capture row when the log has none; returns the state after it."""
    if state.has_capture or state.next_seq > 0:
        return state
    row = capture_row(sample_id, state)
    write_transition(warehouse, row)
    return captured(state, row)


def captured(state: LogState, capture: Transition) -> LogState:
    """The state after its backfilled capture row ``capture``."""
    return replace(
        state,
        next_seq=1,
        last_ts=capture.ts,
        has_capture=True,
        transition_ids=state.transition_ids | {capture.transition_id},
    )


def transition_row(row: Transition, *, transition_id: str | None = None) -> list[Any]:
    """A ``Transition`` in TRANSITION_COLUMNS order ('' for no from-status or reason)."""
    return [
        transition_id or row.transition_id,
        row.sample_id,
        row.seq,
        str(row.from_status or ""),
        str(row.to_status),
        str(row.action),
        row.actor,
        str(row.role),
        str(row.actor_kind),
        row.reason or "",
        evidence_json(row.evidence),
        row.proposal,
        row.ts,
    ]


def write_transition(
    warehouse: Warehouse, row: Transition, *, transition_id: str | None = None
) -> None:
    """Append one audit row (``transition_id`` overrides ``sample_id:seq``)."""
    warehouse.insert(
        "sample_transitions",
        [transition_row(row, transition_id=transition_id)],
        column_names=TRANSITION_COLUMNS,
    )
