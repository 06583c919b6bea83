-- The webhook outbox: every event to deliver, written in the transaction of the change it
-- reports, so a restart loses none; and when an overdue review item was escalated.
CREATE TABLE outbox (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    workflow            TEXT NOT NULL,
    run_id              TEXT,
    url                 TEXT NOT NULL,
    secret_env          TEXT NOT NULL,
    body                TEXT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    attempts            BIGINT NOT NULL,
    -- NULL once delivered or given up.
    next_attempt_at_ms  BIGINT,
    -- A sender's lease, so two replicas do not send one event at once.
    claimed_until_ms    BIGINT,
    delivered_at_ms     BIGINT,
    last_status         BIGINT,
    last_error          TEXT
);

-- Senders look for due events; `review deliveries` lists newest first.
CREATE INDEX outbox_due ON outbox (next_attempt_at_ms);
CREATE INDEX outbox_created ON outbox (created_at_ms);

ALTER TABLE reviews ADD COLUMN escalated_at_ms BIGINT;
-- The SLA sweep reads pending items by due time.
CREATE INDEX reviews_due ON reviews (status, due_at_ms);
