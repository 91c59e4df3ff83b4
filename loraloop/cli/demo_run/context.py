"""What every stage of the demo shares: the stack, the publisher, the gateway, the router."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraloop.simulation import ScenarioItem, SimulationSettings
from loraloop.simulation.exceptions import StreamTimeoutError

if TYPE_CHECKING:
    from rich.console import Console

    from loraloop.cli.demo_run.serving import DemoGateway
    from loraloop.settings import Settings
    from streams.producer import EventPublisher, Outgoing
    from streams.stack import RunningStack
    from trainer.rollout import Router
    from trainer.rollout_config import RolloutSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimUser:
    """A simulated user and their tier."""

    user_id: str
    tier: str


@dataclass
class DemoContext:
    """The demo's shared handles and counters (one per run)."""

    running: RunningStack
    settings: Settings
    sim: SimulationSettings
    rollout: RolloutSettings
    publisher: EventPublisher
    gateway: DemoGateway
    """Where the simulated users chat (the served replies and their turns go through it)."""
    router: Router
    items: list[ScenarioItem]
    users: list[SimUser]
    console: Console
    approver: str | None
    fast: bool
    evaluation_set: Path | None = None
    rng: random.Random = field(default_factory=random.Random)
    started: float = field(default_factory=time.perf_counter)
    serial: int = 0

    def stage(self, text: str) -> None:
        """One progress line: elapsed time and what the demo is doing."""
        self.console.print(f"[dim]{time.perf_counter() - self.started:6.1f}s[/] {text}")

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:05d}"

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        await self.publisher.publish(messages)

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of a read on the warehouse thread."""
        warehouse = self.running.warehouse
        result = await warehouse.run(warehouse.query, sql, params)
        return list(result.result_rows)

    async def wait_count(self, sql: str, params: dict[str, Any], expected: int, what: str) -> None:
        """Poll ``sql`` (a count) until it reaches ``expected``."""
        deadline = time.perf_counter() + self.sim.stream_timeout_s
        count = 0
        while time.perf_counter() < deadline:
            count = int((await self.query(sql, params))[0][0])
            if count >= expected:
                return
            await asyncio.sleep(self.sim.poll_interval_s)
        msg = (
            f"the stack wrote {count} of {expected} {what} within "
            f"{self.sim.stream_timeout_s:g}s; is the worker consuming? "
            "(raise LORALOOP_DEMO__STREAM_TIMEOUT_S on a slow machine)"
        )
        raise StreamTimeoutError(msg)
