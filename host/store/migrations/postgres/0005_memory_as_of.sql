-- The market time a memory was written at: a call as of an earlier day does not recall it.
ALTER TABLE memories ADD COLUMN as_of_ms BIGINT;
