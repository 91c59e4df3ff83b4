"""Integration fixtures: the real Tansu broker (once per session) and CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from analytics.warehouse import Warehouse
from streams.broker import EmbeddedBroker

CLI_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``python -m loraloop ARGS`` with the test's environment; never raises on exit code."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "loraloop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def wait_for_turns(count: int, timeout_s: float) -> str:
    """Polls `loraloop status` until the warehouse holds ``count`` turns; its last output."""
    deadline = time.monotonic() + timeout_s
    status = run_cli("status")
    while f"turns              │ {count:>4}" not in status.stdout:
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(1)
        status = run_cli("status")
    return status.stdout


@contextmanager
def open_warehouse(data_dir: Path) -> Iterator[Warehouse]:
    """The embedded warehouse of ``data_dir`` (only while no stack holds it)."""
    warehouse = Warehouse.connect(
        dsn=f"chdb://{(data_dir / 'warehouse').resolve()}", database="loraloop"
    )
    try:
        yield warehouse
    finally:
        warehouse.close()
