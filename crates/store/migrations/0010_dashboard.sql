-- The dashboard's sign-in: one-time links (`shopfloor dashboard link`) and the sessions they
-- start. Only SHA-256s of the tokens are kept. A session belongs to an API key and ends with it.

CREATE TABLE login_tokens (
    token_hash     TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    used_at_ms     BIGINT
);

CREATE TABLE dashboard_sessions (
    session_hash   TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL,
    -- Sent back in every form the session posts; compared with the form's field.
    csrf_token     TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_id);
