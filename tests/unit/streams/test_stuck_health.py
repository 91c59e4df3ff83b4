"""``/health`` says "stuck" when a partition lags with no offset advance for stuck_after_s."""

from __future__ import annotations

from streams.app import health_body
from streams.progress import Progress

AFTER_S = 60.0
TOPIC = "llm.turns"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _progress() -> tuple[Progress, Clock]:
    clock = Clock()
    return Progress(clock=clock), clock


def test_taken_but_never_written_is_lag_and_then_stuck() -> None:
    progress, clock = _progress()
    progress.take(TOPIC, 0, 40)
    progress.take(TOPIC, 0, 41)
    assert progress.unwritten_from(TOPIC, 0) == 40
    progress.observe_lag(TOPIC, 0, 50 - 40)
    clock.now += AFTER_S - 1
    assert health_body(progress, AFTER_S)[0] == 200
    clock.now += 1
    status, body = health_body(progress, AFTER_S)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["sink_error"] is None
    assert body["stuck"].startswith("stuck: lag 10, no progress since ")
    assert "(60 s) on llm.turns[0]" in body["stuck"]


def test_progress_clears_stuck_and_restarts_the_wait() -> None:
    progress, clock = _progress()
    progress.observe_lag(TOPIC, 1, 5)
    clock.now += AFTER_S
    assert health_body(progress, AFTER_S)[0] == 503
    progress.mark(TOPIC, 1, 7)
    assert health_body(progress, AFTER_S)[0] == 200
    progress.mark(TOPIC, 1, 3)  # an older offset (redelivery) is no advance
    clock.now += AFTER_S
    assert health_body(progress, AFTER_S)[0] == 503


def test_an_idle_partition_is_not_stuck_the_moment_events_arrive() -> None:
    progress, clock = _progress()
    progress.mark(TOPIC, 2, 9)
    progress.observe_lag(TOPIC, 2, 0)
    clock.now += 3600  # an hour with nothing to do
    progress.observe_lag(TOPIC, 2, 200)
    assert health_body(progress, AFTER_S)[0] == 200
    clock.now += AFTER_S
    assert health_body(progress, AFTER_S)[1]["stuck"].startswith("stuck: lag 200,")


def test_caught_up_or_revoked_partitions_are_not_stuck() -> None:
    progress, clock = _progress()
    progress.observe_lag(TOPIC, 0, 5)
    progress.observe_lag(TOPIC, 3, 8)
    clock.now += AFTER_S
    assert health_body(progress, AFTER_S)[1]["stuck"].endswith("and 1 more partitions")
    progress.observe_lag(TOPIC, 0, 0)  # caught up
    progress.forget({(TOPIC, 0)})  # partition 3 went to another worker
    assert progress.lag == {(TOPIC, 0): 0}
    clock.now += AFTER_S
    status, body = health_body(progress, AFTER_S)
    assert (status, body["stuck"], body["lag"]) == (200, None, 0)


def test_a_partition_back_from_another_worker_is_measured_afresh() -> None:
    progress, clock = _progress()
    progress.take(TOPIC, 1, 0)
    progress.mark(TOPIC, 1, 99)  # written up to 100, then the partition went elsewhere
    progress.moved_in({(TOPIC, 1)})  # back, idle: the other worker wrote up to 500
    assert progress.unwritten_from(TOPIC, 1) is None  # unknown, not 500 - 100 = 400 lag
    assert progress.reached({(TOPIC, 1): 100})  # what was written stays written
    clock.now += AFTER_S
    assert health_body(progress, AFTER_S)[0] == 200
    progress.take(TOPIC, 1, 500)  # it resumes where the other worker stopped
    assert progress.unwritten_from(TOPIC, 1) == 500
