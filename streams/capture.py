"""Problem capture: detector state per conversation, signals, rollups and samples.

One agent reads every conversation topic (co-partitioned by conversation_id),
so a conversation's turns, feedback, handoffs, QA verdicts and outcomes meet on
one worker, though not in their order: Kafka orders a partition, not a set of
topics. So each event is first admitted to its conversation's
:class:`detectors.order.EventOrder`: its row is written at once, but the detectors
see it only when the partition's watermark (see :mod:`streams.watermark`) passes
it, in event order, so signals, samples and inclusion probabilities do not depend
on the arrival order. An event behind one already released (later than the allowed
lateness) is applied at once where it lands, flagged in ``late_events`` and
counted. A redelivered event (same id, same content) writes nothing; a changed one
(same id, other content), or a turn at a turn index another event holds, is
refused and dead-lettered as a conflict: the first version stays.

Per batch it writes events, signals, the ``conversations`` rollup and captured
``samples`` in one go, then saves each touched conversation's state ONCE
(coalesced: a table write per event would halve throughput) and only then acks.
A conversation gets a sample row when the design sampled it, or when a QA verdict
flagged it outside the design ("qa_review": its ``conversations.sampled`` stays
false and its π stays the design's; see :mod:`detectors.sampler`).

Layers: this module holds the batch logic; :mod:`streams.capture_core` runs it
with the state cache (in the worker's capture process by default) and
:mod:`streams.capture_agent` drives it from Faust and writes what it produces.

Crash safety: rows are written before the state is saved, and signal ids are
deterministic, so a crash between the two replays the same signals (deduplicated
by ReplacingMergeTree); a crash after the save replays events the state already
holds, which its order (pending events, recent ids and digests) and the
detectors' replay guard ignore.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from analytics.rows import event_row, signal_row
from detectors.config import DetectorSettings
from detectors.order import END_OF_TIME, Admission, EventOrder, content_digest
from detectors.pipeline import apply, new_state
from detectors.sampler import decide_for_state
from detectors.state import ConversationEvent, ConversationState
from loraloop.events import DeadLetter, Feedback, FeedbackKind, QAVerdict, Tier, kind_of_topic
from loraloop.settings import StreamSettings
from streams.ingest import RawMessage, dead_letter, decode_one
from streams.rollup import ConversationRollup, conversation_row, sample_row
from streams.topics import base_name

if TYPE_CHECKING:  # the capture process imports this module: no engine there
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

QaLabeller = Callable[["Warehouse", Sequence[QAVerdict]], list[bool]]
"""Labels conversations' samples from a batch of QA verdicts (on the warehouse thread)."""


LATE_TABLE: Final = "late_events"
"""Events that arrived later than the allowed lateness (stored in their table as well);
columns in :data:`analytics.rows.COLUMNS`."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Watermark = Callable[[int], int | None]
"""A partition's watermark in µs of event time (None: nothing is final there yet)."""


@dataclass
class Entry:
    """A conversation's stored value: partition, detector state, rollup, event order, version.

    ``version`` counts the writes of the entry: the ``conversation_state`` revision, so the
    latest write wins even when it only released pending events.
    """

    partition: int
    state: ConversationState
    rollup: ConversationRollup
    order: EventOrder = field(default_factory=EventOrder)
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "p": self.partition,
            "s": self.state.to_dict(),
            "r": self.rollup.to_dict(),
            "o": self.order.to_dict(),
            "v": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        rollup = ConversationRollup.from_dict(data["r"])
        return cls(
            int(data["p"]),
            ConversationState.from_dict(data["s"]),
            rollup,
            EventOrder.from_dict(data.get("o")),
            int(data.get("v", rollup.events)),
        )


@dataclass
class CaptureBatch:
    """What one batch produced: rows per table, dead letters, touched entries, counts."""

    rows: dict[str, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    letters: list[DeadLetter] = field(default_factory=list)
    touched: dict[str, Entry] = field(default_factory=dict)
    events: int = 0
    signals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: int = 0
    late: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Events later than the allowed lateness, per base topic."""
    duplicates: int = 0
    """Redelivered events (same id, same content): nothing written."""
    verdicts: list[QAVerdict] = field(default_factory=list)
    """QA verdicts applied to the detectors in this batch (released or late)."""
    settled: dict[str, None] = field(default_factory=dict)
    """Conversations whose detector state moved, in the order they did (their rollup and
    sample rows are written in that order, the same in every process)."""


class TierLookup:
    """User tiers for high-value downvotes: a bounded cache over ``user_profiles``."""

    def __init__(self, warehouse: Warehouse, *, capacity: int) -> None:
        self._warehouse = warehouse
        self._capacity = capacity
        self._tiers: dict[str, Tier | None] = {}

    def remember(self, user_id: str, tier: Tier) -> None:
        self._store(user_id, tier)

    def _store(self, user_id: str, tier: Tier | None) -> None:
        if len(self._tiers) >= self._capacity:
            self._tiers.pop(next(iter(self._tiers)))
        self._tiers[user_id] = tier

    def known(self, user_ids: Iterable[str]) -> dict[str, Tier]:
        """The cached tier of each of ``user_ids`` that has one."""
        tiers = self._tiers
        return {u: tier for u in user_ids if (tier := tiers.get(u)) is not None}

    async def load(self, user_ids: set[str]) -> None:
        """Fetch the latest tier of users not cached yet (one query per batch at most)."""
        missing = sorted(u for u in user_ids if u not in self._tiers)
        if not missing:
            return
        result = await self._warehouse.run_read(  # profiles come from another agent
            self._warehouse.query,
            "SELECT user_id, argMax(tier, ts) FROM user_profiles FINAL "
            "WHERE user_id IN {ids:Array(String)} GROUP BY user_id",
            {"ids": missing},
        )
        found = {str(u): Tier(t) for u, t in result.result_rows}
        for user_id in missing:
            self._store(user_id, found.get(user_id))


def needs_tier(event: ConversationEvent) -> TypeGuard[Feedback]:
    """A thumbs-down whose user tier must come from the users table."""
    return (
        isinstance(event, Feedback)
        and event.kind is FeedbackKind.THUMBS_DOWN
        and event.user_tier is None
    )


class Capture:
    """Pure batch logic of the capture agent (state lives in ``entries``)."""

    def __init__(self, stream: StreamSettings, detectors: DetectorSettings) -> None:
        self.stream_settings = stream
        self._detectors = detectors
        self._max_pending = stream.max_pending_events

    @property
    def _window(self) -> int:
        return self._detectors.applied_window

    def decode(
        self, messages: Sequence[Any]
    ) -> tuple[list[tuple[RawMessage, ConversationEvent]], list[DeadLetter]]:
        """Validate messages (topic, partition, offset, value): events with their message."""
        events: list[tuple[RawMessage, ConversationEvent]] = []
        letters: list[DeadLetter] = []
        for message in messages:
            kind = kind_of_topic(base_name(self.stream_settings, message.topic))
            decoded = decode_one(kind, message)
            if isinstance(decoded, DeadLetter):
                letters.append(decoded)
            else:
                events.append((message, decoded))  # type: ignore[arg-type]
        return events, letters

    def process(
        self,
        events: Sequence[tuple[RawMessage, ConversationEvent]],
        entries: Mapping[str, Entry],
        tiers: Mapping[str, Tier],
        watermark: Watermark,
        *,
        release: Iterable[str] = (),
        force: Collection[str] = (),
    ) -> CaptureBatch:
        """Admit decoded events to their conversations, then release what is final.

        ``entries`` holds the stored values (a conversation without one starts afresh),
        ``tiers`` the known tier of the batch's users, ``watermark`` each partition's
        watermark. Conversations in ``release`` (pending ones the watermark may have
        passed) are released too, those in ``force`` entirely (too many are pending).
        """
        batch = CaptureBatch()
        for message, event in events:
            self._admit(batch, message, event, entries, tiers)
        candidates = {c: e for c in sorted(release) if (e := entries.get(c)) is not None}
        for cid, entry in {**candidates, **batch.touched}.items():
            until = END_OF_TIME if cid in force else watermark(entry.partition)
            order, released = entry.order.release(
                until, max_pending=self._max_pending, window=self._window
            )
            if not released and cid not in batch.touched:
                continue  # nothing final yet: nothing to write
            entry = _touch(batch, cid, entry)
            entry.order = order
            for held in released:
                self._apply(batch, entry, held.event, held.tier)
        for entry in batch.touched.values():
            entry.version += 1
        for cid in batch.settled:
            entry = batch.touched[cid]
            decision = decide_for_state(entry.state, settings=self._detectors)
            batch.rows["conversations"].append(
                conversation_row(entry.state, entry.rollup, decision)
            )
            if decision.captured:  # sampled, or flagged by QA outside the design
                batch.rows["samples"].append(sample_row(entry.state, entry.rollup, decision))
                batch.samples += 1
        return batch

    def _admit(
        self,
        batch: CaptureBatch,
        message: RawMessage,
        event: ConversationEvent,
        entries: Mapping[str, Entry],
        tiers: Mapping[str, Tier],
    ) -> None:
        cid = event.conversation_id
        entry = batch.touched.get(cid) or entries.get(cid)
        if entry is None:
            entry = Entry(message.partition, new_state(cid), ConversationRollup())
        user_id = getattr(event, "user_id", None)
        tier = tiers.get(user_id) if user_id else None
        digest = content_digest(event)
        admitted = entry.order.admit(event, digest=digest, tier=tier, window=self._window)
        if admitted.admission is Admission.CONFLICT:
            batch.letters.append(dead_letter(message, admitted.reason or "conflict"))
            return
        if admitted.admission is Admission.DUPLICATE or entry.state.has_applied(
            event, self._window
        ):
            batch.duplicates += 1  # written before: a redelivery rewrites nothing
            return
        entry = _touch(batch, cid, entry)
        table, row = event_row(event)
        batch.rows[table].append(row)
        batch.events += 1
        entry.order = admitted.order
        if admitted.admission is Admission.LATE:
            topic = base_name(self.stream_settings, message.topic)
            batch.late[topic] += 1
            batch.rows[LATE_TABLE].append(_late_row(message, topic, event, entry.order))
            self._apply(batch, entry, event, tier)

    def _apply(
        self, batch: CaptureBatch, entry: Entry, event: ConversationEvent, tier: Tier | None
    ) -> None:
        """Run the detectors on a released (or late) event and move the rollup."""
        state, signals = apply(entry.state, event, settings=self._detectors, user_tier=tier)
        entry.state, entry.rollup = state, entry.rollup.apply(event)
        batch.settled[event.conversation_id] = None
        if isinstance(event, QAVerdict):
            batch.verdicts.append(event)
        for signal in signals:
            batch.rows["signals"].append(signal_row(signal))
            batch.signals[signal.detector] += 1


def _touch(batch: CaptureBatch, cid: str, entry: Entry) -> Entry:
    """The batch's own copy of an entry (the cached one stays as it was until the commit)."""
    touched = batch.touched.get(cid)
    if touched is None:
        touched = Entry(entry.partition, entry.state, entry.rollup, entry.order, entry.version)
        batch.touched[cid] = touched
    return touched


def _late_row(
    message: RawMessage, topic: str, event: ConversationEvent, order: EventOrder
) -> list[Any]:
    frontier = order.frontier
    frontier_ts = event.ts if frontier is None else _EPOCH + timedelta(microseconds=frontier[0])
    return [
        event.event_id,
        event.conversation_id,
        topic,
        message.partition,
        message.offset,
        event.ts,
        frontier_ts,
    ]
