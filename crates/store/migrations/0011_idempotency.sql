-- Idempotency-Key on the gateway's and the workflow API's POSTs: a retry with the same key and
-- body gets the first answer back instead of calling a model again. Keys belong to the API key
-- that sent them; a row in flight has no status yet. Only the SHA-256 of the body is kept.

CREATE TABLE idempotency_keys (
    api_key_id     TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    route          TEXT NOT NULL,
    body_hash      TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    status         BIGINT,
    content_type   TEXT,
    run_id         TEXT,
    model          TEXT,
    body           TEXT,
    PRIMARY KEY (api_key_id, idem_key)
);
