"""The terminal summary table of a demo run."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _rate(metric: dict[str, Any], arm: str) -> str:
    rate = metric.get(arm, {}).get("rate")
    return "–" if rate is None else f"{rate:.3f}"


def _interval(metric: dict[str, Any]) -> str:
    low, high = metric.get("difference_interval") or [None, None]
    if low is None or high is None:
        return "–"
    return f"[{low:+.3f}, {high:+.3f}]"


def cycle_table(cycle: dict[str, Any]) -> Table:
    """Rates per problem type and guardrail for both versions, with intervals and verdicts."""
    rollout = cycle.get("rollout") or {}
    comparison = rollout.get("comparison") or {}
    title = f"cycle {cycle['cycle']}: {cycle.get('version') or 'no version'} vs {cycle['parent']}"
    table = Table(title=title)
    for column in ("metric", "prev rate", "new rate", "difference (interval)", "verdict"):
        table.add_column(column)
    for kind in ("targets", "guardrails"):
        for name, metric in (comparison.get(kind) or {}).items():
            table.add_row(
                f"{'⚑ ' if kind == 'targets' else ''}{name}", _rate(metric, "prev"),
                _rate(metric, "new"), _interval(metric), metric.get("verdict", ""),
            )  # fmt: skip
    return table


def overview_table(summary: dict[str, Any]) -> Table:
    """One row per cycle: capture, labels, dataset mix, gate, rollout, promotions."""
    table = Table(title=f"closed-loop demo ({summary['model']}, {summary['seconds']}s)")
    for column in ("cycle", "captured", "labelled", "dataset", "gate", "rollout", "promotions"):
        table.add_column(column)
    for cycle in summary["cycles"]:
        prod = cycle.get("production", {})
        canary = (cycle.get("rollout") or {}).get("traffic", {})
        looks = (cycle.get("rollout") or {}).get("looks", [])
        steps = " → ".join(f"{x['step_percent']:g}%:{x['action']}" for x in looks)
        gate = cycle.get("gate")
        promo = cycle.get("promotions") or {}
        table.add_row(
            str(cycle["cycle"]),
            str(prod.get("captured", 0) + canary.get("captured", 0)),
            str(prod.get("labelled", 0) + canary.get("labelled", 0)),
            ", ".join(
                f"{k} {v}"
                for k, v in cycle.get("dataset", {}).get("counts", {}).get("per_tier", {}).items()
            )
            or cycle.get("training", {}).get("error")
            or "–",
            "–" if gate is None else ("passed" if gate.get("passed") else "failed"),
            f"{steps} ({(cycle.get('rollout') or {}).get('status', '–')})" if looks else "–",
            (
                f"{promo.get('proposed', 0)} proposed, {promo.get('approved', 0)} approved, "
                f"{promo.get('pending', 0)} pending"
            ),
        )
    return table
