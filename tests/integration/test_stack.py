"""`loraloop up` serves the stack; `produce` and `status` talk to it; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.integration.conftest import open_warehouse, run_cli, wait_for_turns

START_TIMEOUT_S = 60
EXAMPLE_TURNS = sum(1 for line in EXAMPLES.read_text().splitlines() if '"type": "turn"' in line)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    msg = "stack.json never appeared"
    raise AssertionError(msg)


def test_up_produce_status_and_clean_shutdown(isolated_env: Path) -> None:
    env = dict(os.environ, NO_COLOR="1")
    with subprocess.Popen(
        [sys.executable, "-m", "loraloop", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            info = _wait_for(isolated_env / "stack.json", proc)
            assert str(info["web_url"]).startswith("http://127.0.0.1:")

            produced = run_cli("produce", str(EXAMPLES))
            assert produced.returncode == 0, produced.stderr
            assert "published 69 events" in produced.stdout

            status = wait_for_turns(EXAMPLE_TURNS, START_TIMEOUT_S)
            assert "stack: running" in status
            assert "llm.turns" in status
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in out
    assert not (isolated_env / "stack.json").exists()
    with open_warehouse(isolated_env) as wh:
        assert wh.count("turns") == EXAMPLE_TURNS


def test_produce_without_a_stack_says_how_to_start_one(isolated_env: Path) -> None:
    result = run_cli("produce", str(EXAMPLES))
    assert result.returncode == 1
    assert "loraloop up" in result.stderr
