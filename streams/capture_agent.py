"""The capture agent: every conversation topic through the detectors into the warehouse.

A batch goes through two stages:

1. *prepare* (the event loop): decode, dead-letter what fails, load the states
   the cache lacks, run the detectors, build every row and the new states, and
   put those states in the cache;
2. *commit* (the warehouse thread): write the rows, the states last, label
   samples from QA verdicts, then ack the batch.

Batch N's commit runs while batch N+1 is taken from the broker and prepared, so
the broker, the Python work and the warehouse's C++ work overlap; there is at most
one commit in flight, and commits run in batch order, so acks never pass a row
that is not written (at-least-once, see :mod:`streams.capture` for crash safety).
When the agent stops or fails, the state cache is cleared: it may hold states of a
batch that was never committed.
A state the in-flight commit is writing is never read back from the warehouse
before that commit lands (the cache holds it; after a rebalance clears the cache,
the agent waits for the commit first).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loraloop.events import QAVerdict
from loraloop.exceptions import LoraloopError
from loraloop.settings import Settings
from streams import metrics
from streams.capture import Capture, CaptureBatch, Entry, QaLabeller, needs_tier
from streams.dlq import send_dead_letter
from streams.progress import Progress
from streams.sink import WarehouseSink
from streams.state_store import STATE_TABLE, StateStore, state_rows
from streams.topics import base_name

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One batch, processed and ready to commit."""

    events: Sequence[Any]
    batch: CaptureBatch
    verdicts: list[QAVerdict]
    letters: int


class CaptureAgent:
    """The agent body over every conversation topic (use ``CaptureAgent(...).run``)."""

    def __init__(
        self,
        capture: Capture,
        store: StateStore,
        dlq: Any,
        sink: WarehouseSink,
        progress: Progress,
        settings: Settings,
        qa_labeller: QaLabeller | None = None,
    ) -> None:
        self._capture = capture
        self._store = store
        self._dlq = dlq
        self._sink = sink
        self._progress = progress
        self._settings = settings.stream
        self._qa_labeller = qa_labeller
        self._inflight: asyncio.Task[None] | None = None
        self._inflight_ids: frozenset[str] = frozenset()

    async def run(self, stream: Any) -> None:
        try:
            async for events in stream.noack_take(
                self._settings.batch_size, within=self._settings.batch_within_s
            ):
                prepared = await self._prepare(events)
                await self._settle()
                self._inflight_ids = frozenset(prepared.batch.touched)
                self._inflight = asyncio.ensure_future(self._commit(stream, prepared))
        except BaseException:
            # The cache runs one batch ahead of the warehouse: states of a batch that was
            # never committed must not outlive it, or its redelivery would look applied.
            self._store.clear()
            raise
        finally:
            await self._settle()

    async def _settle(self) -> None:
        """Wait for the in-flight commit (its failure is the agent's: Faust restarts it)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    async def _prepare(self, events: Sequence[Any]) -> Prepared:
        messages = [event.message for event in events]
        for topic, count in Counter(m.topic for m in messages).items():
            metrics.EVENTS_IN.labels(base_name(self._settings, topic)).inc(count)
        decoded, letters = self._capture.decode(messages)
        for letter in letters:
            await send_dead_letter(self._dlq, letter)
        user_ids = {event.user_id for _, event in decoded if needs_tier(event)}
        if user_ids:
            await self._sink.retrying(self._capture.tiers.load, user_ids)
        entries = await self._entries({event.conversation_id for _, event in decoded})
        batch = self._capture.process(decoded, entries)
        # Last table of the commit: a stored state never runs ahead of the rows it produced.
        batch.rows[STATE_TABLE] = state_rows(batch.touched)
        self._store.remember(batch.touched)
        verdicts = [event for _, event in decoded if isinstance(event, QAVerdict)]
        return Prepared(events, batch, verdicts, len(letters))

    async def _entries(self, conversation_ids: set[str]) -> dict[str, Entry | None]:
        entries: dict[str, Entry | None] = dict(self._store.cached(conversation_ids))
        missing = sorted(conversation_ids - entries.keys())
        if not missing:
            return entries
        if not self._inflight_ids.isdisjoint(missing):
            await self._settle()  # read those states only once the commit has stored them
        loaded = await self._sink.retrying(self._store.fetch_async, missing)
        self._store.remember(loaded)
        entries.update(loaded)
        return entries

    async def _commit(self, stream: Any, prepared: Prepared) -> None:
        batch = prepared.batch
        await self._sink.write(batch.rows, topic="conversations")
        if self._qa_labeller is not None and prepared.verdicts:
            await self._label(self._qa_labeller, prepared.verdicts)
        for event in prepared.events:
            await stream.ack(event)
        for event in prepared.events:
            message = event.message
            self._progress.mark(message.topic, message.partition, message.offset)
        for detector, count in batch.signals.items():
            metrics.SIGNALS.labels(detector).inc(count)
        metrics.SAMPLES.inc(batch.samples)
        self._progress.written["conversations"] += batch.events
        self._progress.dead_lettered["conversations"] += prepared.letters

    async def _label(self, labeller: QaLabeller, verdicts: list[QAVerdict]) -> None:
        """QA verdicts label their conversations' samples (after the sample rows landed)."""
        try:
            await self._sink.retrying(self._sink.run_on_warehouse, labeller, verdicts)
        except LoraloopError as e:  # a verdict that cannot label never stops the agent
            logger.warning("QA verdicts %s labelled nothing: %s", [v.event_id for v in verdicts], e)
