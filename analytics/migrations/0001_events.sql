-- Raw events, one row per event_id (ReplacingMergeTree: a replay may write a row twice
-- before a merge; read with FINAL or LIMIT 1 BY event_id). Raw text expires after
-- {{TEXT_TTL_DAYS}} days.

CREATE TABLE IF NOT EXISTS turns (
    event_id String,
    ts DateTime64(3, 'UTC'),
    conversation_id String,
    user_id String,
    turn_index UInt32,
    role LowCardinality(String),
    text String TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    model_version LowCardinality(String),
    has_cta Bool,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);

CREATE TABLE IF NOT EXISTS feedback (
    event_id String,
    ts DateTime64(3, 'UTC'),
    conversation_id String,
    user_id String,
    turn_index Nullable(UInt32),
    kind LowCardinality(String),
    comment Nullable(String) TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    user_tier LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);

CREATE TABLE IF NOT EXISTS handoffs (
    event_id String,
    ts DateTime64(3, 'UTC'),
    conversation_id String,
    user_id String,
    turn_index UInt32,
    initiated_by LowCardinality(String),
    reason Nullable(String) TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);

CREATE TABLE IF NOT EXISTS qa_verdicts (
    event_id String,
    ts DateTime64(3, 'UTC'),
    conversation_id String,
    sample_id String,
    reviewer String,
    acceptance LowCardinality(String),
    problem_types Array(LowCardinality(String)),
    risk_level LowCardinality(String),
    corrected_response Nullable(String) TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    notes Nullable(String) TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);

CREATE TABLE IF NOT EXISTS outcomes (
    event_id String,
    ts DateTime64(3, 'UTC'),
    conversation_id String,
    user_id String,
    kind LowCardinality(String),
    value Float64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);

CREATE TABLE IF NOT EXISTS user_profiles (
    event_id String,
    ts DateTime64(3, 'UTC'),
    user_id String,
    tier LowCardinality(String),
    lifetime_value Float64,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (user_id, event_id);

-- Payloads that failed validation, keyed by where they were read.
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic LowCardinality(String),
    partition Int32,
    offset Int64,
    ts DateTime64(3, 'UTC'),
    raw_b64 String TTL toDateTime(ts) + INTERVAL {{TEXT_TTL_DAYS}} DAY,
    error String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, partition, offset);
