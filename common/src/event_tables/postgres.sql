-- The event-log tables every service keeps in its own schema: the transactional outbox
-- (its relay numbers committed rows; EventLog/Subscribe serves them) and, for consuming
-- other services' logs effectively once, the offset per source log and the ids of applied
-- events. IF NOT EXISTS: databases created before these moved here hold them from 0001.
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    log_offset BIGINT UNIQUE,
    payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_unnumbered ON outbox (seq) WHERE log_offset IS NULL;

CREATE TABLE IF NOT EXISTS consumer_offsets (
    source TEXT PRIMARY KEY,
    last_offset BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS processed_events (
    event_id TEXT PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL
);
