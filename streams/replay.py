"""Replay a JSONL event file through the real pipeline and wait until it is written.

The backfill tool, and the quickest way to watch the system work: every line
goes through Kafka and the worker exactly as production traffic would. Lines
whose type is known are published as they are (a bad payload is dead-lettered
by the worker, like any bad event); lines that are not routable at all (not
JSON, no ``type``) go straight to the dead-letter topic with their line number.

A file is ordered as a whole: its events are published faster than event time ever
moved, topic after topic if the file is laid out so, so the replay's capture runs with
an infinite allowed lateness. Every conversation's events are held until the stream goes
idle (``replay_watermark_idle_s``) and then applied in event order; the replay returns
once they are (no conversation pending).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import REGISTRY

from loraloop.eventfile import LineError, ParsedLine, read_events, strip_type
from loraloop.events import DLQ_TOPIC, DeadLetter
from loraloop.settings import Settings
from streams.capture import QaLabeller
from streams.exceptions import ReplayTimeoutError
from streams.producer import EventPublisher, Outgoing, PublishReport
from streams.stack import RunningStack, run_stack

logger = logging.getLogger(__name__)

_POLL_S = 0.1

PENDING_METRIC = "loraloop_capture_pending_conversations"
"""The capture agent's count of conversations with events held for event order."""


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


@dataclass
class Plan:
    """What reading the file found; filled in while the messages are consumed."""

    lines: int = 0
    errors: list[LineError] = field(default_factory=list)
    direct_dlq: int = 0
    max_errors_kept: int = 1000


def plan_messages(path: Path, plan: Plan) -> Iterator[Outgoing]:
    """Messages for every line, lazily: routable ones to their topic, the rest to the DLQ.

    A generator, so a huge file is published in windows and never held in memory;
    ``plan`` counts lines and dead letters as they go (only the first line errors are
    kept for the report).
    """
    for item in read_events(path):
        plan.lines += 1
        if isinstance(item, ParsedLine):
            yield Outgoing(item.kind.topic, item.key, strip_type(item.raw))
            continue
        if len(plan.errors) < plan.max_errors_kept:
            plan.errors.append(item)
        if item.kind is not None:
            yield Outgoing(item.kind.topic, f"line-{item.line_no}", strip_type(item.raw))
            continue
        plan.direct_dlq += 1
        yield _direct_dead_letter(path, item)


def _direct_dead_letter(path: Path, item: LineError) -> Outgoing:
    letter = DeadLetter.of_payload(
        source_topic=f"file:{path.name}",
        partition=0,
        offset=item.line_no,
        raw=item.raw,
        error=item.message,
    )
    return Outgoing(DLQ_TOPIC, letter.source_topic, letter.model_dump_json().encode())


async def _wait_written(
    running: RunningStack, report: PublishReport, direct_dlq: int, timeout_s: float
) -> None:
    progress = running.progress
    sources = {tp: end for tp, end in report.end_offsets.items() if not tp[0].endswith(DLQ_TOPIC)}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        expected_letters = sum(progress.dead_lettered.values()) + direct_dlq
        if (
            progress.reached(sources)
            and progress.dead_letters_stored >= expected_letters
            and not REGISTRY.get_sample_value(PENDING_METRIC)  # every event is final
        ):
            return
        await asyncio.sleep(_POLL_S)
    msg = (
        f"replay did not finish within {timeout_s:.0f}s (written so far: "
        f"{sum(progress.written.values())}); raise LORALOOP_STREAM__REPLAY_TIMEOUT_S"
    )
    raise ReplayTimeoutError(msg)


def ordered_as_a_whole(settings: Settings) -> Settings:
    """``settings`` for a replay: infinite lateness, final once the stream is idle."""
    stream = settings.stream.model_copy(
        update={
            "allowed_lateness_s": math.inf,
            "watermark_idle_s": settings.stream.replay_watermark_idle_s,
        }
    )
    return settings.model_copy(update={"stream": stream})


def replay_file(
    path: Path, settings: Settings, *, qa_labeller: QaLabeller | None = None
) -> ReplayResult:
    """Run the embedded stack over ``path``; returns when every event is written and final."""
    settings = ordered_as_a_whole(settings)
    plan = Plan()
    result = ReplayResult()
    started = time.perf_counter()

    async def drive(running: RunningStack) -> None:
        try:
            async with EventPublisher(running.bootstrap, settings.stream) as publisher:
                report = await publisher.publish(plan_messages(path, plan))
            result.published = report.sent
            result.lines = plan.lines
            result.line_errors = [str(e) for e in plan.errors]
            timeout = settings.stream.replay_timeout_s
            await _wait_written(running, report, plan.direct_dlq, timeout)
            result.accepted = sum(running.progress.written.values())
            result.dead_lettered = sum(running.progress.dead_lettered.values()) + plan.direct_dlq
            result.tables = await running.warehouse.run(running.warehouse.table_counts)
        except Exception as e:  # reported to the caller; the stack still shuts down cleanly
            logger.exception("replay failed")
            result.error = str(e)
        finally:
            running.stop()

    run_stack(settings, on_ready=drive, qa_labeller=qa_labeller)
    result.seconds = time.perf_counter() - started
    return result
