"""The Faust app: one ingest agent per source topic, a dead-letter sink, web endpoints.

Each agent reads raw bytes in batches (``noack_take``), validates them, sends
failures to ``llm.dlq``, writes the rest to ClickHouse through the retrying
sink, and only then acks: at-least-once in, idempotent (ReplacingMergeTree) out.

The web server answers ``/health`` and ``/metrics`` to anyone who reaches the bind
address (probes, Prometheus); every other page, ``/api/counts`` and Faust's own
(``/router/``, ``/table/``, ``/``), needs the service key (``Authorization: Bearer``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import faust
import orjson
from aiohttp import web as aiohttp_web
from faust.sensors import Sensor
from faust.types import TP
from faust.types.tuples import Message
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from analytics.rows import dead_letter_row
from analytics.warehouse import Warehouse
from detectors.config import DetectorSettings
from loraloop.events import (
    DLQ_TOPIC,
    KINDS,
    DeadLetter,
    Kind,
    UserProfile,
    describe_error,
)
from loraloop.service_key import key_matches
from loraloop.settings import Settings
from streams import metrics
from streams.broker_watch import BrokerWatch, bootstrap_probe
from streams.capture import QaLabeller, TierLookup
from streams.capture_agent import CaptureAgent
from streams.capture_core import CaptureCore, CaptureRunner, InlineCapture
from streams.capture_process import CaptureProcess
from streams.dlq import send_dead_letter
from streams.ingest import dead_letter, decode_batch
from streams.progress import Progress
from streams.security import faust_credentials
from streams.sink import WarehouseSink
from streams.topics import base_name, topic_name

logger = logging.getLogger(__name__)

AgentFn = Callable[[Any], Awaitable[None]]

OPEN_PATHS: Final = frozenset({"/health", "/metrics"})
"""Worker pages that answer without the service key."""
UNAUTHORIZED = 401
UNHEALTHY = 503


def _raw_topic(app: faust.App, settings: Settings, base: str) -> Any:
    return app.topic(
        topic_name(settings.stream, base),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.stream.partitions,
    )


def create_app(settings: Settings, *, bootstrap: str, web_port: int) -> faust.App:
    """A Faust app configured for loraloop (no agents yet).

    Kafka security comes from ``settings.kafka``; the embedded broker (no
    ``kafka_bootstrap``) is always PLAINTEXT.
    """
    stream = settings.stream
    credentials = faust_credentials(settings.kafka) if settings.kafka_bootstrap else None
    return faust.App(
        stream.app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        autodiscover=False,
        datadir=str(Path(settings.data_dir) / "faust"),
        processing_guarantee="at_least_once",
        broker_session_timeout=stream.session_timeout_s,
        broker_heartbeat_interval=stream.heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        topic_partitions=stream.partitions,
        topic_replication_factor=stream.replication_factor,
        broker_credentials=credentials,
        web_enabled=True,
        web_bind=stream.web_host,
        web_host=stream.web_host,
        web_port=web_port,
        producer_acks=-1,
    )


def ingest_agent(
    kind: Kind,
    dlq: Any,
    sink: WarehouseSink,
    progress: Progress,
    settings: Settings,
    *,
    tiers: TierLookup | None = None,
) -> AgentFn:
    """The agent body for one source topic."""
    stream_settings = settings.stream

    async def ingest(stream: Any) -> None:
        async for events in stream.noack_take(
            stream_settings.batch_size, within=stream_settings.batch_within_s
        ):
            messages = [event.message for event in events]
            topic = base_name(stream_settings, messages[0].topic)
            metrics.EVENTS_IN.labels(topic).inc(len(messages))
            batch = decode_batch(kind, messages)
            for letter in batch.letters:
                await send_dead_letter(dlq, letter)
            await sink.write(batch.rows, topic=topic)
            if tiers is not None:
                for event in batch.events:
                    if isinstance(event, UserProfile):
                        tiers.remember(event.user_id, event.tier)
            for event in events:
                await stream.ack(event)
            for message in messages:
                progress.mark(message.topic, message.partition, message.offset)
            metrics.EVENTS_WRITTEN.labels(topic).inc(len(batch.events))
            metrics.DEAD_LETTERS.labels(topic).inc(len(batch.letters))
            progress.written[topic] += len(batch.events)
            progress.dead_lettered[topic] += len(batch.letters)

    ingest.__name__ = f"ingest_{kind.name}"
    return ingest


def dead_letter_agent(sink: WarehouseSink, progress: Progress, settings: Settings) -> AgentFn:
    """Stores every dead letter in the ``dead_letters`` table."""
    stream_settings = settings.stream

    async def store_dead_letters(stream: Any) -> None:
        async for events in stream.noack_take(
            stream_settings.batch_size, within=stream_settings.batch_within_s
        ):
            rows = []
            for event in events:
                message = event.message
                try:
                    letter = DeadLetter.model_validate_json(message.value or b"")
                except ValidationError as e:
                    letter = dead_letter(message, f"malformed dead letter: {describe_error(e)}")
                rows.append(dead_letter_row(letter))
            await sink.write({"dead_letters": rows}, topic=DLQ_TOPIC)
            for event in events:
                await stream.ack(event)
                progress.mark(event.message.topic, event.message.partition, event.message.offset)
            progress.dead_letters_stored += len(rows)

    return store_dead_letters


def health_body(progress: Progress, stuck_after_s: float) -> tuple[int, dict[str, Any]]:
    """``/health``: 503 when the sink fails, the broker is unreachable, a partition is stuck
    or a serving replica cannot serve what routing needs (``serving``).

    Stuck: lag above zero and no written offset advance for ``stuck_after_s``
    (:meth:`Progress.stuck`), the case in which nothing fails yet nothing moves.
    """
    watch = progress.broker_watch
    broker_down = watch is not None and not watch.up
    stuck = progress.stuck(stuck_after_s)
    healthy = not (progress.sink_error or broker_down or stuck or progress.serving_problem)
    lag = sum(progress.lag.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "sink_error": progress.sink_error,
        "lag": lag,
        "stuck": stuck.describe() if stuck is not None else None,
        "serving": progress.serving_problem,
    }
    if watch is not None:
        body.update(watch.status())
    return (200 if healthy else UNHEALTHY), body


def add_web(
    app: faust.App, warehouse: Warehouse, progress: Progress, *, stuck_after_s: float
) -> None:
    """``/health``, ``/metrics`` and ``/api/counts`` on the worker's web server."""

    @app.page("/health")
    async def health(web: View, _request: Request) -> Response:
        status, body = health_body(progress, stuck_after_s)
        return web.json(body, status=status)

    # aiohttp refuses a charset inside content_type (500 on every scrape); the text is UTF-8.
    metrics_type = "; ".join(
        part for part in CONTENT_TYPE_LATEST.split("; ") if not part.startswith("charset=")
    )

    @app.page("/metrics")
    async def prometheus(web: View, _request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=metrics_type)

    @app.page("/api/counts")
    async def counts(web: View, _request: Request) -> Response:
        tables = await warehouse.run(warehouse.table_counts)
        return web.bytes(orjson.dumps({"tables": tables}), content_type="application/json")


def add_key_guard(app: faust.App, service_key: str) -> None:
    """Every page but ``/health`` and ``/metrics`` answers 401 without the service key.

    An aiohttp middleware, so it also covers the pages Faust adds by itself.
    """

    @aiohttp_web.middleware
    async def require_key(request: aiohttp_web.Request, handler: Any) -> Any:
        if request.path in OPEN_PATHS or key_matches(
            request.headers.get("Authorization"), service_key
        ):
            return await handler(request)
        detail = (
            f"{request.path} needs the service key: send 'Authorization: Bearer <key>' "
            "(LORALOOP_STREAM__SERVICE_KEY, or the file service.key in the data directory)"
        )
        return aiohttp_web.json_response(
            {"error": "NotAuthenticated", "detail": detail},
            status=UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )

    app.web.web_app.middlewares.append(require_key)  # type: ignore[attr-defined]


class TakenOffsets(Sensor):
    """Records the offset of every message the consumer hands to the agents."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self._progress = progress

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:  # noqa: ARG002
        self._progress.take(tp.topic, tp.partition, offset)


def add_lag_monitor(app: faust.App, progress: Progress, interval_s: float) -> None:
    """Every ``interval_s``: lag = high watermark - next offset written, per partition.

    A partition this worker has taken events from but not yet written counts from the
    first offset taken (nothing from there on is written: a lower bound, so a worker
    that takes and never writes is seen lagging). Partitions it has neither written nor
    taken from are left out (their committed offset is not known here), so the figure
    is never an invented zero; their fetch position is read instead, which says whether
    they have anything left to read (:meth:`Progress.caught_up`). Partitions no longer
    assigned are dropped, and one that comes from another worker is measured afresh.
    The assignment itself is kept in ``progress.assigned`` as the consumer reports it.
    """
    app.sensors.add(TakenOffsets(progress))
    progress.assigned = set()
    progress.highwater = lambda key: _highwater(app, key)
    held: set[tuple[str, int]] = set()

    async def take_over(*args: Any, **_kwargs: Any) -> None:
        # Faust rebalances eagerly (all revoked, then the new set assigned): a partition
        # kept through it is no news; one that was not held comes with stale offsets.
        # The signal passes (sender, assigned).
        assigned: set[TP] = args[1] if len(args) > 1 else set()
        now = {(tp.topic, tp.partition) for tp in assigned}
        progress.moved_in(now - held)
        held.clear()
        held.update(now)
        progress.assigned = set(now)

    async def give_up(*_args: Any, **_kwargs: Any) -> None:
        progress.assigned = set()

    app.on_partitions_assigned.connect(take_over)
    app.on_partitions_revoked.connect(give_up)

    async def measure_lag() -> None:
        assigned = app.consumer.assignment()
        progress.forget({(tp.topic, tp.partition) for tp in assigned})
        for tp in assigned:
            unwritten = progress.unwritten_from(tp.topic, tp.partition)
            if unwritten is None:
                await _read_position(app, progress, tp, timeout_s=interval_s)
            highwater = app.consumer.highwater(tp)
            if unwritten is None or highwater is None:
                continue
            lag = max(0, int(highwater) - unwritten)
            progress.observe_lag(tp.topic, tp.partition, lag)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    app.timer(interval_s, name="measure-lag")(measure_lag)


def _highwater(app: faust.App, key: tuple[str, int]) -> int | None:
    """The consumer's high watermark of a partition; None while unknown or not assigned."""
    try:
        highwater = app.consumer.highwater(TP(*key))
    except Exception:  # not assigned (any more), or the consumer not started
        return None
    return None if highwater is None else int(highwater)


async def _read_position(app: faust.App, progress: Progress, tp: TP, *, timeout_s: float) -> None:
    """Record the fetch position of a partition nothing was taken from (when it answers)."""
    try:
        position = await asyncio.wait_for(app.consumer.position(tp), timeout=timeout_s)
    except Exception:  # revoked meanwhile, or no position yet: try next time
        return
    if position is not None:
        progress.positions[(tp.topic, tp.partition)] = int(position)


def add_broker_watch(
    app: faust.App, settings: Settings, bootstrap: str, progress: Progress
) -> BrokerWatch:
    """Every ``broker_probe_interval_s``: probe the broker; gaps go to /health and /metrics."""
    kafka = settings.kafka if settings.kafka_bootstrap else None  # embedded: PLAINTEXT
    watch = BrokerWatch(bootstrap_probe(bootstrap, kafka), bootstrap=bootstrap)
    progress.broker_watch = watch

    async def probe_broker() -> None:
        await watch.check_async()

    app.timer(settings.stream.broker_probe_interval_s, name="probe-broker")(probe_broker)
    return watch


def capture_runner(settings: Settings) -> CaptureRunner:
    """The capture core, in a child process unless ``capture_process`` is off."""
    stream = settings.stream
    if stream.capture_process:
        return CaptureProcess(
            stream, DetectorSettings(), cache_size=stream.state_cache_size
        ).start()
    return InlineCapture(
        CaptureCore(stream, DetectorSettings(), cache_size=stream.state_cache_size)
    )


def build_worker_app(
    settings: Settings,
    *,
    bootstrap: str,
    warehouse: Warehouse,
    progress: Progress,
    web_port: int,
    service_key: str,
    qa_labeller: QaLabeller | None = None,
) -> faust.App:
    """The full worker: ingest agents for every source topic plus the dead-letter sink.

    ``service_key`` guards every web page but ``/health`` and ``/metrics``.
    """
    app = create_app(settings, bootstrap=bootstrap, web_port=web_port)
    sink = WarehouseSink(warehouse, settings.stream, progress)
    dlq = _raw_topic(app, settings, DLQ_TOPIC)
    users = KINDS["user"]
    tiers = TierLookup(warehouse, capacity=settings.stream.tier_cache_size)
    users_topic = _raw_topic(app, settings, users.topic)
    agent = ingest_agent(users, dlq, sink, progress, settings, tiers=tiers)
    app.agent(users_topic, name="ingest-users", concurrency=1)(agent)
    capture = capture_runner(settings)

    async def forget_states(*_args: Any, **_kwargs: Any) -> None:
        capture.clear()  # another worker may have moved these conversations on meanwhile

    async def stop_capture(*_args: Any, **_kwargs: Any) -> None:
        capture.close()

    app.on_partitions_revoked.connect(forget_states)
    app.on_partitions_assigned.connect(forget_states)
    app.on_before_shutdown.connect(stop_capture)
    conversation_topics = [k.topic for k in KINDS.values() if k.name != "user"]
    source = app.topic(
        *(topic_name(settings.stream, t) for t in conversation_topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.stream.partitions,
    )
    capture_agent = CaptureAgent(
        capture, warehouse, tiers, dlq, sink, progress, settings, qa_labeller
    )
    app.agent(source, name="capture", concurrency=1)(capture_agent.run)
    app.agent(dlq, name="dead-letters", concurrency=1)(dead_letter_agent(sink, progress, settings))
    add_web(app, warehouse, progress, stuck_after_s=settings.stream.stuck_after_s)
    add_key_guard(app, service_key)
    add_lag_monitor(app, progress, settings.stream.lag_interval_s)
    add_broker_watch(app, settings, bootstrap, progress)
    return app
