"""Map validated events to warehouse rows (column order matches the migrations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from loraloop.events import (
    Contract,
    DeadLetter,
    Feedback,
    Handoff,
    Outcome,
    QAVerdict,
    Signal,
    Turn,
    UserProfile,
)

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "turns": (
        "event_id", "ts", "conversation_id", "user_id", "turn_index", "role", "text",
        "model_version", "has_cta",
    ),
    "feedback": (
        "event_id", "ts", "conversation_id", "user_id", "turn_index", "kind", "comment",
        "user_tier",
    ),
    "handoffs": (
        "event_id", "ts", "conversation_id", "user_id", "turn_index", "initiated_by", "reason",
    ),
    "qa_verdicts": (
        "event_id", "ts", "conversation_id", "sample_id", "reviewer", "acceptance",
        "problem_types", "risk_level", "corrected_response", "notes",
    ),
    "outcomes": ("event_id", "ts", "conversation_id", "user_id", "kind", "value"),
    "user_profiles": ("event_id", "ts", "user_id", "tier", "lifetime_value"),
    "dead_letters": (
        "source_topic", "partition", "offset", "ts", "raw_b64", "error", "raw_bytes", "raw_sha256",
    ),
    "signals": (
        "signal_id", "ts", "detector", "conversation_id", "user_id", "model_version",
        "turn_index", "risk_weight", "evidence",
    ),
}  # fmt: skip

CONVERSATION_COLUMNS: Final = (
    "conversation_id", "user_id", "user_tier", "model_version", "first_ts", "last_ts", "turns",
    "detectors", "handoff", "qa_acceptance", "qa_problem_types", "cta_clicks", "conversions",
    "refunds", "sampled", "inclusion_probability", "revision",
)  # fmt: skip

SAMPLE_COLUMNS: Final = (
    "sample_id", "conversation_id", "user_id", "status", "problem_types", "detectors",
    "risk_weight", "inclusion_probability", "model_version", "first_seen_version",
    "created_at", "updated_at", "revision", "sampled_by",
)  # fmt: skip


COLUMNS["conversations"] = CONVERSATION_COLUMNS
COLUMNS["conversation_state"] = ("conversation_id", "state", "revision", "updated_at", "pending")
COLUMNS["late_events"] = (
    "event_id", "conversation_id", "topic", "partition", "offset", "ts", "frontier_ts",
)  # fmt: skip
COLUMNS["samples"] = SAMPLE_COLUMNS

TABLE_OF: Final[dict[type[Contract], str]] = {
    Turn: "turns",
    Feedback: "feedback",
    Handoff: "handoffs",
    QAVerdict: "qa_verdicts",
    Outcome: "outcomes",
    UserProfile: "user_profiles",
}


ENCODED_FORMAT: Final = "JSONCompactEachRow"
"""How :func:`encode_rows` lays rows out: one JSON array per row, columns in order."""


@dataclass(frozen=True, slots=True)
class EncodedRows:
    """Rows already laid out for an insert (see :func:`encode_rows`) and how many."""

    data: bytes
    count: int

    def halves(self) -> tuple[EncodedRows, EncodedRows]:
        """The first and the second half of the rows (at least two rows, one per line)."""
        lines = self.data.split(b"\n")
        mid = len(lines) // 2
        return (
            EncodedRows(b"\n".join(lines[:mid]), mid),
            EncodedRows(b"\n".join(lines[mid:]), len(lines) - mid),
        )


def encode_rows(rows: Sequence[Sequence[Any]]) -> EncodedRows:
    """Rows as ClickHouse input (JSONCompactEachRow), built in C by orjson.

    Several times cheaper than clickhouse-connect's Python Native serializer, and plain
    bytes, so another process can build them (see :mod:`streams.capture_process`).
    Datetimes come out as RFC 3339, read back exactly with ``best_effort`` parsing.
    """
    return EncodedRows(b"\n".join(map(orjson.dumps, rows)), len(rows))


def _plain(value: Any) -> Any:
    """Enums to their value, None kept; everything else as is."""
    return getattr(value, "value", value)


def event_row(event: Contract) -> tuple[str, list[Any]]:
    """The table an event belongs to and its row in that table's column order."""
    table = TABLE_OF[type(event)]
    data = event.__dict__
    row = []
    for column in COLUMNS[table]:
        value = _plain(data.get(column))
        if value is None and column in {"model_version", "user_tier", "sample_id"}:
            value = ""
        row.append(value)
    return table, row


def dead_letter_row(letter: DeadLetter) -> list[Any]:
    """A dead letter's row in ``dead_letters``."""
    data = letter.__dict__
    return [data[c] for c in COLUMNS["dead_letters"]]


def signal_row(signal: Signal) -> list[Any]:
    """A detector signal's row in ``signals`` (evidence as JSON text)."""
    return [
        signal.signal_id,
        signal.ts,
        signal.detector,
        signal.conversation_id,
        signal.user_id,
        signal.model_version or "",
        signal.turn_index,
        signal.risk_weight,
        orjson.dumps(signal.evidence, option=orjson.OPT_SORT_KEYS).decode(),
    ]
