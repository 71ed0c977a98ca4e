-- The audit trail: append-only, each entry chained to the one before by its hash. The detail
-- is text, not jsonb: it is hashed as written, and jsonb would reorder its keys.
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
