"""The capture agent: every conversation topic through the detectors into the warehouse.

A batch goes through two stages:

1. *prepare* (the event loop): hand the messages to the capture core (decode; the
   core runs in a child process by default, see :mod:`streams.capture_process`),
   dead-letter what fails, read the states and tiers the core lacks, and have the
   core run the detectors and build every row and the new states;
2. *commit* (the warehouse thread): write the rows, the states last, label
   samples from QA verdicts, then ack the batch.

Batch N's commit runs while batch N+1 is taken from the broker and prepared, so
the broker, the detectors and the warehouse's C++ work overlap; there is at most
one commit in flight, and commits run in batch order, so acks never pass a row
that is not written (at-least-once, see :mod:`streams.capture` for crash safety).
A batch whose prepare or commit fails is logged at once with its topic, partition
and offsets and processed again in halves: an event that fails alone is
dead-lettered with the reason and the events behind it are written, so no event
stalls capture (see :meth:`CaptureAgent._isolate`). When the agent stops, the
core's state cache is cleared: it may hold states of a batch never committed.
A state the in-flight commit is writing is never read back from the warehouse
before that commit lands (the cache holds it; after a rebalance clears the cache,
the agent waits for the commit first).

Event order (see :mod:`streams.capture`): the core holds a conversation's events until
its partition's watermark passes them. While no batch comes, a ticker sends an empty
batch through the same two stages every half ``watermark_idle_s``, so the end of a
stream (its partitions idle) makes them final.
After a start or a rebalance the core asks for the stored states with pending events
(their events are acked: no redelivery brings them back). Conflicting duplicates the
core refuses are dead-lettered like undecodable payloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from analytics.warehouse import Warehouse
from loraloop.events import QAVerdict
from loraloop.exceptions import LoraloopError
from loraloop.settings import Settings
from streams import metrics
from streams.capture import QaLabeller, TierLookup
from streams.capture_core import CONVERSATION_TOPICS, CaptureRunner, Processed, RawMessage
from streams.capture_process import CaptureProcessExitedError
from streams.dlq import send_dead_letter
from streams.ingest import dead_letter
from streams.progress import Progress
from streams.sink import WarehouseSink
from streams.state_store import read_pending_states, read_states
from streams.topics import base_name
from streams.watermark import Reading

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One batch, processed and ready to commit."""

    events: Sequence[Any]
    batch: Processed
    letters: int


class CaptureAgentError(LoraloopError):
    """A batch was not processed because the batch before it failed."""


_MAX_REASON_CHARS: Final = 500
"""A dead letter's reason is one line a person reads, not a traceback."""

_BATCHES_IN_FLIGHT: Final = 2
"""Batches between take and ack: one preparing while the one before it commits."""


@dataclass(eq=False)
class _Stage:
    """One batch on its way through the agent."""

    previous: _Stage | None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False
    touched: frozenset[str] = frozenset()
    task: asyncio.Future[None] = field(init=False)


class CaptureAgent:
    """The agent body over every conversation topic (use ``CaptureAgent(...).run``)."""

    def __init__(
        self,
        capture: CaptureRunner,
        warehouse: Warehouse,
        tiers: TierLookup,
        dlq: Any,
        sink: WarehouseSink,
        progress: Progress,
        settings: Settings,
        qa_labeller: QaLabeller | None = None,
    ) -> None:
        self._capture = capture
        self._warehouse = warehouse
        self._tiers = tiers
        self._dlq = dlq
        self._sink = sink
        self._progress = progress
        self._settings = settings.stream
        self._qa_labeller = qa_labeller
        self._pipeline: deque[_Stage] = deque()
        self._previous: _Stage | None = None
        self._enqueue_lock = asyncio.Lock()
        self._last_enqueued = 0.0

    async def run(self, stream: Any) -> None:
        pipeline = self._pipeline = deque()
        self._previous = None
        ticker = asyncio.ensure_future(self._tick(stream))
        try:
            async for events in stream.noack_take(
                self._settings.batch_size, within=self._settings.batch_within_s
            ):
                if ticker.done():
                    ticker.result()  # a failure the ticker saw is the agent's
                await self._enqueue(stream, events)
            ticker.cancel()
            while pipeline:
                await pipeline.popleft().task
        except BaseException:
            ticker.cancel()
            await asyncio.gather(*(stage.task for stage in pipeline), return_exceptions=True)
            # The cache runs ahead of the warehouse: states of a batch that was never
            # committed must not outlive it, or its redelivery would look applied.
            self._capture.clear()
            raise

    async def _enqueue(self, stream: Any, events: Sequence[Any]) -> None:
        """Start a batch (an empty one: a tick) behind the ones in flight."""
        async with self._enqueue_lock:
            pipeline = self._pipeline
            while len(pipeline) >= _BATCHES_IN_FLIGHT:
                await pipeline.popleft().task  # a failure is the agent's: Faust restarts it
            stage = _Stage(self._previous)
            stage.task = asyncio.ensure_future(self._handle(stream, events, stage))
            pipeline.append(stage)
            self._previous = stage
            self._last_enqueued = asyncio.get_running_loop().time()

    def _reading(self) -> Reading | None:
        """The conversation topic-partitions held here and those read to their end, as the
        consumer reports them (None where none does: an agent fed by hand)."""
        progress = self._progress
        if progress.assigned is None:
            return None
        topics = set(CONVERSATION_TOPICS)
        assigned, caught_up = set(), set()
        for key in progress.assigned:
            topic, partition = key
            name = base_name(self._settings, topic)
            if name in topics:
                assigned.add((partition, name))
                if progress.caught_up(key):
                    caught_up.add((partition, name))
        return Reading(frozenset(assigned), frozenset(caught_up))

    async def _tick(self, stream: Any) -> None:
        """While no batch comes, send an empty one every half ``watermark_idle_s``.

        Even with nothing pending here: after a start or a rebalance the stored states
        may hold pending events no redelivery brings back (the tick restores them).
        """
        interval = self._settings.watermark_idle_s / 2
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            quiet = loop.time() - self._last_enqueued >= interval
            if quiet and not self._enqueue_lock.locked():
                await self._enqueue(stream, [])

    async def _handle(self, stream: Any, events: Sequence[Any], stage: _Stage) -> None:
        """Prepare a batch after the one before it, then commit it after that one's commit."""
        previous = stage.previous
        stage.previous = None  # the chain of stages must not keep every batch alive
        try:
            if previous is not None:
                await previous.ready.wait()  # the core takes batches in order
                if previous.failed:
                    msg = "an earlier batch failed; this one waits for its redelivery"
                    raise CaptureAgentError(msg)
            try:
                prepared = await self._prepare(events, previous)
            except Exception as e:  # a bug or a poison event: isolate it, never stall
                if previous is not None:
                    await previous.task
                await self._isolate(stream, events, e)
                return
            stage.touched = frozenset(prepared.batch.touched)
        except BaseException:
            stage.failed = True
            raise
        finally:
            stage.ready.set()
        if previous is not None:
            await previous.task  # commits land in batch order
        try:
            await self._commit(stream, prepared)
        except Exception as e:
            await self._isolate(stream, events, e)

    async def _isolate(self, stream: Any, events: Sequence[Any], error: Exception) -> None:
        """Process a failed batch again piece by piece, so the failure is pinned to its events.

        Pieces are halves, in offset order, so the events behind a poison event are
        written in their order. An event that fails alone while others pass is poison:
        it is dead-lettered with the reason. When no event passes, the failure is the
        pipeline's, not an event's: the whole batch is tried again after a back-off,
        ``capture_failure_attempts`` times in all, before its events are dead-lettered.
        The batch is acked only once every event is written or dead-lettered.
        """
        metrics.CAPTURE_FAILURES.inc()
        if not events:  # a tick: the pending events wait for the next batch or tick
            logger.error("capture tick failed: %s", describe_exception(error), exc_info=error)
            self._capture.clear()
            return
        logger.error(
            "capture failed on %s: %s; isolating the failing events",
            _span(events),
            describe_exception(error),
            exc_info=error,
        )
        delay = self._settings.retry_initial_s
        for attempt in range(1, self._settings.capture_failure_attempts + 1):
            self._capture.clear()  # the cache may hold states of the failed attempt
            failed = await self._process_in_pieces(stream, events)
            if len(failed) < len(events) or attempt == self._settings.capture_failure_attempts:
                break
            self._progress.sink_error = f"capture failing on {_span(events)}"
            logger.error(
                "no event of %s could be processed (attempt %d of %d); trying again in %.1f s",
                _span(events),
                attempt,
                self._settings.capture_failure_attempts,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.retry_max_s)
        self._progress.sink_error = None
        for event, failure in failed:
            await self._dead_letter_failed(stream, event, failure)

    async def _process_in_pieces(
        self, stream: Any, events: Sequence[Any]
    ) -> list[tuple[Any, Exception]]:
        """Prepare and commit ``events`` by halving pieces that fail; the events that fail alone."""
        failed: list[tuple[Any, Exception]] = []
        pending: list[Sequence[Any]] = [events]
        while pending:
            piece = pending.pop(0)
            try:
                await self._commit(stream, await self._prepare(piece, None))
            except Exception as e:
                self._capture.clear()
                if len(piece) > 1:
                    middle = len(piece) // 2
                    pending[:0] = [piece[:middle], piece[middle:]]
                else:
                    failed.append((piece[0], e))
        return failed

    async def _dead_letter_failed(self, stream: Any, event: Any, error: Exception) -> None:
        """Dead-letter one event capture cannot process (the reason names the failure), ack it."""
        message = event.message
        reason = f"capture failed: {describe_exception(error)}"
        logger.error("%s: %s", _span([event]), reason)
        await send_dead_letter(self._dlq, dead_letter(message, reason))
        metrics.DEAD_LETTERS.labels(base_name(self._settings, message.topic)).inc()
        await stream.ack(event)
        self._progress.mark(message.topic, message.partition, message.offset)
        self._progress.dead_lettered["conversations"] += 1

    async def _prepare(self, events: Sequence[Any], previous: _Stage | None) -> Prepared:
        messages = [
            RawMessage(m.topic, m.partition, m.offset, m.value) for m in (e.message for e in events)
        ]
        for topic, count in Counter(m.topic for m in messages).items():
            metrics.EVENTS_IN.labels(base_name(self._settings, topic)).inc(count)
        try:
            return await self._prepare_once(events, messages, previous)
        except CaptureProcessExitedError as e:
            logger.warning("%s; preparing the batch again", e)
            return await self._prepare_once(events, messages, previous)

    async def _prepare_once(
        self, events: Sequence[Any], messages: list[RawMessage], previous: _Stage | None
    ) -> Prepared:
        needs = await self._capture.begin(messages, self._reading())
        for letter in needs.letters:
            await send_dead_letter(self._dlq, letter)
        if needs.tier_users:
            await self._sink.retrying(self._tiers.load, set(needs.tier_users))
        stored = await self._stored_states(needs.missing, previous)
        if needs.restore:
            if previous is not None:
                await previous.task  # its commit may be storing some of them
            restored = await self._sink.retrying(self._read_pending_states)
            stored = {**restored, **stored}
        batch = await self._capture.finish(stored, self._tiers.known(needs.user_ids))
        for letter in batch.letters:  # conflicting duplicates: the first version stays
            await send_dead_letter(self._dlq, letter)
        return Prepared(events, batch, len(needs.letters) + len(batch.letters))

    async def _stored_states(self, missing: list[str], previous: _Stage | None) -> dict[str, str]:
        if not missing:
            return {}
        if previous is not None and not previous.touched.isdisjoint(missing):
            await previous.task  # read those states only once its commit has stored them
        return await self._sink.retrying(self._read_states, missing)

    async def _read_states(self, conversation_ids: list[str]) -> dict[str, str]:
        """States on the reader thread: callers make sure no queued write holds them."""
        return await self._warehouse.run_read(read_states, self._warehouse, conversation_ids)

    async def _read_pending_states(self) -> dict[str, str]:
        """Stored states with pending events (callers make sure no queued write holds them)."""
        return await self._warehouse.run_read(read_pending_states, self._warehouse)

    async def _commit(self, stream: Any, prepared: Prepared) -> None:
        batch = prepared.batch
        await self._sink.write(batch.rows, topic="conversations")
        metrics.CAPTURE_PENDING.set(batch.pending)
        for topic, count in batch.late.items():
            metrics.LATE_EVENTS.labels(topic).inc(count)
        if self._qa_labeller is not None and batch.verdicts:
            await self._label(self._qa_labeller, batch.verdicts)
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


def describe_exception(error: BaseException) -> str:
    """``Type: message`` of an exception, bounded so a reason stays one readable line."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def _span(events: Sequence[Any]) -> str:
    """``topic[partition]@first..last`` for each topic-partition of ``events``."""
    offsets: dict[tuple[str, int], list[int]] = {}
    for event in events:
        message = event.message
        offsets.setdefault((message.topic, message.partition), []).append(message.offset)
    return ", ".join(
        f"{topic}[{partition}]@{min(found)}..{max(found)}"
        for (topic, partition), found in sorted(offsets.items())
    )
