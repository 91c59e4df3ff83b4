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
    WHERE version IN {{versions:Array(String)}} AND NOT has({{excluded:Array(String)}}, user_id)
    GROUP BY user_id
),
labelled AS (
    SELECT
        c.model_version AS version,
        c.user_id AS user_id,
        {cluster} AS cluster,
        c.first_ts AS first_ts,
        toUInt32({step}) AS step,
        {ys}
    FROM (
        SELECT conversation_id, user_id, model_version, first_ts, detectors, handoff,
               qa_acceptance, qa_problem_types, cta_clicks, conversions, sampled,
               inclusion_probability
        FROM conversations FINAL
        WHERE model_version IN {{versions:Array(String)}}
            AND NOT has({{excluded:Array(String)}}, user_id)
            AND first_ts >= {{b1:DateTime64(3, 'UTC')}}
    ) AS c
    LEFT JOIN (
        SELECT sample_id, problem_types, acceptance AS label_acceptance
        FROM sample_labels FINAL
        WHERE acceptance != ''
    ) AS p ON p.sample_id = concat('smp-', c.conversation_id){opening_join}
),
per_user AS (
    SELECT version, l.cluster AS cluster, {per_user}
    FROM labelled AS l
    INNER JOIN exposure AS e ON e.user_id = l.user_id
    WHERE l.first_ts >= e.exposed_at - toIntervalMillisecond({{grace_ms:UInt64}})
    GROUP BY version, cluster
)
SELECT
    version,
    count() AS users,
    {totals}
FROM per_user
GROUP BY version
"""
"""Scalar columns throughout (one per metric × step, and per pair of steps at the end):
ClickHouse aggregates plain numbers far faster than arrays (sumForEach), and the array
the statistics layer reads is built once per version at the very end. The step is a sum
of comparisons with one bound parameter per step start (a lambda over an array of
bounds cost 3 s at 10M rows), and the first step's start prunes the scan. Labels join on the
capture's sample id, ``smp-<conversation_id>`` (``streams.rollup.sample_id_of``)."""


def _array(items: Sequence[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _triangle(steps: range) -> list[tuple[int, int]]:
    """Pairs of steps (a ≤ b): a symmetric S×S matrix's upper triangle, row-major."""
    return [(a, b) for a in steps for b in steps if a <= b]


def _symmetric(upper: Sequence[float], strata: int) -> list[list[float]]:
    full = [[0.0] * strata for _ in range(strata)]
    values = iter(upper)
    for a, b in _triangle(range(strata)):
        full[a][b] = full[b][a] = float(next(values))
    return full


_OPENING_JOIN = """
    LEFT JOIN (
        SELECT conversation_id, lowerUTF8(trimBoth(argMin(text, turn_index))) AS opening
        FROM turns FINAL
        WHERE role = 'user' AND conversation_id IN (
            SELECT conversation_id FROM conversations FINAL
            WHERE model_version IN {versions:Array(String)}
                AND first_ts >= {b1:DateTime64(3, 'UTC')}
        )
        GROUP BY conversation_id
    ) AS o ON o.conversation_id = c.conversation_id"""
"""Each conversation's first user message, for ``cluster_by="opening_prompt"``."""

_CLUSTERS = {
    "user": ("c.user_id", ""),
    "opening_prompt": (
        "if(o.opening = '', concat('user:', c.user_id), concat('prompt:', o.opening))",
        _OPENING_JOIN,
    ),
}
"""The cluster key of a conversation and the join it needs, per ``cluster_by``."""


def cluster_sql(
    specs: Sequence[MetricSpec], strata: int = 1, *, cluster_by: str = "user"
) -> tuple[str, dict[str, Any]]:
    """The per-version, per-step sums query of ``specs`` and the metric parameters it binds.

    ``strata`` is the number of rollout steps; bind their start times with
    ``cluster_params``. ``cluster_by`` is the unit whose conversations are summed
    together (``RateQuerySettings.cluster_by``): a user, or an opening prompt; the
    ``users`` of a row count those units. Each result row is (version, users, users per
    step, n per step, n·n per pair of steps a ≤ b, then per metric y per step, y·y per
    pair a ≤ b and y·n per pair, and last the sampled and reviewed counts): see
    ``parse_cluster_rows``.
    """
    params: dict[str, Any] = {}
    ys = []
    for i, spec in enumerate([*specs, *COVERAGE_SPECS]):
        placeholder = f"{{m{i}:String}}"
        if spec.value is not None:
            params[f"m{i}"] = spec.value
        ys.append(f"toFloat64({spec.expression.replace('{param}', placeholder)}) AS y{i}")
    metrics = range(len(specs))
    coverage = range(len(specs), len(specs) + len(COVERAGE_SPECS))
    steps = range(1, strata + 1)
    upper = _triangle(steps)
    pairs = [(a, b) for a in steps for b in steps]
    per_user = [f"toFloat64(countIf(step = {k})) AS n{k}" for k in steps]
    per_user += [f"sumIf(y{i}, step = {k}) AS y{i}_{k}" for i in metrics for k in steps]
    per_user += [f"sum(y{i}) AS y{i}_all" for i in coverage]
    totals = [
        _array([f"toFloat64(countIf(n{k} > 0))" for k in steps]) + " AS users_s",
        _array([f"sum(n{k})" for k in steps]) + " AS n_s",
        _array([f"sum(n{a} * n{b})" for a, b in upper]) + " AS nn",
        _array([f"sum(y{i}_{k})" for i in metrics for k in steps]) + " AS y",
        _array([f"sum(y{i}_{a} * y{i}_{b})" for i in metrics for a, b in upper]) + " AS yy",
        _array([f"sum(y{i}_{a} * n{b})" for i in metrics for a, b in pairs]) + " AS yn",
        _array([f"sum(y{i}_all)" for i in coverage]) + " AS reviewed",
    ]
    step = " + ".join(f"(c.first_ts >= {{b{k}:DateTime64(3, 'UTC')}})" for k in steps)
    if cluster_by not in _CLUSTERS:
        msg = f"cluster_by must be one of {sorted(_CLUSTERS)}, got {cluster_by!r}"
        raise ValueError(msg)
    cluster, opening_join = _CLUSTERS[cluster_by]
    sql = _CLUSTER_SQL.format(
        cluster=cluster,
        opening_join=opening_join,
        step=step,
        ys=",\n        ".join(ys),
        per_user=",\n        ".join(per_user),
        totals=",\n    ".join(totals),
    )
    return sql, params


def parse_cluster_rows(
    rows: Sequence[Sequence[Any]], specs: Sequence[MetricSpec], strata: int = 1
) -> ArmSums:
    """``ArmSums`` from the rows of :func:`cluster_sql`."""
    found: dict[str, dict[str, StratifiedSums]] = {}
    coverage: dict[str, Coverage] = {}
    half = strata * (strata + 1) // 2
    full = strata * strata
    for version, users, users_s, n_s, nn, y, yy, yn, reviewed in rows:
        per_metric = {}
        for i, spec in enumerate(specs):
            per_metric[spec.name] = StratifiedSums.from_arrays(
                distinct_users=int(users),
                users=users_s,
                n=n_s,
                y=y[i * strata : (i + 1) * strata],
                nn=_symmetric(nn, strata),
                yy=_symmetric(yy[i * half : (i + 1) * half], strata),
                yn=yn[i * full : (i + 1) * full],
            )
        found[str(version)] = per_metric
        coverage[str(version)] = Coverage(float(reviewed[0]), float(reviewed[1]))
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
    starts = list(bounds) or [EPOCH]
    return {
        "versions": list(versions),
        **{f"b{k}": start for k, start in enumerate(starts, start=1)},
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
    SELECT user_id, argMin(model_version, first_ts) AS first_version,
           uniqExact(model_version) AS versions
    FROM conversations FINAL
    WHERE model_version IN ({new:String}, {prev:String})
        AND NOT has({excluded:Array(String)}, user_id)
        AND first_ts >= {since:DateTime64(3, 'UTC')}
    GROUP BY user_id
)
"""
"""Users served since ``since`` (the start of the current rollout step), by the version
of their first conversation in it, and those served by both versions in it.

Counted from served conversations, not from first assignments: a returning user of the
stable version has no new assignment (it was assigned in an earlier rollout), so counting
first assignments since the step began counted returning users for the canary only and
raised a false sample-ratio mismatch on every rollout over a version with history (found
by the demo's third cycle: users [44, 49] against a 75/25 split). Within one step the
split is sticky, so a user a step-up moved to the canary is counted once, there, and a
user served by both versions in one step is a real multiple exposure. Allowlisted testers
(``excluded``) always get the canary and would skew the ratio: they are left out."""
