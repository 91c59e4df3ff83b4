"""Soak: N events through the full pipeline (`loraloop up` on the embedded broker).

Checks, and prints, what a long run must show:

* consumer lag returns to zero (every source event is a row; the worker's /health lag is 0);
* the worker's RSS is flat after warm-up: the median RSS over the last 20% of the
  stream minus the median while 20-40% was written (single samples swing by tens of
  MB from one to the next; the peak is reported too);
* no dead letters for valid input.

Usage: python benchmarks/soak.py [--events 1000000] [--json-out FILE]
The stream is streamgen's scripted conversations (every detector fires), written to a
temporary file and published in windows while the worker consumes.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rss import worker_rss_mb  # noqa: E402  (benchmarks/, the script's folder)

from loraloop.eventfile import ParsedLine, read_events, strip_type  # noqa: E402
from loraloop.service_key import bearer_header  # noqa: E402
from loraloop.settings import StreamSettings  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402
from streams.producer import EventPublisher, Outgoing  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from tests.integration.streamgen import write_stream  # noqa: E402

EVENTS_PER_CONVERSATION = 4.9  # streamgen averages 4.95 events per conversation
TABLE_OF = {"turn": "turns", "feedback": "feedback", "handoff": "handoffs", "qa": "qa_verdicts",
            "outcome": "outcomes", "user": "user_profiles"}  # fmt: skip
GROWTH_LIMIT_MB = 50.0
COUNT_EVERY_S = 15.0
RSS_EVERY_S = 2.0
SERVICE_KEY = "soak-service-key"  # the worker's pages other than /health need it


def _median_mb(rss: list[tuple[int, float]], lo: float, hi: float) -> float:
    """Median RSS of the samples taken while ``lo <= rows written < hi``."""
    window = [mb for done, mb in rss if lo <= done < hi]
    return statistics.median(window) if window else rss[-1][1]


def _get(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=bearer_header(SERVICE_KEY))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as e:
        return dict(json.loads(e.read()))


def _wait_stack(data_dir: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        path = data_dir / "stack.json"
        if path.exists():
            return str(json.loads(path.read_text())["web_url"])
        if proc.poll() is not None:
            msg = "the worker exited on start"
            raise SystemExit(msg)
        time.sleep(0.2)
    msg = "the worker did not start"
    raise SystemExit(msg)


async def _publish(path: Path, bootstrap: str, stream: StreamSettings) -> Counter[str]:
    expected: Counter[str] = Counter()
    await ensure_topics(bootstrap, stream)
    async with EventPublisher(bootstrap, stream) as publisher:
        chunk: list[Outgoing] = []
        for item in read_events(path):
            if not isinstance(item, ParsedLine):
                continue
            expected[TABLE_OF[item.kind.name]] += 1
            chunk.append(Outgoing(item.kind.topic, item.key, strip_type(item.raw)))
            if len(chunk) >= 20_000:
                await publisher.publish(chunk)
                chunk = []
        await publisher.publish(chunk)
    return expected


def run(events: int, workdir: Path) -> dict[str, Any]:
    stream_file = workdir / "stream.jsonl"
    total = write_stream(stream_file, conversations=int(events / EVENTS_PER_CONVERSATION) + 1)
    data_dir = workdir / "data"
    figures: dict[str, Any] = {"events": total}
    with EmbeddedBroker() as broker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LORALOOP_")}
        env.update(
            LORALOOP_DATA_DIR=str(data_dir), LORALOOP_KAFKA_BOOTSTRAP=broker.bootstrap,
            LORALOOP_STREAM__SERVICE_KEY=SERVICE_KEY,
            LORALOOP_TRAINER__ENABLED="false", LORALOOP_ROLLOUT_SERVICE__ENABLED="false",
            LORALOOP_STREAM__LAG_INTERVAL_S="1", LORALOOP_STREAM__APP_ID="soak",
        )  # fmt: skip
        log = workdir / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loraloop", "up", "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            web = _wait_stack(data_dir, proc)
            started = time.perf_counter()
            os.environ.pop("LORALOOP_STREAM__TOPIC_PREFIX", None)
            expected = asyncio.run(_publish(stream_file, broker.bootstrap, StreamSettings()))
            published_s = time.perf_counter() - started
            want = sum(expected.values())
            rss: list[tuple[int, float]] = []
            deadline = time.monotonic() + max(600.0, events / 500)
            done, next_count = 0, 0.0
            while True:
                # Deduplicated counts cost the worker a FINAL scan of every table: read them
                # every COUNT_EVERY_S only, and the RSS every RSS_EVERY_S.
                if time.monotonic() >= next_count:
                    counts = _get(f"{web}/api/counts")["tables"]
                    done = sum(int(counts.get(t, 0)) for t in expected)
                    next_count = time.monotonic() + COUNT_EVERY_S
                    if all(int(counts.get(t, 0)) >= n for t, n in expected.items()):
                        rss.append((done, worker_rss_mb(proc.pid)))
                        break
                rss.append((done, worker_rss_mb(proc.pid)))
                if time.monotonic() > deadline or proc.poll() is not None:
                    figures["error"] = f"stalled at {done}/{want} rows"
                    break
                time.sleep(RSS_EVERY_S)
            figures["seconds"] = round(time.perf_counter() - started, 1)
            figures["publish_seconds"] = round(published_s, 1)
            figures["events_per_s"] = round(total / figures["seconds"])
            lag = None
            for _ in range(30):
                health = _get(f"{web}/health")
                lag = health.get("lag")
                if lag == 0:
                    break
                time.sleep(1)
            figures["final_lag"] = lag
            counts = _get(f"{web}/api/counts")["tables"]
            figures["dead_letters"] = int(counts.get("dead_letters", 0))
            figures["rows_lost"] = sum(
                max(0, n - int(counts.get(t, 0))) for t, n in expected.items()
            )
            figures["rows_duplicated"] = sum(
                max(0, int(counts.get(t, 0)) - n) for t, n in expected.items()
            )
            warm = _median_mb(rss, 0.2 * want, 0.4 * want)
            end = _median_mb(rss, 0.8 * want, float("inf"))
            figures["rss_warm_mb"] = round(warm, 1)  # median while 20-40% was written
            figures["rss_end_mb"] = round(end, 1)  # median over the last 20%
            figures["rss_peak_mb"] = round(max(mb for _, mb in rss), 1)
            figures["rss_growth_after_warmup_mb"] = round(end - warm, 1)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loraloop-soak-") as tmp:
        figures = run(args.events, Path(tmp))
    checks = {
        "lag back to zero": figures.get("final_lag") == 0,
        "no rows lost": figures.get("rows_lost") == 0 and "error" not in figures,
        "no dead letters for valid input": figures.get("dead_letters") == 0,
        f"RSS growth after warm-up <= {GROWTH_LIMIT_MB:.0f} MB": figures.get(
            "rss_growth_after_warmup_mb", 1e9
        )
        <= GROWTH_LIMIT_MB,
    }
    figures["checks"] = checks
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2))
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
