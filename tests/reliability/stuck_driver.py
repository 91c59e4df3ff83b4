"""Replay a file through the in-process stack while every warehouse write hangs, silently.

Run as ``python -m tests.reliability.stuck_driver FILE OUT.json --hang-s N`` with the
usual ``LORALOOP_*`` environment (a broker in ``LORALOOP_KAFKA_BOOTSTRAP``). The fault
is a monkeypatch of :meth:`Warehouse.insert` and :meth:`Warehouse.insert_encoded` in
this process (no source change): for ``N`` seconds after the publish starts they block
(as a ClickHouse call on a stalled connection would), then go through. Nothing raises,
so the sink never reports an error: only the offsets show that the worker is stuck.

Meanwhile it samples the worker's ``/health`` (status and body), then waits for
everything to land and writes what it saw to OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analytics.warehouse import Warehouse
from loraloop.events import DLQ_TOPIC
from loraloop.settings import Settings
from streams.producer import EventPublisher
from streams.replay import Plan, plan_messages
from streams.stack import RunningStack, read_stack, run_stack

SAMPLE_EVERY_S = 0.25
CATCH_UP_S = 150.0


def _health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:  # noqa: S310
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read() or b"{}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hang-s", type=float, default=8.0)
    args = parser.parse_args()
    settings = Settings()
    fault: dict[str, Any] = {"until": None, "hung": 0}
    release = threading.Event()

    def hanging(real: Callable[..., int]) -> Callable[..., int]:
        def hung_insert(self: Warehouse, table: str, rows: Any, **kwargs: Any) -> int:
            until = fault["until"]
            if until is not None and time.monotonic() < until:
                fault["hung"] += 1
                release.wait(timeout=max(0.0, until - time.monotonic()))
            return real(self, table, rows, **kwargs)

        return hung_insert

    Warehouse.insert = hanging(Warehouse.insert)  # type: ignore[method-assign]
    Warehouse.insert_encoded = hanging(Warehouse.insert_encoded)  # type: ignore[method-assign]
    plan = Plan()
    messages = list(plan_messages(args.file, plan))  # a small test file: fine in memory
    result: dict[str, Any] = {"lines": plan.lines, "direct_dlq": plan.direct_dlq}

    async def drive(running: RunningStack) -> None:
        try:
            await _drive(running, settings, messages, plan.direct_dlq, args.hang_s, fault, result)
        except Exception as e:  # reported to the test; the stack still stops
            result["error"] = repr(e)
        finally:
            release.set()
            running.stop()

    run_stack(settings, on_ready=drive)
    result["hung_inserts"] = fault["hung"]
    args.out.write_text(json.dumps(result, indent=2))


async def _drive(
    running: RunningStack,
    settings: Settings,
    messages: Any,
    direct_dlq: int,
    hang_s: float,
    fault: dict[str, Any],
    result: dict[str, Any],
) -> None:
    web = read_stack(settings).web_url
    progress = running.progress
    result["health_before"] = (await asyncio.to_thread(_health, web))[0]
    started = time.monotonic()
    fault["until"] = started + hang_s
    async with EventPublisher(running.bootstrap, settings.stream) as publisher:
        report = await publisher.publish(messages)
    samples: list[dict[str, Any]] = []
    while time.monotonic() < fault["until"] - SAMPLE_EVERY_S:
        status, body = await asyncio.to_thread(_health, web)
        samples.append({**body, "at_s": round(time.monotonic() - started, 2), "code": status})
        await asyncio.sleep(SAMPLE_EVERY_S)
    released = time.monotonic()
    sources = {tp: end for tp, end in report.end_offsets.items() if not tp[0].endswith(DLQ_TOPIC)}
    deadline = released + CATCH_UP_S
    while time.monotonic() < deadline:
        letters = sum(progress.dead_lettered.values()) + direct_dlq
        if progress.reached(sources) and progress.dead_letters_stored >= letters:
            break
        await asyncio.sleep(0.05)
    caught_up = time.monotonic()
    result["caught_up"] = progress.reached(sources)
    result["behind"] = {
        f"{t}:{p}": [progress.next_offsets.get((t, p)), end]
        for (t, p), end in sources.items()
        if progress.next_offsets.get((t, p), 0) < end
    }
    health_after = await asyncio.to_thread(_health, web)
    while health_after[0] != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        health_after = await asyncio.to_thread(_health, web)
    result.update(
        published=report.sent,
        samples=samples,
        health_after=health_after[0],
        health_after_body=health_after[1],
        recover_s=round(caught_up - released, 3),
        written=sum(progress.written.values()),
        tables=await running.warehouse.run(running.warehouse.table_counts),
    )


if __name__ == "__main__":
    main()
