-- Where each run came from (run, batch, gateway, eval). Evals are not production traffic:
-- drift windows and outcomes leave them out by this column. Runs recorded before it are
-- classified from what they hold: an eval's runs carry its id as their batch id.

ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT 'run';
UPDATE runs SET origin = 'eval' WHERE batch_id IN (SELECT id FROM evals);
UPDATE runs SET origin = 'batch' WHERE origin = 'run' AND batch_id IS NOT NULL;
UPDATE runs SET origin = 'gateway' WHERE origin = 'run' AND workflow = 'gateway';
