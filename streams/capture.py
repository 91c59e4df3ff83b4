"""Problem capture: detector state per conversation, signals, rollups and samples.

One agent reads every conversation topic (co-partitioned by conversation_id),
so a conversation's turns, feedback, handoffs, QA verdicts and outcomes meet in
order on one worker. Per batch it validates, runs the pure detectors against the
conversation's state, decides sampling, writes events, signals, the
``conversations`` rollup and captured ``samples`` in one go, then saves each
touched conversation's state ONCE (coalesced: a table write per event would
halve throughput) and only then acks. A conversation gets a sample row when the
design sampled it, or when a QA verdict flagged it outside the design ("qa_review":
its ``conversations.sampled`` stays false and its π stays the design's; see
:mod:`detectors.sampler`).

Layers: this module holds the batch logic; :mod:`streams.capture_core` runs it
with the state cache (in the worker's capture process by default) and
:mod:`streams.capture_agent` drives it from Faust and writes what it produces.

Crash safety: rows are written before the state is saved, and signal ids are
deterministic, so a crash between the two replays the same signals (deduplicated
by ReplacingMergeTree); a crash after the save replays events the state already
applied, which the detectors' replay guard ignores.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from analytics.rows import event_row, signal_row
from detectors.config import DetectorSettings
from detectors.pipeline import apply, new_state
from detectors.sampler import decide_for_state
from detectors.state import ConversationEvent, ConversationState
from loraloop.events import DeadLetter, Feedback, FeedbackKind, QAVerdict, Tier, kind_of_topic
from loraloop.settings import StreamSettings
from streams.ingest import decode_one
from streams.rollup import ConversationRollup, conversation_row, sample_row
from streams.topics import base_name

if TYPE_CHECKING:  # the capture process imports this module: no engine there
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

QaLabeller = Callable[["Warehouse", Sequence[QAVerdict]], list[bool]]
"""Labels conversations' samples from a batch of QA verdicts (on the warehouse thread)."""


@dataclass
class Entry:
    """A conversation's stored value: its partition, detector state and rollup."""

    partition: int
    state: ConversationState
    rollup: ConversationRollup

    def to_dict(self) -> dict[str, Any]:
        return {"p": self.partition, "s": self.state.to_dict(), "r": self.rollup.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        return cls(
            int(data["p"]),
            ConversationState.from_dict(data["s"]),
            ConversationRollup.from_dict(data["r"]),
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

    def decode(
        self, messages: Sequence[Any]
    ) -> tuple[list[tuple[int, ConversationEvent]], list[DeadLetter]]:
        events: list[tuple[int, ConversationEvent]] = []
        letters: list[DeadLetter] = []
        for message in messages:
            kind = kind_of_topic(base_name(self.stream_settings, message.topic))
            decoded = decode_one(kind, message)
            if isinstance(decoded, DeadLetter):
                letters.append(decoded)
            else:
                events.append((message.partition, decoded))  # type: ignore[arg-type]
        return events, letters

    def process(
        self,
        events: Sequence[tuple[int, ConversationEvent]],
        entries: Mapping[str, Entry],
        tiers: Mapping[str, Tier],
    ) -> CaptureBatch:
        """Apply decoded events to their conversations.

        ``entries`` holds the stored values (a conversation without one starts afresh),
        ``tiers`` the known tier of the batch's users.
        """
        batch = CaptureBatch()
        for partition, event in events:
            table, row = event_row(event)
            batch.rows[table].append(row)
            batch.events += 1
            cid = event.conversation_id
            entry = batch.touched.get(cid) or entries.get(cid)
            if entry is None:
                entry = Entry(partition, new_state(cid), ConversationRollup())
            if entry.state.has_applied(event, self._detectors.applied_window):
                continue
            user_id = getattr(event, "user_id", None)
            tier = tiers.get(user_id) if user_id else None
            state, signals = apply(entry.state, event, settings=self._detectors, user_tier=tier)
            batch.touched[cid] = Entry(entry.partition, state, entry.rollup.apply(event))
            for signal in signals:
                batch.rows["signals"].append(signal_row(signal))
                batch.signals[signal.detector] += 1
        for entry in batch.touched.values():
            decision = decide_for_state(entry.state, settings=self._detectors)
            batch.rows["conversations"].append(
                conversation_row(entry.state, entry.rollup, decision)
            )
            if decision.captured:  # sampled, or flagged by QA outside the design
                batch.rows["samples"].append(sample_row(entry.state, entry.rollup, decision))
                batch.samples += 1
        return batch
