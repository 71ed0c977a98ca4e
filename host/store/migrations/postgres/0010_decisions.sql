-- Governance: typed decisions, the policy that took them, who approved or rejected them, what
-- applying them did, and the outcome measured on their date.
CREATE TABLE decisions (
    id BIGSERIAL PRIMARY KEY,
    meeting TEXT NOT NULL,
    proposer TEXT NOT NULL,
    made_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_ms BIGINT,
    reason TEXT,
    applied TEXT,
    due_ms BIGINT NOT NULL,
    outcome TEXT,
    measured TEXT,
    evaluated_ms BIGINT
);
CREATE INDEX decisions_by_state ON decisions (state, id);
