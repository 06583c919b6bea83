-- Listing runs by status (the dashboard's and `shopfloor runs --status`), newest first: without
-- these, a status that has no run in a workflow's history scanned the whole history to say so.
CREATE INDEX runs_status_created ON runs (status, created_at_ms, id);
CREATE INDEX runs_workflow_status_created ON runs (workflow, status, created_at_ms, id);
