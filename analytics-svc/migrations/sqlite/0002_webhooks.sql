-- Outbound webhooks (SQLite): endpoints, their delivery log, and the offsets of the
-- webhook consumer (apart from the rollups' offsets, so each reads the logs at its own pace).

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    -- JSON array of event type names; ["*"] for every event.
    event_types TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- whsec_...: needed to sign every delivery, so it is kept as issued.
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    deleted_at TEXT
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The exact body sent on every attempt.
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- PENDING, DELIVERED or FAILED.
    state TEXT NOT NULL,
    last_status INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_at TEXT,
    delivered_at TEXT,
    created_at TEXT NOT NULL,
    -- Which dispatcher holds the delivery, until when (replicas never send one twice at once).
    lease_owner TEXT,
    lease_until TEXT,
    -- One delivery per endpoint and event, however often the event is read.
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);

CREATE TABLE webhook_offsets (
    source TEXT PRIMARY KEY,
    last_offset INTEGER NOT NULL
);
