"""One cycle of the loop: traffic on the stable version, labels, training, canary, approvals."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from loraloop.cli.demo_run.context import DemoContext
from loraloop.cli.demo_run.labelling import LabelStats, label_captured, wait_written
from loraloop.cli.demo_run.traffic import BatchStats, run_batch

logger = logging.getLogger(__name__)

_LOOK_SQL = (
    "SELECT payload FROM comparisons FINAL WHERE new = {new:String} AND prev = {prev:String} "
    "ORDER BY ts DESC, look_id DESC LIMIT 1"
)
_TIERS_SQL = "SELECT status, count() FROM pool GROUP BY status ORDER BY status"


async def traffic(ctx: DemoContext, prefix: str, count: int, totals: dict[str, Any]) -> None:
    """One batch: publish, wait for the stack, label what was captured; adds to ``totals``."""
    stats: BatchStats = await run_batch(ctx, count, prefix)
    await wait_written(ctx, stats.conversation_ids)
    labels: LabelStats = await label_captured(ctx, stats.conversation_ids)
    totals["conversations"] = totals.get("conversations", 0) + len(stats.conversation_ids)
    for key, counter in (("per_version", stats.per_version), ("reactions", stats.rules)):
        merged = totals.setdefault(key, {})
        for name, n in counter.items():
            merged[name] = merged.get(name, 0) + n
    totals["captured"] = totals.get("captured", 0) + labels.captured
    totals["labelled"] = totals.get("labelled", 0) + labels.labelled
    for key, counter in (("problem_types", labels.problems), ("acceptance", labels.acceptance)):
        merged = totals.setdefault(key, {})
        for name, n in counter.items():
            merged[name] = merged.get(name, 0) + n
    ctx.stage(
        f"  {len(stats.conversation_ids)} conversations {dict(stats.per_version)}, "
        f"{labels.captured} captured, {labels.labelled} labelled {dict(labels.problems)}"
    )


async def tiers(ctx: DemoContext) -> dict[str, int]:
    """Samples per status in the pool now."""
    return {str(s): int(n) for s, n in await ctx.query(_TIERS_SQL)}


async def train(ctx: DemoContext, cycle: int) -> Any:
    """Run a training cycle through the trainer's subprocess launcher."""
    from loraloop.cli.demo_run.model import cycle_configs
    from trainer.service import run_cycle_async
    from trainer.service_config import TrainerSettings

    def progress(event: Any) -> None:
        if event.step == 0 or event.step == event.total_steps or event.step % 10 == 0:
            loss = f" loss {event.loss:.3f}" if event.loss is not None else ""
            ctx.stage(f"  training step {event.step}/{event.total_steps}{loss}")

    return await run_cycle_async(
        ctx.running.warehouse,
        ctx.settings,
        TrainerSettings(),
        reason=f"demo cycle {cycle}",
        configs=cycle_configs(ctx),
        on_progress=progress,
    )


async def rollout(
    ctx: DemoContext, cycle: int, version: str, parent: str, trained: list[str]
) -> dict[str, Any]:
    """Canary ``version`` next to ``parent`` step by step; returns the steps and the outcome."""
    from trainer.mirror import set_status
    from trainer.registry import Registry
    from trainer.rollout import RolloutController, RolloutStatus, routing_table
    from trainer.service_config import TrainerSettings
    from trainer.versions import VersionStatus

    warehouse = ctx.running.warehouse
    registry = Registry(TrainerSettings().registry_root(ctx.settings.data_dir))
    controller = RolloutController(warehouse, ctx.router, settings=ctx.rollout)
    await warehouse.run(set_status, warehouse, registry, version, VersionStatus.CANARY)
    state = await warehouse.run(controller.store.start, version, parent)
    ctx.router.update(routing_table(state, ctx.rollout))
    looks: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    status = state.status
    for look in range(1, ctx.sim.max_looks + 1):
        share = ctx.router.table.share_percent
        ctx.stage(f"cycle {cycle}: canary {version} at {share:g} % (look {look})")
        await traffic(ctx, f"c{cycle}-canary-", _batch(ctx), totals)
        decision = await warehouse.run(lambda: controller.tick(version, trained_sample_ids=trained))
        looks.append({
            "look": look, "step_percent": share, "action": decision.action.value,
            "reason": decision.reason,
        })  # fmt: skip
        ctx.stage(f"  look {look}: {decision.action.value} ({decision.reason})")
        status = decision.state.status
        if status in (RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK):
            break
    final = {
        RolloutStatus.COMPLETED: VersionStatus.ACTIVE,
        RolloutStatus.ROLLED_BACK: VersionStatus.ROLLED_BACK,
    }.get(status)
    if final is not None:
        await warehouse.run(set_status, warehouse, registry, version, final)
    rows = await ctx.query(_LOOK_SQL, {"new": version, "prev": parent})
    comparison = orjson.loads(rows[0][0]) if rows else None
    result = {"looks": looks, "status": status.value, "traffic": totals, "comparison": comparison}
    from loraloop.cli.demo_run.check import check_comparison

    problems: list[str] = []
    await warehouse.run(
        lambda: check_comparison(
            warehouse, {"cycle": cycle, "rollout": result}, problems, recompute=True
        )
    )
    result["recomputed_check"] = problems
    return result


def _batch(ctx: DemoContext) -> int:
    return ctx.sim.fast_conversations_per_batch if ctx.fast else ctx.sim.conversations_per_batch


async def approve_proposals(ctx: DemoContext, version: str) -> dict[str, int]:
    """Open proposals from ``version``'s looks; the approver (if any) confirms each."""
    from analytics.pool import approval_queue, approve
    from loraloop.lifecycle import Role

    warehouse = ctx.running.warehouse
    queue = await warehouse.run(lambda: approval_queue(warehouse, limit=10_000))
    mine = [p for p in queue if p.evidence.get("version") == version]
    approved = 0
    if ctx.approver:
        approver = ctx.approver
        for proposal in mine:
            await warehouse.run(
                lambda s=proposal.sample_id: approve(
                    warehouse, s, actor=approver, roles=[Role.APPROVER],
                    reason=ctx.sim.approver_role_reason,
                )
            )  # fmt: skip
            approved += 1
    return {"proposed": len(mine), "approved": approved, "pending": len(mine) - approved}


async def run_cycle(ctx: DemoContext, cycle: int, stable: str) -> dict[str, Any]:
    """Traffic → labels → training → gate → canary → verdicts → approvals, for one cycle."""
    from trainer.mirror import metrics_summary
    from trainer.registry import Registry
    from trainer.service_config import TrainerSettings

    summary: dict[str, Any] = {"cycle": cycle, "parent": stable, "version": None}
    ctx.stage(f"[bold]cycle {cycle}[/]: production traffic on {stable}")
    production: dict[str, Any] = {}
    await traffic(ctx, f"c{cycle}-prod-", _batch(ctx), production)
    summary["production"] = production
    summary["pool_before"] = await tiers(ctx)
    ctx.stage(f"cycle {cycle}: training on the pool {summary['pool_before']}")
    report = await train(ctx, cycle)
    summary["training"] = {
        "status": str(report.status), "error": report.error, "seconds": round(report.seconds, 1),
        "pool": report.pool,
    }  # fmt: skip
    manifest = report.manifest or {}
    summary["dataset"] = {"counts": manifest.get("counts", {}), "weights": manifest.get("weights")}
    if report.version is None:
        ctx.stage(f"cycle {cycle}: no version ({report.status}: {report.error})")
        return summary
    version = report.version.name
    summary["version"] = version
    registry = Registry(TrainerSettings().registry_root(ctx.settings.data_dir))
    summary["gate"] = {
        "passed": report.version.gate_passed,
        **metrics_summary(registry.path(version)).get("gate", {}),
    }
    ctx.stage(
        f"cycle {cycle}: {version} gate {'passed' if report.version.gate_passed else 'failed'}"
    )
    if not report.version.gate_passed:
        return summary
    trained = [str(s) for s in manifest.get("source_sample_ids", [])]
    summary["rollout"] = await rollout(ctx, cycle, version, stable, trained)
    summary["promotions"] = await approve_proposals(ctx, version)
    summary["pool_after"] = await tiers(ctx)
    return summary
