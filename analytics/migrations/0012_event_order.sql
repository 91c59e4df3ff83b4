-- Event order in capture (issue 17): a conversation's events are applied in event order once
-- the partition's watermark passes them. `pending` counts the events a stored state still
-- holds, so a restarted worker finds the conversations it must still release.
ALTER TABLE conversation_state ADD COLUMN IF NOT EXISTS pending UInt32 DEFAULT 0;

-- Events that arrived later than the allowed lateness (behind an event of their conversation
-- already applied): stored in their own table as always, applied where they landed, and
-- flagged here with the event time they arrived behind (frontier_ts).
CREATE TABLE IF NOT EXISTS late_events (
    event_id String,
    conversation_id String,
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    ts DateTime64(3, 'UTC'),
    frontier_ts DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (conversation_id, event_id);
