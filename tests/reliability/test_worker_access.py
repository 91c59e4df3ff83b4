"""A running ``loraloop up`` under a local attacker: keys, private files, a second ``up``.

One real stack (subprocess, embedded broker and engine, the console beside the worker):

- The worker answers ``/health`` and ``/metrics`` to anyone; ``/api/counts`` and the
  pages Faust adds (``/router/``, ``/``) are 401 without the service key. On the
  console, ``GET /v1/route`` (3,000 anonymous calls once made 3,000 ``assignments``
  rows), ``/api/docs`` and ``/openapi.json`` are 401 without it.
- With the key, a 60 KB ``user_id`` is a 422 naming the field, lookups write no
  assignment, and only ``serve=true`` (a reply generated with the adapter) writes one.
- The data directory and the warehouse are 0700, ``stack.json`` and ``service.key``
  0600.
- A second ``loraloop up`` on the same data directory exits at once saying which pid
  holds the store, and leaves the first stack's ``stack.json`` (and the stack) alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.reliability.figures import record

START_TIMEOUT_S = 90
ANONYMOUS_CALLS = 200
LONG_ID_CHARS = 60_000


def _call(url: str, key: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wait_stack(path: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            info: dict[str, Any] = json.loads(path.read_text())
            with contextlib.suppress(urllib.error.URLError):  # the console starts after
                if info["pid"] == proc.pid and _call(f"{info['console_url']}/api/health")[0] == 200:
                    return info
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.3)
    msg = "the stack never came up"
    raise AssertionError(msg)


def _assignments(web: str, key: str) -> int:
    status, body = _call(f"{web}/api/counts", key)
    assert status == 200, body
    return int(json.loads(body)["tables"]["assignments"])


def test_a_running_stack_answers_only_holders_of_the_service_key(isolated_env: Path) -> None:
    env = dict(os.environ, NO_COLOR="1", LORALOOP_ROLLOUT__RECORD_BATCH_SIZE="1")
    with subprocess.Popen(
        [sys.executable, "-m", "loraloop", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            figures = _probe(isolated_env, proc, env)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert not (isolated_env / "stack.json").exists()
    record("abuse: worker and /v1/route without the service key", **figures)


def _probe(data_dir: Path, proc: subprocess.Popen[str], env: dict[str, str]) -> dict[str, Any]:
    stack_file = data_dir / "stack.json"
    info = _wait_stack(stack_file, proc)
    web, console = str(info["web_url"]), str(info["console_url"])
    key_file = data_dir / "service.key"
    key = key_file.read_text().strip()

    # Private files: the data directory, the warehouse, stack.json, the key.
    modes = {
        "data_dir": _mode(data_dir),
        "warehouse": _mode(data_dir / "warehouse"),
        "stack.json": _mode(stack_file),
        "service.key": _mode(key_file),
    }
    assert modes == {"data_dir": 0o700, "warehouse": 0o700, "stack.json": 0o600,
                     "service.key": 0o600}  # fmt: skip

    # The worker: probes and Prometheus without a key, everything else with it.
    assert _call(f"{web}/health")[0] == 200
    assert _call(f"{web}/metrics")[0] == 200
    keyed = ["/api/counts", "/router/", "/"]
    for path in keyed:
        for wrong in (None, "wrong", "é-not-ascii"):
            status, body = _call(f"{web}{path}", wrong)
            assert status == 401, (path, wrong, body)
        assert b"service key" in body
    assert _call(f"{web}/api/counts", key)[0] == 200

    # The console's machine endpoints.
    long_id = "u" * LONG_ID_CHARS
    refused = [_call(f"{console}/v1/route?user_id=anon-{i}&serve=true")[0]
               for i in range(ANONYMOUS_CALLS)]  # fmt: skip
    assert set(refused) == {401}
    assert _call(f"{console}/v1/route?user_id={long_id}&serve=true")[0] == 401
    for path in ("/api/docs", "/openapi.json"):
        assert _call(f"{console}{path}")[0] == 401, path
        assert _call(f"{console}{path}", key)[0] == 200, path
    assert _assignments(web, key) == 0

    status, body = _call(f"{console}/v1/route?user_id={long_id}&serve=true", key)
    assert status == 422
    assert json.loads(body)["detail"][0]["loc"] == ["query", "user_id"]
    for i in range(20):  # lookups: answered, never recorded
        assert _call(f"{console}/v1/route?user_id=look-{i}", key)[0] == 200
    assert _assignments(web, key) == 0
    status, body = _call(f"{console}/v1/route?user_id=served-1&serve=true", key)
    assert status == 200
    assert json.loads(body) == {"version": "base", "adapter": "base", "canary": False}
    deadline = time.monotonic() + 10
    while _assignments(web, key) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _assignments(web, key) == 1

    # A second `up` on the same data directory: refused, naming the holder; nothing touched.
    before = stack_file.read_text()
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "loraloop", "up"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    refused_s = time.monotonic() - started
    assert second.returncode != 0
    message = " ".join(second.stderr.split())
    assert f"stop `loraloop up` (pid {proc.pid}) first" in message, second.stderr
    assert "DSN" not in message
    assert stack_file.read_text() == before
    assert _call(f"{web}/health")[0] == 200
    return {
        "anonymous_route_calls": ANONYMOUS_CALLS,
        "anonymous_answered": sum(1 for s in refused if s != 401),
        "assignments_from_anonymous_calls": 0,
        "assignments_from_lookups": 0,
        "keyed_worker_pages_refused": len(keyed),
        "second_up_refused_s": round(refused_s, 1),
        "modes": {name: oct(mode) for name, mode in modes.items()},
    }
