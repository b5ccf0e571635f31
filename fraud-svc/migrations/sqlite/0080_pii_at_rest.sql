-- No plaintext personal data in fraud-svc (issue #16). Equality lookups (same IP, device,
-- e-mail, ring links) use keyed hashes (PiiKeys::lookup); what similarity compares is sealed;
-- the disposable-domain rule keeps only the listed domain. A migration does not know the
-- keys: rows written before this one keep their plaintext in the old columns (email_local,
-- email_norm, name_norm, ip, device_id), identities marked 'legacy-<kind>' and ring keys
-- prefixed 'legacy:' until `fraud_svc::reencrypt` converts and blanks them. New writes leave
-- the old columns empty.

ALTER TABLE referral_facts ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
ALTER TABLE referral_facts ADD COLUMN peer_sealed TEXT NOT NULL DEFAULT '';
ALTER TABLE referral_facts ADD COLUMN disposable_domain TEXT NOT NULL DEFAULT '';
ALTER TABLE referral_facts ADD COLUMN ip_key TEXT NOT NULL DEFAULT '';
ALTER TABLE referral_facts ADD COLUMN device_key TEXT NOT NULL DEFAULT '';
DROP INDEX referral_facts_by_referrer_ip;
CREATE INDEX referral_facts_by_referrer_ip_key ON referral_facts (referrer_id, ip_key, occurred_at);
-- Erasure finds a person's facts by their e-mail's key.
CREATE INDEX referral_facts_by_email_key ON referral_facts (email_key) WHERE email_key <> '';

ALTER TABLE invitation_facts ADD COLUMN device_key TEXT NOT NULL DEFAULT '';
DROP INDEX invitation_facts_by_device;
CREATE INDEX invitation_facts_by_device_key ON invitation_facts (device_key, occurred_at);
CREATE INDEX invitation_facts_by_referrer ON invitation_facts (referrer_id);

-- identities.value and ring keys hold lookup hashes from now on.
UPDATE identities SET kind = 'legacy-' || kind;
CREATE INDEX identities_by_value ON identities (kind, value);
UPDATE link_holders SET link_key = 'legacy:' || link_key;
UPDATE cluster_links SET link_key = 'legacy:' || link_key;
CREATE INDEX link_holders_by_member ON link_holders (member_id);

-- Erasure and export find the assessments and cases about a person.
CREATE INDEX assessments_by_referee ON assessments (referee_id);
CREATE INDEX assessments_by_referrer ON assessments (referrer_id);
CREATE INDEX assessments_by_subject ON assessments (subject_id);
CREATE INDEX cases_by_referee ON cases (referee_id);
CREATE INDEX cases_by_cluster_member ON cases (cluster_member);
CREATE INDEX cases_by_subject ON cases (subject_id);
