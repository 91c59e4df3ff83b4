"""Per-conversation detector state: small, bounded, JSON-serializable, updated purely.

The stream layer keeps one ``ConversationState`` per conversation in a Faust
table, so it must stay small however long a conversation runs and survive a
round trip through JSON. It holds at most M (``max_fingerprints``) user-turn
fingerprints and M assistant turn indices, at most W (``applied_window``)
applied turn indices and non-turn event ids (the replay guard), a few counters,
the detectors that already fired with their highest risk weight, and the last
activity time (the stream layer expires idle conversations with it).

Every update returns a new state (frozen dataclass, :func:`detectors.evolve.evolve`):
the detectors see the state as it was before the event, and a replayed event
leaves the state exactly as it was.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from detectors.evolve import evolve
from detectors.exceptions import StateFormatError
from loraloop.events import Feedback, Handoff, Outcome, QAVerdict, Signal, Tier, Turn

STATE_FORMAT: Final = 1
"""Version of the dict layout written by :meth:`ConversationState.to_dict`."""

ConversationEvent = Turn | Feedback | Handoff | QAVerdict | Outcome
"""The events that belong to a conversation (a UserProfile does not)."""


@dataclass(frozen=True, slots=True)
class UserTurnPrint:
    """A user turn's fingerprint: its index and its hashed character n-grams."""

    turn_index: int
    shingles: frozenset[int]


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the detectors remember about one conversation; bounded in size."""

    conversation_id: str
    user_id: str | None = None
    user_tier: Tier | None = None
    model_version: str | None = None
    last_assistant_turn: int | None = None
    assistant_turn_indices: tuple[int, ...] = ()
    prints: tuple[UserTurnPrint, ...] = ()
    user_turns: int = 0
    assistant_turns: int = 0
    repeat_turns: int = 0
    other_events: int = 0
    fired: Mapping[str, float] = field(default_factory=dict)
    applied_turns: tuple[int, ...] = ()
    recent_event_ids: tuple[str, ...] = ()
    last_ts: datetime | None = None

    # -- replay guard -------------------------------------------------------------------------

    def has_applied(self, event: ConversationEvent, window: int) -> bool:
        """True when the event was applied already (or is a turn older than the window)."""
        if isinstance(event, Turn):
            index = event.turn_index
            if index in self.applied_turns:
                return True
            full = len(self.applied_turns) >= window
            return full and index < self.applied_turns[0]
        return event.event_id in self.recent_event_ids

    def mark_applied(self, event: ConversationEvent, window: int) -> ConversationState:
        """Remember the event for the replay guard and move the activity clock."""
        last_ts = event.ts if self.last_ts is None else max(self.last_ts, event.ts)
        if isinstance(event, Turn):
            turns = list(self.applied_turns)
            insort(turns, event.turn_index)
            return evolve(self, applied_turns=tuple(turns[-window:]), last_ts=last_ts)
        ids = (*self.recent_event_ids, event.event_id)[-window:]
        return evolve(self, recent_event_ids=ids, last_ts=last_ts)

    # -- updates ------------------------------------------------------------------------------

    def with_user(self, user_id: str | None, tier: Tier | None) -> ConversationState:
        """Learn the user and tier when known; a known value is never erased."""
        new_user = self.user_id if user_id is None else user_id
        new_tier = self.user_tier if tier is None else tier
        if new_user == self.user_id and new_tier == self.user_tier:
            return self
        return evolve(self, user_id=new_user, user_tier=new_tier)

    def with_user_turn(
        self, turn_index: int, shingles: frozenset[int] | None, *, repeated: bool, keep: int
    ) -> ConversationState:
        """Count a user turn and keep its fingerprint among the last ``keep``."""
        prints = self.prints
        if shingles is not None:
            prints = (*prints, UserTurnPrint(turn_index, shingles))[-keep:]
        return evolve(
            self,
            prints=prints,
            user_turns=self.user_turns + 1,
            repeat_turns=self.repeat_turns + int(repeated),
        )

    def with_assistant_turn(
        self, turn_index: int, model_version: str | None, *, keep: int
    ) -> ConversationState:
        """Count an assistant turn; the latest one (by index) sets the model version."""
        indices = list(self.assistant_turn_indices)
        insort(indices, turn_index)
        latest = self.last_assistant_turn is None or turn_index >= self.last_assistant_turn
        return evolve(
            self,
            assistant_turn_indices=tuple(indices[-keep:]),
            assistant_turns=self.assistant_turns + 1,
            last_assistant_turn=turn_index if latest else self.last_assistant_turn,
            model_version=model_version if latest else self.model_version,
        )

    def with_other_event(self) -> ConversationState:
        """Count a feedback, handoff, QA verdict or outcome."""
        return evolve(self, other_events=self.other_events + 1)

    def with_fired(self, signals: Sequence[Signal]) -> ConversationState:
        """Remember each detector that fired, with the highest risk weight so far."""
        if not signals:
            return self
        fired = dict(self.fired)
        for signal in signals:
            fired[signal.detector] = max(signal.risk_weight, fired.get(signal.detector, 0.0))
        return self if fired == self.fired else evolve(self, fired=fired)

    # -- queries ------------------------------------------------------------------------------

    def last_assistant_before(self, turn_index: int) -> int | None:
        """The latest remembered assistant turn index below ``turn_index``, or None."""
        return max((i for i in self.assistant_turn_indices if i < turn_index), default=None)

    def turns_from_assistant(self, turn_index: int) -> int | None:
        """Distance in turns to the nearest remembered assistant turn; None without one."""
        if not self.assistant_turn_indices:
            return None
        return min(abs(turn_index - index) for index in self.assistant_turn_indices)

    # -- serialization ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (stable key order, sorted shingles) for a Faust table."""
        return {
            "format": STATE_FORMAT,
            "conversation_id": self.conversation_id,
            "user_id": self.user_id,
            "user_tier": None if self.user_tier is None else self.user_tier.value,
            "model_version": self.model_version,
            "last_assistant_turn": self.last_assistant_turn,
            "assistant_turn_indices": list(self.assistant_turn_indices),
            "prints": [[p.turn_index, sorted(p.shingles)] for p in self.prints],
            "user_turns": self.user_turns,
            "assistant_turns": self.assistant_turns,
            "repeat_turns": self.repeat_turns,
            "other_events": self.other_events,
            "fired": dict(sorted(self.fired.items())),
            "applied_turns": list(self.applied_turns),
            "recent_event_ids": list(self.recent_event_ids),
            "last_ts": None if self.last_ts is None else self.last_ts.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationState:
        """Read back :meth:`to_dict`'s output; raises StateFormatError when it cannot."""
        if data.get("format") != STATE_FORMAT:
            msg = (
                f"conversation state format {data.get('format')!r} is not {STATE_FORMAT}: "
                "drop the entry or rebuild the table from its source topics"
            )
            raise StateFormatError(msg)
        try:
            return cls._from_valid_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            msg = f"conversation state is malformed ({e!r}): drop the entry or rebuild the table"
            raise StateFormatError(msg) from e

    @classmethod
    def _from_valid_dict(cls, data: Mapping[str, Any]) -> ConversationState:
        tier, last_ts = data["user_tier"], data["last_ts"]
        return cls(
            conversation_id=str(data["conversation_id"]),
            user_id=data["user_id"],
            user_tier=None if tier is None else Tier(tier),
            model_version=data["model_version"],
            last_assistant_turn=data["last_assistant_turn"],
            assistant_turn_indices=tuple(int(i) for i in data["assistant_turn_indices"]),
            prints=tuple(
                UserTurnPrint(int(index), frozenset(int(s) for s in shingles))
                for index, shingles in data["prints"]
            ),
            user_turns=int(data["user_turns"]),
            assistant_turns=int(data["assistant_turns"]),
            repeat_turns=int(data["repeat_turns"]),
            other_events=int(data["other_events"]),
            fired={str(k): float(v) for k, v in dict(data["fired"]).items()},
            applied_turns=tuple(int(i) for i in data["applied_turns"]),
            recent_event_ids=tuple(str(i) for i in data["recent_event_ids"]),
            last_ts=None if last_ts is None else _aware(datetime.fromisoformat(last_ts)),
        )


def _aware(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        msg = f"last_ts {ts.isoformat()} has no timezone"
        raise ValueError(msg)
    return ts
