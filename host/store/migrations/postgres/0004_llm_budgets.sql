-- Each agent's LLM budget per day (UTC), set by a person or the budget agent within the caps.
CREATE TABLE llm_budgets (
    agent          TEXT PRIMARY KEY,
    tokens_per_day BIGINT NOT NULL,
    usd_per_day    DOUBLE PRECISION NOT NULL
);
