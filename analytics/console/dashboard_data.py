"""What the live dashboards show, read from the warehouse (blocking; call through ``run``).

- Rates per version over time: the ``metrics_hourly`` view (0006), per hour × version ×
  metric, rate = conversations with the metric / conversations served, with a Wilson
  score interval per hour and over the whole window.
- The current comparison: the latest look in ``comparisons`` (its JSON payload as
  rendered by :func:`analytics.comparison.comparison_to_dict`) and the recent looks.
- Pool size per tier (the ``pool`` view), dead letters per source topic, model versions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from loraloop.lifecycle import SampleStatus

if TYPE_CHECKING:
    from analytics.warehouse import Warehouse

SERVED: Final = "served"
"""The denominator metric of ``metrics_hourly``."""
PROBLEM_PREFIX: Final = "problem:"

_HOURLY_SQL = """
SELECT hour, model_version, metric, conversations
FROM metrics_hourly
WHERE hour >= {since:DateTime('UTC')}
ORDER BY hour, model_version, metric
"""
_POOL_SQL = "SELECT status, count() FROM pool GROUP BY status"
_DLQ_SQL = "SELECT source_topic, count() FROM dead_letters FINAL GROUP BY source_topic"
_LOOK_COLUMNS = "ts, new, prev, decision, payload"
_LATEST_LOOK_SQL = (
    f"SELECT {_LOOK_COLUMNS} FROM comparisons FINAL ORDER BY ts DESC, look_id DESC LIMIT 1"  # noqa: S608
)
_RECENT_LOOKS_SQL = (
    f"SELECT {_LOOK_COLUMNS} FROM comparisons FINAL "  # noqa: S608 (a constant column list)
    "ORDER BY ts DESC, look_id DESC LIMIT {limit:UInt32}"
)
_VERSIONS_SQL = """
SELECT version, status, parent, gate_passed, updated_at
FROM model_versions FINAL ORDER BY created_at DESC
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` of ``served`` with an interval."""

    served: int
    count: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.count / self.served if self.served else 0.0


@dataclass(frozen=True, slots=True)
class HourlyRate:
    """One metric of one version in one hour."""

    hour: datetime
    version: str
    metric: str
    value: Rate


@dataclass(frozen=True, slots=True)
class MetricRates:
    """One metric: its hourly rates and its total per version over the window."""

    metric: str
    hourly: tuple[HourlyRate, ...]
    totals: dict[str, Rate]


@dataclass(frozen=True, slots=True)
class Look:
    """One recorded comparison."""

    ts: datetime
    new: str
    prev: str
    decision: str
    payload: dict[str, Any]


def wilson(count: int, served: int, z: float) -> tuple[float, float]:
    """Wilson score interval of ``count / served`` at normal quantile ``z``."""
    if served <= 0:
        return 0.0, 1.0
    p = count / served
    z2 = z * z
    centre = (p + z2 / (2 * served)) / (1 + z2 / served)
    half = z * math.sqrt(p * (1 - p) / served + z2 / (4 * served * served)) / (1 + z2 / served)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(count: int, served: int, z: float) -> Rate:
    low, high = wilson(count, served, z)
    return Rate(served=served, count=count, low=low, high=high)


def _metric_order(metric: str) -> tuple[int, str]:
    return (0 if metric.startswith(PROBLEM_PREFIX) else 1, metric)


def hourly_rates(warehouse: Warehouse, *, since: datetime, z: float) -> list[MetricRates]:
    """Every metric seen since ``since``: problem types first, then guardrails, detectors."""
    rows = warehouse.query(_HOURLY_SQL, {"since": since.astimezone(UTC)}).result_rows
    served: dict[tuple[datetime, str], int] = {}
    counts: dict[str, dict[tuple[datetime, str], int]] = defaultdict(dict)
    for hour, version, metric, conversations in rows:
        key = (hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour, str(version))
        if metric == SERVED:
            served[key] = int(conversations)
        else:
            counts[str(metric)][key] = int(conversations)
    result = []
    for metric in sorted(counts, key=_metric_order):
        hourly = tuple(
            HourlyRate(hour, version, metric, _rate(counts[metric].get((hour, version), 0), n, z))
            for (hour, version), n in sorted(served.items())
            if n > 0
        )
        totals: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
        for item in hourly:
            c, n = totals[item.version]
            totals[item.version] = (c + item.value.count, n + item.value.served)
        rates = {v: _rate(c, n, z) for v, (c, n) in sorted(totals.items())}
        result.append(MetricRates(metric, hourly, rates))
    return result


def pool_sizes(warehouse: Warehouse) -> list[tuple[str, int]]:
    """Samples per status, in lifecycle order (statuses with no sample included)."""
    found = {str(s): int(n) for s, n in warehouse.query(_POOL_SQL).result_rows}
    ordered = [(s.value, found.pop(s.value, 0)) for s in SampleStatus]
    return ordered + sorted(found.items())


def dead_letters(warehouse: Warehouse) -> dict[str, int]:
    """Dead-lettered payloads per source topic."""
    return {str(t): int(n) for t, n in warehouse.query(_DLQ_SQL).result_rows}


def _look(row: Sequence[Any]) -> Look:
    ts, new, prev, decision, payload = row
    moment = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    return Look(moment, str(new), str(prev), str(decision), orjson.loads(payload))


def latest_look(warehouse: Warehouse) -> Look | None:
    """The newest comparison of any canary; None before the first look."""
    rows = warehouse.query(_LATEST_LOOK_SQL).result_rows
    return _look(rows[0]) if rows else None


def recent_looks(warehouse: Warehouse, limit: int) -> list[Look]:
    """The newest ``limit`` looks, newest first."""
    return [_look(r) for r in warehouse.query(_RECENT_LOOKS_SQL, {"limit": limit}).result_rows]


def model_versions(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Registered versions, newest first, with status, parent and gate."""
    keys = ("version", "status", "parent", "gate_passed", "updated_at")
    return [dict(zip(keys, row, strict=True)) for row in warehouse.query(_VERSIONS_SQL).result_rows]
