"""Poison batches: data the warehouse refuses never stalls capture nor loses the rows around it.

Through the real broker and engine: a batch whose events span many months (more
partitions than one insert may create) lands whole, and the events behind it too;
through the sink on the real engine: a row its column refuses is dead-lettered with
the reason while every other row of the block is written.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson

from analytics.rows import COLUMNS, EncodedRows
from loraloop.settings import StreamSettings
from streams.broker import EmbeddedBroker
from streams.progress import Progress
from streams.sink import REFUSED_ROW_TOPIC_PREFIX, WarehouseSink
from tests.integration.conftest import open_warehouse, run_cli
from tests.reliability.figures import record

MONTHS = 150
"""More months than ClickHouse's default max_partitions_per_insert_block (100)."""


def _turn(i: int, ts: str, conversation: str) -> dict[str, object]:
    return {"type": "turn", "event_id": f"e-{conversation}-{i}", "ts": ts,
            "conversation_id": conversation, "user_id": "u1", "turn_index": i,
            "role": "user", "text": f"question {i}"}  # fmt: skip


def test_a_batch_spanning_many_months_lands_whole_and_so_do_the_events_behind_it(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    lines = [
        _turn(i, f"{2010 + i // 12}-{i % 12 + 1:02d}-01T00:00:00Z", f"c{i}") for i in range(MONTHS)
    ]
    lines += [_turn(i, "2026-11-02T10:00:00Z", "after") for i in range(5)]
    stream = tmp_path / "months.jsonl"
    stream.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    result = run_cli("replay", str(stream), "--bootstrap", broker.bootstrap, timeout=240)

    assert result.returncode == 0, result.stderr
    with open_warehouse(isolated_env) as wh:
        turns = wh.count("turns")
        partitions = wh.query("SELECT uniqExact(toYYYYMM(ts)) FROM turns").result_rows[0][0]
        letters = wh.count("dead_letters")
    record("poison: one batch over 150 monthly partitions", events=len(lines), turns=turns,
           partitions=partitions, dead_letters=letters)  # fmt: skip
    assert turns == len(lines)
    assert partitions == MONTHS + 1
    assert letters == 0


def test_a_refused_row_is_dead_lettered_and_the_rest_of_its_block_is_written(
    isolated_env: Path,
) -> None:
    def row(i: int, turn_index: object) -> bytes:
        return orjson.dumps([f"e{i}", "2026-11-01T00:00:00+00:00", "c1", "u1", turn_index,
                             "user", "text", "", False])  # fmt: skip

    good = [row(i, i) for i in range(7)]
    block = [*good[:3], row(99, "not a number"), *good[3:]]
    rows = EncodedRows(b"\n".join(block), len(block))
    assert len(COLUMNS["turns"]) == len(orjson.loads(block[0]))

    with open_warehouse(isolated_env) as wh:
        wh.migrate(text_ttl_days=30)
        sink = WarehouseSink(wh, StreamSettings(retry_initial_s=0.01), Progress())
        asyncio.run(asyncio.wait_for(sink.write({"turns": rows}, topic="turns"), timeout=60))
        stored = sorted(r[0] for r in wh.query("SELECT event_id FROM turns").result_rows)
        letters = wh.query("SELECT source_topic, error, raw_bytes FROM dead_letters").result_rows
    assert stored == sorted(f"e{i}" for i in range(7))
    assert len(letters) == 1
    topic, error, size = letters[0]
    assert topic == f"{REFUSED_ROW_TOPIC_PREFIX}turns"
    assert "refused by the warehouse" in error
    assert size == len(block[3])
    assert datetime.now(UTC).year >= 2026
