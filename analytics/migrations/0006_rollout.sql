-- Canary rollout and version comparison: every look at a canary (`comparisons`, so the
-- two-consecutive-looks rule can read the previous one) and hourly counts per
-- model_version × metric for the live dashboards.
--
-- Why the hourly view is exact although `conversations` is updated many times:
-- `conversations` is a ReplacingMergeTree that the stream rewrites at every event of a
-- conversation, so a materialized view on its inserts sees each conversation many
-- times and a count() or sum() would overcount. The view therefore keeps no counts but
-- the *set* of conversation ids per (hour, version, metric) as a uniqExact state;
-- merging states is a set union, so every revision of a conversation lands on the same
-- id and is counted once, however often it was written, replayed or backfilled (the
-- backfill below may even overlap rows the stream writes during the migration).
-- A metric counts a conversation that carried the label in any revision; that is its
-- final value for the monotone labels (a detector that fired stays fired, a handoff or
-- a click stays happened). Two known differences from `conversations FINAL`, both
-- only for dashboards: a QA verdict that is revised to drop a type leaves the
-- conversation counted for that type, and a conversation whose first_ts moves to an
-- earlier hour (late, out-of-order events) is in both hours' sets, but once only in
-- any total over hours, since merging the states across hours unions the sets.
-- Comparisons (verdicts, rollbacks, proposals) read `conversations FINAL` directly.

CREATE TABLE IF NOT EXISTS comparisons (
    look_id String,
    new LowCardinality(String),
    prev LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    decision LowCardinality(String),
    solved_criteria_met Array(String),
    payload String
) ENGINE = ReplacingMergeTree
ORDER BY (new, prev, ts, look_id);

CREATE TABLE IF NOT EXISTS conversation_metrics_hourly (
    hour DateTime('UTC'),
    model_version LowCardinality(String),
    metric LowCardinality(String),
    conversations AggregateFunction(uniqExact, String),
    users AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (model_version, metric, hour);

-- metric: served (the denominator), problem:<type> (QA verdict types), detector:<name>,
-- and the guardrails risk_reject_rate, abnormal_handoff_rate, cta_click_rate,
-- conversion_rate (the names the comparison uses).
CREATE MATERIALIZED VIEW IF NOT EXISTS conversation_metrics_hourly_mv
TO conversation_metrics_hourly AS
SELECT
    toStartOfHour(first_ts) AS hour,
    model_version,
    metric,
    uniqExactState(conversation_id) AS conversations,
    uniqExactState(user_id) AS users
FROM conversations
ARRAY JOIN arrayConcat(
    ['served'],
    arrayMap(t -> concat('problem:', toString(t)), qa_problem_types),
    arrayMap(d -> concat('detector:', toString(d)), detectors),
    if(qa_acceptance IN ('Risk', 'Reject'), ['risk_reject_rate'], []),
    if(handoff, ['abnormal_handoff_rate'], []),
    if(cta_clicks > 0, ['cta_click_rate'], []),
    if(conversions > 0, ['conversion_rate'], [])
) AS metric
WHERE model_version != ''
GROUP BY hour, model_version, metric;

-- Backfill what was written before the view existed (set union: overlap is harmless).
INSERT INTO conversation_metrics_hourly
SELECT
    toStartOfHour(first_ts) AS hour,
    model_version,
    metric,
    uniqExactState(conversation_id) AS conversations,
    uniqExactState(user_id) AS users
FROM conversations
ARRAY JOIN arrayConcat(
    ['served'],
    arrayMap(t -> concat('problem:', toString(t)), qa_problem_types),
    arrayMap(d -> concat('detector:', toString(d)), detectors),
    if(qa_acceptance IN ('Risk', 'Reject'), ['risk_reject_rate'], []),
    if(handoff, ['abnormal_handoff_rate'], []),
    if(cta_clicks > 0, ['cta_click_rate'], []),
    if(conversions > 0, ['conversion_rate'], [])
) AS metric
WHERE model_version != ''
GROUP BY hour, model_version, metric;

-- Per version × metric × hour as plain numbers, for Grafana and the console.
CREATE VIEW IF NOT EXISTS metrics_hourly AS
SELECT
    hour,
    model_version,
    metric,
    uniqExactMerge(conversations) AS conversations,
    uniqExactMerge(users) AS users
FROM conversation_metrics_hourly
GROUP BY hour, model_version, metric;

-- The same counts, exact under every revision (a revised QA verdict included), as a
-- snapshot of `conversations FINAL` recomputed every 5 minutes: dashboards read a few
-- thousand rows instead of merging id sets, at the price of being up to 5 minutes old.
-- `metrics_hourly` above is live; this one is cheap. Both name metrics alike.
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_hourly_snapshot
REFRESH EVERY 5 MINUTE
ENGINE = MergeTree ORDER BY (model_version, metric, hour)
AS SELECT
    toStartOfHour(first_ts) AS hour,
    model_version,
    metric,
    count() AS conversations,
    uniqExact(user_id) AS users
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
WHERE model_version != ''
GROUP BY hour, model_version, metric;
