"""What the gateway tells capture: each served exchange as two turns, and other events.

Turns go through a bounded queue to :class:`streams.producer.EventPublisher` in
batches, so a reply never waits for the broker's acknowledgement; a full queue makes
requests wait (backpressure) instead of dropping what capture needs. Feedback,
handoffs and outcomes are published before their request is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter

from gateway.errors import PublishUnavailableError
from gateway.limits import Lru
from loraloop.events import KINDS, Contract, Role, Turn
from streams.exceptions import PublishError
from streams.producer import Outgoing, PublishReport

logger = logging.getLogger(__name__)

TURN_TOPIC = KINDS["turn"].topic


class Publisher(Protocol):
    """What :class:`streams.producer.EventPublisher` offers (tests pass a fake)."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def publish(self, messages: Iterable[Outgoing]) -> PublishReport: ...


def outgoing(event: Contract) -> Outgoing:
    """The Kafka message of a contract: its kind's topic and partition key."""
    kind = next(k for k in KINDS.values() if isinstance(event, k.model))
    return Outgoing(
        topic=kind.topic,
        key=str(getattr(event, kind.key_field)),
        value=orjson.dumps(event.model_dump(mode="json")),
    )


def new_event_id() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


class TurnIndex:
    """Turn indices that continue each conversation, from its history and from memory."""

    def __init__(self, conversations: int) -> None:
        self._next: Lru[str, int] = Lru(conversations)

    def claim(self, conversation_id: str, prior_turns: int) -> int:
        """The user turn's index; the assistant turn is the next one (both are claimed)."""
        index = max(prior_turns, self._next.get(conversation_id) or 0)
        self._next.put(conversation_id, index + 2)
        return index


def exchange(
    *,
    conversation_id: str,
    user_id: str,
    index: int,
    question: str,
    answer: str,
    version: str,
) -> list[Turn]:
    """The user turn and the assistant turn (served by ``version``) of one exchange."""
    now = datetime.now(UTC)
    common = {"conversation_id": conversation_id, "user_id": user_id, "ts": now}
    return [
        Turn(event_id=new_event_id(), turn_index=index, role=Role.USER, text=question, **common),
        Turn(
            event_id=new_event_id(),
            turn_index=index + 1,
            role=Role.ASSISTANT,
            text=answer,
            model_version=version,
            **common,
        ),
    ]


class TrafficLog:
    """Publishes turns in the background and other events at once.

    ``make_publisher`` is called in :meth:`start`, on the serving event loop (aiokafka's
    producer binds to the loop it is made on).
    """

    def __init__(
        self,
        make_publisher: Callable[[], Publisher],
        *,
        queue_size: int,
        batch: int,
        registry: CollectorRegistry,
    ) -> None:
        self._make_publisher = make_publisher
        self._publisher: Publisher | None = None
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=queue_size)
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.published = Counter(
            "loraloop_gateway_published",
            "Events the gateway published, by topic.",
            ["topic"],
            registry=registry,
        )
        self.failed = Counter(
            "loraloop_gateway_publish_failed",
            "Events the gateway could not publish (logged with the reason), by topic.",
            ["topic"],
            registry=registry,
        )

    async def start(self) -> None:
        self._publisher = self._make_publisher()
        await self._publisher.__aenter__()
        self._task = asyncio.create_task(self._drain(), name="gateway-traffic")

    async def close(self) -> None:
        """Publish what is queued, then stop the producer."""
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher is not None:
            await self._publisher.__aexit__(None, None, None)

    async def submit(self, events: Iterable[Contract]) -> None:
        """Queue ``events`` for publishing (waits while the queue is full)."""
        for event in events:
            await self._queue.put(outgoing(event))

    def submit_nowait(self, events: Iterable[Contract]) -> None:
        """Queue ``events`` without waiting (a cancelled request); a full queue drops them."""
        for event in events:
            message = outgoing(event)
            try:
                self._queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning("publish queue full: a turn of %s is dropped", message.key)
                self.failed.labels(message.topic).inc()

    async def publish_now(self, event: Contract) -> None:
        """Publish ``event`` and wait for the broker's acknowledgement."""
        message = outgoing(event)
        try:
            await self._started().publish([message])
        except PublishError as e:
            self.failed.labels(message.topic).inc()
            msg = f"could not publish to {message.topic}: {e}; retry the request"
            raise PublishUnavailableError(msg) from e
        self.published.labels(message.topic).inc()

    async def flushed(self) -> None:
        """Wait until every queued turn has been handed to the broker."""
        await self._queue.join()

    def _started(self) -> Publisher:
        if self._publisher is None:
            msg = "the traffic log is not started: serve the gateway app with its lifespan"
            raise PublishError(msg)
        return self._publisher

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._started().publish(batch)
                for message in batch:
                    self.published.labels(message.topic).inc()
            except Exception:  # a stream failure must not stop publishing the next batch
                logger.exception("could not publish %d turns to %s", len(batch), TURN_TOPIC)
                for message in batch:
                    self.failed.labels(message.topic).inc()
            finally:
                for _ in batch:
                    self._queue.task_done()
