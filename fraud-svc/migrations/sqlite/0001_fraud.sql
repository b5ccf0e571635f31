-- fraud-svc schema (SQLite). Enum-like columns hold the API names (e.g. 'REVIEW').

-- Every decision, with its signals, rules and ring snapshot as proto3 JSON.
CREATE TABLE assessments (
    id TEXT PRIMARY KEY,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL DEFAULT '',
    dedupe_key TEXT,
    referrer_id TEXT NOT NULL DEFAULT '',
    referee_id TEXT NOT NULL DEFAULT '',
    score DOUBLE PRECISION NOT NULL,
    level TEXT NOT NULL,
    action TEXT NOT NULL,
    signals_json TEXT NOT NULL,
    rules_json TEXT NOT NULL,
    cluster_json TEXT NOT NULL DEFAULT '',
    case_id TEXT,
    occurred_at TEXT NOT NULL,
    assessed_at TEXT NOT NULL
);
-- One answer per question: a repeated signup (same user), invitation or conversion id.
-- Questions without an id have a NULL key (NULLs never collide). Not a partial index: a
-- lookup by a bound key could not prove the partial condition and would scan the table.
CREATE UNIQUE INDEX assessments_dedupe ON assessments (subject_type, dedupe_key);

-- Every REVIEW or REJECT, and its resolution.
CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL DEFAULT '',
    referrer_id TEXT NOT NULL DEFAULT '',
    referee_id TEXT NOT NULL DEFAULT '',
    assessment_id TEXT NOT NULL,
    cluster_member TEXT NOT NULL DEFAULT '',
    decision TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    resolved_by TEXT NOT NULL DEFAULT '',
    resolved_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX cases_by_state ON cases (state, id);
CREATE INDEX cases_by_referrer ON cases (referrer_id, id);

-- Sliding windows of referred signups: one row per referee (a user is referred once),
-- read by referrer (velocity, similarity, timing) and by referrer + IP (IP clustering).
CREATE TABLE referral_facts (
    referee_id TEXT PRIMARY KEY,
    referrer_id TEXT NOT NULL,
    subject_id TEXT NOT NULL DEFAULT '',
    email_local TEXT NOT NULL DEFAULT '',
    email_norm TEXT NOT NULL DEFAULT '',
    name_norm TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    device_id TEXT NOT NULL DEFAULT '',
    occurred_at TEXT NOT NULL
);
CREATE INDEX referral_facts_by_referrer ON referral_facts (referrer_id, occurred_at);
CREATE INDEX referral_facts_by_referrer_ip ON referral_facts (referrer_id, ip, occurred_at);

-- Sliding windows of invitations, read by recipient (pseudonymous key) and by device.
CREATE TABLE invitation_facts (
    id TEXT PRIMARY KEY,
    referrer_id TEXT NOT NULL,
    recipient_key TEXT NOT NULL DEFAULT '',
    device_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    occurred_at TEXT NOT NULL
);
CREATE INDEX invitation_facts_by_recipient ON invitation_facts (recipient_key, occurred_at);
CREATE INDEX invitation_facts_by_device ON invitation_facts (device_id, occurred_at);

-- The e-mails and devices each person used (self-referral), looked up by primary key.
CREATE TABLE identities (
    person_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (person_id, kind, value)
);

-- Fraud rings: a persisted union-find. Each person and each shared key (ip:, device:,
-- email:) points at its cluster; merging moves the smaller cluster into the larger.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE cluster_members (
    member_id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at TEXT NOT NULL
);
CREATE INDEX cluster_members_by_cluster ON cluster_members (cluster_id, member_id);
-- holders: how many people hold the key (a link shared by two or more links them).
CREATE TABLE cluster_links (
    link_key TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    holders BIGINT NOT NULL
);
CREATE INDEX cluster_links_by_cluster ON cluster_links (cluster_id, link_key);
-- The shared links a cluster view lists, without reading its singleton keys.
CREATE INDEX cluster_links_shared ON cluster_links (cluster_id, link_key) WHERE holders > 1;
-- Who holds which key: a person's repeated observation of a key is a no-op.
CREATE TABLE link_holders (
    link_key TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (link_key, member_id)
);

-- The event-log tables (outbox, consumer_offsets, processed_events) are common's, applied
-- as migration 0 (referral_common::db::SHARED).
