"""Warehouse queries behind a version comparison: per-user, per-step sums and health counts.

Rate of a metric for a version = conversations with the label / conversations served,
counted per user after the user's first exposure to either version (``assignments``),
from concurrent data only: each conversation falls in the rollout step (stratum) in
which it began, conversations from before the rollout's first step are left out, and
the statistics layer compares the arms within each step (``analytics.stats.strata``).
One user may hold many conversations in several steps, so the query returns per version
and metric the per-step sums and the cross-step products over users (users, Σn_s, Σy_s,
Σn_s·n_t, Σy_s·y_t, Σy_s·n_t), computed in SQL by grouping per user first.

- Every-conversation metrics (handoffs, CTA clicks, conversions, detectors) count y = 1
  per conversation with the label: exact event counts.
- Label- and QA-derived metrics (problem types, Risk/Reject) are known only for sampled,
  reviewed conversations, so they are Horvitz–Thompson estimates over the sampling
  design: y = 1/π for a conversation that the design sampled (``conversations.sampled``,
  π its stored design probability) and whose label (or, without one, QA verdict) carries
  the type. A sample made outside the design (a QA review of an unsampled conversation,
  ``sampled_by = qa_review``) trains but never enters a rate. Unlabelled samples count 0,
  so the query also returns each arm's sampled and reviewed conversations: the verdict
  waits for the labelling coverage (``insufficient_labels``).
- Allowlisted testers always get the canary: they are left out of the rates and the
  health counts and reported apart.

SQL text is assembled only from the fixed templates below and the integer sizes of the
arrays; every value is a bound ``{name:Type}`` parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from analytics.rate_config import RateQuerySettings
from analytics.stats import Direction, StratifiedSums

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_S: Final = 1000

RISK_REJECT: Final = "risk_reject_rate"
ABNORMAL_HANDOFF: Final = "abnormal_handoff_rate"
CTA_CLICK: Final = "cta_click_rate"
CONVERSION: Final = "conversion_rate"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One rate: its name, the per-conversation y expression, its parameters, its direction.

    ``expression`` is a fixed SQL template over the aliases ``c`` (conversations) and ``p``
    (labelled samples); ``{param}`` marks where the metric's own bound parameter goes.
    """

    name: str
    expression: str
    value: str | None = None
    direction: Direction = Direction.HIGHER_IS_WORSE
    reviewed: bool = False
    """Derived from labels or QA reviews of sampled conversations: an HT estimate whose
    verdict waits for the labelling coverage; otherwise an exact count per conversation."""


def _design(condition: str) -> str:
    """y = 1/π for a design-sampled conversation meeting ``condition``, else 0."""
    return (
        f"if(c.sampled AND c.inclusion_probability > 0 AND ({condition}), "
        "1 / c.inclusion_probability, 0)"
    )


_QA_TYPE = _design("has(c.qa_problem_types, {param})")
_LABEL_TYPE = _design("has(p.problem_types, {param})")
_RISK = _design(
    "if(p.label_acceptance != '', p.label_acceptance, c.qa_acceptance) IN {risk:Array(String)}"
)
_DETECTOR = "toFloat64(has(c.detectors, {param}))"
_SAMPLED = "toFloat64(c.sampled)"
_REVIEWED = "toFloat64(c.sampled AND (p.label_acceptance != '' OR c.qa_acceptance != ''))"
COVERAGE_SPECS: Final = (
    MetricSpec("coverage:sampled", _SAMPLED),
    MetricSpec("coverage:reviewed", _REVIEWED),
)
"""Pseudo-metrics that count each arm's sampled and reviewed conversations."""


def target_specs(settings: RateQuerySettings) -> list[MetricSpec]:
    """One higher-is-worse metric per problem type, from labels or QA verdicts (both HT)."""
    expression = _LABEL_TYPE if settings.target_source == "labels" else _QA_TYPE
    return [MetricSpec(t, expression, t, reviewed=True) for t in settings.problem_types]


def guardrail_specs(settings: RateQuerySettings) -> list[MetricSpec]:
    """New Risk/Reject (HT over the QA design), abnormal handoffs, CTA clicks, conversions."""
    lower = Direction.LOWER_IS_WORSE
    specs = [
        MetricSpec(RISK_REJECT, _RISK, reviewed=True),
        MetricSpec(ABNORMAL_HANDOFF, "toFloat64(c.handoff)"),
        MetricSpec(CTA_CLICK, "toFloat64(c.cta_clicks > 0)", direction=lower),
        MetricSpec(CONVERSION, "toFloat64(c.conversions > 0)", direction=lower),
    ]
    specs += [MetricSpec(f"detector:{d}", _DETECTOR, d) for d in settings.detector_guardrails]
    return specs


@dataclass(frozen=True, slots=True)
class Coverage:
    """One arm's sampled conversations and those of them that carry a label or QA verdict."""

    sampled: float = 0.0
    reviewed: float = 0.0

    @property
    def share(self) -> float:
        """Reviewed share of the sampled conversations (1.0 when none was sampled)."""
        return self.reviewed / self.sampled if self.sampled > 0 else 1.0


@dataclass(frozen=True, slots=True)
class ArmSums:
    """Per-step sums of every metric, per version: ``sums[version][metric]``."""

    strata: int = 1
    sums: Mapping[str, Mapping[str, StratifiedSums]] = field(default_factory=dict)
    coverage: Mapping[str, Coverage] = field(default_factory=dict)

    def get(self, version: str, metric: str) -> StratifiedSums:
        found = self.sums.get(version, {}).get(metric)
        return found if found is not None else StratifiedSums.empty(self.strata)

    def coverage_of(self, version: str) -> Coverage:
        return self.coverage.get(version, Coverage())


_CLUSTER_SQL = """
WITH
exposure AS (
    SELECT user_id, min(first_exposure) AS exposed_at
    FROM assignments
    WHERE version IN {{versions:Array(String)}} AND user_id NOT IN {{excluded:Array(String)}}
    GROUP BY user_id
),
per_conversation AS (
    SELECT
        c.model_version AS version,
        c.user_id AS user_id,
        toUInt32(arrayCount(b -> b <= c.first_ts, {{bounds:Array(DateTime64(3, 'UTC'))}}))
            AS step,
        [{ys}] AS y
    FROM (
        SELECT * FROM conversations FINAL
        WHERE model_version IN {{versions:Array(String)}}
            AND user_id NOT IN {{excluded:Array(String)}}
    ) AS c
    INNER JOIN exposure AS e ON e.user_id = c.user_id
    LEFT JOIN (
        SELECT conversation_id, any(problem_types) AS problem_types,
               any(acceptance) AS label_acceptance
        FROM pool
        WHERE acceptance != '' AND conversation_id IN (
            SELECT conversation_id FROM conversations FINAL
            WHERE model_version IN {{versions:Array(String)}}
        )
        GROUP BY conversation_id
    ) AS p ON p.conversation_id = c.conversation_id
    WHERE c.first_ts >= e.exposed_at - toIntervalMillisecond({{grace_ms:UInt64}})
        AND step > 0
),
per_user AS (
    SELECT
        version,
        user_id,
        sumForEach(arrayMap(s -> toFloat64(step = s), range(1, {s1}))) AS ns,
        sumForEach(arrayFlatten(arrayMap(
            v -> arrayMap(s -> if(step = s, v, 0.), range(1, {s1})), y))) AS ys
    FROM per_conversation
    GROUP BY version, user_id
)
SELECT
    version,
    count() AS users,
    sumForEach(arrayMap(v -> toFloat64(v > 0), ns)) AS users_s,
    sumForEach(ns) AS n_s,
    sumForEach(arrayFlatten(arrayMap(a -> arrayMap(b -> a * b, ns), ns))) AS nn,
    sumForEach(ys) AS y,
    sumForEach(arrayFlatten(arrayMap(m -> arrayFlatten(arrayMap(
        s -> arrayMap(t -> ys[m * {s} + s] * ys[m * {s} + t], range(1, {s1})),
        range(1, {s1}))), range({m})))) AS yy,
    sumForEach(arrayFlatten(arrayMap(m -> arrayFlatten(arrayMap(
        s -> arrayMap(t -> ys[m * {s} + s] * ns[t], range(1, {s1})),
        range(1, {s1}))), range({m})))) AS yn
FROM per_user
GROUP BY version
"""


def cluster_sql(specs: Sequence[MetricSpec], strata: int = 1) -> tuple[str, dict[str, Any]]:
    """The per-version, per-step sums query of ``specs`` and the metric parameters it binds.

    ``strata`` is the number of rollout steps; bind their start times as ``bounds``
    (``cluster_params``). The coverage pseudo-metrics are appended to ``specs``.
    """
    params: dict[str, Any] = {}
    ys = []
    for i, spec in enumerate([*specs, *COVERAGE_SPECS]):
        placeholder = f"{{m{i}:String}}"
        if spec.value is not None:
            params[f"m{i}"] = spec.value
        ys.append(spec.expression.replace("{param}", placeholder))
    metrics = len(ys)
    sql = _CLUSTER_SQL.format(ys=", ".join(ys), s=strata, s1=strata + 1, m=metrics)
    return sql, params


def parse_cluster_rows(
    rows: Sequence[Sequence[Any]], specs: Sequence[MetricSpec], strata: int = 1
) -> ArmSums:
    """``ArmSums`` from the rows of :func:`cluster_sql`."""
    found: dict[str, dict[str, StratifiedSums]] = {}
    coverage: dict[str, Coverage] = {}
    s2 = strata * strata
    for version, users, users_s, n_s, nn, y, yy, yn in rows:
        per_metric = {}
        for i, spec in enumerate(specs):
            per_metric[spec.name] = StratifiedSums.from_arrays(
                distinct_users=int(users),
                users=users_s,
                n=n_s,
                y=y[i * strata : (i + 1) * strata],
                nn=nn,
                yy=yy[i * s2 : (i + 1) * s2],
                yn=yn[i * s2 : (i + 1) * s2],
            )
        base = len(specs) * strata
        sampled = float(sum(y[base : base + strata]))
        reviewed = float(sum(y[base + strata : base + 2 * strata]))
        found[str(version)] = per_metric
        coverage[str(version)] = Coverage(sampled, reviewed)
    return ArmSums(strata, found, coverage)


def cluster_params(
    versions: Sequence[str],
    settings: RateQuerySettings,
    *,
    bounds: Sequence[datetime] = (),
    excluded: Sequence[str] = (),
) -> dict[str, Any]:
    """The shared parameters of :func:`cluster_sql`: versions, step starts, grace, risk.

    ``bounds`` are the rollout steps' start times in order (empty: one step since ever);
    ``excluded`` the allowlisted testers.
    """
    return {
        "versions": list(versions),
        "bounds": list(bounds) or [EPOCH],
        "excluded": list(excluded),
        "grace_ms": round(settings.exposure_grace_s * _MS_PER_S),
        "risk": list(settings.risk_acceptances),
    }


TESTERS_SQL = """
SELECT model_version, uniqExact(user_id), count()
FROM conversations FINAL
WHERE model_version IN {versions:Array(String)} AND user_id IN {excluded:Array(String)}
GROUP BY model_version
"""
"""Allowlisted testers' users and conversations per version (reported apart)."""


HEALTH_SQL = """
SELECT
    countIf(first_version = {new:String}) AS new_users,
    countIf(first_version = {prev:String}) AS prev_users,
    countIf(versions > 1) AS both_users
FROM (
    SELECT user_id, argMin(version, ts) AS first_version, min(ts) AS first_ts,
           uniqExact(version) AS versions
    FROM (
        SELECT user_id, version, min(first_exposure) AS ts
        FROM assignments
        WHERE version IN ({new:String}, {prev:String})
            AND user_id NOT IN {excluded:Array(String)}
        GROUP BY user_id, version
    )
    GROUP BY user_id
)
WHERE first_ts >= {since:DateTime64(3, 'UTC')}
"""
"""Users first exposed since ``since``, by the arm of their first exposure, and those of
them assigned to both versions. Pass the start of the current rollout step as ``since``:
users a step-up moved from prev to the canary were first exposed before it, so the
deliberate ramp is neither a ratio mismatch nor a multiple exposure. Allowlisted testers
(``excluded``) always get the canary and would skew the ratio: they are left out."""
