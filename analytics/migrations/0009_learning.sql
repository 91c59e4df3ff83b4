-- What a training cycle trained on, exactly, and the flags that send samples back to a person.
-- `training_cycles` gains the sample lists of its dataset manifest, kept apart: trained (the
-- train split), held out for the gate, held out for the baseline regression check, dropped as
-- duplicates, and put aside because their prompt family belongs to the evaluation set.
-- `sample_flags` records why a sample needs a person's eyes again: a baseline sample whose
-- content recurred as a problem (it was not learned), an approval made on the evidence of a
-- version that was rolled back, a withdrawn proposal. One row per flag, never rewritten.

ALTER TABLE training_cycles ADD COLUMN IF NOT EXISTS trained_ids Array(String);
ALTER TABLE training_cycles ADD COLUMN IF NOT EXISTS heldout_ids Array(String);
ALTER TABLE training_cycles ADD COLUMN IF NOT EXISTS regression_ids Array(String);
ALTER TABLE training_cycles ADD COLUMN IF NOT EXISTS duplicate_ids Array(String);
ALTER TABLE training_cycles ADD COLUMN IF NOT EXISTS evaluation_ids Array(String);

CREATE TABLE IF NOT EXISTS sample_flags (
    flag_id String,
    sample_id String,
    kind LowCardinality(String),
    reason String,
    actor String,
    version String,
    evidence String,
    ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (sample_id, flag_id);
