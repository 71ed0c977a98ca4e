-- The market time an event belongs to: a market tick's, inherited by what handling it emits.
ALTER TABLE events ADD COLUMN as_of_ms BIGINT;

-- The broker's orders: one per client order id, whatever the retries.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL UNIQUE,
    agent           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    order_type      TEXT NOT NULL,
    time_in_force   TEXT NOT NULL,
    quantity        DOUBLE PRECISION NOT NULL,
    notional        DOUBLE PRECISION,
    limit_price     DOUBLE PRECISION,
    status          TEXT NOT NULL,
    filled_quantity DOUBLE PRECISION NOT NULL DEFAULT 0,
    fill_price      DOUBLE PRECISION,
    commission      DOUBLE PRECISION NOT NULL DEFAULT 0,
    submitted       TEXT NOT NULL,
    filled          TEXT,
    reason          TEXT,
    at_ms           BIGINT NOT NULL
);
CREATE INDEX orders_by_time ON orders (at_ms);
CREATE INDEX orders_open ON orders (status) WHERE status = 'new';

-- Executions, the ledger positions and cash are computed from.
CREATE TABLE fills (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id),
    symbol     TEXT NOT NULL,
    side       TEXT NOT NULL,
    quantity   DOUBLE PRECISION NOT NULL,
    price      DOUBLE PRECISION NOT NULL,
    commission DOUBLE PRECISION NOT NULL,
    slippage   DOUBLE PRECISION NOT NULL,
    date       TEXT NOT NULL,
    at_ms      BIGINT NOT NULL
);

-- Orders the risk gate refused, with the numbers that made it refuse.
CREATE TABLE refusals (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent           TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    code            TEXT NOT NULL,
    message         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    as_of           TEXT NOT NULL,
    at_ms           BIGINT NOT NULL
);

-- Settings of the trading side that outlive a restart (the kill switch).
CREATE TABLE trading_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Long-term memory: texts with JSON metadata, ranked by ts_rank_cd over a text-search vector,
-- with an optional embedding (little-endian f32) for cosine ranking.
CREATE TABLE memories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    embedding  BYTEA,
    words      TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX memories_by_collection ON memories (collection, id);
CREATE INDEX memories_words ON memories USING GIN (words);
