"""Event order per conversation: events held in event order until a watermark makes them final.

Kafka orders a partition, not a set of topics: a conversation's handoff may be read
before the turns that precede it. So the detectors never see events in arrival order.
Each event has a key, (ts, turn_index, kind, event_id) — an event without a turn index
sorts after the turns of its instant, and kind and event_id break the remaining ties
stably — and a conversation's :class:`EventOrder` holds its events *pending*, sorted by
key, until the stream layer's watermark passes them. :meth:`EventOrder.release` then hands
them over in key order, and only then are they applied to the detector state, so the
signals, the sampling decision and the rollup are those of the event-ordered stream
whatever the arrival order, and a signal, once emitted, is never withdrawn.

An event whose key is not after the last released one (the *frontier*) arrived later
than the allowed lateness: it is :attr:`Admission.LATE`, applied at once where it lands
(the stream layer stores and flags it). The order also names duplicates: an event id seen
before with the same content (a redelivery) is :attr:`Admission.DUPLICATE`, with other
content :attr:`Admission.CONFLICT` (the first version stays), and so is a turn at a turn
index another event already holds (a second turn there would be silently added).

Pure and bounded: at most ``max_pending`` events pending (the oldest are released beyond
it) and the ids and digests of the last ``window`` released events.
"""

from __future__ import annotations

import hashlib
from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from detectors.evolve import evolve
from detectors.exceptions import StateFormatError
from detectors.state import ConversationEvent
from loraloop.events import MAX_TURN_INDEX, Feedback, Handoff, Outcome, QAVerdict, Tier, Turn

EventKey = tuple[int, int, int, str]
"""(ts in microseconds since the epoch, turn index, kind rank, event_id)."""

END_OF_TIME: Final = 2**63
"""A watermark past every event: release everything pending."""

DIGEST_BYTES: Final = 8
"""Content digests are 64-bit: a redelivery is told from a changed event per event id."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_AFTER_TURNS: Final = MAX_TURN_INDEX + 1
"""The turn index of an event without one: after the turns of the same instant."""

_KINDS: Final[dict[str, type[ConversationEvent]]] = {
    "turn": Turn,
    "feedback": Feedback,
    "handoff": Handoff,
    "qa": QAVerdict,
    "outcome": Outcome,
}
_KIND_OF: Final = {model: name for name, model in _KINDS.items()}
_RANK: Final = {model: rank for rank, model in enumerate(_KINDS.values())}


def event_key(event: ConversationEvent) -> EventKey:
    """The event's place in its conversation's event order."""
    index = getattr(event, "turn_index", None)
    return (
        (event.ts - _EPOCH) // _MICROSECOND,
        _AFTER_TURNS if index is None else index,
        _RANK[type(event)],
        event.event_id,
    )


def content_digest(event: ConversationEvent) -> str:
    """A digest of the event's validated content (equal for a byte-different redelivery)."""
    return hashlib.blake2b(event.model_dump_json().encode(), digest_size=DIGEST_BYTES).hexdigest()


class Admission(StrEnum):
    """What :meth:`EventOrder.admit` made of an event."""

    PENDING = "pending"
    """Held in event order until the watermark passes it."""
    LATE = "late"
    """Behind an event already released: apply it at once and flag it late."""
    DUPLICATE = "duplicate"
    """The same content again (a redelivery): nothing to do, nothing to write."""
    CONFLICT = "conflict"
    """A known event id with other content, or a turn at a taken turn index: refuse it."""


@dataclass(frozen=True, slots=True)
class Held:
    """A pending event with what applying it needs: the user tier known at arrival."""

    key: EventKey
    event: ConversationEvent
    tier: Tier | None
    digest: str
    encoded: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """:meth:`to_dict`'s output, kept: a held event is stored with every batch that holds it."""

    def __lt__(self, other: Held) -> bool:
        return self.key < other.key

    def to_dict(self) -> dict[str, Any]:
        if self.encoded is None:
            encoded = {
                "kind": _KIND_OF[type(self.event)],
                "event": self.event.model_dump(mode="json", exclude_none=True),
                "tier": None if self.tier is None else self.tier.value,
                "digest": self.digest,
            }
            object.__setattr__(self, "encoded", encoded)  # a cache: equality ignores it
            return encoded
        return self.encoded

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Held:
        event = _KINDS[data["kind"]].model_validate(data["event"])
        tier = data["tier"]
        key = event_key(event)
        return cls(key, event, None if tier is None else Tier(tier), data["digest"], dict(data))


@dataclass(frozen=True, slots=True)
class Seen:
    """A released event as the duplicate check remembers it."""

    event_id: str
    digest: str
    turn_index: int | None
    """The turn index of a turn (None for every other event)."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """The outcome of :meth:`EventOrder.admit`: the new order, the admission, why."""

    order: EventOrder
    admission: Admission
    reason: str | None = None


def _turn_index(event: ConversationEvent) -> int | None:
    return event.turn_index if isinstance(event, Turn) else None


def _compare(
    event: ConversationEvent,
    index: int | None,
    digest: str,
    known_id: str,
    known_digest: str,
    known_index: int | None,
) -> tuple[Admission, str] | None:
    """A duplicate or a conflict when ``event`` meets a known event, else None."""
    if known_id == event.event_id:
        if known_digest == digest:
            return Admission.DUPLICATE, "duplicate"
        return Admission.CONFLICT, (
            f"conflict: event_id {known_id} already stored with different content"
        )
    if index is not None and known_index == index:
        return Admission.CONFLICT, (
            f"conflict: turn_index {index} of conversation {event.conversation_id} "
            f"already stored as event_id {known_id}"
        )
    return None


@dataclass(frozen=True, slots=True)
class EventOrder:
    """A conversation's pending events (sorted by key), its frontier and recent released ids."""

    pending: tuple[Held, ...] = ()
    frontier: EventKey | None = None
    """The key of the last event released (None before any)."""
    seen: tuple[Seen, ...] = ()

    @property
    def earliest_us(self) -> int | None:
        """Event time (µs) of the first pending event; None when nothing is pending."""
        return self.pending[0].key[0] if self.pending else None

    def admit(
        self, event: ConversationEvent, *, digest: str, tier: Tier | None, window: int
    ) -> Admitted:
        """Place an event: pending, late, a duplicate or a conflict (see :class:`Admission`)."""
        refused = self._known(event, digest)
        if refused is not None:
            return Admitted(self, *refused)
        held = Held(event_key(event), event, tier, digest)
        if self.frontier is not None and held.key <= self.frontier:
            return Admitted(self._remember((held,), window), Admission.LATE)
        pending = list(self.pending)
        insort(pending, held)
        return Admitted(evolve(self, pending=tuple(pending)), Admission.PENDING)

    def _known(self, event: ConversationEvent, digest: str) -> tuple[Admission, str] | None:
        index, event_id = _turn_index(event), event.event_id
        for held in self.pending:
            held_index = _turn_index(held.event)
            refused = _compare(event, index, digest, held.event.event_id, held.digest, held_index)
            if refused is not None:
                return refused
        for seen in self.seen:
            if seen.event_id == event_id or (index is not None and seen.turn_index == index):
                return _compare(event, index, digest, seen.event_id, seen.digest, seen.turn_index)
        return None

    def release(
        self, watermark_us: int | None, *, max_pending: int, window: int
    ) -> tuple[EventOrder, tuple[Held, ...]]:
        """Hand over, in key order, the pending events at or before the watermark.

        ``watermark_us`` None releases nothing by time; beyond ``max_pending`` events the
        oldest are released anyway, so the order stays bounded.
        """
        pending = self.pending
        cut = max(len(pending) - max_pending, 0)
        if watermark_us is not None:
            while cut < len(pending) and pending[cut].key[0] <= watermark_us:
                cut += 1
        if cut == 0:
            return self, ()
        released, rest = self.pending[:cut], self.pending[cut:]
        order = evolve(self._remember(released, window), pending=rest, frontier=released[-1].key)
        return order, released

    def _remember(self, held: Sequence[Held], window: int) -> EventOrder:
        seen = (*self.seen, *(Seen(h.event.event_id, h.digest, _turn_index(h.event)) for h in held))
        return evolve(self, seen=seen[-window:])

    # -- serialization ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending": [h.to_dict() for h in self.pending],
            "frontier": None if self.frontier is None else list(self.frontier),
            "seen": [[s.event_id, s.digest, s.turn_index] for s in self.seen],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EventOrder:
        """Read :meth:`to_dict`'s output (None: a state stored before event order was kept)."""
        if data is None:
            return cls()
        try:
            frontier = data["frontier"]
            return cls(
                pending=tuple(Held.from_dict(h) for h in data["pending"]),
                frontier=None
                if frontier is None
                else (int(frontier[0]), int(frontier[1]), int(frontier[2]), str(frontier[3])),
                seen=tuple(
                    Seen(str(i), str(d), None if t is None else int(t)) for i, d, t in data["seen"]
                ),
            )
        except (KeyError, TypeError, ValueError) as e:
            msg = f"conversation event order is malformed ({e!r}): drop the entry"
            raise StateFormatError(msg) from e
