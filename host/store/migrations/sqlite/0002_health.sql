-- Alerts raised by the health model, and the outcome of each version's watch window.

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    priority    TEXT NOT NULL,
    message     TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    opened_ms   INTEGER NOT NULL,
    resolved_ms INTEGER,
    resolution  TEXT
);
CREATE INDEX alerts_open ON alerts (resolved_ms, agent, kind);

-- What the watch window concluded about a version: stable, rolled-back or inconclusive, with
-- its calls and failures. NULL while it is being watched or was never watched.
ALTER TABLE versions ADD COLUMN verdict TEXT;
ALTER TABLE versions ADD COLUMN verdict_detail TEXT;
ALTER TABLE versions ADD COLUMN calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;

-- An agent taken out of routing after repeated failures, until a push, rollback or release.
ALTER TABLE agents ADD COLUMN quarantined_ms INTEGER;
