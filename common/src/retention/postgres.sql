-- Storage that stays bounded (issue #16): defined once in referral-common
-- (common/src/retention/postgres.sql) and migrated into every service's schema.
--
-- Idempotency records on the embedded default (no REDIS_URL): one row per
-- (namespace, caller, method, key), named by a SHA-256 of those (no caller id in clear);
-- the record is sealed with the service's PII keys (a stored answer may hold an email).
-- The retention job deletes rows past expires_at.
CREATE TABLE IF NOT EXISTS idempotency_records (
    slot TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_records_expiry ON idempotency_records (expires_at);

-- The durable consumers of this service's event log and the offset each last said it had
-- applied (on EventLog/Subscribe): outbox rows at or below the lowest are purged once
-- older than the grace period.
CREATE TABLE IF NOT EXISTS event_log_consumers (
    consumer TEXT PRIMARY KEY,
    acked_offset BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);

-- Dedupe rows are pruned by age (the dedupe window).
CREATE INDEX IF NOT EXISTS processed_events_by_time ON processed_events (processed_at);
