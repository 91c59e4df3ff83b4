"""Check a demo's summary.json against the warehouse it came from.

Every comparison in the summary must equal the latest look recorded in
``comparisons`` (and, checked by the driver right after the look, the rates
recomputed from the raw tables); every dataset
must equal its ``training_cycles`` row; approvals must be in ``sample_transitions``;
every chat the gateway answered must be an assistant turn in ``turns``, each
conversation's first reply under the version the simulated user was told it got;
no captured sample may be left unlabelled (the simulated reviewer labels every one).
"""

from __future__ import annotations

from typing import Any

import orjson

from analytics.comparison import compare, comparison_to_dict
from analytics.warehouse import Warehouse

_RATE_KEYS = ("rate", "std_error", "conversations", "users", "positives")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return bool(a == b)


def check_comparison(
    warehouse: Warehouse, cycle: dict[str, Any], problems: list[str], *, recompute: bool
) -> None:
    """The cycle's comparison against its recorded look and, with ``recompute``, against the
    rates computed from the raw tables now (only valid before more traffic arrives)."""
    comparison = (cycle.get("rollout") or {}).get("comparison")
    if comparison is None:
        return
    new, prev = comparison["new"], comparison["prev"]
    rows = warehouse.query(
        "SELECT payload FROM comparisons FINAL WHERE new = {new:String} AND prev = {prev:String} "
        "ORDER BY ts DESC, look_id DESC LIMIT 1",
        {"new": new, "prev": prev},
    ).result_rows
    if not rows or orjson.loads(rows[0][0]) != comparison:
        problems.append(f"cycle {cycle['cycle']}: comparison differs from the recorded look")
    if not recompute:
        return
    fresh = comparison_to_dict(
        compare(warehouse, new=new, prev=prev, split=0.5, previously_met={}),
        new=new,
        prev=prev,
    )
    for kind in ("targets", "guardrails"):
        for name, metric in comparison[kind].items():
            for arm in ("prev", "new"):
                for key in _RATE_KEYS:
                    stored, now = metric[arm][key], fresh[kind][name][arm][key]
                    if not _close(stored, now):
                        problems.append(
                            f"cycle {cycle['cycle']}: {name} {arm} {key} {stored} != {now}"
                        )


def _check_dataset(warehouse: Warehouse, cycle: dict[str, Any], problems: list[str]) -> None:
    version = cycle.get("version")
    if not version:
        return
    rows = warehouse.query(
        "SELECT dataset FROM training_cycles FINAL WHERE version = {v:String} LIMIT 1",
        {"v": version},
    ).result_rows
    stored = rows[0][0] if rows else None
    stored = orjson.loads(stored) if isinstance(stored, str) else stored
    if stored != cycle["dataset"]["counts"]:
        problems.append(f"cycle {cycle['cycle']}: dataset {cycle['dataset']['counts']} != {stored}")


def _check_approvals(warehouse: Warehouse, summary: dict[str, Any], problems: list[str]) -> None:
    approver = summary.get("approver")
    approved = sum((c.get("promotions") or {}).get("approved", 0) for c in summary["cycles"])
    approved += 3 * summary["seed_baseline"]["moved_to_core"]
    count = int(
        warehouse.query(
            "SELECT count() FROM sample_transitions FINAL WHERE actor = {a:String} "
            "AND role = 'approver' AND NOT proposal AND action = 'promote'",
            {"a": approver or ""},
        ).result_rows[0][0]
    )
    if count != approved:
        problems.append(f"approvals by {approver}: summary {approved}, warehouse {count}")


def _served_per_version(summary: dict[str, Any]) -> dict[str, int]:
    """First replies per version, as the simulated users counted them."""
    counts: dict[str, int] = {}
    for cycle in summary["cycles"]:
        for traffic in (cycle.get("production"), (cycle.get("rollout") or {}).get("traffic")):
            for version, n in ((traffic or {}).get("per_version") or {}).items():
                counts[version] = counts.get(version, 0) + int(n)
    return counts


def _check_gateway(warehouse: Warehouse, summary: dict[str, Any], problems: list[str]) -> None:
    gateway = summary.get("gateway")
    if gateway is None:
        return
    replies = int(
        warehouse.query("SELECT count() FROM turns FINAL WHERE role = 'assistant'").result_rows[0][
            0
        ]
    )
    if replies != gateway["requests"]:
        problems.append(f"gateway answered {gateway['requests']} chats, turns hold {replies}")
    rows = warehouse.query(
        "SELECT model_version, count() FROM turns FINAL WHERE role = 'assistant' "
        "AND turn_index = 1 AND user_id != {curator:String} GROUP BY model_version",
        {"curator": summary["seed_baseline"].get("curator", "")},
    ).result_rows
    stored = {str(v): int(n) for v, n in rows}
    if stored != _served_per_version(summary):
        problems.append(f"first replies per version: summary {_served_per_version(summary)}, "
                        f"turns {stored}")  # fmt: skip


def _check_labelled(warehouse: Warehouse, problems: list[str]) -> None:
    left = int(
        warehouse.query("SELECT count() FROM pool WHERE status = 'captured'").result_rows[0][0]
    )
    if left:
        problems.append(f"{left} captured samples were never labelled by the reviewer")


def verify(warehouse: Warehouse, summary: dict[str, Any]) -> list[str]:
    """Disagreements between ``summary`` and the warehouse (empty when they agree)."""
    problems: list[str] = []
    for cycle in summary["cycles"]:
        check_comparison(warehouse, cycle, problems, recompute=False)
        _check_dataset(warehouse, cycle, problems)
    _check_approvals(warehouse, summary, problems)
    _check_gateway(warehouse, summary, problems)
    _check_labelled(warehouse, problems)
    return problems
