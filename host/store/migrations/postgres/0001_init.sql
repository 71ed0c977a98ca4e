-- The whole schema of the PostgreSQL backend: the same tables and columns as SQLite's
-- migrations arrive at, with PostgreSQL's types. Times are milliseconds since the Unix epoch.
-- kv keys and values are bytes, so that any text an agent stores (NUL included) reads back and
-- keys sort by byte, as on SQLite.

CREATE TABLE agents (
    name           TEXT PRIMARY KEY,
    active_version BIGINT,
    created_ms     BIGINT NOT NULL,
    retired_ms     BIGINT,
    quarantined_ms BIGINT
);

CREATE TABLE components (
    digest TEXT PRIMARY KEY,
    size   BIGINT NOT NULL,
    bytes  BYTEA NOT NULL
);

CREATE TABLE sources (
    digest TEXT PRIMARY KEY,
    size   BIGINT NOT NULL,
    bytes  BYTEA NOT NULL
);

CREATE TABLE versions (
    agent          TEXT NOT NULL REFERENCES agents(name),
    number         BIGINT NOT NULL,
    digest         TEXT NOT NULL,
    size           BIGINT NOT NULL,
    manifest       TEXT NOT NULL,
    origin         TEXT NOT NULL,
    edit_id        BIGINT,
    parent         BIGINT,
    -- 'ready' or 'rejected'
    state          TEXT NOT NULL,
    stage          TEXT,
    code           TEXT,
    reason         TEXT,
    checks         TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    verdict        TEXT,
    verdict_detail TEXT,
    calls          BIGINT NOT NULL DEFAULT 0,
    failures       BIGINT NOT NULL DEFAULT 0,
    source_digest  TEXT REFERENCES sources(digest),
    fault          TEXT,
    PRIMARY KEY (agent, number)
);
CREATE INDEX versions_by_digest ON versions (agent, digest);

CREATE TABLE activations (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent    TEXT NOT NULL,
    version  BIGINT,
    previous BIGINT,
    cause    TEXT NOT NULL,
    at_ms    BIGINT NOT NULL
);
CREATE INDEX activations_by_agent ON activations (agent, seq);

CREATE TABLE kv (
    agent TEXT NOT NULL,
    key   BYTEA NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (agent, key)
);

CREATE TABLE events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    topic   TEXT NOT NULL,
    payload TEXT NOT NULL,
    source  TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX events_by_topic ON events (topic, seq);

CREATE TABLE logs (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent   TEXT NOT NULL,
    version BIGINT,
    level   TEXT NOT NULL,
    message TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX logs_by_agent ON logs (agent, seq);

CREATE TABLE alerts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    priority    TEXT NOT NULL,
    message     TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    opened_ms   BIGINT NOT NULL,
    resolved_ms BIGINT,
    resolution  TEXT
);
-- At most one open alert of a kind per agent, whatever the number of writers.
CREATE UNIQUE INDEX alerts_one_open ON alerts (agent, kind) WHERE resolved_ms IS NULL;
CREATE INDEX alerts_by_agent ON alerts (agent, id);

CREATE TABLE edits (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent        TEXT NOT NULL,
    base_version BIGINT,
    proposer     TEXT NOT NULL,
    by_agent     BOOLEAN NOT NULL DEFAULT FALSE,
    reason       TEXT NOT NULL,
    diff         TEXT NOT NULL,
    -- applying, building, checking, live, rejected, rolled-back
    state        TEXT NOT NULL,
    stage        TEXT,
    code         TEXT,
    message      TEXT,
    build_log    TEXT,
    version      BIGINT,
    rebased_onto BIGINT,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX edits_by_agent ON edits (agent, id);
CREATE INDEX edits_by_version ON edits (agent, version);

CREATE TABLE llm_calls (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent             TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    ms                BIGINT NOT NULL,
    at_ms             BIGINT NOT NULL
);
CREATE INDEX llm_calls_by_agent ON llm_calls (agent, id);
