-- Sizes that retention sums without reading payloads: each event's and each log line's bytes,
-- in covering indexes walked newest first. Rejected versions and resolved alerts are found by
-- index too, so pruning never scans a table.

ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE events SET size = length(CAST(payload AS BLOB));
CREATE INDEX events_by_size ON events (seq, size);
CREATE INDEX events_by_time ON events (at_ms);

ALTER TABLE logs ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE logs SET size = length(CAST(message AS BLOB));
DROP INDEX logs_by_agent;
CREATE INDEX logs_by_agent ON logs (agent, seq, size);
CREATE INDEX logs_by_time ON logs (at_ms);

CREATE INDEX versions_by_state ON versions (agent, state, number);
CREATE INDEX alerts_resolved ON alerts (resolved_ms) WHERE resolved_ms IS NOT NULL;
CREATE INDEX llm_calls_by_time ON llm_calls (at_ms);
