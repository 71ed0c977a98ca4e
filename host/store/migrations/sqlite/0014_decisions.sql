-- Governance: typed decisions, the policy that took them, who approved or rejected them, what
-- applying them did, and the outcome measured on their date.
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting TEXT NOT NULL,
    proposer TEXT NOT NULL,
    made_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    reason TEXT,
    applied TEXT,
    due_ms INTEGER NOT NULL,
    outcome TEXT,
    measured TEXT,
    evaluated_ms INTEGER
);
CREATE INDEX decisions_by_state ON decisions (state, id);
