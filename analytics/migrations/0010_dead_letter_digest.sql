-- A dead letter carries a bounded prefix of its payload (DEAD_LETTER_PREFIX_BYTES), so a huge
-- refused payload cannot make a letter the broker refuses in turn; the whole payload's size and
-- SHA-256 are kept beside it, and the payload itself stays in the source topic at its offset.

ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_bytes UInt64 DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_sha256 String DEFAULT '';
