"""The demo's ready hook: seed the baseline, run the cycles, write the report, stop the stack."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraloop.cli.demo_run.context import DemoContext, SimUser
from loraloop.simulation import ScenarioItem, SimulationSettings, scenario_items

if TYPE_CHECKING:
    from rich.console import Console

    from streams.stack import RunningStack

logger = logging.getLogger(__name__)


def make_users(sim: SimulationSettings, *, fast: bool, rng: random.Random) -> list[SimUser]:
    """The simulated users with tiers drawn from the configured shares."""
    count = sim.fast_users if fast else sim.users
    tiers, weights = zip(*sim.tier_shares.items(), strict=True)
    return [SimUser(f"user-{i:04d}", rng.choices(tiers, weights)[0]) for i in range(count)]


async def _profiles(ctx: DemoContext) -> None:
    from datetime import UTC, datetime

    from loraloop.cli.demo_run.events import profile

    now = datetime.now(UTC)
    value = {"standard": 0.0, "high_value": 500.0, "vip": 2000.0}
    await ctx.publish([profile(u.user_id, u.tier, value.get(u.tier, 0.0), now) for u in ctx.users])


def make_driver(
    *,
    sim: SimulationSettings,
    approver: str | None,
    fast: bool,
    report_dir: Path,
    console: Console,
    result: dict[str, Any],
) -> Any:
    """The ``on_ready`` coroutine of ``run_stack``; fills ``result`` with the summary."""

    async def drive(running: RunningStack) -> None:
        try:
            result["summary"] = await _drive(running, sim, approver, fast, report_dir, console)
        except Exception as error:
            logger.exception("the demo failed")
            result["error"] = f"{type(error).__name__}: {error}"
        finally:
            running.stop()

    return drive


async def _drive(
    running: RunningStack,
    sim: SimulationSettings,
    approver: str | None,
    fast: bool,
    report_dir: Path,
    console: Console,
) -> dict[str, Any]:
    import asyncio

    from loraloop.cli.demo_run.cycle import run_cycle
    from loraloop.cli.demo_run.labelling import seed_baseline
    from loraloop.cli.demo_run.model import load_backend
    from loraloop.cli.demo_run.report import write_report
    from loraloop.cli.demo_run.serving import serve_gateway
    from loraloop.cli.demo_run.text import not_shipped_line, seed_line
    from streams.producer import EventPublisher
    from trainer.rollout import Router, RoutingTable
    from trainer.rollout_config import RolloutSettings
    from trainer.router import BASE_VERSION
    from trainer.service_config import TrainerSettings

    settings = running.settings
    rng = random.Random(sim.seed)  # noqa: S311 (a reproducible simulation, not a secret)
    rollout = RolloutSettings(
        steps=sim.rollout_steps,
        min_conversations_per_step=(
            sim.fast_min_conversations_per_step if fast else sim.min_conversations_per_step
        ),
        require_guardrails_non_inferior=False,
        record_batch_size=1_000_000,
        actor="demo-rollout",
    )
    from trainer.assignments import AssignmentRecorder, WarehouseAssignmentStore

    recorder = AssignmentRecorder(
        WarehouseAssignmentStore(running.warehouse),
        batch_size=rollout.record_batch_size,
        cache_size=rollout.recorder_cache_size,
    )
    router = Router(RoutingTable(stable=BASE_VERSION), settings=rollout, recorder=recorder)
    registry_root = TrainerSettings().registry_root(settings.data_dir)
    console.print("[dim]loading the base model…[/]")
    backend, base_model = await asyncio.to_thread(
        load_backend, settings.data_dir, sim, fast=fast, registry_root=registry_root
    )
    items = scenario_items(sim.fast_phrasings_per_family if fast else sim.phrasings_per_family)
    evaluation = await asyncio.to_thread(write_evaluation, settings.data_dir, items)
    serving = serve_gateway(
        running, backend, router, concurrency=sim.gateway_concurrency,
        timeout_s=sim.gateway_timeout_s,
    )  # fmt: skip
    async with EventPublisher(running.bootstrap, settings.stream) as publisher, serving as gateway:
        console.print(f"[dim]simulated users chat with the gateway at {gateway.url}[/]")
        ctx = DemoContext(
            running=running, settings=settings, sim=sim, rollout=rollout, publisher=publisher,
            gateway=gateway, router=router, items=items,
            users=make_users(sim, fast=fast, rng=rng), console=console, approver=approver,
            fast=fast, rng=rng, evaluation_set=evaluation,
        )  # fmt: skip
        gateway.on_progress = _chat_progress(ctx)
        await _profiles(ctx)
        ctx.stage("seeding the baseline from the scenario's reference answers")
        seed = await seed_baseline(ctx)
        ctx.stage(seed_line(seed))
        cycles = []
        stable = BASE_VERSION
        for number in range(1, sim.cycles + 1):
            cycle = await run_cycle(ctx, number, stable)
            cycles.append(cycle)
            if cycle.get("rollout", {}).get("status") == "completed":
                stable = cycle["version"]
            if not cycle.get("shipped"):
                ctx.stage(not_shipped_line(cycle, last=number == sim.cycles))
    summary: dict[str, Any] = {
        "fast": fast, "approver": approver, "model": base_model, "seed_baseline": seed,
        "scenario": {
            "prompts": len(items), "families": len({i.family for i in items}),
            "evaluation_families": len({i.family for i in items if i.evaluation}),
        },
        "cycles": cycles, "served_generations": sum(backend.generated.values()),
        "gateway": {
            "url": gateway.url, "requests": gateway.requests,
            "generated": sum(backend.generated.values()), "cached": backend.cache_hits,
        },
        "seconds": round(ctx_elapsed(ctx), 1),
    }  # fmt: skip
    from loraloop.cli.demo_run.check import verify

    check: list[str] = await running.warehouse.run(lambda: verify(running.warehouse, summary))
    summary["warehouse_check"] = check
    ctx.stage(f"writing the report to {report_dir}")
    await asyncio.to_thread(write_report, summary, report_dir)
    return summary


EVALUATION_FILE = "evaluation/scenario.jsonl"


def write_evaluation(data_dir: Path, items: list[ScenarioItem]) -> Path:
    """Write the scenario's evaluation families as the trainer's evaluation set."""
    from loraloop.simulation.scenario import evaluation_prompts
    from trainer.evalset import encode_evaluation_set

    path = data_dir / EVALUATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_evaluation_set(evaluation_prompts(items)))
    return path


def _chat_progress(ctx: DemoContext) -> Any:
    """A line now and then while the gateway answers a long round of chats."""

    def report(done: int, total: int) -> None:
        generated = sum(ctx.gateway.backend.generated.values())
        ctx.stage(f"  the gateway answered {done}/{total} chats ({generated} replies generated)")

    return report


def ctx_elapsed(ctx: DemoContext) -> float:
    import time

    return time.perf_counter() - ctx.started
