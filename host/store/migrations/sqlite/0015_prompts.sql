-- The prompt registry: versions of named prompts (the first names the owner), the history of
-- their labels (`production`, `candidate`), every use of a version with the outcome its
-- agent reported, the A/B experiments between versions, and the specs of new agents.
CREATE TABLE prompt_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    owner TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE prompt_labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    version INTEGER NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_ms INTEGER NOT NULL
);
CREATE INDEX prompt_labels_by_name ON prompt_labels (name, id);
CREATE TABLE prompt_uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    agent TEXT NOT NULL,
    unit TEXT NOT NULL,
    experiment INTEGER,
    variant INTEGER,
    used_ms INTEGER NOT NULL,
    score REAL,
    success BOOLEAN,
    scored_ms INTEGER
);
CREATE INDEX prompt_uses_by_name ON prompt_uses (name, id);
CREATE INDEX prompt_uses_by_experiment ON prompt_uses (experiment, id);
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    result TEXT
);
CREATE INDEX experiments_by_prompt ON experiments (prompt, state);
CREATE TABLE agent_specs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    detail TEXT NOT NULL
);
