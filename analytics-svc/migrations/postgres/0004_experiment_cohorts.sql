-- Template experiments per variant, cohort day and dimensions (read by experiment results,
-- which take the same flow, referrerKind and vendorType filters as every metric). Replaces
-- experiment_days (per variant and day only), filled from the write-side rows it was
-- counted from: an invitation of the template counts as sent once it reached SENT, a
-- referred user as a signup unless fraud review rejected the referral.
CREATE TABLE experiment_cohorts (
    template_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    day BIGINT NOT NULL,
    flow TEXT NOT NULL,
    referrer_kind TEXT NOT NULL,
    vendor_type TEXT NOT NULL,
    sent BIGINT NOT NULL DEFAULT 0,
    signups BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (template_id, variant, day, flow, referrer_kind, vendor_type)
);

INSERT INTO experiment_cohorts (template_id, variant, day, flow, referrer_kind, vendor_type, sent, signups)
SELECT template_id, template_variant, day, flow, referrer_kind, vendor_type, SUM(sent), SUM(signups)
FROM (
    SELECT template_id, template_variant, day, flow, referrer_kind, vendor_type, 1 AS sent, 0 AS signups
    FROM invitation_facts WHERE template_id <> '' AND stage >= 1
    UNION ALL
    SELECT template_id, template_variant, day, flow, referrer_kind, vendor_type, 0 AS sent, 1 AS signups
    FROM referred_users WHERE template_id <> '' AND rejected = 0
) counted
GROUP BY template_id, template_variant, day, flow, referrer_kind, vendor_type;

-- experiment_days stays (migrations only add): a replica of the previous version still
-- writing it during a rolling upgrade must not fail. Nothing reads it any more; a later
-- release drops it. Run `analytics-svc rebuild` after such an upgrade to count what the old
-- replicas consumed into experiment_cohorts too.
