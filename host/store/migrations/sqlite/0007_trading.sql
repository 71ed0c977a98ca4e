-- The market time an event belongs to: a market tick's, inherited by what handling it emits.
ALTER TABLE events ADD COLUMN as_of_ms INTEGER;

-- The broker's orders: one per client order id, whatever the retries.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL UNIQUE,
    agent           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    order_type      TEXT NOT NULL,
    time_in_force   TEXT NOT NULL,
    quantity        REAL NOT NULL,
    notional        REAL,
    limit_price     REAL,
    status          TEXT NOT NULL,
    filled_quantity REAL NOT NULL DEFAULT 0,
    fill_price      REAL,
    commission      REAL NOT NULL DEFAULT 0,
    submitted       TEXT NOT NULL,
    filled          TEXT,
    reason          TEXT,
    at_ms           INTEGER NOT NULL
);
CREATE INDEX orders_by_time ON orders (at_ms);
CREATE INDEX orders_open ON orders (status) WHERE status = 'new';

-- Executions, the ledger positions and cash are computed from.
CREATE TABLE fills (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   TEXT NOT NULL REFERENCES orders (id),
    symbol     TEXT NOT NULL,
    side       TEXT NOT NULL,
    quantity   REAL NOT NULL,
    price      REAL NOT NULL,
    commission REAL NOT NULL,
    slippage   REAL NOT NULL,
    date       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);

-- Orders the risk gate refused, with the numbers that made it refuse.
CREATE TABLE refusals (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    agent           TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    code            TEXT NOT NULL,
    message         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    as_of           TEXT NOT NULL,
    at_ms           INTEGER NOT NULL
);

-- Settings of the trading side that outlive a restart (the kill switch).
CREATE TABLE trading_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Long-term memory: texts with JSON metadata, ranked by BM25 through FTS5, with an optional
-- embedding (little-endian f32) for cosine ranking.
CREATE TABLE memories (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    embedding  BLOB,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX memories_by_collection ON memories (collection, id);
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    text, content = 'memories', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE TRIGGER memories_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER memories_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
