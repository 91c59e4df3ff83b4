"""The embedded stack in one process: broker, warehouse owner and worker.

``loraloop up`` runs it until SIGINT/SIGTERM; ``loraloop replay`` runs it with a
task that publishes a file and stops the stack once everything is written. The
running stack advertises itself in ``<data_dir>/stack.json``.

The data directory holds raw transcripts and console users, so it and the embedded
warehouse are made (or tightened to) 0700, and ``stack.json`` is 0600. The embedded
engine has one owner process: a stack on it holds ``<data_dir>/stack.lock`` (an
``flock`` with its pid inside) for its whole life, so a second stack on the same data
directory is refused at once with the holder's pid, and touches none of its files. A
stack only ever removes the ``stack.json`` that names its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import stat
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import faust

from analytics.warehouse import Warehouse
from loraloop.exceptions import LoraloopError, StackNotRunningError
from loraloop.service_key import service_key
from loraloop.settings import Settings
from streams.broker import EmbeddedBroker, free_port
from streams.capture import QaLabeller
from streams.progress import Progress
from streams.topics import ensure_topics

logger = logging.getLogger(__name__)

ReadyHook = Callable[["RunningStack"], Awaitable[None]]
"""A coroutine run as a task of the worker once it is up (services, replay drivers)."""

PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o600
GROUP_OR_OTHER: Final = 0o077
LOCK_FILE: Final = "stack.lock"


class StackRunningError(LoraloopError):
    """Another stack already owns the data directory (its embedded warehouse)."""


@dataclass(frozen=True)
class StackInfo:
    """What ``stack.json`` holds."""

    bootstrap: str
    web_url: str
    pid: int
    data_dir: str
    started_at: str
    console_url: str = ""
    gateway_url: str = ""
    """The chat gateway's OpenAI base URL when ``up`` serves it (empty otherwise)."""


@dataclass
class RunningStack:
    """Handles a ready hook gets: the app, the warehouse, progress and addresses."""

    app: faust.App
    warehouse: Warehouse
    progress: Progress
    settings: Settings
    bootstrap: str
    service_key: str = ""
    """The bearer key of the worker's pages and the services' machine endpoints."""

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


def private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700), or take group and other access off one we own.

    A directory of someone else's, or a shared sticky one like ``/tmp``, is left as it is.
    """
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    mode = path.stat()
    if stat.S_IMODE(mode.st_mode) & GROUP_OR_OTHER == 0:
        return
    if mode.st_uid != os.getuid() or mode.st_mode & stat.S_ISVTX:
        logger.warning("%s is readable by other users; it is not ours to change", path)
        return
    os.chmod(path, PRIVATE_DIR)
    logger.warning("%s was readable by other users: now 0700", path)


def _embedded_store(settings: Settings) -> Path | None:
    if not settings.embedded_warehouse:
        return None
    return Path(settings.effective_clickhouse_dsn.removeprefix("chdb://"))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) through a temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


def _write_stack_file(settings: Settings, info: StackInfo) -> None:
    private_dir(settings.data_dir)
    _write_private(settings.stack_file, json.dumps(asdict(info), indent=2))


def _remove_own_stack_file(settings: Settings, pid: int) -> None:
    """Delete ``stack.json`` only when it names ``pid``: another stack's is left alone."""
    try:
        holder = json.loads(settings.stack_file.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if holder == pid:
        with contextlib.suppress(FileNotFoundError):
            settings.stack_file.unlink()


def _holder(settings: Settings, lock: Path) -> int | None:
    """The pid that holds the data directory: the lock's, else a live ``stack.json``'s."""
    with contextlib.suppress(OSError, ValueError):
        return int(lock.read_text().strip())
    with contextlib.suppress(StackNotRunningError):
        return read_stack(settings).pid
    return None


@contextlib.contextmanager
def claim_data_dir(settings: Settings) -> Iterator[None]:
    """Hold the data directory's embedded store for the block, or refuse with the holder's pid.

    Only a stack on the embedded (one-owner) warehouse claims it; with a ClickHouse
    server, several workers may share a data directory. The lock is released when the
    process ends, however it ends.
    """
    if _embedded_store(settings) is None:
        yield
        return
    lock = settings.data_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = _holder(settings, lock)
            who = f"`loraloop up` (pid {holder})" if holder else "the `loraloop up` running there"
            msg = (
                f"the data directory {settings.data_dir} is in use by another stack, which "
                f"holds its embedded warehouse: stop {who} first, or pass another --data-dir"
            )
            raise StackRunningError(msg) from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def run_stack(
    settings: Settings,
    *,
    on_ready: ReadyHook | None = None,
    services: Sequence[ReadyHook] = (),
    console_url: str = "",
    gateway_url: str = "",
    qa_labeller: QaLabeller | None = None,
) -> Progress:
    """Run the stack in this process until it is stopped; returns the final progress.

    ``services`` run as tasks of the worker next to the agents (the CLI passes the
    console and the trainer service: the stream layer does not import them).
    """
    private_dir(settings.data_dir)
    with claim_data_dir(settings):
        return _run_claimed(
            settings,
            on_ready=on_ready,
            services=services,
            console_url=console_url,
            gateway_url=gateway_url,
            qa_labeller=qa_labeller,
        )


def _run_claimed(
    settings: Settings,
    *,
    on_ready: ReadyHook | None,
    services: Sequence[ReadyHook],
    console_url: str,
    gateway_url: str,
    qa_labeller: QaLabeller | None,
) -> Progress:
    store = _embedded_store(settings)
    if store is not None:
        private_dir(store)
    key = service_key(settings)
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
            service_key=key,
            qa_labeller=qa_labeller,
        )
        info = StackInfo(
            bootstrap=bootstrap,
            web_url=f"http://{settings.stream.web_host}:{port}",
            pid=os.getpid(),
            data_dir=str(settings.data_dir.resolve()),
            started_at=datetime.now(UTC).isoformat(),
            console_url=console_url,
            gateway_url=gateway_url,
        )
        running = RunningStack(app, warehouse, progress, settings, bootstrap, service_key=key)

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
        _remove_own_stack_file(settings, os.getpid())
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
    worker.spinner = None  # Faust's progress spinner writes cursor escapes even into a file
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
