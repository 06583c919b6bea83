-- Runs, their attempts, and batches. One text for SQLite and PostgreSQL: only types both
-- understand (TEXT, BIGINT, DOUBLE PRECISION); JSON is kept as TEXT; enums as their `as_str` text.

CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         TEXT NOT NULL,
    source          TEXT NOT NULL,
    total_cases     BIGINT NOT NULL,
    model_override  TEXT,
    status          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT
);

CREATE INDEX batches_created ON batches (created_at_ms);

-- No foreign key from runs.batch_id to batches: a flush of finished runs must never fail
-- over batch bookkeeping, and pruning old batches must not take their runs with it.
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,
    workflow           TEXT NOT NULL,
    version            TEXT NOT NULL,
    batch_id           TEXT,
    case_index         BIGINT,
    status             TEXT NOT NULL,
    input              TEXT NOT NULL,
    prompt             TEXT NOT NULL,
    raw_output         TEXT,
    output             TEXT,
    error              TEXT,
    model              TEXT,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    latency_ms         BIGINT NOT NULL,
    created_at_ms      BIGINT NOT NULL
);

-- NULLs are distinct in a unique index in both databases, so this constrains only runs that
-- have both a batch and a case index; it also serves listing a batch's cases in order.
CREATE UNIQUE INDEX runs_batch_case ON runs (batch_id, case_index);
-- Newest first, overall and per workflow; `id` (UUID v7) breaks ties in the same millisecond.
CREATE INDEX runs_created ON runs (created_at_ms, id);
CREATE INDEX runs_workflow_created ON runs (workflow, created_at_ms, id);

CREATE TABLE attempts (
    run_id             TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    n                  BIGINT NOT NULL,
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL,
    started_at_ms      BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    outcome            TEXT NOT NULL,
    error              TEXT,
    raw_output         TEXT,
    PRIMARY KEY (run_id, n)
);
