"""The capture core in a real child process gives what it gives on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable

import pytest

from detectors.config import DetectorSettings
from loraloop.events import Tier
from loraloop.settings import StreamSettings
from streams.capture_core import CaptureCore, InlineCapture, RawMessage
from streams.capture_process import CaptureProcess, CaptureProcessError, CaptureProcessExitedError
from tests.unit.streams.test_capture_core import _thumbs_down, _turn


def _process() -> CaptureProcess:
    return CaptureProcess(StreamSettings(), DetectorSettings(), cache_size=100)


def _with_child(scenario: Callable[[CaptureProcess], Awaitable[None]]) -> None:
    """Run ``scenario`` against a started child on a fresh loop; the child is always closed."""

    async def run() -> None:
        child = _process().start()
        try:
            await scenario(child)
        finally:
            child.close()

    asyncio.run(run())


BATCHES: list[list[RawMessage]] = [
    [_turn(0, "c1"), _turn(1, "c1", role="assistant"), _thumbs_down(2, "c2")],
    [_turn(3, "c1", index=2), _turn(4, "c1", index=3, role="assistant"), _turn(5, "c3")],
]


def test_the_child_returns_exactly_what_the_inline_core_returns() -> None:
    async def scenario(child: CaptureProcess) -> None:
        inline = InlineCapture(_core())
        for batch in BATCHES:
            results = []
            for runner in (child, inline):
                needs = await runner.begin(batch)
                processed = await runner.finish({}, {"u-c2": Tier.VIP})
                results.append((needs, processed))
            (child_needs, child_rows), (inline_needs, inline_rows) = results
            assert child_needs.missing == inline_needs.missing
            assert child_needs.user_ids == inline_needs.user_ids
            assert child_rows.touched == inline_rows.touched
            assert child_rows.signals == inline_rows.signals
            for table, encoded in inline_rows.rows.items():
                if table != "conversation_state":  # its rows carry the write time
                    assert child_rows.rows[table] == encoded, table

    _with_child(scenario)


def _core() -> CaptureCore:
    return CaptureCore(StreamSettings(), DetectorSettings(), cache_size=100)


def test_clear_empties_the_childs_cache() -> None:
    async def scenario(child: CaptureProcess) -> None:
        await child.begin(BATCHES[0])
        await child.finish({}, {})
        assert (await child.begin([_turn(9, "c1", index=5)])).missing == []
        await child.finish({}, {})
        child.clear()
        assert (await child.begin([_turn(10, "c1", index=6)])).missing == ["c1"]
        await child.finish({}, {})

    _with_child(scenario)


def test_a_killed_child_is_reported_then_replaced_with_an_empty_cache() -> None:
    async def scenario(child: CaptureProcess) -> None:
        await child.begin(BATCHES[0])
        await child.finish({}, {})
        first = child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(CaptureProcessExitedError, match="exited"):
            await child.begin(BATCHES[1])
        needs = await child.begin(BATCHES[1])  # a new child, nothing cached
        assert child.pid != first
        assert needs.missing == ["c1", "c3"]
        await child.finish({}, {})

    _with_child(scenario)


def test_a_failure_inside_the_child_is_raised_and_the_child_keeps_serving() -> None:
    async def scenario(child: CaptureProcess) -> None:
        with pytest.raises(CaptureProcessError, match="failed on finish.*call begin"):
            await child.finish({}, {})
        pid = child.pid
        assert (await child.begin(BATCHES[0])).missing == ["c1", "c2"]
        assert child.pid == pid
        await child.finish({}, {})

    _with_child(scenario)


def test_close_stops_the_child() -> None:
    child = _process().start()
    pid = child.pid
    assert pid is not None
    child.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_call_cancelled_while_the_child_works_leaves_the_next_one_working() -> None:
    big = [_turn(i % 60, f"big{i}") for i in range(20_000)]  # the child takes a while

    async def scenario(child: CaptureProcess) -> None:
        call = asyncio.ensure_future(child.begin(big))
        await asyncio.sleep(0.05)  # sent; the reply is not there yet
        assert not call.done()
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        needs = await child.begin(BATCHES[1])  # must not read the cancelled reply
        assert needs.user_ids == ["u-c1", "u-c3"]
        processed = await child.finish({}, {})
        assert processed.events == 3

    _with_child(scenario)
