-- first_seen_version is known only once a sample is labelled (it depends on the problem
-- types): the label carries it, computed along the version lineage, and the pool view
-- prefers it over the version the conversation was served by.

ALTER TABLE sample_labels ADD COLUMN IF NOT EXISTS first_seen_version String DEFAULT '';

CREATE OR REPLACE VIEW pool AS
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
    if(l.first_seen_version = '', s.first_seen_version, l.first_seen_version)
        AS first_seen_version,
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
