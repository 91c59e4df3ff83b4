"""Replay a file through the in-process stack while the warehouse refuses every insert.

Run as ``python -m tests.reliability.outage_driver FILE OUT.json --outage-s N`` with
the usual ``LORALOOP_*`` environment (a broker in ``LORALOOP_KAFKA_BOOTSTRAP``). The
fault is a monkeypatch of :meth:`Warehouse.insert` and :meth:`Warehouse.insert_encoded`
in this process (no source change): for ``N`` seconds after the publish starts they
raise :class:`WarehouseError`.

Meanwhile it samples the worker's ``/health`` (expects 503), the progress offsets
(must not move: nothing is written) and the consumer group's committed offsets on
the broker (must not move past rows written). Then it waits for everything to land
and every held event to be final (the capture runs as a replay's: infinite lateness,
final once idle, so its rows match the clean replay's) and writes what it saw to OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from analytics.exceptions import WarehouseError
from analytics.warehouse import Warehouse
from loraloop.events import DLQ_TOPIC
from loraloop.settings import Settings
from streams.producer import EventPublisher
from streams.replay import PENDING_METRIC, Plan, ordered_as_a_whole, plan_messages
from streams.stack import RunningStack, read_stack, run_stack


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


async def _committed(bootstrap: str, group: str) -> dict[str, int] | None:
    """Committed offsets per topic-partition of ``group`` (None if the broker will not say)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # a broker without OffsetFetch for admins: reported as unknown
        return None
    finally:
        await admin.close()
    return {f"{tp.topic}:{tp.partition}": int(meta.offset) for tp, meta in offsets.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--outage-s", type=float, default=4.0)
    args = parser.parse_args()
    settings = ordered_as_a_whole(Settings())  # as the clean run's replay: final when idle
    fault: dict[str, Any] = {"until": None, "refused": 0}

    def refusing(real: Callable[..., int]) -> Callable[..., int]:
        def failing_insert(self: Warehouse, table: str, rows: Any, **kwargs: Any) -> int:
            until = fault["until"]
            if until is not None and time.monotonic() < until:
                fault["refused"] += 1
                msg = f"injected outage: insert into {table} refused"
                raise WarehouseError(msg)
            return real(self, table, rows, **kwargs)

        return failing_insert

    Warehouse.insert = refusing(Warehouse.insert)  # type: ignore[method-assign]
    Warehouse.insert_encoded = refusing(Warehouse.insert_encoded)  # type: ignore[method-assign]
    plan = Plan()
    messages = list(plan_messages(args.file, plan))  # a small test file: fine in memory
    direct_dlq = plan.direct_dlq
    result: dict[str, Any] = {"lines": plan.lines, "direct_dlq": direct_dlq}

    async def drive(running: RunningStack) -> None:
        try:
            await _drive(running, settings, messages, direct_dlq, args.outage_s, fault, result)
        except Exception as e:  # reported to the test; the stack still stops
            result["error"] = repr(e)
        finally:
            running.stop()

    run_stack(settings, on_ready=drive)
    result["refused_inserts"] = fault["refused"]
    args.out.write_text(json.dumps(result, indent=2))


async def _drive(
    running: RunningStack,
    settings: Settings,
    messages: Any,
    direct_dlq: int,
    outage_s: float,
    fault: dict[str, Any],
    result: dict[str, Any],
) -> None:
    web = read_stack(settings).web_url
    progress = running.progress
    group = settings.stream.app_id
    committed_before = await _committed(running.bootstrap, group)
    fault["until"] = time.monotonic() + outage_s
    async with EventPublisher(running.bootstrap, settings.stream) as publisher:
        report = await publisher.publish(messages)
    statuses: list[int] = []
    offsets_moved: dict[str, int] = {}
    written_during = 0
    committed_during: list[dict[str, int] | None] = []
    while time.monotonic() < fault["until"] - 0.3:
        statuses.append(await asyncio.to_thread(_health, web))
        offsets_moved = {f"{t}:{p}": o for (t, p), o in progress.next_offsets.items()}
        written_during = max(
            written_during, sum(progress.written.values()) + progress.dead_letters_stored
        )
        committed_during.append(await _committed(running.bootstrap, group))
        await asyncio.sleep(0.3)
    outage_over = time.monotonic()
    sources = {tp: end for tp, end in report.end_offsets.items() if not tp[0].endswith(DLQ_TOPIC)}
    deadline = outage_over + settings.stream.replay_timeout_s
    while time.monotonic() < deadline:
        letters = sum(progress.dead_lettered.values()) + direct_dlq
        final = not REGISTRY.get_sample_value(PENDING_METRIC)  # held events applied
        if progress.reached(sources) and progress.dead_letters_stored >= letters and final:
            break
        await asyncio.sleep(0.05)
    recovered = time.monotonic()
    health_after = await asyncio.to_thread(_health, web)
    while health_after != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        health_after = await asyncio.to_thread(_health, web)
    result.update(
        published=report.sent,
        health_during=statuses,
        health_after=health_after,
        progress_during_outage=offsets_moved,
        written_during_outage=written_during,
        committed_before=committed_before,
        committed_during=committed_during,
        committed_after=await _committed(running.bootstrap, group),
        end_offsets={f"{t}:{p}": o for (t, p), o in report.end_offsets.items()},
        recover_s=round(recovered - outage_over, 3),
        written=sum(progress.written.values()),
        dead_lettered=sum(progress.dead_lettered.values()) + direct_dlq,
        dead_letters_stored=progress.dead_letters_stored,
        tables=await running.warehouse.run(running.warehouse.table_counts),
    )


if __name__ == "__main__":
    main()
