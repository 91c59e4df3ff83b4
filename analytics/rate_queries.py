"""Warehouse queries behind a version comparison: per-user cluster sums and health counts.

Rate of a metric for a version = conversations with the label / conversations served,
counted per user after the user's first exposure to either version (``assignments``).
One user may hold many conversations, so the query returns ``ClusterSums`` (users, Σn,
Σy, Σn², Σy², Σny over users, computed in SQL by grouping per user first), which is what
the user-clustered ratio estimator needs (``analytics.stats.ratio_rate``).

- Every-conversation metrics (QA problem types, detectors, guardrails) count y = 1 per
  conversation with the label.
- Label metrics count y = 1/π per sampled conversation whose labelled sample carries the
  type (Horvitz–Thompson): per-user sums of 1/π in the ratio estimator give an unbiased
  rate whose variance includes the sampling noise. Unlabelled samples count 0, so label
  first, compare after.

SQL text is assembled only from the fixed templates below; every value is a bound
``{name:Type}`` parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from analytics.rate_config import RateQuerySettings
from analytics.stats import ClusterSums, Direction

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
    needs_labels: bool = False


_QA_TYPE = "toFloat64(has(c.qa_problem_types, {param}))"
_LABEL_TYPE = (
    "if(p.inclusion_probability > 0 AND has(p.problem_types, {param}), "
    "1 / p.inclusion_probability, 0)"
)
_DETECTOR = "toFloat64(has(c.detectors, {param}))"


def target_specs(settings: RateQuerySettings) -> list[MetricSpec]:
    """One higher-is-worse metric per problem type, from labels (HT) or QA verdicts."""
    if settings.target_source == "labels":
        return [MetricSpec(t, _LABEL_TYPE, t, needs_labels=True) for t in settings.problem_types]
    return [MetricSpec(t, _QA_TYPE, t) for t in settings.problem_types]


def guardrail_specs(settings: RateQuerySettings) -> list[MetricSpec]:
    """New Risk/Reject, abnormal handoffs, CTA clicks and conversions (lower is worse)."""
    lower = Direction.LOWER_IS_WORSE
    specs = [
        MetricSpec(RISK_REJECT, "toFloat64(c.qa_acceptance IN {risk:Array(String)})"),
        MetricSpec(ABNORMAL_HANDOFF, "toFloat64(c.handoff)"),
        MetricSpec(CTA_CLICK, "toFloat64(c.cta_clicks > 0)", direction=lower),
        MetricSpec(CONVERSION, "toFloat64(c.conversions > 0)", direction=lower),
    ]
    specs += [MetricSpec(f"detector:{d}", _DETECTOR, d) for d in settings.detector_guardrails]
    return specs


@dataclass(frozen=True, slots=True)
class ArmSums:
    """Cluster sums of every metric, per version: ``sums[version][metric]``."""

    sums: Mapping[str, Mapping[str, ClusterSums]] = field(default_factory=dict)

    def get(self, version: str, metric: str) -> ClusterSums:
        return self.sums.get(version, {}).get(metric, ClusterSums(0, 0.0, 0.0, 0.0, 0.0, 0.0))


_CLUSTER_SQL = """
WITH
exposure AS (
    SELECT user_id, min(first_exposure) AS exposed_at
    FROM assignments
    WHERE version IN {{versions:Array(String)}}
    GROUP BY user_id
),
per_user AS (
    SELECT c.model_version AS version, c.user_id AS user_id, count() AS n, sumForEach([{ys}]) AS y
    FROM (
        SELECT * FROM conversations FINAL WHERE model_version IN {{versions:Array(String)}}
    ) AS c
    INNER JOIN exposure AS e ON e.user_id = c.user_id
    {label_join}
    WHERE c.first_ts >= e.exposed_at - toIntervalMillisecond({{grace_ms:UInt64}})
    GROUP BY version, user_id
)
SELECT
    version,
    count() AS sum_users,
    sum(n) AS sum_n,
    sumForEach(y) AS sum_y,
    sum(n * n) AS sum_nn,
    sumForEach(arrayMap(v -> v * v, y)) AS sum_yy,
    sumForEach(arrayMap(v -> v * n, y)) AS sum_ny
FROM per_user
GROUP BY version
"""

_LABEL_JOIN = """LEFT JOIN (
        SELECT conversation_id, any(problem_types) AS problem_types,
               any(inclusion_probability) AS inclusion_probability
        FROM pool
        WHERE acceptance != '' AND conversation_id IN (
            SELECT conversation_id FROM conversations FINAL
            WHERE model_version IN {versions:Array(String)}
        )
        GROUP BY conversation_id
    ) AS p ON p.conversation_id = c.conversation_id"""


def cluster_sql(specs: Sequence[MetricSpec]) -> tuple[str, dict[str, Any]]:
    """The per-version cluster-sums query of ``specs`` and the metric parameters it binds."""
    params: dict[str, Any] = {}
    ys = []
    for i, spec in enumerate(specs):
        placeholder = f"{{m{i}:String}}"
        if spec.value is not None:
            params[f"m{i}"] = spec.value
        ys.append(spec.expression.replace("{param}", placeholder))
    needs_labels = any(s.needs_labels for s in specs)
    sql = _CLUSTER_SQL.format(ys=", ".join(ys), label_join=_LABEL_JOIN if needs_labels else "")
    return sql, params


def parse_cluster_rows(rows: Sequence[Sequence[Any]], specs: Sequence[MetricSpec]) -> ArmSums:
    """``ArmSums`` from the rows of :func:`cluster_sql`."""
    found: dict[str, dict[str, ClusterSums]] = {}
    for version, users, n, y, nn, yy, ny in rows:
        found[str(version)] = {
            spec.name: ClusterSums(
                users=int(users),
                n=float(n),
                y=float(y[i]),
                nn=float(nn),
                yy=float(yy[i]),
                ny=float(ny[i]),
            )
            for i, spec in enumerate(specs)
        }
    return ArmSums(found)


def cluster_params(versions: Sequence[str], settings: RateQuerySettings) -> dict[str, Any]:
    """The shared parameters of :func:`cluster_sql`: versions, grace, risk acceptances."""
    return {
        "versions": list(versions),
        "grace_ms": round(settings.exposure_grace_s * _MS_PER_S),
        "risk": list(settings.risk_acceptances),
    }


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
        GROUP BY user_id, version
    )
    GROUP BY user_id
)
WHERE first_ts >= {since:DateTime64(3, 'UTC')}
"""
"""Users first exposed since ``since``, by the arm of their first exposure, and those of
them assigned to both versions. Pass the start of the current rollout step as ``since``:
users a step-up moved from prev to the canary were first exposed before it, so the
deliberate ramp is neither a ratio mismatch nor a multiple exposure."""
