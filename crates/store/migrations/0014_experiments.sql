-- Experiments: a variant of a workflow takes a share of its traffic; each run records the
-- experiment and arm it ran in, so each arm's figures are counted from the runs themselves.

CREATE TABLE experiments (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    variant          TEXT NOT NULL,
    variant_version  TEXT NOT NULL,
    control_version  TEXT NOT NULL,
    hypothesis       TEXT NOT NULL,
    metric           TEXT NOT NULL,
    guardrails       TEXT NOT NULL,
    share            DOUBLE PRECISION NOT NULL,
    min_runs         BIGINT NOT NULL,
    mde              DOUBLE PRECISION,
    subject_field    TEXT,
    state            TEXT NOT NULL,
    started_at_ms    BIGINT NOT NULL,
    started_by       TEXT NOT NULL,
    ended_at_ms      BIGINT,
    ended_by         TEXT,
    decision         TEXT,
    note             TEXT,
    halted_reason    TEXT
);

-- One live (running or halted) experiment per workflow, whichever replica starts it.
CREATE UNIQUE INDEX experiments_live ON experiments (workflow) WHERE state <> 'stopped';

ALTER TABLE runs ADD COLUMN experiment_id TEXT;
ALTER TABLE runs ADD COLUMN arm TEXT;
CREATE INDEX runs_experiment ON runs (experiment_id, arm, latency_ms)
    WHERE experiment_id IS NOT NULL;
