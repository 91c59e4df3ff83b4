"""The report directory: summary.json, charts per cycle, report.html with a table per stage.

Each cycle's section shows what it trained on (dataset), the behavioural gate's paired
numbers, the traffic, the canary looks and verdicts, seen-versus-unseen problem rates
(a chart and a table) and the proposals; a cycle that did not ship says why.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from loraloop.cli.demo_run.text import gate_failure_reason

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
Z_95 = 1.96
_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    "table{border-collapse:collapse;margin:6px 0}.bad{color:#a00}.good{color:#070}"
)


SMALL: Final = 1e-3
"""Below this a float is shown with significant digits (a p-value), above with decimals."""


def _fmt(value: Any) -> str:
    """A table cell as a reader writes it: ``–`` for none, ``name n, …`` for a tally.

    Nested values (a tally, a list) never reach the page as a Python repr.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < SMALL and value else f"{value:.3f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_fmt(v) for v in value) or "–"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>" if body else "<p>–</p>"


def _rates_chart(cycle: dict[str, Any], path: Path) -> bool:
    """Bars of prev vs new rate per problem type and guardrail, with 95 % error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparison = (cycle.get("rollout") or {}).get("comparison") or {}
    metrics = {**comparison.get("targets", {}), **comparison.get("guardrails", {})}
    if not metrics:
        return False
    names = list(metrics)
    fig, ax = plt.subplots(figsize=(10, 4))
    for offset, arm in ((-0.2, "prev"), (0.2, "new")):
        rates = [metrics[n][arm]["rate"] or 0.0 for n in names]
        errors = [Z_95 * (metrics[n][arm]["std_error"] or 0.0) for n in names]
        label = comparison.get(arm, arm)
        ax.bar([i + offset for i in range(len(names))], rates, 0.4, yerr=errors, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("rate per conversation")
    ax.set_title(f"cycle {cycle['cycle']}: {comparison.get('new')} vs {comparison.get('prev')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _generalisation_chart(cycle: dict[str, Any], path: Path) -> bool:
    """Per targeted type: problem rate of each version on seen and on unseen phrasings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen, unseen = cycle.get("seen") or {}, cycle.get("unseen") or {}
    types = sorted(set(seen) | set(unseen))
    if not types:
        return False
    fig, ax = plt.subplots(figsize=(10, 4))
    bars = (
        (-0.3, seen, "prev", f"{cycle['parent']} seen"),
        (-0.1, seen, "new", f"{cycle['version']} seen"),
        (0.1, unseen, "prev", f"{cycle['parent']} unseen"),
        (0.3, unseen, "new", f"{cycle['version']} unseen"),
    )
    for offset, group, arm, label in bars:
        rates = [(group.get(t) or {}).get(arm) or 0.0 for t in types]
        ax.bar([i + offset for i in range(len(types))], rates, 0.2, label=label)
    ax.set_xticks(range(len(types)), types, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("problem rate (canary traffic)")
    ax.set_title(f"cycle {cycle['cycle']}: seen vs unseen phrasings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _comparison_rows(cycle: dict[str, Any]) -> list[list[Any]]:
    comparison = (cycle.get("rollout") or {}).get("comparison") or {}
    out = []
    for kind in ("targets", "guardrails"):
        for name, m in comparison.get(kind, {}).items():
            low, high = m.get("difference_interval") or [None, None]
            interval = "–" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"
            out.append(
                [kind[:-1], name, m["prev"]["rate"], m["new"]["rate"], interval, m["verdict"]]
            )
    return out


def _dataset_html(dataset: Mapping[str, Any]) -> str:
    counts = dataset.get("counts") or {}
    rows = [["tier", k, v] for k, v in (counts.get("per_tier") or {}).items()]
    rows += [["split", k, v] for k, v in (counts.get("per_split") or {}).items()]
    rows += [["ids", k, v] for k, v in (dataset.get("ids") or {}).items()]
    rows += [["held-out families", ", ".join(dataset.get("heldout_families") or []) or "–", ""]]
    evaluation = dataset.get("evaluation_set") or {}
    if evaluation:
        rows.append(["evaluation set", str(evaluation.get("version", ""))[:12],
                     f"{evaluation.get('prompts')} prompts"])  # fmt: skip
    return _table(("what", "name", "count"), rows)


def _gate_html(gate: Mapping[str, Any]) -> str:
    if not gate:
        return "<p>no gate (no version)</p>"
    keys = ("prompts", "fixed", "broken", "unchanged", "parent_pass_rate", "candidate_pass_rate")
    claimed = set(gate.get("claimed") or ())
    rows = [
        [t, *(v.get(k) for k in keys), v.get("p_value"), "yes" if t in claimed else "no"]
        for t, v in gate["paired"].items()
    ]
    for label in ("pooled", "baseline"):
        v = gate.get(label) or {}
        if v:
            p = v.get("p_worse") if label == "baseline" else v.get("p_value")
            rows.append([f"({label})", *(v.get(k) for k in keys), p, ""])
    verdict = "passed" if gate.get("passed") else f"failed: {gate_failure_reason(gate)}"
    css = "good" if gate.get("passed") else "bad"
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in gate.get("reasons", []))
    table = _table(("problem type", *keys, "p (McNemar)", "claimed"), rows)
    return f"<p class='{css}'>{html.escape(verdict)}</p>{table}<ul>{reasons}</ul>"


def _traffic_html(cycle: Mapping[str, Any]) -> str:
    rows = []
    canary = (cycle.get("rollout") or {}).get("traffic") or {}
    for stage, totals in (("production", cycle.get("production") or {}), ("canary", canary)):
        for version, groups in sorted((totals.get("groups") or {}).items()):
            for group, tally in sorted(groups.items()):
                problems = ", ".join(
                    f"{k} {v}" for k, v in sorted(tally.get("problems", {}).items())
                )
                rows.append([stage, version, group, tally["conversations"], problems or "–"])
    return _table(("traffic", "version", "phrasings", "conversations", "conversations with"), rows)


def _generalisation_rows(cycle: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for group in ("seen", "unseen"):
        for t, v in (cycle.get(group) or {}).items():
            rows.append([group, t, v.get("prev"), v.get("prev_conversations"), v.get("new"),
                         v.get("new_conversations")])  # fmt: skip
    return rows


def _section(cycle: dict[str, Any], charts: Sequence[str]) -> str:
    rollout = cycle.get("rollout") or {}
    looks = [
        [x["look"], x["step_percent"], x["action"], x["reason"]] for x in rollout.get("looks", [])
    ]
    promo = cycle.get("promotions") or {}
    shipped = "shipped" if cycle.get("shipped") else f"not shipped: {cycle.get('reason')}"
    imgs = "".join(f'<img src="{c}" alt="{c}">' for c in charts)
    parts = [
        f"<h2>Cycle {cycle['cycle']}: {html.escape(str(cycle.get('version') or 'no version'))} "
        f"vs {html.escape(str(cycle['parent']))}</h2>",
        f"<p class='{'good' if cycle.get('shipped') else 'bad'}'>{html.escape(shipped)}</p>",
        "<h3>Dataset</h3>", _dataset_html(cycle.get("dataset") or {}),
        "<h3>Gate (behaviour on unseen phrasings, parent vs candidate)</h3>",
        _gate_html((cycle.get("gate") or {}) if cycle.get("version") else {}),
        "<h3>Traffic</h3>", _traffic_html(cycle),
        "<h3>Canary looks</h3>", _table(("look", "step %", "action", "reason"), looks),
        "<h3>Verdicts</h3>",
        _table(("kind", "metric", "prev", "new", "difference (interval)", "verdict"),
               _comparison_rows(cycle)),
        "<h3>Seen vs unseen phrasings (canary traffic)</h3>",
        _table(("phrasings", "problem type", "prev rate", "prev n", "new rate", "new n"),
               _generalisation_rows(cycle)),
        "<h3>Proposals</h3>",
        _table(("proposed", "approved", "pending"),
               [[promo.get(k) for k in ("proposed", "approved", "pending")]] if promo else []),
        imgs,
    ]  # fmt: skip
    return "".join(parts)


def write_report(summary: dict[str, Any], report_dir: Path) -> list[Path]:
    """Write summary.json, the charts and report.html; returns the files written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written = [report_dir / SUMMARY_FILE]
    written[0].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    sections = []
    for cycle in summary["cycles"]:
        charts = []
        number = cycle["cycle"]
        drawings = ((f"cycle{number}_rates.png", _rates_chart),
                    (f"cycle{number}_unseen.png", _generalisation_chart))  # fmt: skip
        for name, draw in drawings:
            if draw(cycle, report_dir / name):
                charts.append(name)
                written.append(report_dir / name)
        sections.append(_section(cycle, charts))
    seed = summary.get("seed_baseline") or {}
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>loraloop demo</title>"
        f"<style>{_STYLE}</style></head><body><h1>loraloop closed-loop demo</h1>"
        f"<p>model {html.escape(str(summary['model']))}, approver "
        f"{html.escape(str(summary['approver'] or 'nobody'))}, {summary['seconds']} s</p>"
        "<h2>Seed baseline</h2>"
        f"{_table(tuple(seed), [list(seed.values())])}"
        f"{''.join(sections)}</body></html>"
    )
    (report_dir / REPORT_FILE).write_text(page, encoding="utf-8")
    return [*written, report_dir / REPORT_FILE]
