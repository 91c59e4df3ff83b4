"""One cycle of the loop: traffic on the stable version, labels, training, canary, approvals.

A cycle that cannot ship (no version, the gate failed, the canary rolled back or did
not complete) says why in ``reason`` and the next cycle goes on from the same stable
version; its unsolved problems stay in the pool and train again.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from loraloop.cli.demo_run.context import DemoContext
from loraloop.cli.demo_run.labelling import LabelStats, label_captured, wait_written
from loraloop.cli.demo_run.text import (
    gate_failure_reason,
    gate_line,
    no_version_reason,
    pool_line,
    rollout_reason,
    traffic_line,
)
from loraloop.cli.demo_run.traffic import SEEN, UNSEEN, BatchStats, run_batch

logger = logging.getLogger(__name__)

_LOOK_SQL = (
    "SELECT payload FROM comparisons FINAL WHERE new = {new:String} AND prev = {prev:String} "
    "ORDER BY ts DESC, look_id DESC LIMIT 1"
)
_TIERS_SQL = "SELECT status, count() FROM pool GROUP BY status ORDER BY status"


def _merge_groups(totals: dict[str, Any], stats: BatchStats) -> None:
    """Add the batch's (version, group) tallies to ``totals["groups"]``."""
    groups = totals.setdefault("groups", {})
    for (version, group), n in stats.groups.items():
        entry = groups.setdefault(version, {}).setdefault(group, {"conversations": 0})
        entry["conversations"] += n
    for (version, group, problem_type), n in stats.problems.items():
        entry = groups.setdefault(version, {}).setdefault(group, {"conversations": 0})
        problems = entry.setdefault("problems", {})
        problems[problem_type] = problems.get(problem_type, 0) + n


def generalisation(
    totals: dict[str, Any], *, prev: str, new: str, types: list[str]
) -> dict[str, dict[str, Any]]:
    """Per prompt group (seen, unseen) and problem type: each version's problem rate."""
    groups = totals.get("groups", {})
    out: dict[str, dict[str, Any]] = {}
    for group in (SEEN, UNSEEN):
        rates: dict[str, Any] = {}
        for problem_type in types:
            entry: dict[str, Any] = {}
            for arm, version in (("prev", prev), ("new", new)):
                tally = groups.get(version, {}).get(group, {})
                n = int(tally.get("conversations", 0))
                k = int(tally.get("problems", {}).get(problem_type, 0))
                entry[arm] = round(k / n, 4) if n else None
                entry[f"{arm}_conversations"] = n
            rates[problem_type] = entry
        out[group] = rates
    return out


async def traffic(ctx: DemoContext, prefix: str, count: int, totals: dict[str, Any]) -> None:
    """One batch: publish, wait for the stack, label what was captured; adds to ``totals``."""
    stats: BatchStats = await run_batch(ctx, count, prefix)
    _merge_groups(totals, stats)
    await wait_written(ctx, stats.events)
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
        traffic_line(
            len(stats.conversation_ids), stats.per_version, labels.captured, labels.labelled,
            labels.problems,
        )
    )  # fmt: skip


async def tiers(ctx: DemoContext) -> dict[str, int]:
    """Samples per status in the pool now."""
    return {str(s): int(n) for s, n in await ctx.query(_TIERS_SQL)}


async def train(ctx: DemoContext, cycle: int) -> Any:
    """Run a training cycle through the trainer's subprocess launcher."""
    from loraloop.cli.demo_run.model import cycle_configs
    from trainer.service import run_cycle_async
    from trainer.service_config import TrainerSettings

    def progress(event: Any) -> None:
        stage = getattr(event, "stage", "train")
        if stage != "train":
            ctx.stage(f"  {stage} {event.step}/{event.total_steps}")
            return
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
    controller = RolloutController(warehouse, ctx.router, settings=ctx.rollout, registry=registry)
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
    from loraloop.lifecycle import Role, SampleStatus

    warehouse = ctx.running.warehouse
    queue = await warehouse.run(lambda: approval_queue(warehouse, limit=10_000))
    mine = [p for p in queue if p.evidence.get("version") == version]
    approved = 0
    if ctx.approver:
        approver = ctx.approver
        for proposal in mine:
            await warehouse.run(
                lambda s=proposal.sample_id, f=proposal.from_status: approve(
                    warehouse, s, from_status=SampleStatus(f), actor=approver,
                    roles=[Role.APPROVER], reason=ctx.sim.approver_role_reason,
                )
            )  # fmt: skip
            approved += 1
    return {"proposed": len(mine), "approved": approved, "pending": len(mine) - approved}


def _dataset_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the cycle trained on and kept apart, from its manifest."""
    families = manifest.get("families") or {}
    held = sorted(f for f, v in families.items() if v.get("split") == "heldout_problem")
    return {
        "counts": manifest.get("counts", {}),
        "weights": manifest.get("weights"),
        "ids": {
            key: len(manifest.get(key) or [])
            for key in (
                "trained_sample_ids", "heldout_sample_ids", "regression_sample_ids",
                "evaluation_excluded_ids", "duplicates_dropped", "downweighted",
                "flagged_baseline",
            )
        },
        "heldout_families": held,
        "families": len(families),
        "evaluation_set": manifest.get("evaluation_set"),
    }  # fmt: skip


def _gate_summary(passed: bool, gate: dict[str, Any]) -> dict[str, Any]:
    behaviour = gate.get("behaviour") or {}
    return {
        "passed": passed, "reasons": gate.get("reasons", []),
        "paired": behaviour.get("paired", {}), "pooled": behaviour.get("pooled"),
        "baseline": behaviour.get("baseline"), "skipped": behaviour.get("skipped"),
        "claimed": behaviour.get("claimed", []),
        "numbers": gate.get("numbers"), "prompts": behaviour.get("prompts", []),
    }  # fmt: skip


def _targeted(manifest: dict[str, Any]) -> list[str]:
    per_split = (manifest.get("counts") or {}).get("per_split_problem_type") or {}
    return sorted(per_split.get("train", {}))


async def run_cycle(ctx: DemoContext, cycle: int, stable: str) -> dict[str, Any]:
    """Traffic → labels → training → gate → canary → verdicts → approvals, for one cycle."""
    from trainer.mirror import metrics_summary
    from trainer.registry import Registry
    from trainer.service_config import TrainerSettings

    summary: dict[str, Any] = {
        "cycle": cycle, "parent": stable, "version": None, "shipped": False, "reason": None,
        "gate": {"passed": False, "paired": {}, "reasons": []}, "seen": {}, "unseen": {},
    }  # fmt: skip
    ctx.stage(f"[bold]cycle {cycle}[/]: production traffic on {stable}")
    production: dict[str, Any] = {}
    await traffic(ctx, f"c{cycle}-prod-", _batch(ctx), production)
    summary["production"] = production
    summary["pool_before"] = await tiers(ctx)
    ctx.stage(pool_line(cycle, summary["pool_before"]))
    report = await train(ctx, cycle)
    summary["training"] = {
        "status": str(report.status), "error": report.error, "seconds": round(report.seconds, 1),
        "pool": report.pool,
    }  # fmt: skip
    manifest = report.manifest or {}
    summary["dataset"] = _dataset_summary(manifest)
    if report.version is None:
        summary["reason"] = no_version_reason(str(report.status), report.error)
        return summary
    version = report.version.name
    summary["version"] = version
    registry = Registry(TrainerSettings().registry_root(ctx.settings.data_dir))
    gate = metrics_summary(registry.path(version)).get("gate", {})
    summary["gate"] = _gate_summary(bool(report.version.gate_passed), gate)
    ctx.stage(gate_line(cycle, version, summary["gate"]))
    if not report.version.gate_passed:
        summary["reason"] = f"gate failed: {gate_failure_reason(summary['gate'])}"
        return summary
    trained = [str(s) for s in manifest.get("trained_sample_ids", [])]
    summary["rollout"] = await rollout(ctx, cycle, version, stable, trained)
    canary = summary["rollout"]["traffic"]
    summary.update(generalisation(canary, prev=stable, new=version, types=_targeted(manifest)))
    summary["distinct_replies"] = {v: ctx.gateway.generated(v) for v in (stable, version)}
    status = summary["rollout"]["status"]
    summary["shipped"] = status == "completed"
    if not summary["shipped"]:
        summary["reason"] = rollout_reason(status, summary["rollout"]["looks"])
    summary["promotions"] = await approve_proposals(ctx, version)
    summary["pool_after"] = await tiers(ctx)
    return summary
