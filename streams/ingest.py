"""Turn a batch of raw Kafka messages into warehouse rows and dead letters.

Pure apart from the clock: no broker, no warehouse. A payload that fails its
contract (or is not JSON, not UTF-8, too deep...) becomes a :class:`DeadLetter`
carrying the exact error and where it was read; nothing in a batch can raise.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from analytics.rows import event_row
from loraloop.events import Contract, DeadLetter, Kind, describe_error, oversize_error

logger = logging.getLogger(__name__)


class RawMessage(Protocol):
    """The parts of a Kafka message ingestion needs (Faust's ``Message`` has them)."""

    topic: str
    partition: int
    offset: int
    value: Any


@dataclass
class DecodedBatch:
    """Rows per table, the events they came from, and the payloads that failed."""

    rows: dict[str, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    events: list[Contract] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


def dead_letter(message: RawMessage, error: str) -> DeadLetter:
    """A dead letter for ``message`` with ``error`` as the reason."""
    raw = message.value if isinstance(message.value, bytes) else b""
    return DeadLetter.of_payload(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        raw=raw,
        error=error,
    )


def decode_one(kind: Kind, message: RawMessage) -> Contract | DeadLetter:
    """Validate one payload against ``kind``'s contract."""
    if not isinstance(message.value, bytes) or not message.value:
        return dead_letter(message, "<payload>: empty message")
    if (too_big := oversize_error(len(message.value))) is not None:
        return dead_letter(message, too_big)
    try:
        return kind.model.model_validate_json(message.value)
    except ValidationError as e:
        return dead_letter(message, describe_error(e))
    except Exception as e:  # e.g. RecursionError on absurdly nested JSON
        logger.warning(
            "unexpected decode failure topic=%s partition=%s offset=%s: %r",
            message.topic,
            message.partition,
            message.offset,
            e,
        )
        return dead_letter(message, f"<payload>: cannot decode ({type(e).__name__}: {e})")


def decode_batch(kind: Kind, messages: Sequence[RawMessage]) -> DecodedBatch:
    """Decode every message of a batch; order within each table is kept."""
    batch = DecodedBatch()
    for message in messages:
        decoded = decode_one(kind, message)
        if isinstance(decoded, DeadLetter):
            batch.letters.append(decoded)
            continue
        table, row = event_row(decoded)
        batch.rows[table].append(row)
        batch.events.append(decoded)
    return batch
