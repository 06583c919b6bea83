-- `latest_audit` (run for every workflow each time an engine opens) reads the newest entry of
-- one action and subject; without this index each lookup scans the whole log.
CREATE INDEX audit_log_action_subject ON audit_log (action, subject, seq);
