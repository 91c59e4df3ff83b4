"""The report directory: summary.json, one PNG chart per cycle, report.html."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import orjson

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
Z_95 = 1.96


def _chart(cycle: dict[str, Any], path: Path) -> bool:
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


def _rows(cycle: dict[str, Any]) -> str:
    comparison = (cycle.get("rollout") or {}).get("comparison") or {}
    out = []
    for kind in ("targets", "guardrails"):
        for name, m in comparison.get(kind, {}).items():
            low, high = m.get("difference_interval") or [None, None]
            interval = "–" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"
            prev, new = m["prev"]["rate"], m["new"]["rate"]
            out.append(
                f"<tr><td>{kind[:-1]}</td><td>{html.escape(name)}</td>"
                f"<td>{'–' if prev is None else f'{prev:.3f}'}</td>"
                f"<td>{'–' if new is None else f'{new:.3f}'}</td><td>{interval}</td>"
                f"<td>{html.escape(m['verdict'])}</td></tr>"
            )
    return "".join(out)


def _section(cycle: dict[str, Any], chart: str | None) -> str:
    rollout = cycle.get("rollout") or {}
    looks = "".join(
        f"<li>{x['step_percent']:g} %: {html.escape(x['action'])} — {html.escape(x['reason'])}</li>"
        for x in rollout.get("looks", [])
    )
    facts = {
        "version": cycle.get("version"), "parent": cycle.get("parent"),
        "dataset": cycle.get("dataset", {}).get("counts"), "gate": (cycle.get("gate") or {}),
        "training": cycle.get("training"), "promotions": cycle.get("promotions"),
        "pool before": cycle.get("pool_before"), "pool after": cycle.get("pool_after"),
        "production traffic": cycle.get("production"),
    }  # fmt: skip
    items = "".join(
        f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(str(v))}</code></dd>"
        for k, v in facts.items()
    )
    img = f'<img src="{chart}" alt="rates">' if chart else ""
    return (
        f"<h2>Cycle {cycle['cycle']}</h2><dl>{items}</dl><h3>Rollout</h3><ul>{looks}</ul>"
        "<table><tr><th>kind</th><th>metric</th><th>prev</th><th>new</th>"
        f"<th>difference (interval)</th><th>verdict</th></tr>{_rows(cycle)}</table>{img}"
    )


def write_report(summary: dict[str, Any], report_dir: Path) -> list[Path]:
    """Write summary.json, the charts and report.html; returns the files written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written = [report_dir / SUMMARY_FILE]
    written[0].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    sections = []
    for cycle in summary["cycles"]:
        name = f"cycle{cycle['cycle']}_rates.png"
        chart = name if _chart(cycle, report_dir / name) else None
        if chart:
            written.append(report_dir / name)
        sections.append(_section(cycle, chart))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>loraloop demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}</style>"
        f"</head><body><h1>loraloop closed-loop demo</h1><p>model {summary['model']}, "
        f"approver {html.escape(str(summary['approver']))}, {summary['seconds']} s; seed "
        f"baseline <code>{html.escape(str(summary['seed_baseline']))}</code></p>"
        f"{''.join(sections)}</body></html>"
    )
    (report_dir / REPORT_FILE).write_text(page, encoding="utf-8")
    return [*written, report_dir / REPORT_FILE]
