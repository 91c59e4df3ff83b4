-- The governed pool. `samples` stays capture-owned (one row per sampled conversation,
-- written by the stream); a sample's current status is derived from the append-only
-- `sample_transitions` log alone, and its label from `sample_labels` (latest revision
-- wins). The `pool` view joins the three for the console, the trainer and analytics.

ALTER TABLE samples ADD COLUMN IF NOT EXISTS sampled_by LowCardinality(String);
ALTER TABLE sample_transitions ADD COLUMN IF NOT EXISTS actor_kind LowCardinality(String);

CREATE TABLE IF NOT EXISTS sample_labels (
    sample_id String,
    revision UInt64,
    acceptance LowCardinality(String),
    problem_types Array(LowCardinality(String)),
    risk_level LowCardinality(String),
    corrected_response String,
    notes String,
    labelled_by String,
    role LowCardinality(String),
    source LowCardinality(String),
    simulated Bool DEFAULT false,
    ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(revision)
ORDER BY sample_id;

CREATE VIEW IF NOT EXISTS pool AS
SELECT
    s.sample_id AS sample_id,
    s.conversation_id AS conversation_id,
    s.user_id AS user_id,
    if(t.sample_id = '', s.status, t.status) AS status,
    if(t.sample_id = '', s.created_at, t.status_changed_at) AS status_changed_at,
    if(l.sample_id = '', s.problem_types, l.problem_types) AS problem_types,
    s.detectors AS detectors,
    s.risk_weight AS risk_weight,
    s.inclusion_probability AS inclusion_probability,
    s.sampled_by AS sampled_by,
    s.model_version AS model_version,
    s.first_seen_version AS first_seen_version,
    l.acceptance AS acceptance,
    l.risk_level AS risk_level,
    l.corrected_response AS corrected_response,
    l.notes AS notes,
    l.labelled_by AS labelled_by,
    l.simulated AS label_simulated,
    s.trained_in_versions AS trained_in_versions,
    s.created_at AS created_at
FROM (SELECT * FROM samples FINAL) AS s
LEFT JOIN (
    SELECT
        sample_id,
        argMax(to_status, (ts, seq)) AS status,
        max(ts) AS status_changed_at
    FROM sample_transitions FINAL
    WHERE NOT proposal
    GROUP BY sample_id
) AS t ON t.sample_id = s.sample_id
LEFT JOIN (SELECT * FROM sample_labels FINAL) AS l ON l.sample_id = s.sample_id;
