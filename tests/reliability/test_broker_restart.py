"""The broker restarted under the worker: the worker reconnects without a crash and reports the gap.

A ``loraloop up`` worker (subprocess, logging to a file) reads from its own embedded
broker. Part 1 of a stream is published and written. The worker is paused
(SIGSTOP) while part 2 is published, so those records sit in the broker unread, and
the broker is SIGKILLed; the worker resumes and the broker stays down for a few
seconds (``/health`` must answer 503 with a ``broker`` field meanwhile). The broker
is restarted on the same port and storage and part 3 is published.

- With disk storage nothing may be lost: the worker never exits, every table equals
  a clean run of the whole stream (FINAL; signals as detector and conversation, see
  ``_comparable``), no row is written twice, and the gap shows in the log, in
  ``/health`` and in ``/metrics``.
- With memory storage (the default of the embedded broker) the worker survives and
  reports the gap just the same, but records are lost: all of part 2, and the part
  of part 3 whose offsets on the emptied broker fall below what the worker had read.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraloop.eventfile import ParsedLine, read_events
from loraloop.service_key import bearer_header
from loraloop.settings import StreamSettings
from streams.broker import EmbeddedBroker
from streams.producer import EventPublisher
from streams.replay import Plan, plan_messages
from tests.integration.conftest import open_warehouse, run_cli
from tests.integration.streamgen import write_stream
from tests.reliability.figures import record
from tests.reliability.test_faults import SNAPSHOT, TABLE_OF, _raw_counts, _snapshot

DOWN_S = 5.0
PROBE_S = 0.5
WAIT_S = 120.0
SETTLE_S = 2.0
EVENT_TABLES = ["turns", "feedback", "qa_verdicts", "outcomes"]
SERVICE_KEY = "broker-restart-test-key"


def _get(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=bearer_header(SERVICE_KEY))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read() or b"{}")


def _metric(web: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{web}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        for line in resp.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


def _comparable(snapshot: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Signals as (detector, conversation): a once-per-conversation detector fires on the first
    qualifying event the worker reads, and events of different topics (a complaint turn, a
    complaint feedback) reach it in no fixed order, so the triggering event, hence the
    signal id, may differ between two runs that both lose nothing."""
    signals = sorted((detector, conversation) for _, detector, conversation in snapshot["signals"])
    return {**snapshot, "signals": signals}


def _split(stream: Path, parts: list[Path]) -> None:
    """Parts 1 and 2 get 40 % of the lines each, part 3 the rest."""
    lines = stream.read_text().splitlines(keepends=True)
    cut1, cut2 = len(lines) * 2 // 5, len(lines) * 4 // 5
    for part, chunk in zip(parts, [lines[:cut1], lines[cut1:cut2], lines[cut2:]], strict=True):
        part.write_text("".join(chunk))


def _event_ids(path: Path) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {t: set() for t in EVENT_TABLES}
    for item in read_events(path):
        if isinstance(item, ParsedLine) and TABLE_OF[item.kind.name] in ids:
            ids[TABLE_OF[item.kind.name]].add(item.event.event_id)
    return ids


def _landed(data_dir: Path) -> dict[str, set[str]]:
    with open_warehouse(data_dir) as wh:
        return {
            t: {r[0] for r in wh.query(f"SELECT event_id FROM {t} FINAL").result_rows}  # noqa: S608
            for t in EVENT_TABLES
        }


async def _publish(path: Path, bootstrap: str) -> int:
    messages = list(plan_messages(path, Plan()))
    async with EventPublisher(bootstrap, StreamSettings()) as publisher:
        report = await publisher.publish(messages)
    return int(report.sent)


def _worker_env(data_dir: Path, broker: EmbeddedBroker) -> dict[str, str]:
    env = dict(os.environ)  # isolated_env: this test's topic prefix and app id
    env.update(
        COLUMNS="200",  # rich wraps log lines at 80 columns otherwise
        LORALOOP_DATA_DIR=str(data_dir),
        LORALOOP_KAFKA_BOOTSTRAP=broker.bootstrap,
        LORALOOP_LOG_LEVEL="WARNING",
        LORALOOP_STREAM__BATCH_SIZE="100",
        LORALOOP_STREAM__BATCH_WITHIN_S="0.1",
        LORALOOP_STREAM__LAG_INTERVAL_S="0.5",
        LORALOOP_STREAM__BROKER_PROBE_INTERVAL_S=str(PROBE_S),
        LORALOOP_STREAM__SERVICE_KEY=SERVICE_KEY,
    )
    return env


def _wait_web(data_dir: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + WAIT_S
    stack = data_dir / "stack.json"
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if stack.exists():
            web = str(json.loads(stack.read_text())["web_url"])
            if _get(f"{web}/health")[0] in {200, 503}:
                return web
        time.sleep(0.2)
    msg = f"the worker did not come up: {log.read_text()[-3000:]}"
    raise AssertionError(msg)


def _wait_settled(
    web: str, proc: subprocess.Popen[bytes], want: dict[str, int] | None
) -> dict[str, Any]:
    """Until /health is 200 with lag 0 and the row counts reach ``want`` (or, without it,
    stay put for SETTLE_S); returns that health."""
    deadline = time.monotonic() + WAIT_S
    last: tuple[int, ...] = ()
    steady_since = time.monotonic()
    tables: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited"
        tables = _get(f"{web}/api/counts")[1]["tables"]
        counts = tuple(int(v) for _, v in sorted(tables.items()))
        if counts != last:
            last, steady_since = counts, time.monotonic()
        code, health = _get(f"{web}/health")
        if code == 200 and health["lag"] == 0:
            if want is not None and all(int(tables.get(t, 0)) >= n for t, n in want.items()):
                return health
            if want is None and time.monotonic() - steady_since >= SETTLE_S:
                return health
        time.sleep(0.2)
    msg = f"the worker never settled: {tables} (want {want})"
    raise AssertionError(msg)


@dataclass
class Run:
    """What one broker-restart run saw."""

    data_dir: Path
    worker_log: str = ""
    published: int = 0
    unread_at_kill: int = 0
    statuses: list[int] = field(default_factory=list)
    down_health: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    gaps_metric: float | None = None
    up_metric: float | None = None
    down_s: float = 0.0
    recover_s: float = 0.0


def _restart_under_worker(
    tmp_path: Path, parts: list[Path], storage: Path | None, want: dict[str, int] | None
) -> Run:
    run = Run(data_dir=tmp_path / "restart")
    own = EmbeddedBroker(storage_dir=storage).start()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loraloop", "up", "--data-dir", str(run.data_dir)],
            stdout=out, stderr=subprocess.STDOUT, env=_worker_env(run.data_dir, own),
        )  # fmt: skip
    try:
        web = _wait_web(run.data_dir, proc, log)
        run.published = asyncio.run(_publish(parts[0], own.bootstrap))
        part1 = {table: len(ids) for table, ids in _event_ids(parts[0]).items()}
        _wait_settled(web, proc, part1)  # every event of part 1 written

        proc.send_signal(signal.SIGSTOP)  # part 2 stays unread in the broker
        try:
            run.unread_at_kill = asyncio.run(_publish(parts[1], own.bootstrap))
            own.kill()
        finally:
            proc.send_signal(signal.SIGCONT)
        killed = time.monotonic()
        while time.monotonic() < killed + DOWN_S:
            code, body = _get(f"{web}/health")
            run.statuses.append(code)
            if code == 503:
                run.down_health = body
            time.sleep(0.25)
        assert proc.poll() is None, log.read_text()[-3000:]

        own.start()
        restarted = time.monotonic()
        run.down_s = restarted - killed
        run.published += run.unread_at_kill + asyncio.run(_publish(parts[2], own.bootstrap))
        run.health = _wait_settled(web, proc, want)
        run.recover_s = time.monotonic() - restarted
        run.gaps_metric = _metric(web, "loraloop_broker_gaps_total")
        run.up_metric = _metric(web, "loraloop_broker_up")
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        own.stop()
    run.worker_log = log.read_text()
    assert code == 0, run.worker_log[-3000:]
    return run


def _assert_gap_reported(run: Run) -> None:
    """503 with the broker field while down, then 200; one gap in /health, /metrics and the log."""
    assert 503 in run.statuses, run.statuses
    assert run.down_health["broker"].startswith("unreachable since"), run.down_health
    assert run.health["broker"] == "ok"
    assert run.health["broker_gaps"] == 1, run.health
    assert DOWN_S - 2 * PROBE_S <= run.health["last_broker_gap_s"], run.health
    assert run.gaps_metric == 1.0
    assert run.up_metric == 1.0
    assert "unreachable (gap 1)" in run.worker_log
    assert "back after" in run.worker_log


def _stream(tmp_path: Path) -> tuple[Path, int, list[Path]]:
    stream = tmp_path / "stream.jsonl"
    events = write_stream(stream, conversations=150, profiles=False)
    parts = [tmp_path / f"part{i}.jsonl" for i in (1, 2, 3)]
    _split(stream, parts)
    return stream, events, parts


def test_broker_restart_with_disk_storage_loses_nothing_and_reports_the_gap(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    stream, events, parts = _stream(tmp_path)
    clean = run_cli("replay", str(stream), "--bootstrap", broker.bootstrap)
    assert clean.returncode == 0, clean.stderr[-3000:]
    expected = _comparable(_snapshot(isolated_env))
    want = {table: len(rows) for table, rows in expected.items()}

    run = _restart_under_worker(tmp_path, parts, tmp_path / "broker", want)

    _assert_gap_reported(run)
    got = _comparable(_snapshot(run.data_dir))
    lost = sum(1 for table, rows in expected.items() for row in rows if row not in got[table])
    extra = sum(1 for table, rows in got.items() for row in rows if row not in expected[table])
    raw = _raw_counts(run.data_dir, EVENT_TABLES)
    duplicated = sum(raw[t] - len(got[t]) for t in raw)
    for table in SNAPSHOT:
        assert got[table] == expected[table], table
    assert duplicated == 0, raw
    with open_warehouse(run.data_dir) as wh:
        assert wh.count("dead_letters") == 0
    record(
        "fault: broker restart under the worker (disk storage)",
        events=events, published=run.published, unread_in_broker_at_kill=run.unread_at_kill,
        faults_injected=f"broker SIGKILLed with {run.unread_at_kill} records unread, down "
        f"{run.down_s:.1f}s, restarted on the same port and disk storage",
        worker_exited=False, rows_lost=lost, rows_unexpected=extra,
        rows_duplicated_before_merge=duplicated,
        health_during_outage=sorted(set(run.statuses)), gaps_reported=run.health["broker_gaps"],
        gap_s=run.health["last_broker_gap_s"], time_to_recover_s=round(run.recover_s, 2),
    )  # fmt: skip


def test_broker_restart_with_memory_storage_survives_but_loses_records(
    isolated_env: Path, tmp_path: Path
) -> None:
    """The default storage: the worker survives and reports the gap, records are lost.

    Part 2 died with the broker. Part 3 lands only in part: the broker comes back
    empty, its topics start again at offset 0, and Faust drops every record below
    the offset it had already read on that partition ("DROPPED MESSAGE ROFF", a
    debug line) until the new offsets pass the old ones.
    """
    _, events, parts = _stream(tmp_path)

    run = _restart_under_worker(tmp_path, parts, None, None)

    _assert_gap_reported(run)
    landed = _landed(run.data_dir)
    ids = [_event_ids(part) for part in parts]
    for table in EVENT_TABLES:
        assert ids[0][table] <= landed[table], table  # part 1, written before the fault
        assert not ids[1][table] & landed[table], table  # part 2 died with the broker
        assert landed[table] <= ids[0][table] | ids[2][table], table
    raw = _raw_counts(run.data_dir, EVENT_TABLES)
    duplicated = sum(raw[t] - len(landed[t]) for t in raw)
    assert duplicated == 0, raw

    def count(part: dict[str, set[str]]) -> int:
        return sum(len(part[t] & landed[t]) for t in EVENT_TABLES)

    def total(part: dict[str, set[str]]) -> int:
        return sum(len(part[t]) for t in EVENT_TABLES)

    record(
        "fault: broker restart under the worker (memory storage, the default)",
        events=events, published=run.published, unread_in_broker_at_kill=run.unread_at_kill,
        faults_injected=f"broker SIGKILLed with {run.unread_at_kill} records unread, down "
        f"{run.down_s:.1f}s, restarted on the same port, empty",
        worker_exited=False, part1_event_rows=f"{count(ids[0])}/{total(ids[0])}",
        part2_event_rows_unread_at_kill=f"{count(ids[1])}/{total(ids[1])}",
        part3_event_rows_after_restart=f"{count(ids[2])}/{total(ids[2])}",
        rows_duplicated_before_merge=duplicated, gaps_reported=run.health["broker_gaps"],
        gap_s=run.health["last_broker_gap_s"],
    )  # fmt: skip
