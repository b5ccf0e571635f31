-- Parked events: an event a consumer could not apply CONSUMER_PARK_AFTER times, kept with
-- its reason and payload while the consumer goes on past it; an admin retries it. Defined
-- once in referral-common (common/src/parked/postgres.sql); each service's migration is a
-- byte-for-byte copy, which common's tests check.
CREATE TABLE parked_events (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    source TEXT NOT NULL,
    event_offset BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The event as protobuf bytes, re-applied as is on retry.
    payload BYTEA NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    first_failed_at TIMESTAMPTZ NOT NULL,
    last_failed_at TIMESTAMPTZ NOT NULL,
    UNIQUE (consumer, source, event_id)
);
