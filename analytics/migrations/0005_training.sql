-- The training service: one row per training cycle (written when it starts, rewritten when it
-- ends; the latest `updated_at` wins), saying why it started and how it ended; and the columns
-- of `model_versions` that the trainer's registry mirror fills in.
-- `details` and `dataset` are JSON text: the trigger's evidence, the dataset's counts.

CREATE TABLE IF NOT EXISTS training_cycles (
    cycle_id String,
    reason LowCardinality(String),
    details String,
    started_at DateTime64(3, 'UTC'),
    finished_at Nullable(DateTime64(3, 'UTC')),
    status LowCardinality(String),
    version String,
    parent String,
    dataset_sha256 String,
    dataset String,
    error String,
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY cycle_id;

ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS version_number UInt32;
ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS base_model_sha256 String;
ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS dataset_sha256 String;
