-- Money in every currency, leaderboards by vendor type, and the funnel's last stages.
--
-- Conversion revenue per referrer, conversion day and currency as recorded (read by the
-- REVENUE leaderboard, which converts it with the rate effective on each day). A key's
-- amount lives in one row until that row nears the BIGINT range (domain::fx::ROW_LIMIT);
-- the next amount then starts row `part` + 1, so no upsert can overflow, whatever the count.
CREATE TABLE revenue_days (
    referrer_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    currency TEXT NOT NULL,
    part INTEGER NOT NULL DEFAULT 0,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (referrer_id, day, currency, part)
);
CREATE INDEX revenue_days_by_day ON revenue_days (day, referrer_id);

-- What each conversion added to revenue_days, to take it back on a fraud rejection.
-- Conversions applied before this migration have '' and add or take back nothing here
-- until `analytics-svc rebuild` replays them.
ALTER TABLE conversion_facts ADD COLUMN currency TEXT NOT NULL DEFAULT '';
ALTER TABLE conversion_facts ADD COLUMN amount_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversion_facts ADD COLUMN conversion_day BIGINT NOT NULL DEFAULT 0;

-- Admin-managed rates (source data, not a rollup: rebuild keeps them): units of the
-- reporting currency per unit of `currency`, from `effective_day` until its next row.
-- `rate` is the exact decimal text; `updated_at` Unix seconds.
CREATE TABLE fx_rates (
    currency TEXT NOT NULL,
    effective_day BIGINT NOT NULL,
    rate TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (currency, effective_day)
);

-- Activity reported by the marketplace (source data, kept by rebuild): each user's first
-- ACTIVATED and first CHURNED instant (Unix seconds). Either may arrive before the
-- conversion it follows; the rollups join them whichever comes first.
CREATE TABLE user_activity (
    user_id TEXT PRIMARY KEY,
    activated_at BIGINT,
    churned_at BIGINT
);

-- ACTIVATED is stage 7 of an invitation (a converted referee who activated), counted in
-- its cohort like the other stages.
ALTER TABLE daily ADD COLUMN activated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE referrer_days ADD COLUMN activated BIGINT NOT NULL DEFAULT 0;
-- The day an ACTIVATED invitation's referee churned (NULL: not churned).
ALTER TABLE invitation_facts ADD COLUMN churn_day BIGINT;
-- Activity finds the invitation its user came through.
CREATE INDEX referred_users_by_invitation ON referred_users (invitation_id);

-- Churn of ACTIVATED invitations per cohort day, dimensions and churn day (read by the
-- funnel: RETAINED = ACTIVATED - those churned on or before the window's last day).
CREATE TABLE churn_days (
    day BIGINT NOT NULL,
    referrer_id TEXT NOT NULL,
    flow TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    churn_day BIGINT NOT NULL,
    churned BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, referrer_id, flow, referrer_kind, vendor_type, channel, churn_day)
);
