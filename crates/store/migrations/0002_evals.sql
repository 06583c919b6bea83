-- Eval runs, their per-case results, and one baseline eval per workflow. One text for SQLite and
-- PostgreSQL, as in 0001; booleans are BOOLEAN (an integer 0/1 in SQLite).

CREATE TABLE evals (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         TEXT NOT NULL,
    dataset         TEXT NOT NULL,
    dataset_hash    TEXT NOT NULL,
    model_override  TEXT,
    status          TEXT NOT NULL,
    total_cases     BIGINT NOT NULL,
    summary         TEXT,
    passed          BOOLEAN,
    created_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT
);

-- Newest first, overall and per workflow; `id` (UUID v7) breaks ties in the same millisecond.
CREATE INDEX evals_created ON evals (created_at_ms, id);
CREATE INDEX evals_workflow_created ON evals (workflow, created_at_ms, id);

-- workflow, version and model_override are copied from the case's eval when it is recorded, so
-- that the cache lookup is one index probe instead of a scan of every case with that input.
CREATE TABLE eval_cases (
    eval_id            TEXT NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    case_id            TEXT NOT NULL,
    line               BIGINT NOT NULL,
    run_id             TEXT NOT NULL,
    input_hash         TEXT NOT NULL,
    status             TEXT NOT NULL,
    output             TEXT,
    raw_output         TEXT,
    expected           TEXT NOT NULL,
    scores             TEXT NOT NULL,
    tags               TEXT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached             BOOLEAN NOT NULL,
    workflow           TEXT NOT NULL,
    version            TEXT NOT NULL,
    model_override     TEXT,
    PRIMARY KEY (eval_id, case_id)
);

-- Pages of an eval's results in line order; unique, so that paging by line never skips a case.
CREATE UNIQUE INDEX eval_cases_line ON eval_cases (eval_id, line);
-- The eval cache. Cached rows are never served from the cache, so they stay out of the index.
CREATE INDEX eval_cases_cache ON eval_cases (workflow, version, model_override, input_hash)
    WHERE NOT cached;

-- No cascade from evals: deleting an eval that is a baseline must be a decision, not a side effect.
CREATE TABLE baselines (
    workflow   TEXT PRIMARY KEY,
    eval_id    TEXT NOT NULL REFERENCES evals (id),
    set_at_ms  BIGINT NOT NULL
);
