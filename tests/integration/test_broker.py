"""The embedded broker starts, answers Kafka requests and never leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streams.broker import EmbeddedBroker, kafka_answers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); check its state
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_broker_answers_and_stops_without_leftovers() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert pid is not None
    assert kafka_answers(broker.host, broker.port)
    broker.stop()
    assert _wait_gone(pid)
    assert not kafka_answers(broker.host, broker.port)


def test_broker_dies_with_a_killed_parent() -> None:
    code = (
        "import sys, time\n"
        "from streams.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(broker_pid), "the broker outlived its SIGKILLed parent"


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.exceptions import BrokerError

    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="tansu"):
        EmbeddedBroker().start()
