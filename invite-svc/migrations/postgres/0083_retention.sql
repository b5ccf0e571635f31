-- The retention job's scans (invite-svc/src/store/retention.rs): clicks still holding
-- personal data by the end of their attribution window (small: only recent clicks), and
-- closed invitations and signups by age. Purging clicks has no index of its own (it would
-- cost ~50 bytes on every click for a scan that runs once an hour and stops at the first
-- batch of old rows, which the table keeps first).
CREATE INDEX clicks_personal_by_expiry ON clicks (expires_at)
    WHERE (ip <> '' OR user_agent <> '' OR device_id <> '' OR visitor_id <> '');
CREATE INDEX invitations_closed_by_update ON invitations (updated_at)
    WHERE status IN ('SIGNED_UP', 'CONVERTED', 'EXPIRED', 'BOUNCED', 'CANCELLED', 'BLOCKED');
CREATE INDEX signups_by_creation ON signups (created_at);
