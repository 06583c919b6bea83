-- How far retention got: stripping runs' texts walks the runs in (created_at_ms, id) order and
-- remembers its last run here, so runs stripped once are never read again.
CREATE TABLE retention_marks (
    name      TEXT PRIMARY KEY,
    up_to_ms  BIGINT NOT NULL,
    up_to_id  TEXT NOT NULL
);
