"""A file replayed through the real broker and Faust lands in the real ClickHouse engine."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from loraloop.eventfile import ParsedLine, read_events
from streams.broker import EmbeddedBroker
from tests.conftest import EXAMPLES
from tests.integration.conftest import open_warehouse, run_cli

TABLE_OF = {
    "turn": "turns",
    "feedback": "feedback",
    "handoff": "handoffs",
    "qa": "qa_verdicts",
    "outcome": "outcomes",
    "user": "user_profiles",
}


def _expected(path: Path) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {t: set() for t in TABLE_OF.values()}
    for item in read_events(path):
        if isinstance(item, ParsedLine):
            ids[TABLE_OF[item.kind.name]].add(item.event.event_id)
    return ids


def _ids(data_dir: Path) -> dict[str, list[str]]:
    with open_warehouse(data_dir) as wh:
        return {
            table: [r[0] for r in wh.query(f"SELECT event_id FROM {table} FINAL").result_rows]  # noqa: S608
            for table in TABLE_OF.values()
        }


def test_example_file_lands_with_exact_rows_and_ids(
    isolated_env: Path, broker: EmbeddedBroker
) -> None:
    result = run_cli("replay", str(EXAMPLES), "--bootstrap", broker.bootstrap)
    assert result.returncode == 0, result.stderr
    assert "accepted" in result.stdout
    expected = _expected(EXAMPLES)
    landed = _ids(isolated_env)
    for table, ids in expected.items():
        assert sorted(landed[table]) == sorted(ids), table
    with open_warehouse(isolated_env) as wh:
        row = wh.query(
            "SELECT role, model_version, text FROM turns FINAL WHERE event_id = {id:String}",
            parameters={"id": "ev-0010"},
        ).result_rows[0]
        assert row[0] == "assistant"
        assert row[1] == "model_v1"
        assert wh.count("dead_letters") == 0


def test_replaying_twice_leaves_no_duplicates(isolated_env: Path) -> None:
    """Two replays on the embedded broker (the default path): same rows, same ids."""
    first = run_cli("replay", str(EXAMPLES))
    assert first.returncode == 0, first.stderr
    once = _ids(isolated_env)
    second = run_cli("replay", str(EXAMPLES))
    assert second.returncode == 0, second.stderr
    twice = _ids(isolated_env)
    for table in TABLE_OF.values():
        assert Counter(twice[table]) == Counter(once[table]), table
        assert len(set(twice[table])) == len(twice[table])
    assert sum(len(v) for v in twice.values()) == sum(len(v) for v in _expected(EXAMPLES).values())


def test_bad_lines_go_to_the_dlq_and_good_lines_still_land(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    good = EXAMPLES.read_text(encoding="utf-8").splitlines()
    bad = [
        "this is not json",
        json.dumps(
            {
                "type": "turn",
                "event_id": "bad-1",
                "ts": "2026-11-20T09:00:00",
                "conversation_id": "c",
                "user_id": "u",
                "turn_index": 0,
                "role": "user",
                "text": "naive timestamp",
            }
        ),
        json.dumps(
            {
                "type": "feedback",
                "event_id": "bad-2",
                "ts": "2026-11-20T09:00:00Z",
                "conversation_id": "c",
                "user_id": "u",
                "kind": "meh",
            }
        ),
        json.dumps({"type": "spaceship", "event_id": "bad-3"}),
    ]
    mixed = good[:10] + bad[:2] + good[10:40] + bad[2:] + good[40:]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(mixed) + "\n", encoding="utf-8")

    result = run_cli("replay", str(path), "--bootstrap", broker.bootstrap)
    assert result.returncode == 0, result.stderr
    assert "line 11:" in result.stderr
    assert "line 12: ts:" in result.stderr

    landed = _ids(isolated_env)
    for table, ids in _expected(EXAMPLES).items():
        assert sorted(landed[table]) == sorted(ids), table
    with open_warehouse(isolated_env) as wh:
        letters = wh.query(
            "SELECT source_topic, error, raw_b64 FROM dead_letters FINAL ORDER BY error"
        ).result_rows
    assert len(letters) == len(bad)
    errors = " | ".join(r[1] for r in letters)
    assert "ts: Input should have timezone info" in errors
    assert "kind: Input should be" in errors
    assert "type: unknown event type 'spaceship'" in errors
    assert "not valid JSON" in errors
    raws = {base64.b64decode(r[2]).decode() for r in letters}
    assert "this is not json" in raws
