"""The embedded broker starts, answers Kafka requests and never leaves a process behind.

With disk storage it also comes back from a crash or a restart with its topics,
records and committed offsets; with memory storage a restart empties it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.broker import EmbeddedBroker, kafka_answers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); check its state
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_broker_answers_and_stops_without_leftovers() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert pid is not None
    assert kafka_answers(broker.host, broker.port)
    broker.stop()
    assert _wait_gone(pid)
    assert not kafka_answers(broker.host, broker.port)


def test_broker_dies_with_a_killed_parent() -> None:
    code = (
        "import sys, time\n"
        "from streams.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(broker_pid), "the broker outlived its SIGKILLed parent"


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.exceptions import BrokerError

    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="tansu"):
        EmbeddedBroker().start()


async def _fill(bootstrap: str) -> None:
    """Topic ``t`` (2 partitions), 5 records on each, group ``g`` committed at 3 and 2."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("t", num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait("t", f"v{i}".encode(), partition=i % 2)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="g", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(TPS)
        await consumer.commit({TPS[0]: 3, TPS[1]: 2})
    finally:
        await consumer.stop()


async def _read_back(bootstrap: str) -> dict[str, Any]:
    """Topics, committed offsets, end offsets and the records left from the committed ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(await admin.list_topics())
    finally:
        await admin.close()
    if "t" not in topics:
        return {"topics": topics}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="g", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(TPS)
        committed = [await consumer.committed(tp) for tp in TPS]
        ends = await consumer.end_offsets(TPS)
        for tp, offset in zip(TPS, committed, strict=True):
            consumer.seek(tp, offset or 0)
        left: list[bytes] = []
        while len(left) < 5:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            left += [m.value or b"" for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return {"topics": topics, "committed": committed, "ends": [ends[tp] for tp in TPS],
            "left": sorted(left)}  # fmt: skip


TPS = [TopicPartition("t", 0), TopicPartition("t", 1)]
KEPT = {"topics": ["t"], "committed": [3, 2], "ends": [5, 5],
        "left": [b"v5", b"v6", b"v7", b"v8", b"v9"]}  # fmt: skip


def test_disk_broker_keeps_topics_records_and_offsets_across_restarts(tmp_path: Path) -> None:
    broker = EmbeddedBroker(storage_dir=tmp_path / "broker").start()
    port = broker.port
    try:
        asyncio.run(_fill(broker.bootstrap))
        broker.kill()  # a crash of the broker alone; its store keeps running
        assert not kafka_answers(broker.host, port)
        broker.start()
        assert broker.port == port
        assert asyncio.run(_read_back(broker.bootstrap)) == KEPT
        broker.stop()  # broker and store: the next start reads the files back
        broker.start()
        assert asyncio.run(_read_back(broker.bootstrap)) == KEPT
        broker.restart()
        assert asyncio.run(_read_back(broker.bootstrap)) == KEPT
    finally:
        broker.stop()


def test_memory_broker_restart_loses_every_topic() -> None:
    """The default storage: a restarted broker comes back empty (what disk storage avoids)."""
    broker = EmbeddedBroker().start()
    try:
        asyncio.run(_fill(broker.bootstrap))
        assert asyncio.run(_read_back(broker.bootstrap)) == KEPT
        broker.restart(kill=True)
        assert asyncio.run(_read_back(broker.bootstrap)) == {"topics": []}
    finally:
        broker.stop()
