-- The review console: its users and API keys, and approvers' decisions on proposals.
-- Keys are never stored: `key_hash` is a salted scrypt hash ("scrypt$n$r$p$salt$hash")
-- and `key_lookup` the first hex digits of the key's SHA-256, to find the row to verify.

CREATE TABLE IF NOT EXISTS console_users (
    username String,
    roles Array(LowCardinality(String)),
    pii Bool,
    disabled Bool,
    key_lookup String,
    key_hash String,
    created_by String,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    revision UInt64
) ENGINE = ReplacingMergeTree(revision)
ORDER BY username;

-- A proposal (a `sample_transitions` row with proposal = true) that an approver declined:
-- it leaves the approval queue; the sample does not move.
CREATE TABLE IF NOT EXISTS proposal_decisions (
    transition_id String,
    sample_id String,
    decision LowCardinality(String),
    actor String,
    role LowCardinality(String),
    reason String,
    ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (sample_id, transition_id);
