"""Fixtures for the detector tests: settings and a conversation builder.

``Chat`` plays a conversation event by event through :func:`detectors.apply`,
numbering turns and event ids and spacing timestamps one second apart, and
keeps the state and every signal emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from detectors import ConversationEvent, ConversationState, DetectorSettings, apply
from loraloop.events import (
    Acceptance,
    Feedback,
    FeedbackKind,
    Handoff,
    HandoffInitiator,
    QAVerdict,
    RiskLevel,
    Role,
    Signal,
    Tier,
    Turn,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Chat:
    """A conversation under test: builds events, applies them, records signals."""

    def __init__(
        self, settings: DetectorSettings, conversation_id: str = "conv-1", user_id: str = "user-1"
    ) -> None:
        self.settings = settings
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.state = ConversationState(conversation_id=conversation_id)
        self.next_index = 0
        self.events = 0
        self.signals: list[Signal] = []

    def _meta(self) -> dict[str, Any]:
        self.events += 1
        return {
            "event_id": f"{self.conversation_id}-e{self.events}",
            "ts": T0 + timedelta(seconds=self.events),
            "conversation_id": self.conversation_id,
        }

    def turn(self, role: Role, text: str, model_version: str | None = None) -> Turn:
        """A new turn at the next index (not applied)."""
        index = self.next_index
        self.next_index += 1
        return Turn(
            **self._meta(),
            user_id=self.user_id,
            turn_index=index,
            role=role,
            text=text,
            model_version=model_version,
        )

    def send(self, event: ConversationEvent, *, user_tier: Tier | None = None) -> list[Signal]:
        """Apply an event; return and record the signals it produced."""
        self.state, signals = apply(self.state, event, settings=self.settings, user_tier=user_tier)
        self.signals += signals
        return signals

    def user(self, text: str, *, user_tier: Tier | None = None) -> list[Signal]:
        return self.send(self.turn(Role.USER, text), user_tier=user_tier)

    def bot(self, text: str = "Let me check that for you.", version: str = "v1") -> list[Signal]:
        return self.send(self.turn(Role.ASSISTANT, text, version))

    def feedback(
        self,
        kind: FeedbackKind,
        *,
        tier: Tier | None = None,
        lookup: Tier | None = None,
        comment: str | None = None,
    ) -> list[Signal]:
        event = Feedback(
            **self._meta(),
            user_id=self.user_id,
            turn_index=max(self.next_index - 1, 0),
            kind=kind,
            comment=comment,
            user_tier=tier,
        )
        return self.send(event, user_tier=lookup)

    def handoff(self, initiated_by: HandoffInitiator = HandoffInitiator.USER) -> list[Signal]:
        event = Handoff(
            **self._meta(),
            user_id=self.user_id,
            turn_index=self.next_index,
            initiated_by=initiated_by,
            reason="customer asked",
        )
        self.next_index += 1
        return self.send(event)

    def qa(self, acceptance: Acceptance, risk_level: RiskLevel = RiskLevel.MEDIUM) -> list[Signal]:
        event = QAVerdict(
            **self._meta(),
            reviewer="qa-7",
            acceptance=acceptance,
            risk_level=risk_level,
            problem_types=["missing_knowledge"],
        )
        return self.send(event)

    def fired(self) -> list[str]:
        """The detectors of every signal so far, in order."""
        return [s.detector for s in self.signals]


@pytest.fixture
def settings() -> DetectorSettings:
    return DetectorSettings()


@pytest.fixture
def make_chat(settings: DetectorSettings) -> Callable[..., Chat]:
    def make(conversation_id: str = "conv-1", **overrides: Any) -> Chat:
        chosen = settings.model_copy(update=overrides) if overrides else settings
        return Chat(chosen, conversation_id)

    return make


@pytest.fixture
def chat(make_chat: Callable[..., Chat]) -> Chat:
    return make_chat()
