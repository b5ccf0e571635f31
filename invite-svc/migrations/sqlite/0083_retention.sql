-- Storage that stays bounded (issue #16).
--
-- clicks becomes a WITHOUT ROWID table keyed by click_id: the signed click id (~70 bytes)
-- was stored twice, in the row and in the primary key's own index; now once. About 80
-- bytes less on every click kept (clicks are kept 3 years). Same columns, same order: a
-- migration before this one that adds a column to clicks must add it here too (the
-- INSERT ... SELECT * below then fails loudly instead of dropping it).
CREATE TABLE clicks_keyed (
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
    occurred_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    previous_click_id TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
INSERT INTO clicks_keyed SELECT * FROM clicks;
DROP TABLE clicks;
ALTER TABLE clicks_keyed RENAME TO clicks;

-- The retention job's scans (invite-svc/src/store/retention.rs): clicks still holding
-- personal data by the end of their attribution window (small: only recent clicks), and
-- closed invitations and signups by age. Purging clicks has no index of its own: it would
-- cost ~50 bytes on every click for a scan that runs once an hour.
CREATE INDEX clicks_personal_by_expiry ON clicks (expires_at)
    WHERE (ip <> '' OR user_agent <> '' OR device_id <> '' OR visitor_id <> '');
CREATE INDEX invitations_closed_by_update ON invitations (updated_at)
    WHERE status IN ('SIGNED_UP', 'CONVERTED', 'EXPIRED', 'BOUNCED', 'CANCELLED', 'BLOCKED');
CREATE INDEX signups_by_creation ON signups (created_at);
