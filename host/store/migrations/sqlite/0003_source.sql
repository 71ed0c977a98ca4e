-- Agent source: compressed snapshots, the snapshot each version was built from, and edits.

CREATE TABLE sources (
    digest TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    bytes  BLOB NOT NULL
);

ALTER TABLE versions ADD COLUMN source_digest TEXT REFERENCES sources(digest);

-- Every proposed edit, its outcome and its audit trail.
CREATE TABLE edits (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent        TEXT NOT NULL,
    base_version INTEGER,
    proposer     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    diff         TEXT NOT NULL,
    -- applying, building, checking, live, rejected, rolled-back
    state        TEXT NOT NULL,
    stage        TEXT,
    code         TEXT,
    message      TEXT,
    build_log    TEXT,
    version      INTEGER,
    rebased_onto INTEGER,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);
CREATE INDEX edits_by_agent ON edits (agent, id);
