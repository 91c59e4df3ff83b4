"""Throughput, latency and memory of the capture pipeline on the embedded broker.

Prints ratios measured in one run, on one broker and the same topics:

* raw ceiling: a confluent-kafka consumer that only decodes JSON;
* bare Faust: a Faust agent that only decodes the same messages (noack_take + ack);
* full pipeline: `loraloop` worker (validation, detectors, sampling, ClickHouse writes,
  per-batch state saves, QA verdicts labelling their samples) with its capture process
  (the default), the same worker with capture on its event loop
  (LORALOOP_STREAM__CAPTURE_PROCESS=false), and two workers sharing the consumer group
  (each with its own embedded chdb store: chdb allows one process per store);
* end-to-end latency at a fixed offered load (event produced -> row inserted), and the
  added latency of signals, which wait for the watermark (event order, issue 17);
* worker memory over a long stream (growth after warm-up), its capture process included.

Usage: python benchmarks/pipeline_throughput.py [--events N] [--memory-events M]
Target (issue 3): full / bare >= 0.6; p99 latency <= 2 s at 2,000 events/s;
memory growth after warm-up <= 50 MB over 1M events (growth = median RSS over the last
20% of the stream minus the median at 10-20%; the highest transient peak is printed
separately).
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rss import worker_rss_mb  # noqa: E402  (benchmarks/, the script's folder)

from loraloop.eventfile import ParsedLine, read_events, strip_type  # noqa: E402
from loraloop.events import KINDS  # noqa: E402
from loraloop.settings import Settings, StreamSettings  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402
from streams.producer import EventPublisher, Outgoing  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402
from tests.integration.streamgen import write_stream  # noqa: E402

EVENTS_PER_CONVERSATION = 4.9  # measured average of streamgen's scripted conversations (4.95)
SOURCE_TOPICS = [k.topic for k in KINDS.values()]


def make_messages(n_events: int, workdir: Path) -> list[Outgoing]:
    path = workdir / "stream.jsonl"
    write_stream(path, conversations=int(n_events / EVENTS_PER_CONVERSATION) + 1)
    out = []
    for item in read_events(path):
        if isinstance(item, ParsedLine):
            out.append(Outgoing(item.kind.topic, item.key, strip_type(item.raw)))
    return out[:n_events]


async def produce(
    bootstrap: str, stream: StreamSettings, messages: list[Outgoing], rate: float | None = None
) -> float:
    await ensure_topics(bootstrap, stream)
    started = time.perf_counter()
    async with EventPublisher(bootstrap, stream) as publisher:
        if rate is None:
            await publisher.publish(messages)
        else:
            chunk = max(1, int(rate / 20))
            for i in range(0, len(messages), chunk):
                due = started + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                now = time.time()
                stamped = [_restamp(m, now) for m in messages[i : i + chunk]]
                await publisher.publish(stamped)
    return time.perf_counter() - started


def _restamp(message: Outgoing, now: float) -> Outgoing:
    from datetime import UTC, datetime

    import orjson

    data = orjson.loads(message.value)
    data["ts"] = datetime.fromtimestamp(now, UTC).isoformat()
    return Outgoing(message.topic, message.key, orjson.dumps(data))


# -- roles run in subprocesses ----------------------------------------------------------


def role_raw(bootstrap: str, prefix: str, expect: int) -> dict[str, Any]:
    """Assign every partition (no group join to wait for) and time fetch + decode from zero."""
    import orjson
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    topics = [prefix + t for t in SOURCE_TOPICS]
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topics
            for partition in metadata.topics[topic].partitions
        ]
    )
    started = time.perf_counter()
    seen = 0
    while seen < expect:
        for message in consumer.consume(1000, timeout=1.0):
            if message.error() is None:
                orjson.loads(message.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return {"events": seen, "seconds": elapsed}


def role_bare(bootstrap: str, prefix: str, expect: int, app_id: str) -> dict[str, Any]:
    import faust
    import orjson

    stream = StreamSettings()
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        broker_session_timeout=stream.session_timeout_s,
        broker_heartbeat_interval=stream.heartbeat_interval_s,
        topic_partitions=stream.partitions,
        autodiscover=False,
    )
    topic = app.topic(
        *(prefix + t for t in SOURCE_TOPICS),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    state: dict[str, Any] = {"seen": 0, "first": None, "first_count": 0, "end": None}

    @app.agent(topic, concurrency=1)
    async def decode(s: Any) -> None:
        async for events in s.noack_take(stream.batch_size, within=stream.batch_within_s):
            for event in events:
                orjson.loads(event.value)
            for event in events:
                await s.ack(event)
            if state["first"] is None:
                state["first"], state["first_count"] = time.perf_counter(), len(events)
            state["seen"] += len(events)
            if state["seen"] >= expect and state["end"] is None:
                state["end"] = time.perf_counter()
                os.kill(os.getpid(), 15)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = faust.Worker(
        app,
        loop=loop,
        quiet=True,
        loglevel="WARNING",
        override_logging=False,
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    return {
        "events": state["seen"] - state["first_count"],
        "seconds": (state["end"] or 0) - (state["first"] or 0),
    }


def role_full(
    bootstrap: str, prefix: str, expect: int, app_id: str, data_dir: str, latency: bool
) -> dict[str, Any]:
    from loraloop.cli.services import qa_labeller
    from streams.stack import RunningStack, run_stack

    settings = Settings(
        data_dir=Path(data_dir),
        kafka_bootstrap=bootstrap,
        stream=StreamSettings(topic_prefix=prefix, app_id=app_id),
    )
    result: dict[str, Any] = {}

    async def drive(running: RunningStack) -> None:
        progress = running.progress
        first = first_count = None
        rss: list[tuple[int, float]] = []
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            written = sum(progress.written.values())
            if written and first is None:
                first, first_count, first_wall = time.perf_counter(), written, time.time()
            rss.append((written, worker_rss_mb()))
            if written >= expect:
                break
            await asyncio.sleep(0.5 if not latency else 0.1)
        end = time.perf_counter()
        result.update(
            events=written - (first_count or 0),
            seconds=end - (first or end),
            written=written,
            first_wall=first_wall,
            end_wall=time.time(),
            rss=rss,
        )
        if latency:
            q = await running.warehouse.run(
                running.warehouse.query,
                "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', ts, ingested_at)) "
                "FROM (SELECT ts, ingested_at FROM turns UNION ALL "
                "SELECT ts, ingested_at FROM feedback)",
            )
            result["latency_ms"] = list(q.result_rows[0][0])
            # A signal is written once the watermark passes its conversation's events
            # (allowed lateness plus the partition's progress): the added latency of
            # conversations with pending triggers, measured from the triggering event.
            q = await running.warehouse.run(
                running.warehouse.query,
                "SELECT count(), quantiles(0.5, 0.99)(dateDiff('millisecond', ts, ingested_at)) "
                "FROM signals",
            )
            count, quantiles = q.result_rows[0]
            result["signal_latency_ms"] = [int(count), *quantiles]
        running.stop()

    run_stack(settings, on_ready=drive, qa_labeller=qa_labeller())  # as `loraloop up` runs it
    return result


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--role", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )


def spawn_full(
    bs: str,
    prefix: str,
    expect: int,
    app_id: str,
    data_dir: Path,
    *,
    latency: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """The full worker role (its own embedded warehouse under ``data_dir``)."""
    args = ["--bootstrap", bs, "--prefix", prefix, "--expect", str(expect), "--app-id", app_id]
    extra = ["--latency"] if latency else []
    return spawn("full", *args, "--data-dir", str(data_dir), *extra, env=env)


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=7200)
    # Faust's worker writes terminal control codes to stdout too: take the JSON line.
    lines = [ln[ln.index('{"') :] for ln in out.splitlines() if '{"' in ln]
    if not lines:
        msg = f"benchmark role failed (exit {proc.returncode}); its output: {out[-2000:]!r}"
        raise RuntimeError(msg)
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--latency-rate", type=float, default=2000.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--sections",
        default="throughput,latency,memory",
        help="comma-separated parts to run (throughput, latency, memory)",
    )
    parser.add_argument("--role")
    parser.add_argument("--bootstrap")
    parser.add_argument("--prefix")
    parser.add_argument("--expect", type=int)
    parser.add_argument("--app-id")
    parser.add_argument("--data-dir")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    if args.role:
        if args.role == "raw":
            out = role_raw(args.bootstrap, args.prefix, args.expect)
        elif args.role == "bare":
            out = role_bare(args.bootstrap, args.prefix, args.expect, args.app_id)
        else:
            out = role_full(
                args.bootstrap, args.prefix, args.expect, args.app_id, args.data_dir, args.latency
            )
        print(json.dumps(out))
        return
    run_all(args)


def _rate(r: dict[str, Any]) -> float:
    return float(r["events"]) / max(float(r["seconds"]), 1e-9)


def run_all(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="loraloop-bench-"))
    sections = set(args.sections.split(","))
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap
        messages = make_messages(args.events, work)
        if "throughput" in sections:
            bench_throughput(bs, work, messages)
        if "latency" in sections:
            bench_latency(bs, work, args.latency_rate, args.latency_seconds)
        if "memory" in sections and args.memory_events:
            bench_memory(bs, work, args.memory_events)


def bench_throughput(bs: str, work: Path, messages: list[Outgoing]) -> None:
    prefix = "tp."
    n = len(messages)
    secs = asyncio.run(produce(bs, StreamSettings(topic_prefix=prefix), messages))
    print(f"produced {n} events in {secs:.1f}s ({n / secs:,.0f}/s)", flush=True)
    raw = collect(spawn("raw", "--bootstrap", bs, "--prefix", prefix, "--expect", str(n)))
    bare = collect(
        spawn(
            "bare",
            "--bootstrap",
            bs,
            "--prefix",
            prefix,
            "--expect",
            str(n),
            "--app-id",
            "bench-bare",
        )
    )
    full = collect(spawn_full(bs, prefix, n, "bench-full", work / "full"))
    inline_env = {"LORALOOP_STREAM__CAPTURE_PROCESS": "false"}
    inline = collect(spawn_full(bs, prefix, n, "bench-inline", work / "inline", env=inline_env))
    two = [
        spawn_full(bs, prefix, n // 2 - n // 50, "bench-two", work / f"two{i}") for i in range(2)
    ]
    pair = [collect(p) for p in two]
    two_events = sum(p["written"] for p in pair)
    two_secs = max(p["end_wall"] for p in pair) - min(p["first_wall"] for p in pair)

    print(f"raw confluent-kafka decode : {_rate(raw):>10,.0f} events/s (ceiling)")
    print(f"bare Faust decode agent    : {_rate(bare):>10,.0f} events/s")
    print(f"full pipeline, 1 worker    : {_rate(full):>10,.0f} events/s")
    print(f"  capture on the event loop: {_rate(inline):>10,.0f} events/s")
    print(f"full pipeline, 2 workers   : {two_events / two_secs:>10,.0f} events/s")
    print(f"ratio full / bare          : {_rate(full) / _rate(bare):.2f}  (target >= 0.6)")
    print(f"ratio inline capture / bare: {_rate(inline) / _rate(bare):.2f}")
    print(f"ratio full / raw ceiling   : {_rate(full) / _rate(raw):.2f}")
    print(f"ratio 2 workers / 1        : {two_events / two_secs / _rate(full):.2f}")


def bench_latency(bs: str, work: Path, rate: float, seconds: float) -> None:
    lat_prefix = "lat."
    count = int(rate * seconds)
    worker = spawn_full(bs, lat_prefix, count, "bench-lat", work / "lat", latency=True)
    asyncio.run(ensure_topics(bs, StreamSettings(topic_prefix=lat_prefix)))
    time.sleep(15)  # the worker joins its group (Tansu: half the session timeout)
    # Fresh conversations, never a repeat of the throughput stream: a redelivered event is
    # a duplicate (nothing written), so repeats would never reach the expected count.
    (work / "lat-stream").mkdir(exist_ok=True)
    lat_msgs = make_messages(count, work / "lat-stream")[:count]
    asyncio.run(produce(bs, StreamSettings(topic_prefix=lat_prefix), lat_msgs, rate=rate))
    lat = collect(worker)
    p50, p99 = lat["latency_ms"]
    print(
        f"latency at {rate:,.0f} events/s: p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms (target p99 <= 2000 ms)"
    )
    signals, s50, s99 = lat["signal_latency_ms"]
    lateness = StreamSettings().allowed_lateness_s
    print(
        f"signals (conversations with pending triggers, held for event order with "
        f"allowed lateness {lateness:g} s): {signals:,} written, triggering event -> signal "
        f"row p50 {s50:.0f} ms, p99 {s99:.0f} ms (added: p50 {s50 - p50:+.0f} ms, "
        f"p99 {s99 - p99:+.0f} ms)"
    )


def bench_memory(bs: str, work: Path, events: int) -> None:
    mem_prefix = "mem."
    mem_msgs = make_messages(events, work)
    asyncio.run(produce(bs, StreamSettings(topic_prefix=mem_prefix), mem_msgs))
    mem = collect(spawn_full(bs, mem_prefix, len(mem_msgs), "bench-mem", work / "mem"))
    rss = mem["rss"]
    total = len(mem_msgs)
    warm = _median_rss(rss, total, 0.1, 0.2)
    end = _median_rss(rss, total, 0.8, 1.01)
    peak = max(r for w, r in rss if w >= total // 10)
    print(
        f"memory over {total:,} events: median RSS {warm:.0f} MB at 10-20% of the stream, "
        f"{end:.0f} MB over the last 20%: growth {end - warm:.0f} MB (target <= 50 MB); "
        f"highest transient peak {peak:.0f} MB (+{peak - warm:.0f} MB)"
    )
    marks = [next(r for w, r in rss if w >= total * q // 10) for q in range(1, 10)]
    print("RSS at 10%..90% of the stream (MB): " + " ".join(f"{r:.0f}" for r in marks))


def _median_rss(rss: list[tuple[int, float]], total: int, lo: float, hi: float) -> float:
    """Median RSS of the samples taken while ``lo..hi`` of the stream was written."""
    window = [r for w, r in rss if lo * total <= w < hi * total]
    return statistics.median(window) if window else rss[-1][1]


if __name__ == "__main__":
    main()
