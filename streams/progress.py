"""What the worker has durably written, per topic-partition.

Agents record the next offset after each batch lands in the warehouse; the
``replay`` command and the health endpoint read it to know when a stream is
fully processed and whether the sink is keeping up; ``broker_watch`` says whether
the broker answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.broker_watch import BrokerWatch


@dataclass
class Progress:
    """Offsets written, counts per outcome and the last sink error (None when healthy)."""

    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    written: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_letters_stored: int = 0
    sink_error: str | None = None
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    broker_watch: BrokerWatch | None = None

    def mark(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self.next_offsets[key] = max(self.next_offsets.get(key, 0), offset + 1)

    def reached(self, targets: dict[tuple[str, int], int]) -> bool:
        """True when every partition in ``targets`` is written up to its target offset."""
        return all(self.next_offsets.get(tp, 0) >= end for tp, end in targets.items())
