-- A label is frozen to the transcript it was written against: the fingerprint of every turn
-- the conversation held then (`turn_index<TAB>event_id<TAB>role<TAB>SHA-256 of the text`,
-- never the text: the raw-text TTL still bounds how long words are kept), the first signalled
-- turn (-1 for none) and the SHA-256 of both, which an approval cites. Exports and promotions
-- compare it with `turns` (analytics/snapshots.py); labels written before this migration
-- carry an empty hash and are not checked.

ALTER TABLE sample_labels ADD COLUMN IF NOT EXISTS transcript_sha256 String DEFAULT '';
ALTER TABLE sample_labels ADD COLUMN IF NOT EXISTS transcript_turns Array(String) DEFAULT [];
ALTER TABLE sample_labels ADD COLUMN IF NOT EXISTS signal_turn Int64 DEFAULT -1;
