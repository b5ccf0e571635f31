-- Consent and suppression (issue #16). An address is known only by its keyed lookup hash
-- (PiiKeys::lookup("email" | "phone", canonical form)); a sealed copy is kept so admins can
-- see it masked. At most one active (unlifted) suppression per address; lifting keeps the
-- row, and every change is a consent_history row (the person's export). Instants are integer
-- microseconds since the Unix epoch, so they compare as instants, never as text.
CREATE TABLE suppressions (
    id TEXT PRIMARY KEY,
    contact_key TEXT NOT NULL,
    -- "email" or "phone".
    kind TEXT NOT NULL,
    address_sealed TEXT NOT NULL DEFAULT '',
    -- UNSUBSCRIBED | HARD_BOUNCE | COMPLAINT | SMS_STOP
    reason TEXT NOT NULL,
    source_invitation_id TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    lifted_at BIGINT,
    lifted_by TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX suppressions_active ON suppressions (contact_key) WHERE lifted_at IS NULL;

CREATE TABLE consent_history (
    id TEXT PRIMARY KEY,
    contact_key TEXT NOT NULL,
    suppression_id TEXT NOT NULL,
    -- SUPPRESSED | LIFTED
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    source_invitation_id TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT '',
    at BIGINT NOT NULL
);
CREATE INDEX consent_history_by_key ON consent_history (contact_key, at);

-- The lookup hash of the address an invitation is sent to (its channel's: the email for
-- EMAIL, the phone for SMS; '' otherwise and for rows from before this migration), so a
-- suppression finds the queued invitations to cancel without reading any address.
ALTER TABLE invitations ADD COLUMN contact_lookup TEXT NOT NULL DEFAULT '';
CREATE INDEX invitations_by_contact_lookup ON invitations (contact_lookup, status) WHERE contact_lookup <> '';
