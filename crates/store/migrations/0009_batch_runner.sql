-- Who is running a batch from the CLI, and until when (a lease the runner renews), so two
-- `run --resume` of one batch never both run its remaining cases.
ALTER TABLE batches ADD COLUMN runner TEXT;
ALTER TABLE batches ADD COLUMN runner_until_ms BIGINT;
