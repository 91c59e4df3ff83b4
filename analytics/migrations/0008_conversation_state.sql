-- The capture agent's per-conversation detector state, written in the same batch as the
-- rows it produced (last, so a stored state never runs ahead of its rows). Latest revision
-- (= events applied) wins; state of conversations idle past the raw-text retention expires.

CREATE TABLE IF NOT EXISTS conversation_state (
    conversation_id String,
    state String,
    revision UInt64,
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(revision)
ORDER BY conversation_id
TTL toDateTime(updated_at) + INTERVAL {{TEXT_TTL_DAYS}} DAY;
