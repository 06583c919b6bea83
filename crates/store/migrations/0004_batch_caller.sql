-- Who submitted a batch through the server (NULL for the CLI): its runs carry the same caller,
-- whichever replica runs them, and the submitter may read it.
ALTER TABLE batches ADD COLUMN key_id TEXT;
ALTER TABLE batches ADD COLUMN caller_user TEXT;
ALTER TABLE batches ADD COLUMN team TEXT;
