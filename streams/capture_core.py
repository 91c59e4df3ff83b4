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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from analytics.rows import EncodedRows, encode_rows
from detectors.config import DetectorSettings
from detectors.order import END_OF_TIME, event_key
from detectors.state import ConversationEvent
from loraloop.events import KINDS, DeadLetter, QAVerdict, Tier
from loraloop.exceptions import LoraloopError
from loraloop.settings import StreamSettings
from streams import ingest
from streams.capture import Capture, Entry, needs_tier
from streams.state_store import STATE_TABLE, StateCache, state_rows
from streams.topics import base_name
from streams.watermark import Reading, Watermarks

CONVERSATION_TOPICS = tuple(k.topic for k in KINDS.values() if k.name != "user")
"""The base topics whose events belong to a conversation (they hold the watermarks)."""


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
    restore: bool = False
    """Pass back, with the missing states, every stored state with pending events (after a
    start or a rebalance: their events are acked, so no redelivery brings them back).
    Asked once partitions are assigned; those of partitions held elsewhere are ignored."""


@dataclass
class Processed:
    """A finished batch: encoded rows per table (states last) and what to count."""

    rows: dict[str, EncodedRows]
    touched: list[str]
    events: int
    signals: dict[str, int]
    samples: int
    verdicts: list[QAVerdict] = field(default_factory=list)
    """QA verdicts applied to the detectors in this batch: label their samples."""
    letters: list[DeadLetter] = field(default_factory=list)
    """Conflicting duplicates refused by the batch: dead-letter them."""
    late: dict[str, int] = field(default_factory=dict)
    """Events later than the allowed lateness, per base topic."""
    pending: int = 0
    """Conversations with events held for event order after the batch (0: all final)."""


class CaptureOrderError(LoraloopError):
    """``finish`` was called without a matching ``begin`` (a bug in the caller)."""


@dataclass
class _Begun:
    decoded: list[tuple[ingest.RawMessage, ConversationEvent]]
    cached: dict[str, Entry]
    release: set[str]
    force: set[str]
    restore: bool
    marks: dict[int, int | None]
    """The watermark of each partition of the batch, taken when it began."""
    reading: Reading | None


class CaptureCore:
    """Decoding, detection, event order and the state cache of one capture agent.

    Besides the cache it keeps the watermarks (:class:`streams.watermark.Watermarks`) and
    an index of the conversations with pending events, so a batch (or an empty batch,
    the agent's tick when the stream is idle) releases those the watermark passed even
    when the batch holds none of their events.
    """

    def __init__(
        self,
        stream: StreamSettings,
        detectors: DetectorSettings,
        *,
        cache_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._capture = Capture(stream, detectors)
        self._cache = StateCache(capacity=cache_size)
        self._watermarks = Watermarks(
            CONVERSATION_TOPICS,
            lateness_s=stream.allowed_lateness_s,
            idle_s=stream.watermark_idle_s,
            clock=clock,
        )
        self._pending: dict[str, tuple[int, int]] = {}
        """Conversations with pending events: partition and earliest pending event time."""
        self._restored = False
        self._begun: _Begun | None = None

    def __len__(self) -> int:
        """Conversations cached."""
        return len(self._cache)

    @property
    def pending(self) -> int:
        """Conversations with events held for event order."""
        return len(self._pending)

    def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        """Decode a batch and say what finishing it needs.

        ``reading``: the consumer's assignment and which topic-partitions it read to their
        end (see :class:`streams.watermark.Reading`); None for a core fed by hand.
        """
        decoded, letters = self._capture.decode(messages)
        stream = self._stream
        self._watermarks.observe(
            ((m.partition, base_name(stream, m.topic), event_key(e)[0]) for m, e in decoded),
            reading,
        )
        partitions = {m.partition for m, _ in decoded} | {p for p, _ in self._pending.values()}
        marks = {partition: self._watermark(partition) for partition in partitions}
        force = self._overflow()
        release = self._releasable(marks) | force
        conversation_ids = {event.conversation_id for _, event in decoded} | release
        # Taken now, so a clear() before finish (a rebalance) cannot drop them mid-batch.
        cached = self._cache.cached(conversation_ids)
        held = reading is None or bool(reading.assigned)
        restore = not self._restored and self._stream.event_order and held
        self._begun = _Begun(decoded, cached, release, force, restore, marks, reading)
        user_ids = {user for _, event in decoded if (user := getattr(event, "user_id", None))}
        return Needs(
            letters=letters,
            missing=sorted(conversation_ids - cached.keys()),
            tier_users=sorted({event.user_id for _, event in decoded if needs_tier(event)}),
            user_ids=sorted(user_ids),
            restore=restore,
        )

    def _watermark(self, partition: int) -> int | None:
        if not self._stream.event_order:
            return END_OF_TIME  # arrival order: every event is final at once
        return self._watermarks.of(partition)

    def _releasable(self, marks: Mapping[int, int | None]) -> set[str]:
        """Pending conversations whose earliest pending event the watermark passed."""
        found = set()
        for cid, (partition, earliest) in self._pending.items():
            mark = marks[partition]
            if mark is not None and earliest <= mark:
                found.add(cid)
        return found

    def _overflow(self) -> set[str]:
        """The oldest pending conversations beyond ``max_pending_conversations``."""
        over = len(self._pending) - self._stream.max_pending_conversations
        if over <= 0:
            return set()
        oldest = sorted(self._pending.items(), key=lambda item: item[1][1])[:over]
        return {cid for cid, _ in oldest}

    def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed:
        begun, self._begun = self._begun, None
        if begun is None:
            msg = "CaptureCore.finish called without begin: call begin(messages) first"
            raise CaptureOrderError(msg)
        reading = begun.reading
        # Restored states of partitions another worker holds are its to release.
        loaded = self._cache.load(
            dict(stored), keep=None if reading is None else lambda e: reading.holds(e.partition)
        )
        if begun.restore:
            self._restored = True
        self._index(loaded)
        entries = {**begun.cached, **loaded}
        marks = begun.marks

        def watermark(partition: int) -> int | None:
            if partition not in marks:  # a restored conversation's: held until the next batch
                return None
            return marks[partition]

        batch = self._capture.process(
            begun.decoded, entries, tiers, watermark, release=begun.release, force=begun.force
        )
        self._index(batch.touched)
        # Last table of the commit: a stored state never runs ahead of the rows it produced.
        batch.rows[STATE_TABLE] = state_rows(batch.touched)
        self._cache.remember(batch.touched)
        return Processed(
            rows={table: encode_rows(rows) for table, rows in batch.rows.items() if rows},
            touched=list(batch.touched),
            events=batch.events,
            signals=dict(batch.signals),
            samples=batch.samples,
            verdicts=batch.verdicts,
            letters=batch.letters,
            late=dict(batch.late),
            pending=len(self._pending),
        )

    def _index(self, entries: Mapping[str, Entry]) -> None:
        for cid, entry in entries.items():
            earliest = entry.order.earliest_us
            if earliest is None:
                self._pending.pop(cid, None)
            else:
                self._pending[cid] = (entry.partition, earliest)

    def clear(self) -> None:
        """Forget every cached state, the watermarks and the pending index (a rebalance).

        A batch already begun keeps the states it took; the next batch asks for the stored
        states with pending events again (:attr:`Needs.restore`).
        """
        self._cache.clear()
        self._pending.clear()
        self._watermarks.reset()
        self._restored = False


class CaptureRunner(Protocol):
    """Where a :class:`CaptureCore` runs, as the agent sees it."""

    async def begin(
        self, messages: Sequence[RawMessage], reading: Reading | None = None
    ) -> Needs: ...

    async def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class InlineCapture:
    """A :class:`CaptureCore` run on the event loop's thread (one core; tests)."""

    def __init__(self, core: CaptureCore) -> None:
        self.core = core

    async def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        return self.core.begin(messages, reading)

    async def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed:
        return self.core.finish(stored, tiers)

    def clear(self) -> None:
        self.core.clear()

    def close(self) -> None:
        self.core.clear()
