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

from detectors.config import DetectorSettings
from detectors.sampler import unit_hash
from loraloop.service_key import bearer_header, service_key
from loraloop.settings import Settings
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
            "SELECT sample_id, status, inclusion_probability, sampled_by FROM samples FINAL "
            "ORDER BY 1"
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
    for sample_id, status, probability, sampled_by in samples:
        assert status == "captured"
        conversation = by_id[sample_id.removeprefix("smp-")]
        # A QA verdict flags conversations the design did not sample: they still become
        # samples (to label), outside the design, so conversations.sampled stays false.
        if sampled_by == "qa_review":
            assert conversation[6] is False
            assert "qa_flag" in conversation[1]
        else:
            assert sampled_by in {"uniform_qa", "signal"}
            assert conversation[6] is True
        assert probability == pytest.approx(conversation[7])
        assert 0 < probability <= 1
    # conv-en-004's only signal is a QA Risk verdict: its π is the uniform rate, not 1.0.
    assert by_id["conv-en-004"][7] == pytest.approx(DetectorSettings().uniform_qa_rate)
    assert {s[3] for s in samples if s[0] == "smp-conv-en-004"} == {"qa_review"}
    assert "over_promise" in json.loads(qa_evidence[0][0]).__repr__()
    # QA verdicts on llm.qa label their samples through the stream, like a console labeller.
    labelled = {r[0]: (r[1], r[2], r[3]) for r in pool if r[0] in flagged}
    assert labelled["smp-conv-en-002"] == ("problem", "Reject", "qa-maria")
    assert labelled["smp-conv-zh-003"] == ("problem", "Risk", "qa-zhang")
    assert {status for status, _, _ in labelled.values()} == {"problem"}


def _conversation_id(prefix: str, *, below: float, at_least: float = 0.0) -> str:
    """``<prefix>-<i>`` whose hash u under the default salt lies in [at_least, below)."""
    salt = DetectorSettings().sampler_salt
    for i in range(1_000_000):
        cid = f"{prefix}-{i}"
        if at_least <= unit_hash(salt, cid) < below:
            return cid
    msg = "no conversation id in range"
    raise AssertionError(msg)


def _chat_lines(cid: str) -> list[dict[str, Any]]:
    common = {"type": "turn", "conversation_id": cid, "user_id": f"u-{cid}"}
    return [
        {**common, "event_id": f"{cid}-t0", "ts": "2026-11-20T09:00:00Z", "turn_index": 0,
         "role": "user", "text": "Can I pause my subscription for a month?"},
        {**common, "event_id": f"{cid}-t1", "ts": "2026-11-20T09:00:30Z", "turn_index": 1,
         "role": "assistant", "text": "No, subscriptions cannot be paused.",
         "model_version": "model_v1"},
    ]  # fmt: skip


def _qa_line(cid: str, acceptance: str, *, sample_id: str | None) -> dict[str, Any]:
    return {
        "type": "qa", "event_id": f"{cid}-qa", "ts": "2026-11-20T10:00:00Z",
        "conversation_id": cid, "sample_id": sample_id, "reviewer": "qa-it",
        "acceptance": acceptance, "problem_types": ["missing_knowledge"],
        "risk_level": "critical",
        "corrected_response": "Yes: Settings → Billing → Pause, for up to 3 months.",
    }  # fmt: skip


def _replay_lines(path: Path, lines: list[dict[str, Any]], bootstrap: str) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli("replay", str(path), "--bootstrap", bootstrap)
    assert result.returncode == 0, result.stderr


def test_qa_verdicts_never_rewrite_the_design_inclusion_probability(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Issue 14 item 2, through the broker and the capture worker.

    A conversation drawn by the uniform QA route (u < p0) gets a Risk verdict from the
    reviewer of its sample: its π stays p0 (it became 1.0 before, weighting the labelled
    problem 1 instead of 1/p0). A conversation the design did not draw gets a Reject
    (an external review): it becomes a sample to label, ``sampled_by`` "qa_review", with
    the design π, and ``conversations.sampled`` stays false. The verdicts come in a
    second replay, so the worker decides again from the state it stored.
    """
    p0 = DetectorSettings().uniform_qa_rate
    drawn = _conversation_id("pi-uniform", below=p0)
    outside = _conversation_id("pi-outside", below=1.0, at_least=0.5)
    _replay_lines(tmp_path / "chats.jsonl", _chat_lines(drawn) + _chat_lines(outside),
                  broker.bootstrap)  # fmt: skip
    with open_warehouse(isolated_env) as wh:
        before = {
            str(r[0]): (r[1], r[2])
            for r in wh.query(
                "SELECT conversation_id, sampled, inclusion_probability FROM conversations FINAL"
            ).result_rows
        }
        sampled_before = wh.query("SELECT sample_id, sampled_by FROM samples FINAL").result_rows
    assert before[drawn] == (True, pytest.approx(p0))
    assert before[outside] == (False, pytest.approx(p0))
    assert sampled_before == [(f"smp-{drawn}", "uniform_qa")]

    verdicts = [
        _qa_line(drawn, "Risk", sample_id=f"smp-{drawn}"),
        _qa_line(outside, "Reject", sample_id=None),
    ]
    _replay_lines(tmp_path / "verdicts.jsonl", verdicts, broker.bootstrap)
    with open_warehouse(isolated_env) as wh:
        conversations = {
            str(r[0]): (sorted(r[1]), r[2], r[3])
            for r in wh.query(
                "SELECT conversation_id, detectors, sampled, inclusion_probability "
                "FROM conversations FINAL"
            ).result_rows
        }
        samples = {
            str(r[0]): (r[1], r[2])
            for r in wh.query(
                "SELECT sample_id, inclusion_probability, sampled_by FROM samples FINAL"
            ).result_rows
        }
        pool = {
            str(r[0]): (r[1], r[2])
            for r in wh.query("SELECT sample_id, status, acceptance FROM pool").result_rows
        }
    assert conversations[drawn] == (["qa_flag"], True, pytest.approx(p0))
    assert samples[f"smp-{drawn}"] == (pytest.approx(p0), "uniform_qa")
    assert conversations[outside] == (["qa_flag"], False, pytest.approx(p0))
    assert samples[f"smp-{outside}"] == (pytest.approx(p0), "qa_review")
    # Both verdicts labelled their samples through the stream, as before.
    assert pool[f"smp-{drawn}"] == ("problem", "Risk")
    assert pool[f"smp-{outside}"] == ("problem", "Reject")


def _counts(web_url: str) -> dict[str, int]:
    key = service_key(Settings(), create=False)  # the worker's, in the isolated data dir
    request = urllib.request.Request(f"{web_url}/api/counts", headers=bearer_header(key))  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
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
