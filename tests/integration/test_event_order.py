"""Event order through the real broker and engine (issue 17) and first versions (#16 item 5).

The same file replayed in order and topic by topic (every handoff and feedback first, then
QA verdicts and outcomes, the turns last) gives the same signals, samples and inclusion
probabilities. An event behind what its conversation already applied is stored, flagged in
``late_events`` (shown by ``loraloop status``) and applied once; a changed duplicate is
dead-lettered as a conflict and the first version stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from tests.integration.conftest import open_warehouse, run_cli
from tests.integration.streamgen import write_stream

RESULT_QUERIES = {
    "signals": (
        "SELECT signal_id, detector, conversation_id, turn_index, evidence FROM signals FINAL"
    ),
    "samples": "SELECT sample_id, detectors, inclusion_probability, sampled_by FROM samples FINAL",
    "conversations": (
        "SELECT conversation_id, detectors, sampled, inclusion_probability, turns, handoff, "
        "qa_acceptance FROM conversations FINAL"
    ),
}

TOPIC_FIRST = ["handoff", "feedback", "qa", "outcome", "user", "turn"]
"""The order a backfill publishes the topics in: the turns last."""


def _escalations(count: int) -> list[dict[str, Any]]:
    """Conversations a handoff ends right after the bot answered: sudden_escalation."""
    lines = []
    for c in range(count):
        cid, common = f"esc-{c}", {"conversation_id": f"esc-{c}", "user_id": f"eu{c}"}
        lines += [
            {"type": "turn", "event_id": f"{cid}-t0", "ts": "2026-11-02T09:00:00Z",
             "turn_index": 0, "role": "user", "text": "How do I change my plan?", **common},
            {"type": "turn", "event_id": f"{cid}-t1", "ts": "2026-11-02T09:00:05Z",
             "turn_index": 1, "role": "assistant", "text": "Plans cannot be changed.",
             "model_version": "model_v1", **common},
            {"type": "handoff", "event_id": f"{cid}-h", "ts": "2026-11-02T09:00:20Z",
             "turn_index": 2, "initiated_by": "user", "reason": "wants an agent", **common},
        ]  # fmt: skip
    return lines


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return path


def _results(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    with open_warehouse(data_dir) as wh:
        return {name: sorted(wh.query(sql).result_rows) for name, sql in RESULT_QUERIES.items()}


def _replay(
    monkeypatch: pytest.MonkeyPatch, run: str, path: Path, bootstrap: str, base: Path
) -> Path:
    """Replay ``path`` into a data dir and topics of its own; returns the data dir."""
    data_dir = base / run
    monkeypatch.setenv("LORALOOP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LORALOOP_STREAM__TOPIC_PREFIX", f"{base.name}-{run}.")
    monkeypatch.setenv("LORALOOP_STREAM__APP_ID", f"order-{base.name}-{run}")
    result = run_cli("replay", str(path), "--bootstrap", bootstrap)
    assert result.returncode == 0, result.stderr
    return data_dir


def test_a_file_published_topic_by_topic_gives_the_signals_and_samples_of_the_file_in_order(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = tmp_path / "stream.jsonl"
    write_stream(stream, conversations=300, profiles=False)
    lines = [json.loads(line) for line in stream.read_text().splitlines()] + _escalations(20)
    in_order = _write(tmp_path / "in_order.jsonl", sorted(lines, key=lambda e: e["ts"]))
    by_topic = _write(
        tmp_path / "by_topic.jsonl", sorted(lines, key=lambda e: TOPIC_FIRST.index(e["type"]))
    )

    expected = _results(_replay(monkeypatch, "ordered", in_order, broker.bootstrap, tmp_path))
    got = _results(_replay(monkeypatch, "by-topic", by_topic, broker.bootstrap, tmp_path))

    escalated = {row[2] for row in expected["signals"] if row[1] == "sudden_escalation"}
    assert {f"esc-{c}" for c in range(20)} <= escalated  # the handoffs read first still count
    assert len(expected["samples"]) > 0
    for table in RESULT_QUERIES:
        assert got[table] == expected[table], table


def test_an_event_later_than_the_lateness_is_stored_flagged_and_counted_once(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    chat = _escalations(1)[:2]  # a question and the bot's answer, applied and final
    late = {
        "type": "feedback", "event_id": "late-fb", "ts": "2026-11-02T09:00:01Z",
        "conversation_id": "esc-0", "user_id": "eu0", "kind": "complaint", "comment": "late",
    }  # fmt: skip
    changed = {**chat[1], "text": "Rewritten after the fact."}
    for name, lines in [("chat", chat), ("late", [late]), ("again", [late, changed])]:
        result = run_cli("replay", str(_write(tmp_path / f"{name}.jsonl", lines)), "--bootstrap",
                         broker.bootstrap)  # fmt: skip
        assert result.returncode == 0, result.stderr

    with open_warehouse(isolated_env) as wh:
        stored = wh.query("SELECT event_id, comment FROM feedback").result_rows
        flags = wh.query(
            "SELECT event_id, topic, conversation_id, frontier_ts FROM late_events"
        ).result_rows
        signals = wh.query("SELECT detector, evidence FROM signals FINAL").result_rows
        turns = wh.query("SELECT text FROM turns FINAL WHERE event_id = 'esc-0-t1'").result_rows
        letters = wh.query("SELECT error FROM dead_letters").result_rows
    assert stored == [("late-fb", "late")]  # stored once: the redelivery wrote nothing
    (flag,) = flags
    assert flag[:3] == ("late-fb", "llm.feedback", "esc-0")
    assert flag[3].isoformat().startswith("2026-11-02T09:00:05")  # the turn it arrived behind
    assert [d for d, _ in signals] == ["complaint"]  # applied where it landed, once
    assert json.loads(signals[0][1])["source"] == "feedback"
    assert turns == [("Plans cannot be changed.",)]  # the first version stays
    assert letters == [("conflict: event_id esc-0-t1 already stored with different content",)]
    status = run_cli("status")
    assert status.returncode == 0, status.stderr
    (line,) = [line for line in status.stdout.splitlines() if "late_events" in line]
    assert [cell.strip() for cell in line.split("│") if cell.strip()] == ["late_events", "1"]
