"""What the worker has durably written, per topic-partition, and whether it is stuck.

Agents record the next offset after each batch lands in the warehouse; the
``replay`` command and the health endpoint read it to know when a stream is
fully processed and whether the sink is keeping up; ``broker_watch`` says whether
the broker answers.

Why "stuck" is tracked here: a worker can stop making progress without any error
(a stage that never returns, a warehouse call that hangs), and then only the
offsets tell. The lag monitor hands each partition's lag to :meth:`Progress.observe_lag`;
a partition is stuck when its lag has stayed above zero with no offset advance
(:meth:`Progress.mark`) for ``stuck_after_s``. A partition this worker has taken
events from (:meth:`Progress.take`) but never written counts too: its lag is at least
the high watermark minus the first offset taken, since nothing from there on is written.
A partition that comes (back) from another worker starts afresh
(:meth:`Progress.moved_in`): what this worker wrote there before is stale, and an idle
partition measured from a stale offset would look stuck forever.

It also says which partitions the worker holds and which it has read to their end
(:meth:`Progress.caught_up`): capture's watermarks let only those go idle (see
:mod:`streams.watermark`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.broker_watch import BrokerWatch

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Stuck:
    """Partitions with lag and no progress for too long: their lag, the longest wait."""

    lag: int
    since: datetime
    seconds: float
    partitions: tuple[TopicPartition, ...]

    def describe(self) -> str:
        topic, partition = self.partitions[0]
        where = f"{topic}[{partition}]"
        if len(self.partitions) > 1:
            where += f" and {len(self.partitions) - 1} more partitions"
        return (
            f"stuck: lag {self.lag}, no progress since "
            f"{self.since.isoformat(timespec='seconds')} ({self.seconds:.0f} s) on {where}"
        )


@dataclass
class Progress:
    """Offsets written, counts per outcome and the last sink error (None when healthy)."""

    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    written: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_letters_stored: int = 0
    sink_error: str | None = None
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    broker_watch: BrokerWatch | None = None
    lag_from: dict[TopicPartition, int] = field(default_factory=dict)
    """Per partition, the first offset not known written (lag = high watermark - this)."""
    advanced_at: dict[TopicPartition, float] = field(default_factory=dict)
    """When (``clock``) each partition's written offset last moved."""
    lagging_since: dict[TopicPartition, float] = field(default_factory=dict)
    """When (``clock``) each partition's lag was last seen rise above zero."""
    assigned: set[TopicPartition] | None = None
    """The partitions the consumer holds now (empty between a revocation and the next
    assignment); None where no consumer reports it (an agent fed by hand in a test)."""
    highwater: Callable[[TopicPartition], int | None] = lambda _tp: None
    """The consumer's high watermark of a partition (None until a fetch brought it)."""
    serving_problem: str | None = None
    """Why a serving replica cannot serve what routing needs (the rollout service's word)."""
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    """The fetch position of held partitions nothing was taken from yet (the lag monitor's)."""
    clock: Callable[[], float] = time.monotonic

    def take(self, topic: str, partition: int, offset: int) -> None:
        """The worker received the event at ``offset`` (not yet written)."""
        self.lag_from.setdefault((topic, partition), offset)

    def mark(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if offset + 1 > self.next_offsets.get(key, 0):
            self.next_offsets[key] = offset + 1
        if offset + 1 > self.lag_from.get(key, 0):
            self.lag_from[key] = offset + 1
            self.advanced_at[key] = self.clock()

    def reached(self, targets: dict[tuple[str, int], int]) -> bool:
        """True when every partition in ``targets`` is written up to its target offset."""
        return all(self.next_offsets.get(tp, 0) >= end for tp, end in targets.items())

    def unwritten_from(self, topic: str, partition: int) -> int | None:
        """The first offset not known written: the next offset written, else the first taken."""
        return self.lag_from.get((topic, partition))

    def caught_up(self, key: TopicPartition) -> bool:
        """Everything the broker holds on the partition is written here (or none is there).

        Measured from the first offset not known written, or, for a partition nothing was
        taken from since it was assigned, from its fetch position: either reaching the
        high watermark means nothing is left to read. Unknown counts as not caught up.
        """
        end = self.highwater(key)
        if end is None:
            return False
        start = self.lag_from.get(key, self.positions.get(key))
        return end == 0 or (start is not None and start >= end)

    def moved_in(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` were just assigned from elsewhere: measure their lag afresh.

        ``next_offsets`` stays (``reached`` reads what was written, whoever holds it now).
        """
        for key in partitions:
            for known in (
                self.lag_from,
                self.advanced_at,
                self.lagging_since,
                self.lag,
                self.positions,
            ):
                known.pop(key, None)

    def observe_lag(self, topic: str, partition: int, lag: int) -> None:
        """Record a partition's lag as the monitor measured it."""
        key = (topic, partition)
        self.lag[key] = lag
        if lag <= 0:
            self.lagging_since.pop(key, None)
        else:
            self.lagging_since.setdefault(key, self.clock())

    def forget(self, keep: set[TopicPartition]) -> None:
        """Drop the lag of partitions no longer assigned to this worker."""
        for key in [k for k in self.lag if k not in keep]:
            del self.lag[key]
            self.lagging_since.pop(key, None)
        for key in [k for k in self.positions if k not in keep]:
            del self.positions[key]

    def stuck(self, after_s: float) -> Stuck | None:
        """Partitions with lag above zero and no offset advance for ``after_s``, or None.

        The wait starts at the later of the last advance and the moment the lag rose, so
        a partition idle for an hour is not stuck the moment new events arrive.
        """
        now = self.clock()
        waits: dict[TopicPartition, float] = {}
        for key, lag in self.lag.items():
            rose = self.lagging_since.get(key)
            if lag <= 0 or rose is None:
                continue
            seconds = now - max(rose, self.advanced_at.get(key, rose))
            if seconds >= after_s:
                waits[key] = seconds
        if not waits:
            return None
        ordered = tuple(sorted(waits, key=lambda k: (-waits[k], k)))
        longest = waits[ordered[0]]
        return Stuck(
            lag=sum(self.lag[k] for k in ordered),
            since=datetime.now(UTC) - timedelta(seconds=longest),
            seconds=longest,
            partitions=ordered,
        )
