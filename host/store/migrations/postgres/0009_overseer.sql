-- The Overseer's loop runs (what each looked at and did) and its daily reports.
CREATE TABLE loop_runs (
    id BIGSERIAL PRIMARY KEY,
    loop TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL,
    looked_at TEXT NOT NULL,
    did TEXT NOT NULL,
    error TEXT
);
CREATE INDEX loop_runs_by_loop ON loop_runs (loop, id);

CREATE TABLE reports (
    date TEXT PRIMARY KEY,
    generated_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX audit_by_time ON audit (at_ms);
