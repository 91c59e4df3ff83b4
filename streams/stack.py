"""The embedded stack in one process: broker, warehouse owner and worker.

``loraloop up`` runs it until SIGINT/SIGTERM; ``loraloop replay`` runs it with a
task that publishes a file and stops the stack once everything is written. The
running stack advertises itself in ``<data_dir>/stack.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from analytics.warehouse import Warehouse
from loraloop.exceptions import StackNotRunningError
from loraloop.settings import Settings
from streams.broker import EmbeddedBroker, free_port
from streams.capture import QaLabeller
from streams.progress import Progress
from streams.topics import ensure_topics

logger = logging.getLogger(__name__)

ReadyHook = Callable[["RunningStack"], Awaitable[None]]
"""A coroutine run as a task of the worker once it is up (services, replay drivers)."""


@dataclass(frozen=True)
class StackInfo:
    """What ``stack.json`` holds."""

    bootstrap: str
    web_url: str
    pid: int
    data_dir: str
    started_at: str
    console_url: str = ""


@dataclass
class RunningStack:
    """Handles a ready hook gets: the app, the warehouse, progress and addresses."""

    app: faust.App
    warehouse: Warehouse
    progress: Progress
    settings: Settings
    bootstrap: str

    def stop(self) -> None:
        """Ask the worker to shut down cleanly, as SIGTERM would."""
        os.kill(os.getpid(), signal.SIGTERM)


def read_stack(settings: Settings) -> StackInfo:
    """The stack running in the data directory, or a clear error when there is none."""
    path = settings.stack_file
    try:
        info = StackInfo(**json.loads(path.read_text()))
        os.kill(info.pid, 0)
    except (OSError, ValueError, TypeError) as e:
        msg = (
            f"no loraloop stack is running in {settings.data_dir}: start one with "
            f"`loraloop up --data-dir {settings.data_dir}` or pass --bootstrap HOST:PORT"
        )
        raise StackNotRunningError(msg) from e
    return info


def _write_stack_file(settings: Settings, info: StackInfo) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.stack_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2))
    tmp.replace(settings.stack_file)


def run_stack(
    settings: Settings,
    *,
    on_ready: ReadyHook | None = None,
    services: Sequence[ReadyHook] = (),
    console_url: str = "",
    qa_labeller: QaLabeller | None = None,
) -> Progress:
    """Run the stack in this process until it is stopped; returns the final progress.

    ``services`` run as tasks of the worker next to the agents (the CLI passes the
    console and the trainer service: the stream layer does not import them).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    broker = None if settings.kafka_bootstrap else embedded_broker(settings).start()
    bootstrap = settings.kafka_bootstrap or (broker.bootstrap if broker else "")
    warehouse: Warehouse | None = None
    try:
        loop.run_until_complete(ensure_topics(bootstrap, settings.stream))
        warehouse = Warehouse.from_settings(settings)
        progress = Progress()
        port = settings.stream.web_port or free_port(settings.stream.web_host)
        from streams.app import build_worker_app

        app = build_worker_app(
            settings,
            bootstrap=bootstrap,
            warehouse=warehouse,
            progress=progress,
            web_port=port,
            qa_labeller=qa_labeller,
        )
        info = StackInfo(
            bootstrap=bootstrap,
            web_url=f"http://{settings.stream.web_host}:{port}",
            pid=os.getpid(),
            data_dir=str(settings.data_dir.resolve()),
            started_at=datetime.now(UTC).isoformat(),
            console_url=console_url,
        )
        running = RunningStack(app, warehouse, progress, settings, bootstrap)

        async def ready(_app: Any) -> None:
            # Advertised only once the worker (and its web server) is up.
            _write_stack_file(settings, info)
            if on_ready is not None:
                await on_ready(running)

        app.task(ready)
        for service in services:
            app.task(_as_task(service, running))
        _run_worker(app, loop, settings)
        return progress
    finally:
        with contextlib.suppress(FileNotFoundError):
            settings.stack_file.unlink()
        if warehouse is not None:
            warehouse.close()
        if broker is not None:
            broker.stop()


def embedded_broker(settings: Settings) -> EmbeddedBroker:
    """The embedded broker, keeping its data under ``<data_dir>/broker`` with disk storage."""
    disk = settings.stream.broker_storage == "disk"
    return EmbeddedBroker(storage_dir=settings.data_dir / "broker" if disk else None)


def _as_task(service: ReadyHook, running: RunningStack) -> Callable[[Any], Awaitable[None]]:
    async def task(_app: Any) -> None:
        try:
            await service(running)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("stack service %s failed", getattr(service, "__name__", service))

    return task


def _run_worker(app: faust.App, loop: asyncio.AbstractEventLoop, settings: Settings) -> None:
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
