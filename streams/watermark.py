"""Per-partition watermarks of the capture agent: when a conversation's pending events are final.

The conversation topics are co-partitioned, so partition p of every topic carries the same
conversations. For each topic-partition the tracker keeps the latest event time read; the
watermark of partition p is the earliest of those over p's topics, minus the allowed
lateness (Flink's watermark of a multi-input operator is the minimum of its inputs'): an
event at or before it is final, for no topic is expected to bring an earlier one. So a
topic read ahead of the others (a backfill published topic by topic, a fast producer)
holds nothing back wrongly, and the slowest topic decides.

A topic-partition that delivered nothing for ``idle_s`` and has been read to its end stops
holding its partition back (Flink's idleness): the handoffs of a stream without handoffs,
a quiet QA tool. When every topic of a partition is idle, everything pending there is
final: the end of a stream. "Read to its end" is the consumer's word (a
:class:`Reading`: everything the broker holds there is written here); silence alone is
not, for a partition is silent too while it is not yet assigned (a restarted worker
waits out the dead member's session) or while its backlog waits behind the other
topics'. A partition not assigned here has no watermark at all, so the pending events
of a conversation another worker owns are never released here. A topic-partition is
silent from its assignment on (for a core fed by hand, without a consumer's word: from
the first event read, or the first reading of the clock while none comes).

With an infinite lateness nothing is final until the partition goes idle: a replay orders
its file as a whole.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from detectors.order import END_OF_TIME

_US_PER_S: Final = 1_000_000

TopicPartition = tuple[int, str]
"""(partition, topic base name)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What the consumer says of the conversation topic-partitions (picklable: it crosses
    to the capture process)."""

    assigned: frozenset[TopicPartition]
    """Those this worker holds now (empty before the first assignment, after a revocation)."""
    caught_up: frozenset[TopicPartition]
    """Those read and written here up to the broker's end (the only ones that may go idle)."""

    def holds(self, partition: int) -> bool:
        return any(p == partition for p, _ in self.assigned)


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
        self._reading: Reading | None = None

    def observe(self, seen: Iterable[tuple[int, str, int]], reading: Reading | None = None) -> None:
        """Record a batch's (partition, topic, event time in µs); also moves the clock.

        ``reading``: the consumer's assignment and the topic-partitions read to their end,
        as of this batch. None (a core fed by hand, without a consumer): every partition
        counts as held, and a silent topic-partition as read to its end.
        """
        self._reading = reading
        now = self.tick()
        latest, heard = self._latest, self._heard
        for partition, topic, ts_us in seen:
            if self._first_event is None:
                self._first_event = now
            key = (partition, topic)
            if ts_us > latest.get(key, -END_OF_TIME):
                latest[key] = ts_us
            heard[key] = now
        if reading is not None:  # a topic-partition just assigned is silent from now on
            for key in reading.assigned:
                heard.setdefault(key, now)

    def tick(self) -> float:
        """Read the clock (once per batch: every watermark of a batch uses the same now)."""
        self._now = self._clock()
        if self._started is None:
            self._started = self._now
        return self._now

    def of(self, partition: int) -> int | None:
        """The partition's watermark in µs; None while nothing there is final."""
        reading = self._reading
        if reading is not None and not reading.holds(partition):
            return None
        started = self._first_event or self._started or self._now
        active = [
            topic
            for topic in self._topics
            if self._now - self._heard.get((partition, topic), started) < self._idle_s
            or (reading is not None and (partition, topic) not in reading.caught_up)
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
        self._reading = None
