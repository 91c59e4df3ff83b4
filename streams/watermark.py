"""Per-partition watermarks of the capture agent: when a conversation's pending events are final.

The conversation topics are co-partitioned, so partition p of every topic carries the same
conversations. For each topic-partition the tracker keeps the latest event time read; the
watermark of partition p is the earliest of those over p's topics, minus the allowed
lateness (Flink's watermark of a multi-input operator is the minimum of its inputs'): an
event at or before it is final, for no topic is expected to bring an earlier one. So a
topic read ahead of the others (a backfill published topic by topic, a fast producer)
holds nothing back wrongly, and the slowest topic decides.

A topic-partition that delivered nothing for ``idle_s`` and has nothing left to read (no
consumer lag) stops holding its partition back (Flink's idleness): the handoffs of a
stream without handoffs, a quiet QA tool. When none of a partition's topics delivered for
that long, everything pending there is final: the end of a stream. A topic not read since
a start or a rebalance counts from the first event read (from the first reading of the
clock while none comes), so the topics read first after a restart cannot release what a
slower topic still brings; one with lag (a backlog read behind the others) never counts
as idle.

With an infinite lateness nothing is final until the partition goes idle: a replay orders
its file as a whole.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Final

from detectors.order import END_OF_TIME

_US_PER_S: Final = 1_000_000


class Watermarks:
    """Latest event time per topic-partition and the watermark of each partition."""

    def __init__(
        self,
        topics: Iterable[str],
        *,
        lateness_s: float,
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topics = tuple(topics)
        self._lateness_us = None if math.isinf(lateness_s) else round(lateness_s * _US_PER_S)
        self._idle_s = idle_s
        self._clock = clock
        self._started: float | None = None
        self._first_event: float | None = None
        self._latest: dict[tuple[int, str], int] = {}
        self._heard: dict[tuple[int, str], float] = {}
        self._now = 0.0

    def observe(
        self, seen: Iterable[tuple[int, str, int]], busy: Iterable[tuple[int, str]] = ()
    ) -> None:
        """Record a batch's (partition, topic, event time in µs); also moves the clock.

        ``busy`` are the (partition, topic)s that still have records to read (consumer
        lag): they are not idle, however long since they last delivered. Without it a
        topic read behind the others after a restart (a backlog) would stop holding its
        partition back after ``idle_s`` and its events would arrive late.
        """
        now = self.tick()
        latest, heard = self._latest, self._heard
        for partition, topic, ts_us in seen:
            if self._first_event is None:
                self._first_event = now
            key = (partition, topic)
            if ts_us > latest.get(key, -END_OF_TIME):
                latest[key] = ts_us
            heard[key] = now
        for key in busy:
            heard[key] = now

    def tick(self) -> float:
        """Read the clock (once per batch: every watermark of a batch uses the same now)."""
        self._now = self._clock()
        if self._started is None:
            self._started = self._now
        return self._now

    def of(self, partition: int) -> int | None:
        """The partition's watermark in µs; None while nothing there is final."""
        started = self._first_event or self._started or self._now
        active = [
            topic
            for topic in self._topics
            if self._now - self._heard.get((partition, topic), started) < self._idle_s
        ]
        if not active:
            return END_OF_TIME
        if self._lateness_us is None:
            return None
        latest = [self._latest.get((partition, topic)) for topic in active]
        if any(ts is None for ts in latest):
            return None
        return min(ts for ts in latest if ts is not None) - self._lateness_us

    def reset(self) -> None:
        """Forget everything (a rebalance: the partitions may have moved)."""
        self._started = self._first_event = None
        self._latest.clear()
        self._heard.clear()
