-- The audit log: one append-only row per admin or money action, written in the same
-- transaction as the change it records. Defined once in referral-common
-- (common/src/audit/postgres.sql); each service's migration is a byte-for-byte copy, which
-- common's tests check.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL,
    actor_subject TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    request_id TEXT,
    action TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    before_json JSONB,
    after_json JSONB,
    note TEXT
);
-- Newest first, overall and per filter (the reader's keyset order is occurred_at, id).
CREATE INDEX audit_log_recent ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor_subject, occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_subject ON audit_log (subject_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_by_action ON audit_log (action, occurred_at DESC, id DESC);

-- Append-only in the database itself, not only in the code: UPDATE, DELETE and TRUNCATE
-- are refused whoever asks.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
