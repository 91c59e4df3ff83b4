"""The capture agent's two stages: a batch is prepared while the previous one commits.

Fakes stand in for Faust's stream and for the warehouse (unit level); the real
broker and engine run the agent in tests/integration/test_capture.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from analytics.rows import EncodedRows
from detectors.config import DetectorSettings
from loraloop.settings import Settings, StreamSettings
from streams.capture import TierLookup
from streams.capture_agent import CaptureAgent
from streams.capture_core import CaptureCore, InlineCapture, Needs, RawMessage
from streams.capture_process import CaptureProcessExitedError
from streams.progress import Progress
from streams.sink import WarehouseSink
from streams.watermark import Reading


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass
class Event:
    message: Message


@dataclass
class FakeStream:
    batches: list[list[Event]]
    taken: int = 0
    acked: list[int] = field(default_factory=list)

    async def noack_take(self, size: int, *, within: float) -> AsyncIterator[list[Event]]:
        assert size > 0
        assert within > 0
        for batch in self.batches:
            self.taken += 1
            yield batch

    async def ack(self, event: Event) -> None:
        self.acked.append(event.message.offset)


@dataclass
class Result:
    result_rows: list[Any]


@dataclass
class FakeWarehouse:
    """Inserts wait for ``gate``; ``fail`` makes them raise something unexpected."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False
    inserted: list[tuple[str, list[Any]]] = field(default_factory=list)
    reads: list[list[str]] = field(default_factory=list)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self.gate.wait()
        if self.fail:
            msg = "a bug, not a warehouse outage"
            raise RuntimeError(msg)
        return fn(*args)

    async def run_read(self, fn: Callable[..., Any], *args: Any) -> Any:
        if isinstance(args[-1], list):  # states by id (not the read of pending states)
            self.reads.append(list(args[-1]))
        return fn(*args)

    def query(self, _sql: str, _parameters: dict[str, Any] | None = None) -> Result:
        return Result([])  # nothing stored yet

    def insert_encoded(self, table: str, encoded: EncodedRows, *, column_names: Any) -> int:
        rows = [orjson.loads(line) for line in encoded.data.split(b"\n")]
        assert all(len(row) == len(column_names) for row in rows)
        assert len(rows) == encoded.count
        self.inserted.append((table, rows))
        return len(rows)


def _turn(offset: int, conversation: str) -> Event:
    payload = {
        "event_id": f"e{offset}",
        "ts": f"2026-11-01T10:00:{offset:02d}Z",
        "conversation_id": conversation,
        "user_id": "u1",
        "turn_index": offset,
        "role": "user",
        "text": "hello",
    }
    return Event(Message("llm.turns", 0, offset, orjson.dumps(payload)))


class FlakyCapture(InlineCapture):
    """An inline core whose ``begin`` raises ``errors`` one by one before it works."""

    def __init__(self, core: CaptureCore, errors: list[BaseException]) -> None:
        super().__init__(core)
        self.errors = errors
        self.begun = 0

    async def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        self.begun += 1
        if self.errors:
            raise self.errors.pop(0)
        return await super().begin(messages, reading)


class ClearingCapture(InlineCapture):
    """An inline core whose cache is cleared before every batch but the first (rebalances)."""

    async def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        if len(self.core):
            self.core.clear()
        return await super().begin(messages, reading)


@dataclass
class FakeDlq:
    """The dead-letter topic: every letter sent, decoded."""

    letters: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        assert key
        self.letters.append(orjson.loads(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _agent(
    warehouse: FakeWarehouse,
    runner: type[InlineCapture] | None = None,
    dlq: FakeDlq | None = None,
    stream: StreamSettings | None = None,
    **kwargs: Any,
) -> tuple[CaptureAgent, CaptureCore]:
    # Arrival order unless a test asks for event order: these tests are about the stages.
    settings = Settings(stream=stream or StreamSettings(retry_initial_s=0.01, event_order=False))
    core = CaptureCore(settings.stream, DetectorSettings(), cache_size=100)
    tiers = TierLookup(warehouse, capacity=100)  # type: ignore[arg-type]
    sink = WarehouseSink(warehouse, settings.stream, Progress())  # type: ignore[arg-type]
    agent = CaptureAgent(
        (runner or InlineCapture)(core, **kwargs),
        warehouse,  # type: ignore[arg-type]
        tiers,
        dlq,
        sink,
        Progress(),
        settings,
    )
    return agent, core


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.005)
    pytest.fail("condition not reached")


def test_next_batch_is_prepared_while_the_previous_commits() -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse()
        agent, store = _agent(warehouse)
        stream = FakeStream([[_turn(0, "c1"), _turn(1, "c2")], [_turn(2, "c3")]])
        task = asyncio.ensure_future(agent.run(stream))
        await _until(lambda: stream.taken == 2 and len(store) == 3)
        assert stream.acked == []  # the first commit waits for the warehouse: no ack yet
        assert warehouse.inserted == []
        warehouse.gate.set()
        await task
        assert stream.acked == [0, 1, 2]
        turns = [row[0] for table, rows in warehouse.inserted if table == "turns" for row in rows]
        assert turns == ["e0", "e1", "e2"]  # commits land in batch order
        tables = [table for table, _ in warehouse.inserted]
        assert tables.index("conversation_state") > tables.index("conversations")

    asyncio.run(scenario())


def test_a_commit_that_never_works_dead_letters_its_events_after_the_attempts() -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse(fail=True)
        dlq = FakeDlq()
        agent, store = _agent(warehouse, dlq=dlq)
        stream = FakeStream([[_turn(0, "c1")], [_turn(1, "c2")]])
        task = asyncio.ensure_future(agent.run(stream))
        await _until(lambda: len(store) == 2)
        warehouse.gate.set()
        await asyncio.wait_for(task, timeout=10)
        assert stream.acked == [0, 1]  # the agent goes on: nothing stalls
        assert [(letter["offset"], letter["error"]) for letter in dlq.letters] == [
            (0, "capture failed: RuntimeError: a bug, not a warehouse outage"),
            (1, "capture failed: RuntimeError: a bug, not a warehouse outage"),
        ]
        assert len(store) == 0  # a redelivery is applied afresh, not skipped as seen

    asyncio.run(scenario())


def test_a_failure_that_heals_writes_every_event_of_the_batch_and_the_next() -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse()
        warehouse.gate.set()
        dlq = FakeDlq()
        agent, _ = _agent(warehouse, FlakyCapture, dlq=dlq, errors=[RuntimeError("a bug")])
        stream = FakeStream([[_turn(0, "c1")], [_turn(1, "c2")]])
        await asyncio.wait_for(agent.run(stream), timeout=10)
        assert stream.acked == [0, 1]
        turns = [row[0] for table, rows in warehouse.inserted if table == "turns" for row in rows]
        assert turns == ["e0", "e1"]
        assert dlq.letters == []

    asyncio.run(scenario())


class PoisonCapture(InlineCapture):
    """An inline core that fails every batch holding the payload of ``poison_offset``."""

    def __init__(self, core: CaptureCore, poison_offset: int) -> None:
        super().__init__(core)
        self.poison_offset = poison_offset

    async def begin(self, messages: Sequence[RawMessage], reading: Reading | None = None) -> Needs:
        if any(m.offset == self.poison_offset for m in messages):
            msg = "cannot encode this event"
            raise OverflowError(msg)
        return await super().begin(messages, reading)


def test_a_poison_event_is_dead_lettered_and_the_events_behind_it_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse()
        warehouse.gate.set()
        dlq = FakeDlq()
        agent, _ = _agent(warehouse, PoisonCapture, dlq=dlq, poison_offset=2)
        batches = [[_turn(0, "c1"), _turn(1, "c2"), _turn(2, "c3"), _turn(3, "c1")]]
        stream = FakeStream([*batches, [_turn(4, "c2")]])
        await asyncio.wait_for(agent.run(stream), timeout=10)
        assert sorted(stream.acked) == [0, 1, 2, 3, 4]
        turns = [row[0] for table, rows in warehouse.inserted if table == "turns" for row in rows]
        assert turns == ["e0", "e1", "e3", "e4"]  # in order, behind the poison too
        assert [(letter["offset"], letter["error"]) for letter in dlq.letters] == [
            (2, "capture failed: OverflowError: cannot encode this event")
        ]
        assert dlq.letters[0]["source_topic"] == "llm.turns"

    with caplog.at_level("ERROR", logger="streams.capture_agent"):
        asyncio.run(scenario())
    assert "llm.turns[0]@0..3" in caplog.text  # noticed at once, with where it happened
    assert "llm.turns[0]@2..2" in caplog.text


def test_a_dead_capture_process_gets_the_batch_prepared_again() -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse()
        warehouse.gate.set()
        died = CaptureProcessExitedError("the capture process exited (code -9)")
        agent, _ = _agent(warehouse, FlakyCapture, errors=[died])
        stream = FakeStream([[_turn(0, "c1"), _turn(1, "c2")]])
        await agent.run(stream)
        assert stream.acked == [0, 1]
        turns = [row[0] for table, rows in warehouse.inserted if table == "turns" for row in rows]
        assert turns == ["e0", "e1"]  # written once

    asyncio.run(scenario())


def test_a_state_being_committed_is_read_back_only_once_written() -> None:
    async def scenario() -> None:
        warehouse = FakeWarehouse()
        agent, _ = _agent(warehouse, ClearingCapture)
        stream = FakeStream([[_turn(0, "c1")], [_turn(1, "c1")]])
        task = asyncio.ensure_future(agent.run(stream))
        await _until(lambda: stream.taken == 2 and warehouse.reads == [["c1"]])
        await asyncio.sleep(0.05)
        assert warehouse.reads == [["c1"]]  # the first batch's read; c1's commit is held
        warehouse.gate.set()
        await task
        assert warehouse.reads == [["c1"], ["c1"]]
        assert stream.acked == [0, 1]

    asyncio.run(scenario())


@dataclass
class OpenStream(FakeStream):
    """A stream that stays open after its batches (the agent idles, as in production)."""

    async def noack_take(self, size: int, *, within: float) -> AsyncIterator[list[Event]]:
        async for batch in super().noack_take(size, within=within):
            yield batch
        await asyncio.Event().wait()


def test_idle_ticks_release_pending_conversations_and_conflicts_are_dead_lettered() -> None:
    """Event order (issue 17): with no batch coming, a tick makes the pending events final."""

    async def scenario() -> None:
        warehouse = FakeWarehouse()
        warehouse.gate.set()
        dlq = FakeDlq()
        stream_settings = StreamSettings(
            event_order=True, allowed_lateness_s=float("inf"), watermark_idle_s=0.05
        )
        agent, _ = _agent(warehouse, dlq=dlq, stream=stream_settings)
        changed = _turn(0, "c1")
        changed.message.value = changed.message.value.replace(b"hello", b"rewritten")
        stream = OpenStream([[_turn(0, "c1")], [changed]])
        task = asyncio.ensure_future(agent.run(stream))
        try:
            await _until(lambda: any(t == "conversations" for t, _ in warehouse.inserted))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert stream.acked == [0, 0]
        turns = [row[0] for table, rows in warehouse.inserted if table == "turns" for row in rows]
        assert turns == ["e0"]  # the first version stays
        assert [letter["error"] for letter in dlq.letters] == [
            "conflict: event_id e0 already stored with different content"
        ]
        assert REGISTRY.get_sample_value("loraloop_capture_pending_conversations") == 0

    asyncio.run(scenario())
