"""Map validated events to warehouse rows (column order matches the migrations)."""

from __future__ import annotations

from typing import Any, Final

from loraloop.events import (
    Contract,
    DeadLetter,
    Feedback,
    Handoff,
    Outcome,
    QAVerdict,
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
    "dead_letters": ("source_topic", "partition", "offset", "ts", "raw_b64", "error"),
}  # fmt: skip

TABLE_OF: Final[dict[type[Contract], str]] = {
    Turn: "turns",
    Feedback: "feedback",
    Handoff: "handoffs",
    QAVerdict: "qa_verdicts",
    Outcome: "outcomes",
    UserProfile: "user_profiles",
}


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
