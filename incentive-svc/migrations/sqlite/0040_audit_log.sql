-- The audit log: one append-only row per admin or money action, written in the same
-- transaction as the change it records. Defined once in referral-common
-- (common/src/audit/sqlite.sql); each service's migration is a byte-for-byte copy, which
-- common's tests check. Times are integer microseconds since the Unix epoch, so they
-- compare as instants, never as text.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    occurred_at INTEGER NOT NULL,
    actor_subject TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    request_id TEXT,
    action TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT,
    note TEXT
);
CREATE INDEX audit_log_recent ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor_subject, occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_subject ON audit_log (subject_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_action ON audit_log (action, occurred_at DESC, id DESC);

-- Append-only in the database itself, not only in the code.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
