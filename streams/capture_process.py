"""Run the capture core in a child process, so detection gets a core of its own.

A Faust worker is bound by its interpreter lock: Faust's own work per message
(about 100 µs) and the capture work (decoding, detectors, row building) took
turns on one thread. Here the :class:`streams.capture_core.CaptureCore` runs in a
spawned child; the worker sends it raw messages and gets back encoded rows, so
the event loop only takes batches, reads the warehouse and acks, while the child
detects and the warehouse thread writes.

The child holds the state cache. When it dies (killed, out of memory) the next
call raises :class:`CaptureProcessExitedError` and the one after starts a new child with
an empty cache, which is what :meth:`clear` asks for anyway. The child exits when
the worker closes the pipe or dies, and ignores Ctrl-C (the worker stops it).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import traceback
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

from detectors.config import DetectorSettings
from loraloop.events import Tier
from loraloop.exceptions import LoraloopError
from loraloop.settings import StreamSettings
from streams.capture_core import CaptureCore, Needs, Processed, RawMessage
from streams.watermark import Reading

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S: Final = 5.0
"""How long :meth:`CaptureProcess.close` waits for the child before terminating it."""

_HEADER: Final = struct.Struct("!i")
"""The length header of a :class:`multiprocessing.connection.Connection` frame."""

_MAX_FRAME: Final = 0x7FFFFFFF
"""Larger frames take another header form; no sane batch comes near it."""

_PICKLE_PROTOCOL: Final = 5

_STREAM_LIMIT: Final = 1 << 20
"""asyncio stream buffer: a batch's encoded rows are about a megabyte."""


class CaptureProcessError(LoraloopError):
    """The capture process failed on a batch; the batch was not processed."""


class CaptureProcessExitedError(CaptureProcessError):
    """The capture process died (killed, out of memory); the next call starts a new one."""


def serve(
    conn: Connection, stream: StreamSettings, detectors: DetectorSettings, cache_size: int
) -> None:
    """The child's loop: ``(operation, args, clear_first)`` in, ``(ok, value)`` out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group
    core = CaptureCore(stream, detectors, cache_size=cache_size)

    def begin(messages: list[tuple[str, int, int, Any]], reading: Reading | None) -> Needs:
        return core.begin([RawMessage._make(m) for m in messages], reading)

    operations: dict[str, Callable[..., Any]] = {"begin": begin, "finish": core.finish}
    while True:
        try:
            operation, args, clear_first = conn.recv()
        except (EOFError, OSError):
            return  # the worker closed the pipe or died
        if clear_first:
            core.clear()
        if operation == "stop":
            return
        try:
            reply: tuple[bool, Any] = (True, operations[operation](*args))
        except Exception as e:  # the worker raises it; the child keeps serving
            reply = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        conn.send(reply)


class CaptureProcess:
    """A :class:`streams.capture_core.CaptureRunner` whose core runs in a child process.

    The worker's side of the pipe is read and written by the event loop itself
    (asyncio streams, framed as :class:`multiprocessing.connection.Connection`
    frames them): a helper thread would wait for the interpreter lock after every
    chunk of a batch's rows, which cost more than the child's work.
    """

    def __init__(
        self, stream: StreamSettings, detectors: DetectorSettings, *, cache_size: int
    ) -> None:
        self._args = (stream, detectors, cache_size)
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded worker
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._clear_next = False
        self._one_call = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The child's pid, once started."""
        return None if self._process is None else self._process.pid

    def start(self) -> CaptureProcess:
        """Start the child now (it imports the detectors while the worker starts)."""
        if self._conn is None or self._process is None or not self._process.is_alive():
            self._reap()
            parent, child = self._context.Pipe()
            process = self._context.Process(
                target=serve, args=(child, *self._args), name="loraloop-capture", daemon=True
            )
            process.start()
            child.close()
            self._process, self._conn = process, parent
            self._clear_next = False  # a new child starts with an empty cache
        return self

    async def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        needs: Needs = await self._call("begin", [tuple(m) for m in messages], reading)
        return needs

    async def finish(self, stored: Mapping[str, str], tiers: Mapping[str, Tier]) -> Processed:
        processed: Processed = await self._call("finish", dict(stored), dict(tiers))
        return processed

    def clear(self) -> None:
        """Empty the child's state cache before its next operation."""
        self._clear_next = True

    def close(self) -> None:
        """Stop the child (waits up to a few seconds, then terminates it)."""
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(("stop", (), False))
            except OSError:
                pass
            self._process.join(_STOP_TIMEOUT_S)
        self._reap()

    async def _call(self, operation: str, *args: Any) -> Any:
        async with self._one_call:
            reader, writer = await self._open()
            clear, self._clear_next = self._clear_next, False
            try:
                writer.write(_frame(pickle.dumps((operation, args, clear), _PICKLE_PROTOCOL)))
                await writer.drain()
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                ok, value = pickle.loads(await reader.readexactly(size))  # noqa: S301 (our child)
            except (OSError, asyncio.IncompleteReadError) as e:
                code = self._reap()
                msg = (
                    f"the capture process exited (code {code}) during {operation}; "
                    "the next batch starts a new one with an empty state cache"
                )
                raise CaptureProcessExitedError(msg) from e
            except BaseException:
                # Cancelled mid-exchange: the pipe may hold half a frame. A new child
                # (empty cache, as after clear()) is safer than resynchronizing.
                self._reap()
                raise
        if not ok:
            msg = f"the capture process failed on {operation}: {value}"
            raise CaptureProcessError(msg)
        return value

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Streams over the pipe to a live child, starting one when there is none."""
        if self._streams is None or self._process is None or not self._process.is_alive():
            self.start()
            assert self._conn is not None  # noqa: S101 (start() sets it)
            sock = socket.socket(fileno=os.dup(self._conn.fileno()))
            self._streams = await asyncio.open_connection(sock=sock, limit=_STREAM_LIMIT)
        return self._streams

    def _reap(self) -> int | None:
        """Forget the child (terminating it if still running); returns its exit code."""
        process, conn, streams = self._process, self._conn, self._streams
        self._process = self._conn = self._streams = None
        if streams is not None:
            streams[1].close()
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.terminate()
        process.join(_STOP_TIMEOUT_S)
        return process.exitcode


def _frame(data: bytes) -> bytes:
    """``data`` with the length header :meth:`Connection.recv_bytes` reads."""
    if len(data) > _MAX_FRAME:
        msg = (
            f"a capture batch of {len(data)} bytes is too large: lower LORALOOP_STREAM__BATCH_SIZE"
        )
        raise CaptureProcessError(msg)
    return _HEADER.pack(len(data)) + data
