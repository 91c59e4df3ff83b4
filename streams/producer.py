"""Publish events to Kafka: keyed by conversation_id (profiles by user_id).

The same producer serves ``loraloop produce``, ``loraloop replay`` and the
traffic simulator, so tests exercise the production path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from loraloop.settings import KafkaSettings, StreamSettings
from streams.exceptions import PublishError
from streams.security import client_kwargs
from streams.topics import topic_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: base topic, key and raw value bytes."""

    topic: str
    key: str
    value: bytes


@dataclass
class PublishReport:
    """What was published: counts per topic and the end offset per partition."""

    sent: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class EventPublisher:
    """An aiokafka producer with loraloop's settings (no idempotence: Tansu lacks it).

    ``security`` defaults to the environment's ``LORALOOP_KAFKA__*`` settings.
    """

    def __init__(
        self, bootstrap: str, stream: StreamSettings, *, security: KafkaSettings | None = None
    ) -> None:
        self._stream = stream
        kafka = security if security is not None else KafkaSettings()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="loraloop-producer",
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
            **client_kwargs(kafka),
        )
        self._bootstrap = bootstrap

    async def __aenter__(self) -> EventPublisher:
        try:
            await self._producer.start()
        except Exception as e:
            msg = f"cannot connect a producer to Kafka at {self._bootstrap} ({e})"
            raise PublishError(msg) from e
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, messages: Iterable[Outgoing], *, window: int = 1000) -> PublishReport:
        """Send every message and wait for the broker's acknowledgement of each."""
        report = PublishReport()
        pending: list[asyncio.Future[Any]] = []
        for message in messages:
            full = topic_name(self._stream, message.topic)
            pending.append(await self._producer.send(full, message.value, key=message.key.encode()))
            report.per_topic[message.topic] = report.per_topic.get(message.topic, 0) + 1
            if len(pending) >= window:
                await self._settle(pending, report)
        await self._settle(pending, report)
        return report

    async def _settle(self, pending: list[asyncio.Future[Any]], report: PublishReport) -> None:
        try:
            results = await asyncio.gather(*pending)
        except Exception as e:
            msg = f"publishing failed after {report.sent} acknowledged messages: {e}"
            raise PublishError(msg) from e
        for meta in results:
            tp = (meta.topic, meta.partition)
            report.end_offsets[tp] = max(report.end_offsets.get(tp, 0), meta.offset + 1)
        report.sent += len(results)
        pending.clear()
