"""Compare a canary with its previous version from the warehouse, one look at a time.

``compare`` reads the per-user cluster sums of every problem type and guardrail and the
health counts (``analytics.rate_queries``), and hands them to the statistics layer
(``analytics.stats.compare_versions``). ``look`` is one scheduled look: it takes the
previous look's solved criteria from ``comparisons`` (the two-consecutive-looks rule),
compares, records the look, and writes promotion proposals for solved types.
``comparison_to_dict`` renders a result as JSON-safe data (non-finite numbers → None).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from analytics.proposals import propose_solved
from analytics.rate_config import RateQuerySettings
from analytics.rate_queries import (
    EPOCH,
    HEALTH_SQL,
    ArmSums,
    MetricSpec,
    cluster_params,
    cluster_sql,
    guardrail_specs,
    parse_cluster_rows,
    target_specs,
)
from analytics.stats import (
    ArmRates,
    Comparison,
    ComparisonSettings,
    HealthCheck,
    MetricResult,
    RateEstimate,
    Verdict,
    check_health,
    compare_versions,
    ratio_rate,
)
from loraloop.exceptions import LoraloopError

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

LOOK_COLUMNS = ("look_id", "new", "prev", "ts", "decision", "solved_criteria_met", "payload")


class ComparisonError(LoraloopError):
    """A comparison was asked for something impossible (same versions, split outside (0, 1))."""


def _check(new: str, prev: str, split: float) -> None:
    if not new or not prev or new == prev:
        msg = f"compare needs two different versions, got new={new!r}, prev={prev!r}"
        raise ComparisonError(msg)
    if not 0 < split < 1:
        msg = (
            f"split is the new version's share of users and must lie in (0, 1), got {split}; "
            "at 100 % there is no control arm left to compare with"
        )
        raise ComparisonError(msg)


def arm_sums(
    warehouse: Warehouse,
    specs: list[MetricSpec],
    *,
    versions: tuple[str, str],
    settings: RateQuerySettings,
) -> ArmSums:
    """Cluster sums of ``specs`` for both versions (one query)."""
    sql, params = cluster_sql(specs)
    rows = warehouse.query(sql, {**cluster_params(versions, settings), **params}).result_rows
    return parse_cluster_rows(rows, specs)


def health(
    warehouse: Warehouse,
    *,
    new: str,
    prev: str,
    split: float,
    since: datetime | None,
    settings: ComparisonSettings,
) -> HealthCheck:
    """SRM and multiple exposure over users first exposed since ``since``."""
    params = {"new": new, "prev": prev, "since": since or EPOCH}
    new_users, prev_users, both = warehouse.query(HEALTH_SQL, params).result_rows[0]
    return check_health(
        [int(prev_users), int(new_users)],
        [1 - split, split],
        users_in_both=int(both),
        settings=settings,
    )


def _pairs(sums: ArmSums, specs: list[MetricSpec], new: str, prev: str) -> dict[str, ArmRates]:
    return {
        s.name: ArmRates(
            prev=ratio_rate(sums.get(prev, s.name)),
            new=ratio_rate(sums.get(new, s.name)),
            direction=s.direction,
        )
        for s in specs
    }


def compare(
    warehouse: Warehouse,
    *,
    new: str,
    prev: str,
    split: float,
    previously_met: Collection[str] | None = None,
    settings: ComparisonSettings | None = None,
    rates: RateQuerySettings | None = None,
    since: datetime | None = None,
) -> Comparison:
    """One look at ``new`` against ``prev`` (read-only).

    ``split`` is the new version's configured share of users in (0, 1). ``previously_met``
    is the previous look's ``solved_criteria_met``; None reads it from ``comparisons``.
    ``since`` (the start of the current rollout step) bounds the health checks' users.
    """
    _check(new, prev, split)
    cfg = settings or ComparisonSettings()
    rate_cfg = rates or RateQuerySettings()
    targets, guardrails = target_specs(rate_cfg), guardrail_specs(rate_cfg)
    sums = arm_sums(warehouse, targets + guardrails, versions=(new, prev), settings=rate_cfg)
    checked = health(warehouse, new=new, prev=prev, split=split, since=since, settings=cfg)
    if previously_met is None:
        previously_met = previous_solved(warehouse, new=new, prev=prev)
    return compare_versions(
        _pairs(sums, targets, new, prev),
        _pairs(sums, guardrails, new, prev),
        checked,
        previously_met=previously_met,
        settings=cfg,
    )


def previous_solved(warehouse: Warehouse, *, new: str, prev: str) -> frozenset[str]:
    """``solved_criteria_met`` of the latest recorded look at (new, prev); empty if none."""
    rows = warehouse.query(
        "SELECT solved_criteria_met FROM comparisons FINAL "
        "WHERE new = {new:String} AND prev = {prev:String} ORDER BY ts DESC, look_id DESC LIMIT 1",
        {"new": new, "prev": prev},
    ).result_rows
    return frozenset(rows[0][0]) if rows else frozenset()


def record_look(
    warehouse: Warehouse, comparison: Comparison, *, new: str, prev: str, ts: datetime
) -> str:
    """Persist one look in ``comparisons``; returns its look id."""
    look_id = uuid.uuid4().hex
    payload = comparison_to_dict(comparison, new=new, prev=prev)
    row = [
        look_id,
        new,
        prev,
        ts,
        comparison.decision.value,
        sorted(comparison.solved_criteria_met),
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode(),
    ]
    warehouse.insert("comparisons", [row], column_names=LOOK_COLUMNS)
    return look_id


def look(
    warehouse: Warehouse,
    *,
    new: str,
    prev: str,
    split: float,
    actor: str,
    settings: ComparisonSettings | None = None,
    rates: RateQuerySettings | None = None,
    since: datetime | None = None,
    trained_sample_ids: Collection[str] | None = None,
    now: datetime | None = None,
) -> Comparison:
    """Compare against the previous look, record this look, propose solved types' samples."""
    ts = now or datetime.now(UTC)
    comparison = compare(
        warehouse, new=new, prev=prev, split=split, settings=settings, rates=rates, since=since
    )
    record_look(warehouse, comparison, new=new, prev=prev, ts=ts)
    solved = {
        name: metric_to_dict(result)
        for name, result in comparison.targets.items()
        if result.verdict is Verdict.SOLVED_CANDIDATE
    }
    if solved:
        propose_solved(
            warehouse,
            version=new,
            verdicts=solved,
            actor=actor,
            ts=ts,
            trained_sample_ids=trained_sample_ids,
        )
    logger.info("look at %s vs %s: %s (%s)", new, prev, comparison.decision, comparison.reason)
    return comparison


# ---------------------------------------------------------------------------- rendering


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rate(rate: RateEstimate) -> dict[str, Any]:
    return {
        "rate": _num(rate.rate),
        "std_error": _num(rate.std_error),
        "conversations": _num(rate.events),
        "users": rate.units,
        "positives": _num(rate.positives),
    }


def metric_to_dict(result: MetricResult) -> dict[str, Any]:
    """One metric's look, JSON-safe."""
    diff, rel = result.difference_interval, result.relative_change_interval
    return {
        "name": result.name,
        "direction": result.direction.value,
        "verdict": result.verdict.value,
        "reason": result.reason,
        "prev": _rate(result.prev),
        "new": _rate(result.new),
        "difference": _num(result.difference),
        "difference_interval": [_num(diff.lower), _num(diff.upper)],
        "regression_bound": _num(result.regression_bound),
        "relative_change": _num(result.relative_change),
        "relative_change_interval": [_num(rel.lower), _num(rel.upper)],
        "e_value": _num(result.e_value),
        "solved_criteria_met": result.solved_criteria_met,
    }


def comparison_to_dict(comparison: Comparison, *, new: str, prev: str) -> dict[str, Any]:
    """The whole look, JSON-safe: decision, health, targets and guardrails."""
    checked = comparison.health
    return {
        "new": new,
        "prev": prev,
        "decision": comparison.decision.value,
        "reason": comparison.reason,
        "health": {
            "healthy": checked.healthy,
            "srm_p_value": _num(checked.srm_p_value),
            "multiple_exposure_share": _num(checked.multiple_exposure_share),
            "reasons": list(checked.reasons),
        },
        "solved_criteria_met": sorted(comparison.solved_criteria_met),
        "all_guardrails_non_inferior": comparison.all_guardrails_non_inferior,
        "targets": {n: metric_to_dict(r) for n, r in comparison.targets.items()},
        "guardrails": {n: metric_to_dict(r) for n, r in comparison.guardrails.items()},
    }


def rates_table(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Targets then guardrails, one flat row each (for the CLI and dashboards)."""
    rows = []
    for kind in ("targets", "guardrails"):
        for name, metric in payload[kind].items():
            rows.append({"kind": kind[:-1], "name": name, **metric})
    return rows
