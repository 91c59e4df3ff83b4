"""Compare a canary with its previous version from the warehouse, one look at a time.

``compare`` reads the rollout's steps (``rollouts``), the per-user, per-step sums of
every problem type and guardrail, each arm's labelling coverage and the health counts
(``analytics.rate_queries``), combines the steps (``analytics.stats.strata``) and hands
the rates to the statistics layer (``analytics.stats.compare_versions``). ``look`` is
one scheduled look: it takes the previous look's solved streaks from ``comparisons``
(the two-look rule), compares, records the look, and writes promotion proposals for
solved types. ``comparison_to_dict`` renders a result as JSON-safe data (non-finite
numbers → None).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from analytics.proposals import FamilyRule, propose_solved
from analytics.rate_config import RateQuerySettings
from analytics.rate_queries import (
    EPOCH,
    HEALTH_SQL,
    TESTERS_SQL,
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
    LabelCoverage,
    MetricResult,
    RateEstimate,
    StratumCounts,
    Verdict,
    check_health,
    compare_versions,
    stratified_rate,
    stratum_weights,
)
from loraloop.exceptions import LoraloopError

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

logger = logging.getLogger(__name__)

_PERCENT = 100.0
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


class UnknownVersionError(ComparisonError):
    """A version to compare served no conversation; the message lists the versions that did."""


_VERSIONS_SQL = """
SELECT model_version, count() FROM conversations FINAL
WHERE model_version != '' GROUP BY model_version ORDER BY model_version
"""


def versions_with_traffic(warehouse: Warehouse) -> dict[str, int]:
    """Each model version that served a conversation, with its number of conversations.

    Empty when the warehouse has no ``conversations`` table yet (never migrated).
    """
    if not warehouse.query("EXISTS TABLE conversations").result_rows[0][0]:
        return {}
    rows = warehouse.query(_VERSIONS_SQL).result_rows
    return {str(version): int(count) for version, count in rows}


def check_versions(warehouse: Warehouse, *, new: str, prev: str) -> dict[str, int]:
    """The versions with traffic, after checking that ``new`` and ``prev`` are among them.

    Raises ``UnknownVersionError`` naming the unknown ones and listing the known ones, so a
    typo is never answered with rates and a decision computed from no conversations.
    """
    known = versions_with_traffic(warehouse)
    unknown = [v for v in dict.fromkeys((new, prev)) if v not in known]
    if not unknown:
        return known
    names = " and ".join(unknown)
    if not known:
        msg = (
            f"no conversation was served by {names}: the warehouse holds no conversations "
            "yet; publish traffic first (`loraloop produce FILE.jsonl` to a running "
            "`loraloop up`, or `loraloop replay FILE.jsonl`)"
        )
        raise UnknownVersionError(msg)
    listed = ", ".join(f"{v} ({n} conversations)" for v, n in known.items())
    msg = f"no conversation was served by {names}; versions with traffic: {listed}"
    raise UnknownVersionError(msg)


@dataclass(frozen=True, slots=True)
class Step:
    """A rollout step: when it began and the canary's share of users in it."""

    started_at: datetime
    share: float


_STEPS_SQL = """
SELECT step_percent, JSONExtractString(evidence, 'state', 'step_started_at') AS started
FROM rollouts FINAL
WHERE version = {version:String} AND decision IN ('start', 'advance')
ORDER BY ts, JSONExtractUInt(evidence, 'state', 'seq')
"""


def rollout_steps(warehouse: Warehouse, version: str) -> list[Step]:
    """The steps of ``version``'s rollout in order; empty if it has none."""
    steps = []
    for percent, started in warehouse.query(_STEPS_SQL, {"version": version}).result_rows:
        steps.append(Step(datetime.fromisoformat(str(started)), float(percent) / _PERCENT))
    return steps


def arm_sums(
    warehouse: Warehouse,
    specs: list[MetricSpec],
    *,
    versions: tuple[str, str],
    settings: RateQuerySettings,
    bounds: Sequence[datetime] = (),
    excluded: Sequence[str] = (),
) -> ArmSums:
    """Per-step sums of ``specs`` and each arm's coverage for both versions (one query)."""
    strata = max(1, len(bounds))
    sql, params = cluster_sql(specs, strata, cluster_by=settings.cluster_by)
    query = {**cluster_params(versions, settings, bounds=bounds, excluded=excluded), **params}
    rows = warehouse.query(sql, query).result_rows
    return parse_cluster_rows(rows, specs, strata)


def health(
    warehouse: Warehouse,
    *,
    new: str,
    prev: str,
    split: float,
    since: datetime | None,
    settings: ComparisonSettings,
    excluded: Sequence[str] = (),
) -> HealthCheck:
    """SRM and multiple exposure over users first exposed since ``since`` (testers left out)."""
    params = {"new": new, "prev": prev, "since": since or EPOCH, "excluded": list(excluded)}
    new_users, prev_users, both = warehouse.query(HEALTH_SQL, params).result_rows[0]
    return check_health(
        [int(prev_users), int(new_users)],
        [1 - split, split],
        users_in_both=int(both),
        settings=settings,
    )


def testers(
    warehouse: Warehouse, *, versions: tuple[str, str], excluded: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Allowlisted testers' users and conversations per version, reported apart."""
    if not excluded:
        return {}
    params = {"versions": list(versions), "excluded": list(excluded)}
    rows = warehouse.query(TESTERS_SQL, params).result_rows
    return {str(v): {"users": int(u), "conversations": int(c)} for v, u, c in rows}


def _pairs(sums: ArmSums, specs: list[MetricSpec], new: str, prev: str) -> dict[str, ArmRates]:
    coverage = LabelCoverage(sums.coverage_of(prev).share, sums.coverage_of(new).share)
    pairs = {}
    for spec in specs:
        p, q = sums.get(prev, spec.name), sums.get(new, spec.name)
        weights = stratum_weights(p, q)
        strata = tuple(
            StratumCounts(p.n[s], p.y[s], q.n[s], q.y[s])
            for s in range(sums.strata)
            if weights[s] > 0
        )
        pairs[spec.name] = ArmRates(
            prev=stratified_rate(p, weights),
            new=stratified_rate(q, weights),
            direction=spec.direction,
            exact_counts=not spec.reviewed,
            strata=strata,
            coverage=coverage if spec.reviewed else None,
        )
    return pairs


@dataclass(frozen=True, slots=True)
class VersionComparison:
    """A comparison and what was read for it: the steps compared and the testers left out."""

    comparison: Comparison
    steps: tuple[Step, ...]
    testers: Mapping[str, Mapping[str, int]]


def compare(
    warehouse: Warehouse,
    *,
    new: str,
    prev: str,
    split: float,
    previously_met: Mapping[str, float] | None = None,
    settings: ComparisonSettings | None = None,
    rates: RateQuerySettings | None = None,
    since: datetime | None = None,
    steps: Sequence[Step] | None = None,
    excluded_users: Sequence[str] = (),
) -> VersionComparison:
    """One look at ``new`` against ``prev`` (read-only): the comparison, steps and testers.

    ``split`` is the new version's share of users in the current step, in (0, 1).
    ``steps`` are the rollout's steps (None: read from ``rollouts``; a version without a
    rollout is one step since ever); each conversation is compared within its step.
    ``previously_met`` is the previous look's ``solved_since``; None reads it from
    ``comparisons``. ``since`` (the start of the current step) bounds the health checks'
    users. ``excluded_users`` (the allowlisted testers) are left out of rates and health.
    """
    _check(new, prev, split)
    cfg = settings or ComparisonSettings()
    rate_cfg = rates or RateQuerySettings()
    chosen = tuple(rollout_steps(warehouse, new) if steps is None else steps)
    bounds = [s.started_at for s in chosen]
    targets, guardrails = target_specs(rate_cfg), guardrail_specs(rate_cfg)
    sums = arm_sums(
        warehouse, targets + guardrails, versions=(new, prev), settings=rate_cfg,
        bounds=bounds, excluded=excluded_users,
    )  # fmt: skip
    checked = health(
        warehouse, new=new, prev=prev, split=split, since=since, settings=cfg,
        excluded=excluded_users,
    )  # fmt: skip
    if previously_met is None:
        previously_met = previous_solved(warehouse, new=new, prev=prev)
    comparison = compare_versions(
        _pairs(sums, targets, new, prev),
        _pairs(sums, guardrails, new, prev),
        checked,
        previously_met=previously_met,
        settings=cfg,
    )
    found = testers(warehouse, versions=(new, prev), excluded=excluded_users)
    return VersionComparison(comparison, chosen, found)


def previous_solved(warehouse: Warehouse, *, new: str, prev: str) -> dict[str, float]:
    """``solved_since`` of the latest recorded look at (new, prev); empty if none.

    A look recorded before streaks carried their size counts each type as met at size 0.
    """
    rows = warehouse.query(
        "SELECT solved_criteria_met, JSONExtractRaw(payload, 'solved_since') FROM comparisons "
        "FINAL WHERE new = {new:String} AND prev = {prev:String} "
        "ORDER BY ts DESC, look_id DESC LIMIT 1",
        {"new": new, "prev": prev},
    ).result_rows
    if not rows:
        return {}
    names, raw = rows[0]
    since = orjson.loads(raw) if raw else {}
    return {str(n): float(since.get(n) or 0.0) for n in names}


def record_look(
    warehouse: Warehouse,
    comparison: Comparison | VersionComparison,
    *,
    new: str,
    prev: str,
    ts: datetime,
) -> str:
    """Persist one look in ``comparisons``; returns its look id."""
    look_id = uuid.uuid4().hex
    payload = comparison_to_dict(comparison, new=new, prev=prev)
    if isinstance(comparison, VersionComparison):
        comparison = comparison.comparison
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
    families: Mapping[str, Mapping[str, Any]] | None = None,
    rule: FamilyRule | None = None,
    now: datetime | None = None,
    excluded_users: Sequence[str] = (),
) -> Comparison:
    """Compare against the previous look, record this look, propose solved types' samples.

    Proposals need the version's manifest ``families`` (see
    :func:`analytics.proposals.propose_solved`): without them nothing is proposed.
    """
    ts = now or datetime.now(UTC)
    detailed = compare(
        warehouse, new=new, prev=prev, split=split, settings=settings, rates=rates,
        since=since, excluded_users=excluded_users,
    )  # fmt: skip
    comparison = detailed.comparison
    record_look(warehouse, detailed, new=new, prev=prev, ts=ts)
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
            families=families,
            since=detailed.steps[0].started_at if detailed.steps else since,
            excluded_users=excluded_users,
            rule=rule,
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
        "effective_events": _num(rate.event_count),
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
        "difference_interval_alpha": result.difference_level,
        "regression_bound": _num(result.regression_bound),
        "relative_change": _num(result.relative_change),
        "relative_change_interval": [_num(rel.lower), _num(rel.upper)],
        "relative_change_interval_alpha": result.relative_level,
        "e_value": _num(result.e_value),
        "count_e_value": _num(result.count_e_value),
        "expected_events": _num(result.expected_events),
        "label_coverage": (
            None
            if result.coverage is None
            else {"prev": result.coverage.prev, "new": result.coverage.new}
        ),
        "solved_criteria_met": result.solved_criteria_met,
    }


def comparison_to_dict(
    comparison: Comparison | VersionComparison, *, new: str, prev: str
) -> dict[str, Any]:
    """The whole look, JSON-safe: decision, health, targets and guardrails.

    Each interval's ends are one-sided bounds at its ``*_alpha`` (the decision's level).
    """
    extra: dict[str, Any] = {}
    if isinstance(comparison, VersionComparison):
        extra = {
            "steps": [
                {"started_at": s.started_at.isoformat(), "share": s.share} for s in comparison.steps
            ],
            "testers": {v: dict(t) for v, t in comparison.testers.items()},
        }
        comparison = comparison.comparison
    checked = comparison.health
    return {
        **extra,
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
        "solved_since": {n: _num(v) for n, v in sorted(comparison.solved_since.items())},
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
