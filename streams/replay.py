"""Replay a JSONL event file through the real pipeline and wait until it is written.

The backfill tool, and the quickest way to watch the system work: every line
goes through Kafka and the worker exactly as production traffic would. Lines
whose type is known are published as they are (a bad payload is dead-lettered
by the worker, like any bad event); lines that are not routable at all (not
JSON, no ``type``) go straight to the dead-letter topic with their line number.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loraloop.eventfile import LineError, read_events, strip_type
from loraloop.events import DLQ_TOPIC, DeadLetter
from loraloop.settings import Settings
from streams.capture import QaLabeller
from streams.exceptions import ReplayTimeoutError
from streams.producer import EventPublisher, Outgoing, PublishReport
from streams.stack import RunningStack, run_stack

logger = logging.getLogger(__name__)

_POLL_S = 0.1


@dataclass
class ReplayResult:
    """What a replay did: lines read, published, written, dead-lettered, final row counts."""

    lines: int = 0
    published: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    line_errors: list[str] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def plan_messages(path: Path) -> tuple[list[Outgoing], list[LineError], int]:
    """Messages for every line: routable ones to their topic, the rest to the DLQ."""
    messages: list[Outgoing] = []
    errors: list[LineError] = []
    lines = 0
    for item in read_events(path):
        lines += 1
        if isinstance(item, LineError):
            errors.append(item)
            if item.kind is not None:
                key = f"line-{item.line_no}"
                messages.append(Outgoing(item.kind.topic, key, strip_type(item.raw)))
                continue
            letter = DeadLetter(
                source_topic=f"file:{path.name}",
                partition=0,
                offset=item.line_no,
                raw_b64=base64.b64encode(item.raw).decode("ascii"),
                error=item.message,
                ts=datetime.now(UTC),
            )
            payload = letter.model_dump_json().encode()
            messages.append(Outgoing(DLQ_TOPIC, letter.source_topic, payload))
            continue
        messages.append(Outgoing(item.kind.topic, item.key, strip_type(item.raw)))
    return messages, errors, lines


async def _wait_written(
    running: RunningStack, report: PublishReport, direct_dlq: int, timeout_s: float
) -> None:
    progress = running.progress
    sources = {tp: end for tp, end in report.end_offsets.items() if not tp[0].endswith(DLQ_TOPIC)}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        expected_letters = sum(progress.dead_lettered.values()) + direct_dlq
        if progress.reached(sources) and progress.dead_letters_stored >= expected_letters:
            return
        await asyncio.sleep(_POLL_S)
    msg = (
        f"replay did not finish within {timeout_s:.0f}s (written so far: "
        f"{sum(progress.written.values())}); raise LORALOOP_STREAM__REPLAY_TIMEOUT_S"
    )
    raise ReplayTimeoutError(msg)


def replay_file(
    path: Path, settings: Settings, *, qa_labeller: QaLabeller | None = None
) -> ReplayResult:
    """Run the embedded stack over ``path``; returns when every event is written."""
    messages, errors, lines = plan_messages(path)
    direct_dlq = sum(1 for m in messages if m.topic == DLQ_TOPIC)
    result = ReplayResult(lines=lines, line_errors=[str(e) for e in errors])
    started = time.perf_counter()

    async def drive(running: RunningStack) -> None:
        try:
            async with EventPublisher(running.bootstrap, settings.stream) as publisher:
                report = await publisher.publish(messages)
            result.published = report.sent
            await _wait_written(running, report, direct_dlq, settings.stream.replay_timeout_s)
            result.accepted = sum(running.progress.written.values())
            result.dead_lettered = sum(running.progress.dead_lettered.values()) + direct_dlq
            result.tables = await running.warehouse.run(running.warehouse.table_counts)
        except Exception as e:  # reported to the caller; the stack still shuts down cleanly
            logger.exception("replay failed")
            result.error = str(e)
        finally:
            running.stop()

    run_stack(settings, on_ready=drive, qa_labeller=qa_labeller)
    result.seconds = time.perf_counter() - started
    return result
