-- Rollups of the review loop, kept in the transaction that records each decision, so that
-- `review stats` and the outcome figures read a few hundred rows instead of every decision.
-- They are all-time tallies per workflow (review stats has no window) except `review_hours`,
-- which the outcome figures read by week.

-- Decisions per workflow, reviewer and claim -> decision time: the bucket of the time in ms
-- (the buckets of `run_hour_latency`: exact below 64 ms, then at most 1/32 wide), or -1 for a
-- decision taken without a claim.
CREATE TABLE review_reviewer_times (
    workflow   TEXT NOT NULL,
    reviewer   TEXT NOT NULL,
    bucket     BIGINT NOT NULL,
    decisions  BIGINT NOT NULL,
    PRIMARY KEY (workflow, reviewer, bucket)
);

-- Decisions per workflow and the reason given with them.
CREATE TABLE review_reasons (
    workflow   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    decisions  BIGINT NOT NULL,
    PRIMARY KEY (workflow, reason)
);

-- Items per workflow and pair of first and second decisions: the reviewers' agreement.
CREATE TABLE review_pairs (
    workflow         TEXT NOT NULL,
    first_decision   TEXT NOT NULL,
    second_decision  TEXT NOT NULL,
    items            BIGINT NOT NULL,
    PRIMARY KEY (workflow, first_decision, second_decision)
);

-- Per workflow, version and hour the reviewed run was made (Unix ms / 3,600,000): items
-- accepted (approved or corrected), decisions taken under a claim, and their claim -> decision
-- time summed. A window's partial hours at its edges are read from `reviews`.
CREATE TABLE review_hours (
    workflow     TEXT NOT NULL,
    version      TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    accepted     BIGINT NOT NULL,
    timed        BIGINT NOT NULL,
    reviewer_ms  BIGINT NOT NULL,
    PRIMARY KEY (workflow, version, hour)
);

-- The decisions taken before this migration.
INSERT INTO review_reviewer_times (workflow, reviewer, bucket, decisions)
SELECT b.workflow, b.reviewer, b.bucket, COUNT(*)
FROM (SELECT t.workflow AS workflow, t.reviewer AS reviewer,
        CASE WHEN t.ms IS NULL THEN -1 ELSE
        CASE
                  WHEN t.ms < 64 THEN t.ms
                  WHEN t.ms < 128 THEN 32 + t.ms / 2
                  WHEN t.ms < 256 THEN 64 + t.ms / 4
                  WHEN t.ms < 512 THEN 96 + t.ms / 8
                  WHEN t.ms < 1024 THEN 128 + t.ms / 16
                  WHEN t.ms < 2048 THEN 160 + t.ms / 32
                  WHEN t.ms < 4096 THEN 192 + t.ms / 64
                  WHEN t.ms < 8192 THEN 224 + t.ms / 128
                  WHEN t.ms < 16384 THEN 256 + t.ms / 256
                  WHEN t.ms < 32768 THEN 288 + t.ms / 512
                  WHEN t.ms < 65536 THEN 320 + t.ms / 1024
                  WHEN t.ms < 131072 THEN 352 + t.ms / 2048
                  WHEN t.ms < 262144 THEN 384 + t.ms / 4096
                  WHEN t.ms < 524288 THEN 416 + t.ms / 8192
                  WHEN t.ms < 1048576 THEN 448 + t.ms / 16384
                  WHEN t.ms < 2097152 THEN 480 + t.ms / 32768
                  WHEN t.ms < 4194304 THEN 512 + t.ms / 65536
                  WHEN t.ms < 8388608 THEN 544 + t.ms / 131072
                  WHEN t.ms < 16777216 THEN 576 + t.ms / 262144
                  WHEN t.ms < 33554432 THEN 608 + t.ms / 524288
                  WHEN t.ms < 67108864 THEN 640 + t.ms / 1048576
                  WHEN t.ms < 134217728 THEN 672 + t.ms / 2097152
                  WHEN t.ms < 268435456 THEN 704 + t.ms / 4194304
                  WHEN t.ms < 536870912 THEN 736 + t.ms / 8388608
                  WHEN t.ms < 1073741824 THEN 768 + t.ms / 16777216
                  WHEN t.ms < 2147483648 THEN 800 + t.ms / 33554432
                  WHEN t.ms < 4294967296 THEN 832 + t.ms / 67108864 ELSE 895 END
        END AS bucket
      FROM (SELECT r.workflow AS workflow, d.reviewer AS reviewer,
              CASE WHEN d.claimed_at_ms IS NULL THEN NULL
                   WHEN d.decided_at_ms > d.claimed_at_ms THEN d.decided_at_ms - d.claimed_at_ms
                   ELSE 0 END AS ms
            FROM review_decisions d JOIN reviews r ON r.run_id = d.run_id) t) b
GROUP BY b.workflow, b.reviewer, b.bucket;

INSERT INTO review_reasons (workflow, reason, decisions)
SELECT r.workflow, d.reason, COUNT(*)
FROM review_decisions d JOIN reviews r ON r.run_id = d.run_id
WHERE d.reason IS NOT NULL
GROUP BY r.workflow, d.reason;

INSERT INTO review_pairs (workflow, first_decision, second_decision, items)
SELECT r.workflow, a.decision, b.decision, COUNT(*)
FROM review_decisions a
JOIN review_decisions b ON b.run_id = a.run_id AND b.n = 2
JOIN reviews r ON r.run_id = a.run_id
WHERE a.n = 1
GROUP BY r.workflow, a.decision, b.decision;

INSERT INTO review_hours (workflow, version, hour, accepted, timed, reviewer_ms)
SELECT r.workflow, r.version, r.created_at_ms / 3600000,
       COUNT(DISTINCT CASE WHEN r.status IN ('approved', 'edited') THEN r.run_id END),
       COUNT(d.claimed_at_ms),
       CAST(COALESCE(SUM(d.decided_at_ms - d.claimed_at_ms), 0) AS BIGINT)
FROM reviews r LEFT JOIN review_decisions d ON d.run_id = r.run_id AND d.claimed_at_ms IS NOT NULL
GROUP BY r.workflow, r.version, r.created_at_ms / 3600000;
