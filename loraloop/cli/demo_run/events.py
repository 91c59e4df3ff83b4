"""Events of one simulated conversation, as the chatbot's backend publishes them.

The chat turns that get a model's reply go through the gateway, which publishes them;
these are the rest: user and human-agent turns without a model reply, feedback,
handoffs, outcomes, profiles, QA verdicts (and the seed conversations' turns).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from loraloop.events import (
    Feedback,
    Handoff,
    Outcome,
    QAVerdict,
    Turn,
    UserProfile,
)
from streams.producer import Outgoing

TURN_SPACING: Final = timedelta(milliseconds=10)
"""Event time between consecutive events of one conversation."""


class ConversationEvents:
    """Builds the events of one conversation in order, with increasing timestamps."""

    def __init__(self, conversation_id: str, user_id: str, tier: str, start: datetime) -> None:
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.tier = tier
        self._ts = start
        self._count = 0
        self.messages: list[Outgoing] = []

    def resume(self, at: datetime) -> None:
        """Continue at ``at`` at the earliest (after turns another producer published)."""
        self._ts = max(self._ts, at)

    def _next(self) -> tuple[str, datetime]:
        self._count += 1
        self._ts += TURN_SPACING
        return f"{self.conversation_id}-e{self._count}", self._ts

    def _add(self, topic: str, model: Any) -> None:
        self.messages.append(
            Outgoing(topic, self.conversation_id, model.model_dump_json().encode())
        )

    def turn(self, index: int, role: str, text: str) -> None:
        """A user or human-agent turn."""
        event_id, ts = self._next()
        self._add(
            "llm.turns",
            Turn(
                event_id=event_id, ts=ts, conversation_id=self.conversation_id,
                user_id=self.user_id, turn_index=index, role=role, text=text,
            ),
        )  # fmt: skip

    def assistant(self, index: int, text: str, version: str, *, has_cta: bool) -> None:
        event_id, ts = self._next()
        self._add(
            "llm.turns",
            Turn(
                event_id=event_id, ts=ts, conversation_id=self.conversation_id,
                user_id=self.user_id, turn_index=index, role="assistant",
                text=text or "…", model_version=version, has_cta=has_cta,
            ),
        )  # fmt: skip

    def feedback(self, kind: str, turn_index: int) -> None:
        event_id, ts = self._next()
        self._add(
            "llm.feedback",
            Feedback(
                event_id=event_id, ts=ts, conversation_id=self.conversation_id,
                user_id=self.user_id, turn_index=turn_index, kind=kind,
                user_tier=self.tier,
            ),
        )  # fmt: skip

    def handoff(self, turn_index: int, reason: str) -> None:
        event_id, ts = self._next()
        self._add(
            "llm.handoffs",
            Handoff(
                event_id=event_id, ts=ts, conversation_id=self.conversation_id,
                user_id=self.user_id, turn_index=turn_index, initiated_by="user",
                reason=reason,
            ),
        )  # fmt: skip

    def outcome(self, kind: str, value: float) -> None:
        event_id, ts = self._next()
        self._add(
            "llm.outcomes",
            Outcome(
                event_id=event_id, ts=ts, conversation_id=self.conversation_id,
                user_id=self.user_id, kind=kind, value=value,
            ),
        )  # fmt: skip


def profile(user_id: str, tier: str, lifetime_value: float, ts: datetime) -> Outgoing:
    """A user profile on the compacted users topic (keyed by user id)."""
    event = UserProfile(
        event_id=f"profile-{user_id}", ts=ts, user_id=user_id, tier=tier,
        lifetime_value=lifetime_value,
    )  # fmt: skip
    return Outgoing("llm.users", user_id, event.model_dump_json().encode())


def qa_verdict(
    conversation_id: str,
    sample_id: str | None,
    review: Any,
    reviewer: str,
    ts: datetime,
) -> Outgoing:
    """A QA verdict on ``llm.qa`` from a review (``loraloop.simulation.Review``)."""
    event = QAVerdict(
        event_id=f"qa-{reviewer}-{conversation_id}", ts=ts, conversation_id=conversation_id,
        sample_id=sample_id, reviewer=reviewer, acceptance=review.acceptance,
        problem_types=review.problem_types, risk_level=review.risk_level,
        corrected_response=review.corrected_response, notes=review.notes,
    )  # fmt: skip
    return Outgoing("llm.qa", conversation_id, event.model_dump_json().encode())
