-- The edit that built a version, why a stored version cannot be served, every activation, and
-- at most one open alert per agent and kind, enforced by the database.

ALTER TABLE versions ADD COLUMN edit_id INTEGER;
ALTER TABLE versions ADD COLUMN fault TEXT;

-- Which version became active, the one it replaced, why (push, rollback, remediation), when.
CREATE TABLE activations (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    agent    TEXT NOT NULL,
    version  INTEGER,
    previous INTEGER,
    cause    TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX activations_by_agent ON activations (agent, seq);

-- Should an earlier build have left two open alerts of one kind for an agent, the newest stays
-- open and the older ones are resolved, so that the index can hold.
UPDATE alerts SET resolved_ms = opened_ms, resolution = 'superseded by a newer open alert'
WHERE resolved_ms IS NULL
  AND id NOT IN (SELECT MAX(id) FROM alerts WHERE resolved_ms IS NULL GROUP BY agent, kind);
CREATE UNIQUE INDEX alerts_one_open ON alerts (agent, kind) WHERE resolved_ms IS NULL;
CREATE INDEX edits_by_version ON edits (agent, version);
