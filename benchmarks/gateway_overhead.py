"""Benchmark: what the gateway adds in front of an upstream that answers at once.

Starts the embedded Tansu broker, an upstream (a bare ASGI app returning a fixed chat
completion, in its own process) and the gateway (``openai`` backend, an in-process
router with a 50 % canary, every turn published; in its own process). Then, in the same
run and at the same concurrency, it sends ``--requests`` chat completions straight to
the upstream and as many through the gateway, from ``--users`` users, and prints

    gateway: direct_p50_ms=… direct_p99_ms=… gateway_p50_ms=… gateway_p99_ms=…
             added_p99_ms=… gateway_rps=…

after checking that every request's two turns were published (the gateway's
``loraloop_gateway_published_total``). At a fixed concurrency the gateway runs
saturated, so that p99 is mostly queueing (concurrency / throughput); a second phase
sends the same requests open-loop at ``--rate`` requests/s (at most ``--concurrency`` in
flight; a request's latency counts from when it was due, so a stall is not hidden) and
prints the added latency below saturation:

    gateway at <rate> rps: direct_p50_ms=… direct_p99_ms=… gateway_p50_ms=…
             gateway_p99_ms=… added_p99_ms=…

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 4000] [--concurrency 32]
                                                    [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

API_KEY = "bench-key"
ANSWER = orjson.dumps(
    {
        "id": "up",
        "object": "chat.completion",
        "created": 0,
        "model": "x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
READY_TIMEOUT_S = 60.0
PUBLISH_TIMEOUT_S = 60.0
WARMUP = 200
KEEP_ALIVE_S = 60
"""Idle seconds a server keeps a connection: longer than a phase, so none closes midway."""
PERCENT = 100


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every HTTP request with :data:`ANSWER` at once."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def serve_gateway(port: int, upstream: str, bootstrap: str, prefix: str) -> None:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from gateway import GatewayParts, GatewaySettings, RouterSource, TrafficLog, create_gateway
    from gateway.backends import UpstreamBackend
    from loraloop.settings import KafkaSettings, StreamSettings
    from streams.producer import EventPublisher
    from trainer.rollout_config import RolloutSettings
    from trainer.router import Router, RoutingTable

    gw = GatewaySettings(backend="openai", upstreams=[upstream])
    stream = StreamSettings(topic_prefix=prefix)
    registry = CollectorRegistry()
    table = RoutingTable(stable="model_v1", canary="model_v2", share_percent=50.0)
    parts = GatewayParts(
        settings=gw,
        registry=registry,
        backend=UpstreamBackend(
            urls=gw.upstreams,
            api_key=None,
            base_model="base",
            connect_timeout_s=gw.connect_timeout_s,
            read_timeout_s=gw.read_timeout_s,
            max_connections=gw.max_connections,
        ),
        routes=RouterSource(Router(table, settings=RolloutSettings())),
        traffic=TrafficLog(
            lambda: EventPublisher(bootstrap, stream, security=KafkaSettings()),
            queue_size=gw.publish_queue,
            batch=gw.publish_batch,
            registry=registry,
        ),
        api_key=API_KEY,
    )
    uvicorn.run(
        create_gateway(parts),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], env=dict(os.environ))


async def _ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    msg = f"{url} did not answer within {READY_TIMEOUT_S}s"
    raise RuntimeError(msg)


async def _load(
    url: str, *, requests: int, concurrency: int, users: int
) -> tuple[list[float], float]:
    """Latencies (seconds) of ``requests`` chat completions sent ``concurrency`` at a time.

    The client is aiohttp's: httpx's pool costs ~5 ms of CPU per request, which on two
    cores would measure the client rather than the servers.
    """
    latencies: list[float] = []
    errors: list[int] = []
    counter = iter(range(requests))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = orjson.dumps({
                "model": "loraloop",
                "user": f"user-{i % users}",
                "messages": [{"role": "user", "content": f"question {i}"}],
            })  # fmt: skip
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    response.raise_for_status()
            except aiohttp.ClientConnectionError:  # a connection the server closed: count
                errors.append(i)
                continue
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    if errors:
        print(f"{url}: {len(errors)} requests failed on a closed connection", file=sys.stderr)
    return latencies, elapsed


async def _paced(
    url: str, *, requests: int, rate: float, concurrency: int, users: int
) -> list[float]:
    """Latencies of ``requests`` completions due at ``rate`` per second (open loop),
    each measured from when it was due; at most ``concurrency`` in flight."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    slots = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        body = orjson.dumps({
            "model": "loraloop",
            "user": f"user-{i % users}",
            "messages": [{"role": "user", "content": f"paced question {i}"}],
        })  # fmt: skip
        async with slots:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()
        latencies.append(time.perf_counter() - due)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        tasks = []
        for i in range(requests):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session, i, due)))
        await asyncio.gather(*tasks)
    return latencies


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=PERCENT, method="inclusive")[q - 1] * 1000


async def _published(metrics_url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(metrics_url)).text
    pattern = r'^loraloop_gateway_published_total\{topic="llm\.turns"\} ([0-9.e+]+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _measure(args: argparse.Namespace, direct: str, through: str, gateway_pid: int) -> None:
    await _ready(direct.removesuffix("/v1") + "/")
    await _ready(through.removesuffix("/v1") + "/health")
    chat = "/chat/completions"
    for url in (direct + chat, through + chat):
        await _load(url, requests=WARMUP, concurrency=args.concurrency, users=args.users)
    direct_lat, _ = await _load(
        direct + chat, requests=args.requests, concurrency=args.concurrency, users=args.users
    )
    cpu_before = _cpu_s(gateway_pid)
    gateway_lat, elapsed = await _load(
        through + chat, requests=args.requests, concurrency=args.concurrency, users=args.users
    )
    cpu_ms = (_cpu_s(gateway_pid) - cpu_before) * 1000 / args.requests
    want = 2 * (args.requests + WARMUP)
    deadline = time.monotonic() + PUBLISH_TIMEOUT_S
    metrics = through.removesuffix("/v1") + "/metrics"
    while (published := await _published(metrics)) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    d50, d99 = _pct(direct_lat, 50), _pct(direct_lat, 99)
    g50, g99 = _pct(gateway_lat, 50), _pct(gateway_lat, 99)
    print(
        f"gateway: direct_p50_ms={d50:.2f} direct_p99_ms={d99:.2f} gateway_p50_ms={g50:.2f} "
        f"gateway_p99_ms={g99:.2f} added_p99_ms={g99 - d99:.2f} "
        f"gateway_rps={args.requests / elapsed:.0f} published_turns={published:.0f}/{want} "
        f"gateway_cpu_ms_per_request={cpu_ms:.2f} load_average={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    paced = {"requests": args.requests, "rate": args.rate, "concurrency": args.concurrency}
    direct_paced = await _paced(direct + chat, users=args.users, **paced)
    gateway_paced = await _paced(through + chat, users=args.users, **paced)
    d50, d99 = _pct(direct_paced, 50), _pct(direct_paced, 99)
    g50, g99 = _pct(gateway_paced, 50), _pct(gateway_paced, 99)
    print(
        f"gateway at {args.rate:g} rps: direct_p50_ms={d50:.2f} direct_p99_ms={d99:.2f} "
        f"gateway_p50_ms={g50:.2f} gateway_p99_ms={g99:.2f} added_p99_ms={g99 - d99:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=500.0, help="requests/s of the open-loop phase"
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    if args.serve_gateway:
        port, upstream, bootstrap, prefix = args.serve_gateway
        serve_gateway(int(port), upstream, bootstrap, prefix)
        return

    from loraloop.settings import KafkaSettings, StreamSettings
    from streams.broker import EmbeddedBroker, free_port
    from streams.topics import ensure_topics

    prefix = f"bench{os.getpid()}."
    with EmbeddedBroker() as broker:
        asyncio.run(ensure_topics(broker.bootstrap, StreamSettings(topic_prefix=prefix),
                                  security=KafkaSettings()))  # fmt: skip
        up_port, gw_port = free_port(), free_port()
        direct = f"http://127.0.0.1:{up_port}/v1"
        through = f"http://127.0.0.1:{gw_port}/v1"
        children = [
            _spawn("--serve-upstream", str(up_port)),
            _spawn("--serve-gateway", str(gw_port), direct, broker.bootstrap, prefix),
        ]
        try:
            asyncio.run(_measure(args, direct, through, children[1].pid))
        finally:
            for child in children:
                child.terminate()
                child.wait(timeout=30)


if __name__ == "__main__":
    main()
