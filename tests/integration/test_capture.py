"""Problem capture on the real broker and engine: signals, rollups, samples; crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from tests.conftest import EXAMPLES
from tests.integration.conftest import open_warehouse, run_cli
from tests.integration.streamgen import write_stream
from tests.reliability.figures import record

EXPECTED_DETECTORS = {
    "conv-en-001": [],
    "conv-en-002": ["complaint", "qa_flag"],
    "conv-en-003": ["complaint", "high_value_downvote", "qa_flag"],
    "conv-en-004": ["qa_flag"],
    "conv-zh-001": [],
    "conv-zh-002": ["complaint", "qa_flag"],
    "conv-zh-003": ["high_value_downvote", "qa_flag"],
    "conv-zh-004": ["complaint", "qa_flag"],
}

TABLE_QUERIES = {
    "signals": "SELECT signal_id, detector, conversation_id, turn_index FROM signals FINAL",
    "conversations": (
        "SELECT conversation_id, user_tier, model_version, detectors, handoff, qa_acceptance,"
        " cta_clicks, sampled, inclusion_probability, turns FROM conversations FINAL"
    ),
    "samples": ("SELECT sample_id, status, detectors, inclusion_probability FROM samples FINAL"),
    "turns": "SELECT event_id FROM turns FINAL",
}


def _snapshot(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    with open_warehouse(data_dir) as wh:
        return {name: sorted(wh.query(sql).result_rows) for name, sql in TABLE_QUERIES.items()}


def test_example_conversations_are_captured_row_by_row(
    isolated_env: Path, broker: EmbeddedBroker
) -> None:
    result = run_cli("replay", str(EXAMPLES), "--bootstrap", broker.bootstrap)
    assert result.returncode == 0, result.stderr
    with open_warehouse(isolated_env) as wh:
        rows = wh.query(
            "SELECT conversation_id, detectors, user_tier, model_version, handoff, qa_acceptance,"
            " sampled, inclusion_probability, turns FROM conversations FINAL ORDER BY 1"
        ).result_rows
        signals = wh.query(
            "SELECT conversation_id, detector, count() FROM signals FINAL GROUP BY 1, 2"
        ).result_rows
        samples = wh.query(
            "SELECT sample_id, status, inclusion_probability FROM samples FINAL ORDER BY 1"
        ).result_rows
        pool = wh.query(
            "SELECT sample_id, status, acceptance, labelled_by FROM pool ORDER BY 1"
        ).result_rows
        qa_evidence = wh.query(
            "SELECT evidence FROM signals FINAL WHERE detector = 'qa_flag' "
            "AND conversation_id = 'conv-zh-004'"
        ).result_rows
    assert {r[0]: sorted(r[1]) for r in rows} == EXPECTED_DETECTORS
    by_id = {r[0]: r for r in rows}
    assert by_id["conv-en-003"][2] == "high_value"
    assert by_id["conv-en-002"][3] == "model_v1"
    assert by_id["conv-en-002"][4] is True
    assert by_id["conv-zh-004"][5] == "Reject"
    assert by_id["conv-en-002"][8] == 8
    assert {(c, d) for c, d, n in signals} == {
        (c, d) for c, ds in EXPECTED_DETECTORS.items() for d in ds
    }
    assert all(n == 1 for _, _, n in signals)
    flagged = sorted(f"smp-{c}" for c, ds in EXPECTED_DETECTORS.items() if ds)
    sampled_ids = [s[0] for s in samples]
    assert set(flagged) <= set(sampled_ids)
    for sample_id, status, probability in samples:
        assert status == "captured"
        conversation = by_id[sample_id.removeprefix("smp-")]
        assert conversation[6] is True
        assert probability == pytest.approx(conversation[7])
        assert 0 < probability <= 1
    assert "over_promise" in json.loads(qa_evidence[0][0]).__repr__()
    # QA verdicts on llm.qa label their samples through the stream, like a console labeller.
    labelled = {r[0]: (r[1], r[2], r[3]) for r in pool if r[0] in flagged}
    assert labelled["smp-conv-en-002"] == ("problem", "Reject", "qa-maria")
    assert labelled["smp-conv-zh-003"] == ("problem", "Risk", "qa-zhang")
    assert {status for status, _, _ in labelled.values()} == {"problem"}


def _counts(web_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{web_url}/api/counts", timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read())["tables"])


def _start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    """``loraloop up`` with its output in a file: an unread pipe would fill and stall it."""
    log = Path(env["LORALOOP_DATA_DIR"]).parent / f"worker-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loraloop", "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )


def _wait_stack(data_dir: Path, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = data_dir / "stack.json"
        if path.exists():
            info = json.loads(path.read_text())
            if info["pid"] == proc.pid:
                return str(info["web_url"])
        assert proc.poll() is None, "the worker exited; see worker-*.log next to the data dir"
        time.sleep(0.2)
    msg = "worker did not start"
    raise AssertionError(msg)


def test_sigkilled_worker_ends_with_exactly_the_rows_of_a_clean_run(
    isolated_env: Path, tmp_path: Path, unique_id: str
) -> None:
    """Three SIGKILLs in one stream; the final tables equal a clean run's, row for row.

    Runs on a broker of its own so the kills' leftovers (dead group members waiting
    out their session) cannot slow the other tests' consumer groups.

    The detector state lives in the warehouse (streams/state_store.py), written with
    the rows; with Faust's changelog tables, Tansu's ListOffsets answers made recovery
    stall a partition after kills (see the state store's docstring).
    """
    with EmbeddedBroker() as broker:
        _kill_three_times_and_compare(isolated_env, broker, tmp_path, unique_id)


def _kill_three_times_and_compare(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path, unique_id: str
) -> None:
    stream = tmp_path / "stream.jsonl"
    total = write_stream(stream, conversations=600, profiles=False)

    clean_dir = tmp_path / "clean"
    clean = run_cli(
        "replay", str(stream), "--bootstrap", broker.bootstrap, "--data-dir", str(clean_dir)
    )
    assert clean.returncode == 0, clean.stderr
    expected = _snapshot(clean_dir)
    assert len(expected["turns"]) > 0
    assert len(expected["signals"]) > 0

    env = dict(
        os.environ,
        LORALOOP_KAFKA_BOOTSTRAP=broker.bootstrap,
        LORALOOP_STREAM__TOPIC_PREFIX=f"k{unique_id}.",
        LORALOOP_STREAM__APP_ID=f"kill-{unique_id}",
        LORALOOP_STREAM__BATCH_SIZE="40",
        LORALOOP_STREAM__BATCH_WITHIN_S="0.05",
    )
    worker = _start_worker(env)
    try:
        worker = _produce_and_kill_three_times(isolated_env, worker, env, stream)
        _wait_rows(_wait_stack(isolated_env, worker), expected)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    got = _snapshot(isolated_env)
    record(
        "fault: worker SIGKILLed three times",
        events=total,
        faults_injected="3 SIGKILLs while rows landed, restarted each time",
        tables_compared=sorted(TABLE_QUERIES),
        rows_lost=sum(_rows_missing(expected[t], got[t]) for t in TABLE_QUERIES),
        rows_unexpected=sum(_rows_missing(got[t], expected[t]) for t in TABLE_QUERIES),
    )
    assert total > len(expected["turns"])
    for table in TABLE_QUERIES:
        assert got[table] == expected[table], table


def _rows_missing(rows: list[tuple[Any, ...]], other: list[tuple[Any, ...]]) -> int:
    """Rows of ``rows`` not in ``other``, counting repeats (rows may hold lists)."""
    return sum((Counter(map(repr, rows)) - Counter(map(repr, other))).values())


def _produce_and_kill_three_times(
    data_dir: Path, worker: subprocess.Popen[str], env: dict[str, str], stream: Path
) -> subprocess.Popen[str]:
    """Publish the stream, then SIGKILL the worker three times as rows land; the last lives."""
    web = _wait_stack(data_dir, worker)
    produced = subprocess.run(
        [sys.executable, "-m", "loraloop", "produce", str(stream)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    for _ in range(3):
        deadline = time.monotonic() + 120
        start_rows = _counts(web)["turns"]
        while _counts(web)["turns"] <= start_rows and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        worker = _start_worker(env)
        web = _wait_stack(data_dir, worker)
    return worker


def _wait_rows(web: str, expected: dict[str, list[tuple[Any, ...]]]) -> None:
    deadline = time.monotonic() + 300
    while _counts(web)["turns"] < len(expected["turns"]) or _counts(web)["signals"] < len(
        expected["signals"]
    ):
        assert time.monotonic() < deadline, _counts(web)
        time.sleep(0.5)
    time.sleep(3)  # let in-flight batches of later tables settle
