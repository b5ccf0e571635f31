-- Parked sends (issue #13): an invitation whose send panicked PARK_AFTER times in a row is
-- parked with its reason instead of being tried for ever; the scheduler skips it until an
-- admin retries it.
ALTER TABLE invitations ADD COLUMN send_panics BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invitations ADD COLUMN parked_at TIMESTAMPTZ;
ALTER TABLE invitations ADD COLUMN parked_reason TEXT NOT NULL DEFAULT '';
