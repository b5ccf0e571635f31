-- API keys of server-to-server callers (issue #13). Only the SHA-256 of a key is kept, and
-- a presented key is found by it (the unique index: one probe per request). Instants are
-- integer microseconds since the Unix epoch, so they compare as instants, never as text.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    -- Scope names joined by commas (referral_common::auth::Scopes' wire form).
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_keys_by_hash ON api_keys (secret_hash);
