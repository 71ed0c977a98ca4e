-- Each agent's LLM budget per day (UTC), set by a person or the budget agent within the caps.
CREATE TABLE llm_budgets (
    agent          TEXT PRIMARY KEY,
    tokens_per_day INTEGER NOT NULL,
    usd_per_day    REAL NOT NULL
);
CREATE INDEX llm_calls_by_time_agent ON llm_calls (at_ms, agent);
