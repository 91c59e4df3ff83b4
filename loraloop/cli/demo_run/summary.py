"""The terminal summary table of a demo run."""

from __future__ import annotations

from typing import Any, Final

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from loraloop.cli.demo_run.text import not_shipped_line


def _rate(metric: dict[str, Any], arm: str) -> str:
    rate = metric.get(arm, {}).get("rate")
    return "–" if rate is None else f"{rate:.3f}"


def _interval(metric: dict[str, Any]) -> str:
    low, high = metric.get("difference_interval") or [None, None]
    if low is None or high is None:
        return "–"
    return f"[{low:+.3f}, {high:+.3f}]"


KINDS: Final = {"targets": "target", "guardrails": "guardrail"}
"""The comparison's metric groups and the word each row names its kind with: a target is a
problem type the version was trained to fix, a guardrail a rate it must not worsen."""


def cycle_table(cycle: dict[str, Any]) -> Table | None:
    """Rates per problem type and guardrail for both versions, with intervals and verdicts.

    None when the cycle has no canary comparison (nothing trained, or the gate failed):
    an empty table says nothing, :func:`cycle_renderables` prints why instead.
    """
    rollout = cycle.get("rollout") or {}
    comparison = rollout.get("comparison") or {}
    rows = [
        (word, name, metric)
        for kind, word in KINDS.items()
        for name, metric in (comparison.get(kind) or {}).items()
    ]
    if not rows:
        return None
    title = f"cycle {cycle['cycle']}: {cycle.get('version') or 'no version'} vs {cycle['parent']}"
    table = Table(title=title)
    for column in ("kind", "metric", "prev rate", "new rate", "difference (interval)", "verdict"):
        table.add_column(column)
    for word, name, metric in rows:
        table.add_row(
            word, name, _rate(metric, "prev"), _rate(metric, "new"), _interval(metric),
            metric.get("verdict", ""),
        )  # fmt: skip
    return table


def cycle_renderables(cycle: dict[str, Any], *, last: bool) -> list[RenderableType]:
    """What the closing summary prints for a cycle: its tables, and why it did not ship."""
    out: list[RenderableType] = []
    table = cycle_table(cycle)
    if table is not None:
        out.append(table)
    unseen = generalisation_table(cycle)
    if unseen is not None:
        out.append(unseen)
    if not cycle.get("shipped"):
        out.append(Text(not_shipped_line(cycle, last=last)))
    return out


def generalisation_table(cycle: dict[str, Any]) -> Table | None:
    """Per targeted type: both versions' problem rates on seen and on unseen phrasings."""
    rows = [
        (group, t, v) for group in ("seen", "unseen") for t, v in (cycle.get(group) or {}).items()
    ]
    if not rows:
        return None
    table = Table(title=f"cycle {cycle['cycle']}: seen vs unseen phrasings (canary traffic)")
    for column in ("phrasings", "problem type", f"{cycle['parent']}", f"{cycle['version']}"):
        table.add_column(column)
    for group, name, v in rows:
        table.add_row(
            group, name, f"{_num(v.get('prev'))} (n={v.get('prev_conversations')})",
            f"{_num(v.get('new'))} (n={v.get('new_conversations')})",
        )  # fmt: skip
    return table


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _gate(cycle: dict[str, Any]) -> str:
    gate = cycle.get("gate")
    if gate is None or cycle.get("version") is None:
        return "–"
    pooled = gate.get("pooled") or {}
    numbers = (
        f" fixed {pooled.get('fixed')}, broken {pooled.get('broken')} of "
        f"{pooled.get('prompts')}, p={pooled.get('p_value', 1.0):.2g}"
        if pooled
        else ""
    )
    return ("passed" if gate.get("passed") else "failed") + numbers


def _dataset(cycle: dict[str, Any]) -> str:
    dataset = cycle.get("dataset") or {}
    ids = dataset.get("ids") or {}
    if not ids:
        return str(cycle.get("training", {}).get("error") or "–")
    return (
        f"trained {ids.get('trained_sample_ids', 0)}, held out "
        f"{ids.get('heldout_sample_ids', 0)}+{ids.get('regression_sample_ids', 0)}, "
        f"unseen families kept out {ids.get('evaluation_excluded_ids', 0)}"
    )


def _headline(reason: object) -> str:
    """A reason's first clause ('gate failed', 'the canary stayed at 75 % after 4 looks'):
    the whole reason is the 'did not ship' line under the tables."""
    return str(reason).split(":", 1)[0] if reason else "–"


def overview_table(summary: dict[str, Any]) -> Table:
    """One row per cycle: capture, labels, dataset, gate, rollout, shipped, promotions."""
    table = Table(title=f"closed-loop demo ({summary['model']}, {summary['seconds']}s)")
    for column in ("cycle", "captured", "dataset", "gate", "rollout", "shipped", "promotions"):
        table.add_column(column)
    for cycle in summary["cycles"]:
        prod = cycle.get("production", {})
        canary = (cycle.get("rollout") or {}).get("traffic", {})
        looks = (cycle.get("rollout") or {}).get("looks", [])
        steps = " → ".join(f"{x['step_percent']:g}%:{x['action']}" for x in looks)
        promo = cycle.get("promotions") or {}
        table.add_row(
            str(cycle["cycle"]),
            str(prod.get("captured", 0) + canary.get("captured", 0)),
            _dataset(cycle),
            _gate(cycle),
            f"{steps} ({(cycle.get('rollout') or {}).get('status', '–')})" if looks else "–",
            "yes" if cycle.get("shipped") else f"no: {_headline(cycle.get('reason'))}",
            (
                f"{promo.get('proposed', 0)} proposed, {promo.get('approved', 0)} approved, "
                f"{promo.get('pending', 0)} pending"
            ),
        )
    return table
