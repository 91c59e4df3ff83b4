"""Faults on the real broker and engine; every run is compared with a clean run's rows.

- A replay mixing fuzzed garbage with good lines: every good line lands, every bad
  payload is one row of ``dead_letters``, and the agents keep going.
- The warehouse refusing every insert for a stretch: the worker retries with
  back-off, ``/health`` answers 503 meanwhile, no offset is committed past rows
  that were not written, and afterwards the tables equal the clean run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loraloop.eventfile import ParsedLine, read_events
from streams.broker import EmbeddedBroker
from tests.integration.conftest import open_warehouse, run_cli
from tests.integration.streamgen import write_stream
from tests.reliability.figures import record
from tests.reliability.garbage import garbage_lines, mix

TABLE_OF = {"turn": "turns", "feedback": "feedback", "handoff": "handoffs", "qa": "qa_verdicts",
            "outcome": "outcomes", "user": "user_profiles"}  # fmt: skip
SNAPSHOT = {
    "turns": "SELECT event_id FROM turns FINAL",
    "feedback": "SELECT event_id FROM feedback FINAL",
    "qa_verdicts": "SELECT event_id FROM qa_verdicts FINAL",
    "outcomes": "SELECT event_id FROM outcomes FINAL",
    "signals": "SELECT signal_id, detector, conversation_id FROM signals FINAL",
    "conversations": "SELECT conversation_id, detectors, sampled, turns FROM conversations FINAL",
    "samples": "SELECT sample_id, status FROM samples FINAL",
}


def _expected_ids(path: Path) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {t: set() for t in TABLE_OF.values()}
    for item in read_events(path):
        if isinstance(item, ParsedLine):
            ids[TABLE_OF[item.kind.name]].add(item.event.event_id)
    return ids


def _snapshot(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    with open_warehouse(data_dir) as wh:
        return {
            name: sorted(tuple(r) for r in wh.query(sql).result_rows)
            for name, sql in SNAPSHOT.items()
        }


def _raw_counts(data_dir: Path, tables: list[str]) -> dict[str, int]:
    """Rows without FINAL: more than the FINAL count means a duplicate was written."""
    with open_warehouse(data_dir) as wh:
        return {t: wh.count(t, final=False) for t in tables}


def test_fuzzed_garbage_replay_lands_every_good_line(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    events = write_stream(good, conversations=120)
    bad = garbage_lines(140)
    mixed = tmp_path / "mixed.jsonl"
    mix(good, mixed, bad)
    started = time.perf_counter()
    result = run_cli("replay", str(mixed), "--bootstrap", broker.bootstrap)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _expected_ids(good)
    with open_warehouse(isolated_env) as wh:
        landed = {
            table: {r[0] for r in wh.query(f"SELECT event_id FROM {table} FINAL").result_rows}  # noqa: S608
            for table in TABLE_OF.values()
        }
        letters = wh.query("SELECT error FROM dead_letters FINAL").result_rows
        signals = wh.count("signals")
    lost = sum(len(ids - landed[t]) for t, ids in expected.items())
    extra = sum(len(landed[t] - ids) for t, ids in expected.items())
    assert lost == 0
    assert extra == 0
    assert len(letters) == len(bad)
    assert all(r[0] for r in letters)
    assert signals > 0  # the capture agent kept detecting after the garbage
    record(
        "bad input: fuzzed replay on the real broker",
        events=events, faults_injected=len(bad), dead_letters=len(letters), rows_lost=lost,
        rows_unexpected=extra, seconds=round(seconds, 1),
    )  # fmt: skip


def _worker_env(data_dir: Path, broker: EmbeddedBroker, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORALOOP_")}
    env.update(
        LORALOOP_DATA_DIR=str(data_dir),
        LORALOOP_KAFKA_BOOTSTRAP=broker.bootstrap,
        LORALOOP_STREAM__TOPIC_PREFIX=f"o{tag}.",
        LORALOOP_STREAM__APP_ID=f"outage-{tag}",
        LORALOOP_STREAM__BATCH_SIZE="50",
        LORALOOP_STREAM__BATCH_WITHIN_S="0.05",
        LORALOOP_STREAM__RETRY_INITIAL_S="0.1",
        LORALOOP_STREAM__RETRY_MAX_S="1.0",
        LORALOOP_STREAM__LAG_INTERVAL_S="0.5",
        LORALOOP_TRAINER__ENABLED="false",
        LORALOOP_ROLLOUT_SERVICE__ENABLED="false",
    )
    return env


def test_warehouse_outage_loses_nothing_and_reports_503(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path, unique_id: str
) -> None:
    good = tmp_path / "stream.jsonl"
    events = write_stream(good, conversations=300, profiles=False)
    bad = garbage_lines(12, big=2_000)
    stream = tmp_path / "with-garbage.jsonl"
    mix(good, stream, bad)

    clean = run_cli("replay", str(stream), "--bootstrap", broker.bootstrap)
    assert clean.returncode == 0, clean.stderr[-3000:]
    expected = _snapshot(isolated_env)

    faulty_dir = tmp_path / "faulty"
    out = tmp_path / "outage.json"
    log = tmp_path / "outage.log"
    outage_s = 4.0
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "tests.reliability.outage_driver", str(stream), str(out),
             f"--outage-s={outage_s}"],
            env=_worker_env(faulty_dir, broker, unique_id), stdout=sink, stderr=subprocess.STDOUT,
            timeout=240, check=False,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()[-3000:]
    seen = json.loads(out.read_text())
    assert "error" not in seen, seen["error"]
    assert seen["refused_inserts"] > 0
    assert seen["health_during"], seen
    # 200 until the first write is refused, then 503 for the rest of the outage.
    statuses = seen["health_during"]
    assert 503 in statuses, statuses
    assert all(code == 503 for code in statuses[statuses.index(503) :]), statuses
    assert seen["health_after"] == 200
    # Nothing is stored during the outage, so nothing may count as written; an offset
    # may only move past a batch whose every payload went to the DLQ topic (durable in
    # Kafka before the ack): at most one offset per bad line.
    assert seen["written_during_outage"] == 0
    assert sum(seen["progress_during_outage"].values()) <= len(bad), seen
    prefix = f"o{unique_id}."
    for committed in seen["committed_during"]:
        if committed is None:
            continue
        sources = {k: v for k, v in committed.items() if k.startswith(prefix) and v > 0}
        assert sum(sources.values()) <= len(bad), sources

    got = _snapshot(faulty_dir)
    lost = duplicated = 0
    for table, rows in expected.items():
        lost += sum(1 for row in rows if row not in got[table])
        assert got[table] == rows, table
    with open_warehouse(faulty_dir) as wh:
        letters = wh.count("dead_letters")
    raw = _raw_counts(faulty_dir, ["turns", "feedback", "qa_verdicts", "outcomes"])
    duplicated = sum(raw[t] - len(got[t]) for t in raw)
    assert letters == len(bad)
    record(
        "fault: warehouse outage",
        events=events + len(bad), faults_injected=f"{outage_s:.0f}s outage, "
        f"{seen['refused_inserts']} inserts refused", rows_lost=lost,
        rows_duplicated_before_merge=duplicated, dead_letters=letters,
        health_during_outage=sorted(set(seen["health_during"])),
        time_to_recover_s=seen["recover_s"],
        committed_offsets_checked=seen["committed_during"][0] is not None
        if seen["committed_during"] else False,
    )  # fmt: skip
