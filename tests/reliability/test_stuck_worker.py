"""A worker that takes events and writes none, with no error anywhere, is reported stuck.

Every warehouse write of an in-process ``loraloop`` stack hangs for a while (the
``stuck_driver``: a stalled ClickHouse connection, a stage that never returns) on the
real broker and engine. The sink raises nothing, so before ``stuck_after_s`` was
watched ``/health`` said 200 "ok" throughout, and the lag was not even known (no
partition had been written since the start). Now: 503 once the lag has stood still
for ``stuck_after_s``, the body saying why, and 200 again once the writes go through,
with every event written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streams.broker import EmbeddedBroker
from tests.integration.conftest import open_warehouse
from tests.integration.streamgen import write_stream
from tests.reliability.figures import record

STUCK_AFTER_S = 2.0
HANG_S = 9.0
LAG_INTERVAL_S = 0.25


def _env(data_dir: Path, broker: EmbeddedBroker, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORALOOP_")}
    env.update(
        LORALOOP_DATA_DIR=str(data_dir),
        LORALOOP_KAFKA_BOOTSTRAP=broker.bootstrap,
        LORALOOP_STREAM__TOPIC_PREFIX=f"s{tag}.",
        LORALOOP_STREAM__APP_ID=f"stuck-{tag}",
        LORALOOP_STREAM__BATCH_SIZE="50",
        LORALOOP_STREAM__BATCH_WITHIN_S="0.05",
        LORALOOP_STREAM__LAG_INTERVAL_S=str(LAG_INTERVAL_S),
        LORALOOP_STREAM__STUCK_AFTER_S=str(STUCK_AFTER_S),
        LORALOOP_TRAINER__ENABLED="false",
        LORALOOP_ROLLOUT_SERVICE__ENABLED="false",
    )
    return env


def test_a_worker_whose_writes_hang_is_503_stuck_then_recovers(
    isolated_env: Path, broker: EmbeddedBroker, tmp_path: Path, unique_id: str
) -> None:
    stream = tmp_path / "stream.jsonl"
    events = write_stream(stream, conversations=150, profiles=False)
    data_dir = tmp_path / "stuck"
    out = tmp_path / "stuck.json"
    log = tmp_path / "stuck.log"
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "tests.reliability.stuck_driver", str(stream), str(out),
             f"--hang-s={HANG_S}"],
            env=_env(data_dir, broker, unique_id), stdout=sink, stderr=subprocess.STDOUT,
            timeout=300, check=False,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()[-3000:]
    seen = json.loads(out.read_text())
    assert "error" not in seen, seen["error"]
    assert seen["hung_inserts"] > 0
    assert seen["caught_up"], (seen["behind"], log.read_text()[-3000:])
    assert seen["health_before"] == 200
    samples = seen["samples"]
    stuck = [s for s in samples if s["code"] == 503]
    assert stuck, samples
    first = stuck[0]
    # Nothing failed: the sink and the broker are fine, only the offsets stand still.
    assert first["sink_error"] is None
    assert first["stuck"].startswith("stuck: lag "), first
    assert "no progress since" in first["stuck"]
    assert first["lag"] > 0
    # Not before stuck_after_s has passed, and from then on 503 until the writes go through.
    assert first["at_s"] >= STUCK_AFTER_S, samples
    assert all(s["code"] == 503 for s in samples[samples.index(first) :]), samples
    assert seen["health_after"] == 200, seen["health_after_body"]
    assert seen["health_after_body"]["stuck"] is None
    with open_warehouse(data_dir) as wh:
        turns = wh.count("turns")
    expected_turns = sum(1 for line in stream.read_text().splitlines() if '"type": "turn"' in line)
    assert turns == expected_turns
    record(
        "stuck worker: warehouse writes hang without an error",
        events=events, hang_s=HANG_S, stuck_after_s=STUCK_AFTER_S,
        seconds_to_503=first["at_s"], lag_reported=first["lag"],
        health_during_hang=sorted({s["code"] for s in samples}),
        health_after=seen["health_after"], time_to_recover_s=seen["recover_s"],
        rows_lost=expected_turns - turns,
    )  # fmt: skip
