"""Sending a dead letter to ``llm.dlq`` (the DLQ agent then stores it in the warehouse)."""

from __future__ import annotations

import logging
from typing import Any

from loraloop.events import DeadLetter

logger = logging.getLogger(__name__)


async def send_dead_letter(dlq: Any, letter: DeadLetter) -> None:
    """Publish ``letter`` on the dead-letter topic and wait for the broker's ack."""
    fut = await dlq.send(key=letter.source_topic.encode(), value=letter.model_dump_json().encode())
    await fut
    logger.info(
        "dead-lettered %s[%s]@%s: %s",
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.error,
    )
