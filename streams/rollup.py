"""The per-conversation rollup behind the ``conversations`` table (the rates' denominator).

Pure and small: what the detectors' state does not already hold (first activity,
turn count, handoff, the latest QA verdict, outcome counts). The capture agent
applies an event here only when the detector state has not seen it, so a replay
leaves the rollup unchanged too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from analytics.rows import CONVERSATION_COLUMNS, SAMPLE_COLUMNS
from detectors.evolve import evolve
from detectors.sampler import SampleDecision
from detectors.state import ConversationEvent, ConversationState
from loraloop.events import Handoff, Outcome, OutcomeKind, QAVerdict, Role, Turn


@dataclass(frozen=True, slots=True)
class ConversationRollup:
    """Counters and latest facts of one conversation."""

    first_ts: str | None = None
    turns: int = 0
    served_version: str | None = None
    handoff: bool = False
    qa_acceptance: str = ""
    qa_problem_types: tuple[str, ...] = ()
    cta_clicks: int = 0
    conversions: int = 0
    refunds: int = 0
    events: int = 0

    def apply(self, event: ConversationEvent) -> ConversationRollup:
        """The rollup after ``event`` (call only for events not applied before)."""
        ts = event.ts.isoformat()
        changes: dict[str, Any] = {"events": self.events + 1}
        if self.first_ts is None or ts < self.first_ts:
            changes["first_ts"] = ts
        if isinstance(event, Turn):
            changes["turns"] = self.turns + 1
            if event.role is Role.ASSISTANT and self.served_version is None:
                changes["served_version"] = event.model_version
        elif isinstance(event, Handoff):
            changes["handoff"] = True
        elif isinstance(event, QAVerdict):
            changes["qa_acceptance"] = event.acceptance.value
            changes["qa_problem_types"] = tuple(event.problem_types)
        elif isinstance(event, Outcome):
            counter = _OUTCOME_COUNTERS[event.kind]
            changes[counter] = getattr(self, counter) + 1
        return evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_ts": self.first_ts,
            "turns": self.turns,
            "served_version": self.served_version,
            "handoff": self.handoff,
            "qa_acceptance": self.qa_acceptance,
            "qa_problem_types": list(self.qa_problem_types),
            "cta_clicks": self.cta_clicks,
            "conversions": self.conversions,
            "refunds": self.refunds,
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversationRollup:
        return cls(**{**data, "qa_problem_types": tuple(data.get("qa_problem_types", ()))})


_OUTCOME_COUNTERS: Final = {
    OutcomeKind.CTA_CLICK: "cta_clicks",
    OutcomeKind.CONVERSION: "conversions",
    OutcomeKind.REFUND: "refunds",
}


__all__ = ["CONVERSATION_COLUMNS", "SAMPLE_COLUMNS", "ConversationRollup"]


def sample_id_of(conversation_id: str) -> str:
    """One conversation gives one sample: its id is derived from the conversation's."""
    return f"smp-{conversation_id}"


def conversation_row(
    state: ConversationState, rollup: ConversationRollup, decision: SampleDecision
) -> list[Any]:
    """The ``conversations`` row (CONVERSATION_COLUMNS order); revision = events applied.

    ``sampled`` and ``inclusion_probability`` are the design's (a QA review outside
    the design leaves ``sampled`` false), the ones a Horvitz–Thompson estimate uses.
    """
    last = state.last_ts
    first = datetime.fromisoformat(rollup.first_ts) if rollup.first_ts else last
    return [
        state.conversation_id,
        state.user_id or "",
        state.user_tier.value if state.user_tier else "",
        rollup.served_version or state.model_version or "",
        first,
        last,
        rollup.turns,
        sorted(state.fired),
        rollup.handoff,
        rollup.qa_acceptance,
        list(rollup.qa_problem_types),
        rollup.cta_clicks,
        rollup.conversions,
        rollup.refunds,
        decision.sampled,
        decision.probability,
        rollup.events,
    ]


def sample_row(
    state: ConversationState, rollup: ConversationRollup, decision: SampleDecision
) -> list[Any]:
    """The captured ``samples`` row (SAMPLE_COLUMNS order) of a captured conversation.

    ``inclusion_probability`` is the design π and ``sampled_by`` the decision's
    reason ("uniform_qa", "signal", or "qa_review" for a sample outside the design).
    """
    version = rollup.served_version or state.model_version or ""
    first = datetime.fromisoformat(rollup.first_ts) if rollup.first_ts else state.last_ts
    return [
        sample_id_of(state.conversation_id),
        state.conversation_id,
        state.user_id or "",
        "captured",
        list(rollup.qa_problem_types),
        sorted(state.fired),
        max(state.fired.values(), default=0.0),
        decision.probability,
        version,
        version,
        first,
        state.last_ts,
        rollup.events,
        decision.reason or "",
    ]
