-- API keys, who made each run, the audit log and the persistent batch queue.

-- Only a SHA-256 of each key is kept; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    team           TEXT,
    key_hash       TEXT NOT NULL UNIQUE,
    prefix         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT
);
-- A name belongs to at most one live key; a revoked key's name may be reused.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at_ms IS NULL;

-- The caller of a run made through the server (NULL for the CLI).
ALTER TABLE runs ADD COLUMN key_id TEXT;
ALTER TABLE runs ADD COLUMN caller_user TEXT;
ALTER TABLE runs ADD COLUMN team TEXT;
-- A medium-risk output released and picked for review after the fact.
ALTER TABLE runs ADD COLUMN sampled_for_review BOOLEAN NOT NULL DEFAULT FALSE;

-- Append-only; each entry holds the SHA-256 of the one before (see `audit.rs`).
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- Cases of server batches still to run. A case leaves the table in the transaction that
-- records its run; a replica holds a case while `lease_until_ms` is in the future.
CREATE TABLE batch_cases (
    batch_id        TEXT NOT NULL,
    case_index      BIGINT NOT NULL,
    input           TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  BIGINT NOT NULL,
    PRIMARY KEY (batch_id, case_index)
);
CREATE INDEX batch_cases_lease ON batch_cases (lease_until_ms);
