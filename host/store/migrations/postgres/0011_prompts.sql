-- The prompt registry: versions of named prompts (the first names the owner), the history of
-- their labels (`production`, `candidate`), every use of a version with the outcome its
-- agent reported, the A/B experiments between versions, and the specs of new agents.
CREATE TABLE prompt_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    owner TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE prompt_labels (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version BIGINT NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_ms BIGINT NOT NULL
);
CREATE INDEX prompt_labels_by_name ON prompt_labels (name, id);
CREATE TABLE prompt_uses (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    agent TEXT NOT NULL,
    unit TEXT NOT NULL,
    experiment BIGINT,
    variant BIGINT,
    used_ms BIGINT NOT NULL,
    score DOUBLE PRECISION,
    success BOOLEAN,
    scored_ms BIGINT
);
CREATE INDEX prompt_uses_by_name ON prompt_uses (name, id);
CREATE INDEX prompt_uses_by_experiment ON prompt_uses (experiment, id);
CREATE TABLE experiments (
    id BIGSERIAL PRIMARY KEY,
    prompt TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    result TEXT
);
CREATE INDEX experiments_by_prompt ON experiments (prompt, state);
CREATE TABLE agent_specs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    detail TEXT NOT NULL
);
