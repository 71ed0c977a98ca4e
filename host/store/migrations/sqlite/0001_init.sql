-- Agents, their versions and components, the active pointer, kv, the event log and agent logs.

CREATE TABLE agents (
    name           TEXT PRIMARY KEY,
    active_version INTEGER,
    created_ms     INTEGER NOT NULL,
    retired_ms     INTEGER
);

-- Component bytes, content-addressed. Stored in the same database as the versions that point
-- at them, so a version row never points at a missing component.
CREATE TABLE components (
    digest TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    bytes  BLOB NOT NULL
);

CREATE TABLE versions (
    agent      TEXT NOT NULL REFERENCES agents(name),
    number     INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    manifest   TEXT NOT NULL,
    origin     TEXT NOT NULL,
    parent     INTEGER,
    -- 'ready' (passed its checks; serving when the agent's pointer names it) or 'rejected'.
    state      TEXT NOT NULL,
    stage      TEXT,
    code       TEXT,
    reason     TEXT,
    checks     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (agent, number)
);
CREATE INDEX versions_by_digest ON versions (agent, digest);

CREATE TABLE kv (
    agent TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (agent, key)
);

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    topic   TEXT NOT NULL,
    payload TEXT NOT NULL,
    source  TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX events_by_topic ON events (topic, seq);

CREATE TABLE logs (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    agent   TEXT NOT NULL,
    version INTEGER,
    level   TEXT NOT NULL,
    message TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX logs_by_agent ON logs (agent, seq);
