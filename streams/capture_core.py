"""The capture agent's CPU work, without I/O: decode, detect, build rows, keep states.

A batch takes two calls, so that the warehouse reads between them stay with the agent:

1. :meth:`CaptureCore.begin` decodes the messages and says what the batch needs:
   the dead letters to send, the conversations whose state is not cached, the users
   whose tier must be looked up;
2. :meth:`CaptureCore.finish` gets those states (as stored JSON) and tiers, runs
   the detectors and the sampler, builds every row (encoded for the insert) and
   puts the new states in the cache.

The core holds the state cache, so it lives in one place: on the event loop
(:class:`InlineCapture`) or in a child process
(:class:`streams.capture_process.CaptureProcess`), which takes this work off the
interpreter lock that Faust's per-message work needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from analytics.rows import EncodedRows, encode_rows
from detectors.config import DetectorSettings
from detectors.state import ConversationEvent
from loraloop.events import DeadLetter, QAVerdict, Tier
from loraloop.exceptions import LoraloopError
from loraloop.settings import StreamSettings
from streams.capture import Capture, Entry, needs_tier
from streams.state_store import STATE_TABLE, StateCache, state_rows


class RawMessage(NamedTuple):
    """The parts of a Kafka message capture reads (picklable, unlike Faust's)."""

    topic: str
    partition: int
    offset: int
    value: Any


@dataclass
class Needs:
    """What a begun batch needs from the warehouse before it can finish."""

    letters: list[DeadLetter]
    missing: list[str]
    """Conversations whose state is not cached: read them from ``conversation_state``."""
    tier_users: list[str]
    """Users of thumbs-downs without a tier: look their tier up in ``user_profiles``."""
    user_ids: list[str]
    """Every user of the batch: pass back the tiers known for them."""


@dataclass
class Processed:
    """A finished batch: encoded rows per table (states last) and what to count."""

    rows: dict[str, EncodedRows]
    touched: list[str]
    events: int
    signals: dict[str, int]
    samples: int
    verdicts: list[QAVerdict] = field(default_factory=list)


class CaptureOrderError(LoraloopError):
    """``finish`` was called without a matching ``begin`` (a bug in the caller)."""


@dataclass
class _Begun:
    decoded: list[tuple[int, ConversationEvent]]
    cached: dict[str, Entry]


class CaptureCore:
    """Decoding, detection and the state cache of one capture agent."""

    def __init__(
        self, stream: StreamSettings, detectors: DetectorSettings, *, cache_size: int
    ) -> None:
        self._capture = Capture(stream, detectors)
        self._cache = StateCache(capacity=cache_size)
        self._begun: _Begun | None = None

    def __len__(self) -> int:
        """Conversations cached."""
        return len(self._cache)

    def begin(self, messages: Sequence[RawMessage]) -> Needs:
        decoded, letters = self._capture.decode(messages)
        conversation_ids = {event.conversation_id for _, event in decoded}
        # Taken now, so a clear() before finish (a rebalance) cannot drop them mid-batch.
        cached = self._cache.cached(conversation_ids)
        self._begun = _Begun(decoded, cached)
        user_ids = {user for _, event in decoded if (user := getattr(event, "user_id", None))}
        return Needs(
            letters=letters,
            missing=sorted(conversation_ids - cached.keys()),
            tier_users=sorted({event.user_id for _, event in decoded if needs_tier(event)}),
            user_ids=sorted(user_ids),
        )

    def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed:
        begun, self._begun = self._begun, None
        if begun is None:
            msg = "CaptureCore.finish called without begin: call begin(messages) first"
            raise CaptureOrderError(msg)
        entries = {**begun.cached, **self._cache.load(dict(stored))}
        batch = self._capture.process(begun.decoded, entries, tiers)
        # Last table of the commit: a stored state never runs ahead of the rows it produced.
        batch.rows[STATE_TABLE] = state_rows(batch.touched)
        self._cache.remember(batch.touched)
        return Processed(
            rows={table: encode_rows(rows) for table, rows in batch.rows.items() if rows},
            touched=list(batch.touched),
            events=batch.events,
            signals=dict(batch.signals),
            samples=batch.samples,
            verdicts=[event for _, event in begun.decoded if isinstance(event, QAVerdict)],
        )

    def clear(self) -> None:
        """Forget every cached state (a batch already begun keeps the ones it took)."""
        self._cache.clear()


class CaptureRunner(Protocol):
    """Where a :class:`CaptureCore` runs, as the agent sees it."""

    async def begin(self, messages: Sequence[RawMessage]) -> Needs: ...

    async def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class InlineCapture:
    """A :class:`CaptureCore` run on the event loop's thread (one core; tests)."""

    def __init__(self, core: CaptureCore) -> None:
        self.core = core

    async def begin(self, messages: Sequence[RawMessage]) -> Needs:
        return self.core.begin(messages)

    async def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed:
        return self.core.finish(stored, tiers)

    def clear(self) -> None:
        self.core.clear()

    def close(self) -> None:
        self.core.clear()
