-- Privacy requests (issue #16): a person's erasure or export, one part per service, each
-- PENDING until that service confirms it (PrivacyRequests/CompletePrivacyPart). The subject
-- is what the services match the person by: lookup hashes and ids, never plaintext.
CREATE TABLE privacy_requests (
    id TEXT PRIMARY KEY,
    -- ERASE | EXPORT
    kind TEXT NOT NULL,
    person_id TEXT NOT NULL,
    -- PENDING | DONE
    state TEXT NOT NULL,
    -- The PrivacySubject as JSON (person id, contact lookup hashes, pseudonym, invitation ids).
    subject_json TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    -- When the export's documents were deleted (PRIVACY_EXPORT_RETENTION after completion).
    export_purged_at TIMESTAMPTZ
);
-- One pending request per person and kind: a second ask answers the pending one.
CREATE UNIQUE INDEX privacy_requests_one_pending ON privacy_requests (person_id, kind) WHERE state = 'PENDING';
CREATE INDEX privacy_requests_done ON privacy_requests (completed_at) WHERE state = 'DONE' AND export_purged_at IS NULL;

CREATE TABLE privacy_request_parts (
    request_id TEXT NOT NULL REFERENCES privacy_requests (id),
    -- invite-svc | fraud-svc | incentive-svc | analytics-svc
    service TEXT NOT NULL,
    state TEXT NOT NULL,
    -- The receipt's counts by record kind.
    counts_json TEXT NOT NULL DEFAULT '{}',
    -- An export's part, sealed with PiiKeys (it is personal data); NULL for an erasure,
    -- while pending, and once purged.
    document TEXT,
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (request_id, service)
);
CREATE INDEX privacy_request_parts_pending ON privacy_request_parts (service, request_id) WHERE state = 'PENDING';
