-- Every completion an agent asked of the LLM: who, which model, the tokens, how it went; and
-- which edits an agent proposed.

CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    agent             TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    -- ok, unavailable or failed
    outcome           TEXT NOT NULL,
    ms                INTEGER NOT NULL,
    at_ms             INTEGER NOT NULL
);
CREATE INDEX llm_calls_by_agent ON llm_calls (agent, id);

-- Edits proposed by an agent (through the `source` interface) are held to a narrower policy,
-- checked again when they run.
ALTER TABLE edits ADD COLUMN by_agent INTEGER NOT NULL DEFAULT 0;
