-- Rollups of production runs (every origin but `eval`), so that the operating review reads a
-- window's whole hours from a few hundred rows instead of scanning its runs: the run writer adds
-- to them in the transaction that records the runs, and a review decision moves a run between
-- statuses (and, for a correction, outputs) in the transaction that changes it. A window's
-- partial hours at its edges are still read from `runs`.

-- Runs per workflow, hour (Unix ms / 3,600,000), version, status and the caller's team ('' for
-- none), with what the figures sum.
CREATE TABLE run_hours (
    workflow    TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    team        TEXT NOT NULL,
    runs        BIGINT NOT NULL,
    cost_usd    DOUBLE PRECISION NOT NULL,
    latency_ms  BIGINT NOT NULL,
    -- Runs answered by a model other than their first attempt's.
    fallbacks   BIGINT NOT NULL,
    -- Runs made without an API key (the CLI).
    anonymous   BIGINT NOT NULL,
    PRIMARY KEY (workflow, hour, version, status, team)
);

-- Runs per short string output (a label: its JSON text, at most 200 characters) of the statuses
-- that keep a valid output (`ok`, `held`, `rejected`): drift's label distribution.
CREATE TABLE run_hour_outputs (
    workflow  TEXT NOT NULL,
    version   TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    output    TEXT NOT NULL,
    runs      BIGINT NOT NULL,
    PRIMARY KEY (workflow, version, hour, output)
);

-- A histogram of the latencies of runs that reached a model (every status but `refused`):
-- exact below 64 ms, then 32 buckets per doubling (at most 3% wide). Bucket b holds b below 64;
-- above, with k = b / 32 - 1, the values from (b - 32k) * 2^k to (b - 32k + 1) * 2^k - 1.
CREATE TABLE run_hour_latency (
    workflow  TEXT NOT NULL,
    version   TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    runs      BIGINT NOT NULL,
    PRIMARY KEY (workflow, version, hour, bucket)
);

-- Who called each workflow each UTC day (days since 1970-01-01), one row per distinct caller;
-- '' stands for a missing user or team (key columns cannot be NULL).
CREATE TABLE run_day_callers (
    workflow     TEXT NOT NULL,
    day          BIGINT NOT NULL,
    caller_user  TEXT NOT NULL,
    team         TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    PRIMARY KEY (workflow, day, caller_user, team, key_id)
);

-- The runs recorded before this migration.
INSERT INTO run_hours (workflow, hour, version, status, team, runs, cost_usd, latency_ms, fallbacks, anonymous)
SELECT r.workflow, r.created_at_ms / 3600000, r.version, r.status, COALESCE(r.team, ''), COUNT(*), SUM(r.cost_usd),
       CAST(SUM(r.latency_ms) AS BIGINT),
       CAST(SUM(CASE WHEN r.model IS NOT NULL AND a.model IS NOT NULL AND r.model <> a.model
                     THEN 1 ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN r.key_id IS NULL THEN 1 ELSE 0 END) AS BIGINT)
FROM runs r LEFT JOIN attempts a ON a.run_id = r.id AND a.n = 1
WHERE r.origin <> 'eval'
GROUP BY r.workflow, r.created_at_ms / 3600000, r.version, r.status, COALESCE(r.team, '');

INSERT INTO run_hour_outputs (workflow, version, hour, output, runs)
SELECT r.workflow, r.version, r.created_at_ms / 3600000, r.output, COUNT(*)
FROM runs r
WHERE r.origin <> 'eval' AND r.status IN ('ok', 'held', 'rejected')
  AND r.output LIKE '"%' AND LENGTH(r.output) <= 200
GROUP BY r.workflow, r.version, r.created_at_ms / 3600000, r.output;

INSERT INTO run_hour_latency (workflow, version, hour, bucket, runs)
SELECT b.workflow, b.version, b.hour, b.bucket, COUNT(*)
FROM (SELECT r.workflow AS workflow, r.version AS version, r.created_at_ms / 3600000 AS hour,
        CASE WHEN r.latency_ms < 64 THEN r.latency_ms
         WHEN r.latency_ms < 128 THEN 32 + r.latency_ms / 2
         WHEN r.latency_ms < 256 THEN 64 + r.latency_ms / 4
         WHEN r.latency_ms < 512 THEN 96 + r.latency_ms / 8
         WHEN r.latency_ms < 1024 THEN 128 + r.latency_ms / 16
         WHEN r.latency_ms < 2048 THEN 160 + r.latency_ms / 32
         WHEN r.latency_ms < 4096 THEN 192 + r.latency_ms / 64
         WHEN r.latency_ms < 8192 THEN 224 + r.latency_ms / 128
         WHEN r.latency_ms < 16384 THEN 256 + r.latency_ms / 256
         WHEN r.latency_ms < 32768 THEN 288 + r.latency_ms / 512
         WHEN r.latency_ms < 65536 THEN 320 + r.latency_ms / 1024
         WHEN r.latency_ms < 131072 THEN 352 + r.latency_ms / 2048
         WHEN r.latency_ms < 262144 THEN 384 + r.latency_ms / 4096
         WHEN r.latency_ms < 524288 THEN 416 + r.latency_ms / 8192
         WHEN r.latency_ms < 1048576 THEN 448 + r.latency_ms / 16384
         WHEN r.latency_ms < 2097152 THEN 480 + r.latency_ms / 32768
         WHEN r.latency_ms < 4194304 THEN 512 + r.latency_ms / 65536
         WHEN r.latency_ms < 8388608 THEN 544 + r.latency_ms / 131072
         WHEN r.latency_ms < 16777216 THEN 576 + r.latency_ms / 262144
         WHEN r.latency_ms < 33554432 THEN 608 + r.latency_ms / 524288
         WHEN r.latency_ms < 67108864 THEN 640 + r.latency_ms / 1048576
         WHEN r.latency_ms < 134217728 THEN 672 + r.latency_ms / 2097152
         WHEN r.latency_ms < 268435456 THEN 704 + r.latency_ms / 4194304
         WHEN r.latency_ms < 536870912 THEN 736 + r.latency_ms / 8388608
         WHEN r.latency_ms < 1073741824 THEN 768 + r.latency_ms / 16777216
         WHEN r.latency_ms < 2147483648 THEN 800 + r.latency_ms / 33554432
         WHEN r.latency_ms < 4294967296 THEN 832 + r.latency_ms / 67108864
         ELSE 895 END AS bucket
      FROM runs r WHERE r.origin <> 'eval' AND r.status <> 'refused') b
GROUP BY b.workflow, b.version, b.hour, b.bucket;

INSERT INTO run_day_callers (workflow, day, caller_user, team, key_id)
SELECT DISTINCT r.workflow, r.created_at_ms / 86400000, COALESCE(r.caller_user, ''),
       COALESCE(r.team, ''), r.key_id
FROM runs r WHERE r.origin <> 'eval' AND r.key_id IS NOT NULL;
