-- The review loop: what kind of failure each failed attempt was, the confidence of a run's
-- output, the review queue and every decision taken on it.
ALTER TABLE attempts ADD COLUMN error_kind TEXT;
ALTER TABLE runs ADD COLUMN confidence DOUBLE PRECISION;

CREATE TABLE reviews (
    run_id               TEXT PRIMARY KEY,
    workflow             TEXT NOT NULL,
    version              TEXT NOT NULL,
    reason               TEXT NOT NULL,
    status               TEXT NOT NULL,
    approvals_required   BIGINT NOT NULL,
    decisions            BIGINT NOT NULL,
    requested_by_key     TEXT,
    output               TEXT,
    corrected_output     TEXT,
    created_at_ms        BIGINT NOT NULL,
    due_at_ms            BIGINT,
    claimed_by           TEXT,
    claimed_at_ms        BIGINT,
    claim_expires_at_ms  BIGINT,
    decided_at_ms        BIGINT
);

-- The queue is read oldest first by status and workflow.
CREATE INDEX reviews_queue ON reviews (status, workflow, created_at_ms);

CREATE TABLE review_decisions (
    run_id         TEXT NOT NULL,
    n              BIGINT NOT NULL,
    reviewer       TEXT NOT NULL,
    decision       TEXT NOT NULL,
    output         TEXT,
    reason         TEXT,
    note           TEXT,
    claimed_at_ms  BIGINT,
    decided_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (run_id, n)
);

CREATE INDEX review_decisions_decided ON review_decisions (decided_at_ms);
