-- A referrer's network (GET /v1/referrers/{id}/network) walks referred_users from referrer to
-- the people they brought in, level by level: one index lookup per person instead of a scan
-- per level. Also what erasure finds a referrer's referred users by.
CREATE INDEX referred_users_by_referrer ON referred_users (referrer_id, signed_up_at);
