"""Topic names and their creation.

All source topics are keyed by conversation_id (``llm.users`` by user_id) and
share one partition count, so one conversation's events meet on one worker.
Source topics keep ``retention_ms``, the dead-letter topic ``dlq_retention_ms``,
and ``llm.users`` is compacted (latest profile per user, kept forever).
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from loraloop.events import DLQ_TOPIC, KINDS
from loraloop.settings import KafkaSettings, StreamSettings
from streams.exceptions import BrokerError
from streams.security import client_kwargs

logger = logging.getLogger(__name__)

_COMPACTED = {"llm.users"}


def topic_name(stream: StreamSettings, base: str) -> str:
    """The full topic name of a base name such as ``llm.turns``."""
    return f"{stream.topic_prefix}{base}"


def base_name(stream: StreamSettings, full: str) -> str:
    """Inverse of :func:`topic_name`."""
    return full.removeprefix(stream.topic_prefix)


def all_topics() -> list[str]:
    """Every base topic name loraloop reads or writes."""
    return [kind.topic for kind in KINDS.values()] + [DLQ_TOPIC]


def topic_configs(stream: StreamSettings, base: str) -> dict[str, str]:
    """The topic-level configs loraloop sets on a base topic when it creates it."""
    if base in _COMPACTED:
        configs = {"cleanup.policy": "compact"}
    else:
        retention = stream.dlq_retention_ms if base == DLQ_TOPIC else stream.retention_ms
        configs = {"cleanup.policy": "delete", "retention.ms": str(retention)}
    if stream.min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(stream.min_insync_replicas)
    return configs


def new_topics(stream: StreamSettings) -> list[NewTopic]:
    """Every topic loraloop needs, with partitions, replication and configs."""
    return [
        NewTopic(
            topic_name(stream, base),
            num_partitions=stream.partitions,
            replication_factor=stream.replication_factor,
            topic_configs=topic_configs(stream, base),
        )
        for base in all_topics()
    ]


async def ensure_topics(
    bootstrap: str, stream: StreamSettings, *, security: KafkaSettings | None = None
) -> list[str]:
    """Create missing topics (idempotent); returns the names created.

    ``security`` defaults to the environment's ``LORALOOP_KAFKA__*`` settings.
    Existing topics are left as they are (change their configs with kafka-configs.sh).
    """
    kafka = security if security is not None else KafkaSettings()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="loraloop-admin", **client_kwargs(kafka)
    )
    try:
        await admin.start()
    except Exception as e:
        msg = f"cannot reach Kafka at {bootstrap} ({e}); is the broker running?"
        raise BrokerError(msg) from e
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in new_topics(stream) if t.name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                logger.debug("topics created concurrently by another process")
        return [t.name for t in wanted]
    finally:
        await admin.close()
