"""BrokerWatch with a scripted probe and a fake clock: gaps open, close and count once."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from loraloop.settings import KafkaSettings
from streams.broker_watch import BrokerWatch, bootstrap_probe

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.t - 100.0)


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _watch(results: list[bool], clock: FakeClock) -> BrokerWatch:
    answers = iter(results)
    return BrokerWatch(lambda: next(answers), bootstrap="kafka:9092", clock=clock, now=clock.wall)


def test_a_gap_opens_on_the_first_failure_and_closes_on_the_first_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    watch = _watch([True, False, False, False, True, True], clock)
    gaps_before = _metric("loraloop_broker_gaps_total")
    seconds_before = _metric("loraloop_broker_gap_seconds_sum")
    count_before = _metric("loraloop_broker_gap_seconds_count")
    caplog.set_level(logging.INFO, logger="streams.broker_watch")

    assert watch.check()
    assert watch.up
    assert watch.status() == {"broker": "ok", "broker_gaps": 0, "last_broker_gap_s": None}
    clock.t += 2
    assert not watch.check()
    assert watch.down_since == START + timedelta(seconds=2)
    assert _metric("loraloop_broker_up") == 0.0
    for _ in range(2):  # still down: the same gap, not new ones
        clock.t += 2
        assert not watch.check()
    status = watch.status()
    assert (
        status["broker"] == f"unreachable since {(START + timedelta(seconds=2)).isoformat()} (4 s)"
    )
    assert status["broker_gaps"] == 1
    assert status["last_broker_gap_s"] is None  # the gap has not ended yet
    clock.t += 2
    assert watch.check()
    clock.t += 2
    assert watch.check()

    assert watch.up
    assert watch.gap_count == 1
    assert watch.last_gap_s == 6.0
    assert [(g.started_at, g.seconds) for g in watch.gaps] == [(START + timedelta(seconds=2), 6.0)]
    assert watch.status() == {"broker": "ok", "broker_gaps": 1, "last_broker_gap_s": 6.0}
    assert _metric("loraloop_broker_up") == 1.0
    assert _metric("loraloop_broker_gaps_total") - gaps_before == 1
    assert _metric("loraloop_broker_gap_seconds_sum") - seconds_before == 6.0
    assert _metric("loraloop_broker_gap_seconds_count") - count_before == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "broker kafka:9092 unreachable (gap 1); the worker keeps retrying",
        "broker kafka:9092 back after 6.0 s (gap 1)",
    ]


def test_successive_gaps_are_each_counted_once_with_their_own_duration() -> None:
    clock = FakeClock()
    watch = _watch([False, True, True, False, False, True], clock)
    gaps_before = _metric("loraloop_broker_gaps_total")
    for _ in range(6):
        watch.check()
        clock.t += 1.5
    assert watch.gap_count == 2
    assert [g.seconds for g in watch.gaps] == [1.5, 3.0]
    assert watch.last_gap_s == 3.0
    assert _metric("loraloop_broker_gaps_total") - gaps_before == 2


def test_answers_alone_never_make_a_gap() -> None:
    clock = FakeClock()
    watch = _watch([True] * 5, clock)
    for _ in range(5):
        watch.check()
        clock.t += 1
    assert watch.gap_count == 0
    assert not watch.gaps
    assert watch.last_gap_s is None


def test_check_async_runs_the_probe_off_the_loop() -> None:
    clock = FakeClock()
    watch = _watch([False, True], clock)

    async def twice() -> list[bool]:
        first = await watch.check_async()
        clock.t += 1
        return [first, await watch.check_async()]

    assert asyncio.run(twice()) == [False, True]
    assert watch.last_gap_s == 1.0


def test_the_bootstrap_probe_says_whether_a_server_listens() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        tls = KafkaSettings(security_protocol="SSL")
        # TLS: a TCP connect is the probe; the second (closed) server does not matter.
        assert bootstrap_probe(f"127.0.0.1:{port},127.0.0.1:1", tls, timeout=0.5)()
    assert not bootstrap_probe(f"127.0.0.1:{port}", tls, timeout=0.5)()
    # PLAINTEXT asks for ApiVersions: nothing listening is not a broker.
    assert not bootstrap_probe(f"127.0.0.1:{port}", None, timeout=0.5)()
