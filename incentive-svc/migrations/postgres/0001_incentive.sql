-- incentive-svc: programs as data, campaigns, the conversions and fraud decisions it has
-- heard of, and the ledger: immutable entries, their append-only state history, and the
-- current state of each (a projection of that history kept in the same transaction).

CREATE TABLE programs (
    id TEXT PRIMARY KEY,
    referrer_kind TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    -- The referral.incentive.v1.RewardProgram as proto3 JSON.
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX programs_by_kind ON programs (referrer_kind, active, updated_at);

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    multiplier DOUBLE PRECISION NOT NULL,
    referrer_kind TEXT,
    cap_minor BIGINT,
    cap_currency TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX campaigns_by_window ON campaigns (starts_at, ends_at);

-- Every attributed first paid conversion heard of (for fraud matching and simulations).
CREATE TABLE conversions (
    conversion_id TEXT PRIMARY KEY,
    referee_id TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    referee_kind TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversions_by_time ON conversions (occurred_at, conversion_id);
CREATE INDEX conversions_by_referee ON conversions (referee_id);

-- The latest fraud decision per subject (a conversion id, or a signup id with its referee).
CREATE TABLE decisions (
    subject_id TEXT PRIMARY KEY,
    subject_type TEXT NOT NULL,
    referee_id TEXT NOT NULL,
    action TEXT NOT NULL,
    decided_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX decisions_by_referee ON decisions (referee_id);

-- Ledger entries: never updated. A clawback is a new entry with a negative amount.
CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    -- What makes a reward unique (one conversion reward per referee, one milestone each).
    dedupe_key TEXT NOT NULL UNIQUE,
    referrer_id TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    campaign_bonus_minor BIGINT NOT NULL,
    conversion_id TEXT NOT NULL,
    referee_id TEXT NOT NULL,
    program_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    milestone INTEGER NOT NULL,
    badge TEXT NOT NULL,
    eligible_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    reason TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX entries_by_referrer ON entries (referrer_id, id);
CREATE INDEX entries_by_conversion ON entries (conversion_id);
CREATE INDEX entries_by_referee ON entries (referee_id);
CREATE INDEX entries_by_campaign ON entries (campaign_id);

-- Every state an entry went through, in order; never updated.
CREATE TABLE entry_states (
    seq BIGSERIAL PRIMARY KEY,
    entry_id TEXT NOT NULL REFERENCES entries (id),
    state TEXT NOT NULL,
    payout_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX entry_states_by_entry ON entry_states (entry_id, seq);
-- An entry is paid, voided or expired at most once, whatever races.
CREATE UNIQUE INDEX entry_states_final ON entry_states (entry_id, state)
    WHERE state IN ('PAID', 'VOIDED', 'EXPIRED');

-- The newest row of entry_states per entry, for the scheduler and balances.
CREATE TABLE entry_current (
    entry_id TEXT PRIMARY KEY REFERENCES entries (id),
    referrer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    payout_id TEXT NOT NULL,
    eligible_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX entry_current_due ON entry_current (state, eligible_at);
CREATE INDEX entry_current_expiring ON entry_current (state, expires_at);
CREATE INDEX entry_current_by_referrer ON entry_current (referrer_id, state);

CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    referrer_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX payouts_by_referrer ON payouts (referrer_id, id);

-- The event-log tables (outbox, consumer_offsets, processed_events) are common's, applied
-- as migration 0 (referral_common::db::SHARED).
