"""Topic names and their creation.

All source topics are keyed by conversation_id (``llm.users`` by user_id) and
share one partition count, so one conversation's events meet on one worker.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from loraloop.events import DLQ_TOPIC, KINDS
from loraloop.settings import StreamSettings
from streams.exceptions import BrokerError

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


async def ensure_topics(bootstrap: str, stream: StreamSettings) -> list[str]:
    """Create missing topics (idempotent); returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loraloop-admin")
    try:
        await admin.start()
    except Exception as e:
        msg = f"cannot reach Kafka at {bootstrap} ({e}); is the broker running?"
        raise BrokerError(msg) from e
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for base in all_topics():
            name = topic_name(stream, base)
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if base in _COMPACTED else {}
            wanted.append(
                NewTopic(
                    name,
                    num_partitions=stream.partitions,
                    replication_factor=1,
                    topic_configs=configs,
                )
            )
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                logger.debug("topics created concurrently by another process")
        return [t.name for t in wanted]
    finally:
        await admin.close()
