-- The loop's own tables: detector signals, the per-conversation rollup (denominator of
-- every rate), the sample pool and its audit log, model versions, rollouts and the
-- canary assignments. Later issues extend them with further migrations.

CREATE TABLE IF NOT EXISTS signals (
    signal_id String,
    ts DateTime64(3, 'UTC'),
    detector LowCardinality(String),
    conversation_id String,
    user_id String,
    model_version LowCardinality(String),
    turn_index Nullable(UInt32),
    risk_weight Float64,
    evidence String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, signal_id);

CREATE TABLE IF NOT EXISTS conversations (
    conversation_id String,
    user_id String,
    user_tier LowCardinality(String),
    model_version LowCardinality(String),
    first_ts DateTime64(3, 'UTC'),
    last_ts DateTime64(3, 'UTC'),
    turns UInt32,
    detectors Array(LowCardinality(String)),
    handoff Bool,
    qa_acceptance LowCardinality(String),
    qa_problem_types Array(LowCardinality(String)),
    cta_clicks UInt32,
    conversions UInt32,
    refunds UInt32,
    sampled Bool,
    inclusion_probability Float64,
    revision UInt64
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(first_ts)
ORDER BY conversation_id;

CREATE TABLE IF NOT EXISTS samples (
    sample_id String,
    conversation_id String,
    user_id String,
    status LowCardinality(String),
    problem_types Array(LowCardinality(String)),
    detectors Array(LowCardinality(String)),
    risk_weight Float64,
    inclusion_probability Float64,
    model_version LowCardinality(String),
    first_seen_version LowCardinality(String),
    turn_event_ids Array(String),
    acceptance LowCardinality(String),
    risk_level LowCardinality(String),
    corrected_response String,
    notes String,
    labelled_by String,
    trained_in_versions Array(String),
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    revision UInt64
) ENGINE = ReplacingMergeTree(revision)
ORDER BY sample_id;

CREATE TABLE IF NOT EXISTS sample_transitions (
    transition_id String,
    sample_id String,
    seq UInt64,
    from_status LowCardinality(String),
    to_status LowCardinality(String),
    action LowCardinality(String),
    actor String,
    role LowCardinality(String),
    reason String,
    evidence String,
    proposal Bool,
    ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (sample_id, seq, transition_id);

CREATE TABLE IF NOT EXISTS model_versions (
    version String,
    parent String,
    base_model String,
    status LowCardinality(String),
    path String,
    gate_passed Bool,
    metrics String,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY version;

CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id String,
    version String,
    parent String,
    step_percent Float64,
    decision LowCardinality(String),
    evidence String,
    actor String,
    ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (version, ts, rollout_id);

CREATE TABLE IF NOT EXISTS assignments (
    user_id String,
    version String,
    first_exposure DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (version, user_id);
