"""Benchmark: per-version × metric counts from the hourly view vs from the raw table.

Generates ``--rows`` conversation rows (default 10M: half as many conversations, each
written twice as the stream does, the second revision with its labels) with SQL
(``numbers()``, no Python loops) into a fresh embedded warehouse, so the materialized
view fills as in production. Then, in the same run, it times

- live view: conversations per version × metric (served, problem:<type>, guardrails),
  from ``conversation_metrics_hourly`` (uniqExact states merged);
- snapshot view: the same from ``metrics_hourly_snapshot`` (refreshed from FINAL);
- raw:  the same counts from ``conversations FINAL``;
- clustered: the comparison's own query (per-user, per-step sums after first exposure,
  every problem type and guardrail, Horvitz–Thompson over the design: 5 % of
  conversations are sampled and labelled, joined through the ``pool`` view), which always
  reads the raw tables; timed with one rollout step and with three (the step strata add
  the cross-step products per user);

checks that the views and raw agree, and prints the ratios raw / view.

    .venv/bin/python benchmarks/comparison_query.py [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.rate_config import RateQuerySettings
from analytics.rate_queries import cluster_params, cluster_sql, guardrail_specs, target_specs
from analytics.warehouse import Warehouse

USERS_PER_CONVERSATION = 5  # 5 conversations per user on average
STEP_ZERO = datetime(2025, 5, 31, tzinfo=UTC)
TYPES = ["wrong_objection_handling", "wrong_CTA_timing", "missing_knowledge", "over_promise"]

FILL_SQL = """
INSERT INTO conversations
SELECT
    concat('c', toString(cid)) AS conversation_id,
    concat('u', toString(cid % {users:UInt64})) AS user_id,
    'standard' AS user_tier,
    if(cityHash64(cid % {users:UInt64}) % 100 < 50, 'model_v2', 'model_v1') AS model_version,
    toDateTime64('2025-06-01 00:00:00', 3, 'UTC') + toIntervalSecond(cid % 604800) AS first_ts,
    first_ts + toIntervalSecond(300) AS last_ts,
    4 AS turns,
    if(rev = 2 AND cityHash64(cid, 'd') % 100 < 8, ['complaint'], []) AS detectors,
    rev = 2 AND cityHash64(cid, 'h') % 100 < 5 AS handoff,
    if(rev = 2 AND cityHash64(cid, 'q') % 100 < 6, 'Risk', '') AS qa_acceptance,
    if(qa_acceptance = 'Risk',
       [{types:Array(String)}[1 + cityHash64(cid, 't') % length({types:Array(String)})]],
       []) AS qa_problem_types,
    toUInt32(rev = 2 AND cityHash64(cid, 'c') % 100 < 20) AS cta_clicks,
    toUInt32(rev = 2 AND cityHash64(cid, 'v') % 100 < 4) AS conversions,
    0 AS refunds,
    cityHash64(cid, 's') % 100 < 5 AS sampled,
    0.05 AS inclusion_probability,
    rev AS revision
FROM (
    SELECT intDiv(number, 2) AS cid, toUInt64(number % 2 + 1) AS rev
    FROM numbers({rows:UInt64})
)
"""

ASSIGN_SQL = """
INSERT INTO assignments
SELECT
    concat('u', toString(number)) AS user_id,
    if(cityHash64(number) % 100 < 50, 'model_v2', 'model_v1') AS version,
    toDateTime64('2025-05-31 00:00:00', 3, 'UTC') AS first_exposure
FROM numbers({users:UInt64})
"""

SAMPLES_SQL = """
INSERT INTO samples (sample_id, conversation_id, user_id, status, inclusion_probability,
                     model_version, first_seen_version, created_at, updated_at, revision)
SELECT concat('smp-', conversation_id), conversation_id, user_id, 'captured',
       inclusion_probability, model_version, model_version, first_ts, first_ts, 1
FROM conversations FINAL WHERE sampled
"""

LABELS_SQL = """
INSERT INTO sample_labels (sample_id, revision, acceptance, problem_types, risk_level,
                           corrected_response, notes, labelled_by, role, source, ts)
SELECT concat('smp-', conversation_id), 1, if(length(qa_problem_types) > 0, 'Risk', 'Accept'),
       qa_problem_types, 'low', '', '', 'bench', 'labeller', 'console', first_ts
FROM conversations FINAL WHERE sampled
"""

VIEW_SQL = """
SELECT model_version, metric, uniqExactMerge(conversations) AS conversations
FROM conversation_metrics_hourly
WHERE model_version IN ('model_v1', 'model_v2')
GROUP BY model_version, metric
ORDER BY model_version, metric
"""

SNAPSHOT_SQL = """
SELECT model_version, metric, sum(conversations) AS conversations
FROM metrics_hourly_snapshot
WHERE model_version IN ('model_v1', 'model_v2')
GROUP BY model_version, metric
ORDER BY model_version, metric
"""

RAW_SQL = """
SELECT model_version, metric, count() AS conversations
FROM conversations FINAL
ARRAY JOIN arrayConcat(
    ['served'],
    arrayMap(t -> concat('problem:', toString(t)), qa_problem_types),
    arrayMap(d -> concat('detector:', toString(d)), detectors),
    if(qa_acceptance IN ('Risk', 'Reject'), ['risk_reject_rate'], []),
    if(handoff, ['abnormal_handoff_rate'], []),
    if(cta_clicks > 0, ['cta_click_rate'], []),
    if(conversions > 0, ['conversion_rate'], [])
) AS metric
WHERE model_version IN ('model_v1', 'model_v2')
GROUP BY model_version, metric
ORDER BY model_version, metric
"""


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    users = max(1, args.rows // 2 // USERS_PER_CONVERSATION)
    root = Path(tempfile.mkdtemp(prefix="loraloop-bench-"))
    warehouse = Warehouse.connect(dsn=f"chdb://{root}/warehouse", database="loraloop")
    try:
        warehouse.migrate(text_ttl_days=3650)
        start = time.perf_counter()
        warehouse.command(ASSIGN_SQL, {"users": users})
        warehouse.command(FILL_SQL, {"rows": args.rows, "users": users, "types": TYPES})
        warehouse.command(SAMPLES_SQL)
        warehouse.command(LABELS_SQL)
        warehouse.command("OPTIMIZE TABLE conversation_metrics_hourly FINAL")
        warehouse.command("SYSTEM REFRESH VIEW metrics_hourly_snapshot")
        warehouse.command("SYSTEM WAIT VIEW metrics_hourly_snapshot")
        fill_s = time.perf_counter() - start
        print(f"generated {args.rows:,} conversation rows ({users:,} users) in {fill_s:.1f}s")

        view_s, view = _timed(lambda: warehouse.query(VIEW_SQL).result_rows, args.repeat)
        snap_s, snap = _timed(lambda: warehouse.query(SNAPSHOT_SQL).result_rows, args.repeat)
        raw_s, raw = _timed(lambda: warehouse.query(RAW_SQL).result_rows, args.repeat)
        if not view == snap == raw:
            msg = "the hourly views disagree with conversations FINAL"
            raise SystemExit(msg)
        rates = RateQuerySettings(target_source="labels", problem_types=TYPES)
        specs = target_specs(rates) + guardrail_specs(rates)
        clustered = {}
        for steps in (1, 3):
            bounds = [STEP_ZERO + timedelta(days=2 * k) for k in range(steps)]
            sql, params = cluster_sql(specs, steps)
            params.update(cluster_params(("model_v2", "model_v1"), rates, bounds=bounds))
            clustered[steps], _ = _timed(
                lambda sql=sql, params=params: warehouse.query(sql, params).result_rows,
                args.repeat,
            )

        print(f"counts per version x metric ({len(view)} rows), median of {args.repeat}:")
        print(f"  live view (uniqExact states)   {view_s * 1000:9.1f} ms")
        print(f"  refreshed snapshot view        {snap_s * 1000:9.1f} ms")
        print(f"  conversations FINAL (raw)      {raw_s * 1000:9.1f} ms")
        for steps, seconds in clustered.items():
            label = f"clustered comparison, {steps} step(s), HT"
            print(f"  {label:<37} {seconds * 1000:9.1f} ms")
        print(f"ratio raw / live view: {raw_s / view_s:.1f}x")
        print(f"ratio raw / snapshot view: {raw_s / snap_s:.1f}x")
    finally:
        warehouse.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
