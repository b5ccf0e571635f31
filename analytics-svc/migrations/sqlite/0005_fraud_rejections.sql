-- Fraud rejections, taken back exactly and in whichever order the invite and fraud logs are
-- read (a rebuild replays them at once).
--
-- Per conversion (write side): what it added to the rollups, so that fraud-svc rejecting it
-- (FraudAssessed REJECT of the conversion, or its case resolved REJECT) takes exactly that
-- back. `user_id` is set once the conversion was read; `applied` once its effects are in the
-- rollups; `rejected` once fraud rejected it (a rejection read first leaves a row with only
-- the id, and the conversion then adds nothing). `counted` when it was the user's conversion
-- (the first paid one); `revenue_minor` what it added in the reporting currency.
-- Conversions applied before this migration have no row, so a rejection read from now on
-- cannot take them back: `analytics-svc rebuild` gives them one (and takes back those
-- already rejected).
CREATE TABLE conversion_facts (
    conversion_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL DEFAULT '',
    invitation_id TEXT NOT NULL DEFAULT '',
    day BIGINT NOT NULL DEFAULT 0,
    flow TEXT NOT NULL DEFAULT '',
    referrer_id TEXT NOT NULL DEFAULT '',
    referrer_kind TEXT NOT NULL DEFAULT '',
    vendor_type TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL DEFAULT '',
    template_id TEXT NOT NULL DEFAULT '',
    template_variant TEXT NOT NULL DEFAULT '',
    counted INTEGER NOT NULL DEFAULT 0,
    revenue_minor BIGINT NOT NULL DEFAULT 0,
    applied INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0
);
-- A rejected referral takes back its user's conversions.
CREATE INDEX conversion_facts_by_user ON conversion_facts (user_id);

-- The attribution credits each conversion added (one row per model, referrer and channel).
CREATE TABLE conversion_credits (
    conversion_id TEXT NOT NULL,
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
    PRIMARY KEY (conversion_id, model, referrer_id, channel)
);

-- An invitation whose counted conversion was rejected stops at SIGNED_UP: its CONVERTED
-- is taken back and a later CONVERTED transition does not raise it again.
ALTER TABLE invitation_facts ADD COLUMN conversion_rejected INTEGER NOT NULL DEFAULT 0;

-- Signups fraud review rejected before the signup itself was read (the fraud log read
-- ahead of the invite log, as a rebuild may): the signup then counts for nothing.
CREATE TABLE rejected_signups (
    signup_id TEXT PRIMARY KEY
);

-- How many credits each attribution row holds (a credit taken back subtracts one), so a row
-- whose credits were all taken back is not listed while a touch credited nothing still is.
-- Rows from before hold at least one.
ALTER TABLE attribution_days ADD COLUMN credits BIGINT NOT NULL DEFAULT 1;
