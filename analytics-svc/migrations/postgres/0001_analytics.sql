-- analytics-svc rollups (Postgres), kept up to date from invite-svc's, fraud-svc's and incentive-svc's
-- event logs. Days are whole UTC days since 1970-01-01; instants are Unix seconds.
-- Enum-like columns hold the API names ('SUPPLIER_TO_COUPLE'); '' where there is none.
-- Queries read only the tables marked "read by queries"; the others exist so that a later
-- event (a signup, a conversion, a new active day) updates the right rollup row.

-- Per invitation (write side): its cohort day and dimensions, and the furthest funnel
-- stage it reached (0 none, 1 SENT, 2 DELIVERED, 3 OPENED, 4 CLICKED, 5 SIGNED_UP,
-- 6 CONVERTED), so a later transition, signup or conversion counts in its cohort once.
CREATE TABLE invitation_facts (
    invitation_id TEXT PRIMARY KEY,
    day BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    flow TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL DEFAULT '',
    template_id TEXT NOT NULL DEFAULT '',
    template_variant TEXT NOT NULL DEFAULT '',
    stage INTEGER NOT NULL DEFAULT 0
);

-- Per referred user (write side): who brought them in and the cohort their outcomes count
-- in; `rejected` once fraud review rejected the referral (its counts were taken back).
CREATE TABLE referred_users (
    user_id TEXT PRIMARY KEY,
    signup_id TEXT NOT NULL DEFAULT '',
    referrer_id TEXT NOT NULL,
    invitation_id TEXT NOT NULL DEFAULT '',
    day BIGINT NOT NULL,
    flow TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL DEFAULT '',
    template_id TEXT NOT NULL DEFAULT '',
    template_variant TEXT NOT NULL DEFAULT '',
    signed_up_at BIGINT NOT NULL,
    cycle_seconds BIGINT,
    converted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX referred_users_by_signup ON referred_users (signup_id);

-- Per referrer, all time (read by leaderboard ALL and super-connectors): totals, the sum of
-- the funnel stages their invitations reached (connection strength), the last day they
-- invited, second-order reach, and tier and badges from incentive-svc.
CREATE TABLE referrers (
    referrer_id TEXT PRIMARY KEY,
    referrer_kind TEXT NOT NULL DEFAULT '',
    vendor_type TEXT NOT NULL DEFAULT '',
    invitations BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    conversions BIGINT NOT NULL DEFAULT 0,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    stage_sum BIGINT NOT NULL DEFAULT 0,
    last_day BIGINT NOT NULL DEFAULT 0,
    second_order_reach BIGINT NOT NULL DEFAULT 0,
    tier TEXT NOT NULL DEFAULT '',
    badges TEXT NOT NULL DEFAULT ''
);
CREATE INDEX referrers_by_invitations ON referrers (invitations);

-- Per cohort day and dimensions (read by viral, funnel, time series): invitations created
-- that day, how many reached each funnel stage, their signups, conversions, revenue (in
-- the reporting currency) and the signup delays behind cycle time.
CREATE TABLE daily (
    day BIGINT NOT NULL,
    flow TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    invitations BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    opened BIGINT NOT NULL DEFAULT 0,
    clicked BIGINT NOT NULL DEFAULT 0,
    signed_up BIGINT NOT NULL DEFAULT 0,
    converted BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    conversions BIGINT NOT NULL DEFAULT 0,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    cycle_seconds BIGINT NOT NULL DEFAULT 0,
    cycle_signups BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, flow, referrer_kind, vendor_type, channel)
);

-- The same per referrer (read by funnel?referrerId, leaderboards of a week or month, cohorts).
CREATE TABLE referrer_days (
    referrer_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    flow TEXT NOT NULL,
    invitations BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    opened BIGINT NOT NULL DEFAULT 0,
    clicked BIGINT NOT NULL DEFAULT 0,
    signed_up BIGINT NOT NULL DEFAULT 0,
    converted BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    conversions BIGINT NOT NULL DEFAULT 0,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (referrer_id, day, flow)
);
CREATE INDEX referrer_days_by_day ON referrer_days (day, referrer_id);

-- Distinct referrers, exactly, at a cost that does not grow with invitations or referrers.
-- A scope is a filter combination ('' all, 'k=SUPPLIER', 'v=FLORIST', 'f=<flow>',
-- 'f=<flow>|v=<vendor>'). active_days (write side) holds each referrer's days with an
-- invitation per scope; active_gaps (read by queries) counts, per scope and day, the
-- referrers active that day by the gap in days since their previous active day (gap
-- 1000000 = their first). Distinct referrers over [from, to] = the sum over days d in the
-- window of referrers whose gap exceeds d - from: each is counted on their first day inside.
CREATE TABLE active_days (
    scope TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    PRIMARY KEY (scope, referrer_id, day)
);
CREATE TABLE active_gaps (
    scope TEXT NOT NULL,
    day BIGINT NOT NULL,
    gap BIGINT NOT NULL,
    referrers BIGINT NOT NULL,
    PRIMARY KEY (scope, day, gap)
);
-- Each referrer's first active day per scope (read by cohorts).
CREATE TABLE referrer_firsts (
    scope TEXT NOT NULL,
    referrer_id TEXT NOT NULL,
    first_day BIGINT NOT NULL,
    PRIMARY KEY (scope, referrer_id)
);
CREATE INDEX referrer_firsts_by_day ON referrer_firsts (scope, first_day);

-- Template experiments per variant and cohort day (read by experiment results).
CREATE TABLE experiment_days (
    template_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    day BIGINT NOT NULL,
    sent BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (template_id, variant, day)
);

-- Conversion revenue credited by each attribution model (read by attribution), per
-- conversion day, referrer, channel, dimensions and currency. Credits are exact minor units
-- (largest-remainder split); fractional conversions as a double.
CREATE TABLE attribution_days (
    model TEXT NOT NULL,
    day BIGINT NOT NULL,
    referrer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    flow TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL,
    currency TEXT NOT NULL,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    conversions DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (model, day, referrer_id, channel, flow, referrer_kind, vendor_type, currency)
);

-- The event-log tables (outbox, consumer_offsets, processed_events) are common's, applied
-- as migration 0 (referral_common::db::SHARED).
