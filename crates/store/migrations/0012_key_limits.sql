-- Rate limits and budgets per API key, and what each key used in the windows they are
-- counted in (UTC minute, day and month; see `shopfloor_core::limits`).

ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN budget_usd DOUBLE PRECISION;
ALTER TABLE api_keys ADD COLUMN budget_period TEXT;

-- Tokens and cost are added in the transaction that records the runs; requests are taken as a
-- request is admitted (only for keys with an rpm limit). Minute rows older than an hour are
-- deleted as new ones are written; day and month rows are the spend history.
CREATE TABLE key_usage (
    key_id         TEXT NOT NULL,
    span           TEXT NOT NULL,
    starts_at_ms   BIGINT NOT NULL,
    requests       BIGINT NOT NULL DEFAULT 0,
    tokens         BIGINT NOT NULL DEFAULT 0,
    cost_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, span, starts_at_ms)
);
