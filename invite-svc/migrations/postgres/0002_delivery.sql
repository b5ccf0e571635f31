-- Delivery (issue #6): who the message is from, the scheduler's lease and retry state, and
-- provider webhook events already applied (replays are no-ops).
ALTER TABLE invitations ADD COLUMN referrer_name TEXT NOT NULL DEFAULT '';
ALTER TABLE invitations ADD COLUMN business_name TEXT NOT NULL DEFAULT '';
-- Attempts recorded BEFORE each call to the provider; the attempt number is also the lease
-- token, so a sender whose lease was taken over cannot record an outcome.
ALTER TABLE invitations ADD COLUMN send_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invitations ADD COLUMN send_lease_until TIMESTAMPTZ;
ALTER TABLE invitations ADD COLUMN send_retry_at TIMESTAMPTZ;
ALTER TABLE invitations ADD COLUMN send_error TEXT NOT NULL DEFAULT '';
ALTER TABLE invitations ADD COLUMN provider_message_id TEXT NOT NULL DEFAULT '';
CREATE INDEX invitations_sendable ON invitations (scheduled_for) WHERE status = 'SCHEDULED';

CREATE TABLE provider_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    invitation_id TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, event_id)
);
