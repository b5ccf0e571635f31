-- invite-svc schema (Postgres). Enum-like columns hold the API names (e.g. 'SCHEDULED').
CREATE TABLE referral_codes (
    code TEXT PRIMARY KEY,
    referrer_id TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT,
    campaign_id TEXT NOT NULL DEFAULT '',
    landing_url TEXT NOT NULL DEFAULT '',
    invitation_id TEXT,
    clicks BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    conversions BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX referral_codes_referrer ON referral_codes (referrer_id);

CREATE TABLE referrers (
    id TEXT PRIMARY KEY,
    tier TEXT NOT NULL DEFAULT 'REGULAR',
    queued BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    referee_kind TEXT NOT NULL,
    vendor_type TEXT,
    flow TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient_email TEXT NOT NULL DEFAULT '',
    recipient_phone TEXT NOT NULL DEFAULT '',
    recipient_name TEXT NOT NULL DEFAULT '',
    recipient_timezone TEXT NOT NULL DEFAULT '',
    recipient_key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    risk_json TEXT NOT NULL DEFAULT '',
    template_id TEXT NOT NULL DEFAULT '',
    template_variant TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    campaign_id TEXT NOT NULL DEFAULT '',
    utm_source TEXT NOT NULL DEFAULT '',
    utm_medium TEXT NOT NULL DEFAULT '',
    utm_campaign TEXT NOT NULL DEFAULT '',
    wedding_date TEXT NOT NULL DEFAULT '',
    scheduled_for TIMESTAMPTZ,
    sent_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    ip TEXT NOT NULL DEFAULT '',
    device_id TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX invitations_by_referrer ON invitations (referrer_id, id);
CREATE INDEX invitations_duplicates ON invitations (referrer_id, recipient_key, created_at);
CREATE INDEX invitations_by_recipient ON invitations (recipient_key, created_at);
CREATE INDEX invitations_due ON invitations (status, scheduled_for);
CREATE INDEX invitations_expiring ON invitations (status, expires_at);

-- Sending pace: invitations placed per referrer per UTC hour ('H') and day ('D').
CREATE TABLE send_slots (
    referrer_id TEXT NOT NULL,
    bucket_kind TEXT NOT NULL,
    bucket_start TIMESTAMPTZ NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (referrer_id, bucket_kind, bucket_start)
);

CREATE TABLE clicks (
    click_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    invitation_id TEXT,
    visitor_id TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    device_id TEXT NOT NULL DEFAULT '',
    utm_source TEXT NOT NULL DEFAULT '',
    utm_medium TEXT NOT NULL DEFAULT '',
    utm_campaign TEXT NOT NULL DEFAULT '',
    occurred_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE signups (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE,
    user_kind TEXT NOT NULL,
    vendor_type TEXT,
    email TEXT NOT NULL DEFAULT '',
    email_norm TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    attributed BOOLEAN NOT NULL,
    invitation_id TEXT,
    code TEXT,
    referrer_id TEXT,
    referrer_kind TEXT,
    flow TEXT,
    reason TEXT NOT NULL DEFAULT '',
    touchpoints_json TEXT NOT NULL DEFAULT '[]',
    risk_json TEXT NOT NULL DEFAULT '',
    click_at TIMESTAMPTZ,
    ip TEXT NOT NULL DEFAULT '',
    device_id TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX signups_by_email ON signups (email_norm);

CREATE TABLE conversions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    plan TEXT NOT NULL,
    annual BOOLEAN NOT NULL,
    first_paid BOOLEAN NOT NULL,
    attributed BOOLEAN NOT NULL,
    referrer_id TEXT,
    invitation_id TEXT,
    flow TEXT,
    occurred_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversions_by_user ON conversions (user_id);
-- At most one first paid conversion per user, whatever the races.
CREATE UNIQUE INDEX conversions_first_paid ON conversions (user_id) WHERE first_paid;

-- The event-log tables (outbox, consumer_offsets, processed_events) are common's, applied
-- as migration 0 (referral_common::db::SHARED).
