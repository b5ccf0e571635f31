//! The SQL of fraud-svc, written once on sqlx and instantiated for Postgres and SQLite by
//! `sql_store!`. Each backend supplies `begin_write()` (Postgres: a transaction holding the
//! assessment advisory lock; SQLite: BEGIN IMMEDIATE, its one-writer lock), `stage_in()`
//! (outbox insert), `wake_relay()` (after a commit that staged events), its connection type,
//! its consumer-offset helpers and the row-lock suffix.
//!
//! The assessment transaction is driven by `app::assess_subject`: one statement per method,
//! the windows each read through their index and bounded by a LIMIT.

/// The columns of `assessments`, in [`AssessmentRow`](super::AssessmentRow) order.
macro_rules! assessment_cols {
    () => {
        "id, subject_type, subject_id, dedupe_key, referrer_id, referee_id, score, level, action, signals_json, rules_json, cluster_json, case_id, occurred_at, assessed_at"
    };
}

/// The columns of `cases`, in [`CaseRow`](super::CaseRow) order.
macro_rules! case_cols {
    () => {
        "id, state, subject_type, subject_id, referrer_id, referee_id, assessment_id, cluster_member, decision, note, resolved_by, resolved_at, created_at"
    };
}

macro_rules! sql_store {
    ($store:ty, $db:ty, $conn:ty, $consumer:ident, $for_update:literal) => {
        use chrono::{DateTime, Utc};
        use referral_common::consumer::$consumer as offsets;
        use referral_proto::events::v1::Event;

        use crate::{
            domain::{ClusterSize, Peer, SubjectKind, identity::EmailTraits, ring},
            store::events,
            store::{
                AssessmentRow, CaseRow, ClusterView, InvitationCounts, InvitationFact, InvitationWindows, KnownReferee,
                Counts, NewCase, PersonKeys, ReferralCounts, ReferralFact, ReferralWindows, ResolveOutcome, RingState, Store, StoreError, StoreResult,
                VIEW_LINKS, open_peer, seal_peer,
            },
        };

        impl Store for $store {
            type Tx = sqlx::Transaction<'static, $db>;

            fn outbox(&self) -> &Outbox {
                &self.outbox
            }

            fn pii(&self) -> &PiiKeys {
                &self.pii
            }

            async fn begin_assessment(&self) -> StoreResult<Self::Tx> {
                Ok(self.begin_write().await?)
            }

            async fn commit(&self, tx: Self::Tx, staged: bool) -> StoreResult<()> {
                tx.commit().await?;
                if staged {
                    self.wake_relay();
                }
                Ok(())
            }

            async fn stage(&self, tx: &mut Self::Tx, event: &Event) -> StoreResult<()> {
                Ok(Self::stage_in(tx, event).await?)
            }

            async fn mark_consumed(&self, tx: &mut Self::Tx, event_id: &str) -> StoreResult<bool> {
                Ok(offsets::first_time(tx, event_id).await?)
            }

            async fn save_offset(&self, tx: &mut Self::Tx, source: &str, offset: i64) -> StoreResult<()> {
                Ok(offsets::save_offset(tx, source, offset).await?)
            }

            async fn assessment_by_key(
                &self,
                tx: &mut Self::Tx,
                kind: SubjectKind,
                dedupe_key: &str,
            ) -> StoreResult<Option<AssessmentRow>> {
                Self::find_in(tx, kind, dedupe_key).await
            }

            async fn record_referral(&self, tx: &mut Self::Tx, fact: &ReferralFact<'_>) -> StoreResult<()> {
                let peer = seal_peer(&self.pii, &fact.email.local, fact.name_norm)?;
                sqlx::query(
                    "INSERT INTO referral_facts (referee_id, referrer_id, subject_id, email_key, peer_sealed, disposable_domain, ip_key, device_key, occurred_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (referee_id) DO NOTHING",
                )
                .bind(fact.referee_id)
                .bind(fact.referrer_id)
                .bind(fact.subject_id)
                .bind(fact.email_key)
                .bind(peer)
                .bind(fact.email.disposable.as_deref().unwrap_or(""))
                .bind(fact.ip_key)
                .bind(fact.device_key)
                .bind(fact.occurred_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn known_referee(&self, tx: &mut Self::Tx, referee_id: &str) -> StoreResult<Option<KnownReferee>> {
                let row: Option<(String, String, String, String, String)> = sqlx::query_as(
                    "SELECT email_key, peer_sealed, disposable_domain, ip_key, device_key FROM referral_facts WHERE referee_id = $1",
                )
                .bind(referee_id)
                .fetch_optional(&mut **tx)
                .await?;
                let Some((email_key, peer, disposable, ip_key, device_key)) = row else { return Ok(None) };
                let (local, name) = open_peer(&self.pii, &peer)?;
                Ok(Some(KnownReferee {
                    email: EmailTraits {
                        known: !email_key.is_empty(),
                        local,
                        disposable: (!disposable.is_empty()).then_some(disposable),
                    },
                    email_key,
                    name,
                    ip_key,
                    device_key,
                }))
            }

            async fn record_invitation(&self, tx: &mut Self::Tx, fact: &InvitationFact<'_>) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO invitation_facts (id, referrer_id, recipient_key, device_key, occurred_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                )
                .bind(fact.id)
                .bind(fact.referrer_id)
                .bind(fact.recipient_key)
                .bind(fact.device_key)
                .bind(fact.occurred_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn invitation_counts(&self, tx: &mut Self::Tx, w: &InvitationWindows<'_>) -> StoreResult<InvitationCounts> {
                let (recipient_referrers, device_invitations, device_referrers, own_email): (i64, i64, i64, i64) =
                    sqlx::query_as(
                        "SELECT
                           (SELECT COUNT(DISTINCT referrer_id) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE recipient_key = $1 AND $1 <> '' AND occurred_at > $2 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $4) AS r),
                           (SELECT COUNT(*) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE device_key = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $7) AS d),
                           (SELECT COUNT(DISTINCT referrer_id) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE device_key = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $7) AS dr),
                           (SELECT COUNT(*) FROM identities WHERE person_id = $8 AND kind = 'email' AND value = $9 AND $9 <> '')",
                    )
                    .bind(w.recipient_key)
                    .bind(w.recipient_since)
                    .bind(w.until)
                    .bind(i64::from(w.recipient_cap))
                    .bind(w.device_key)
                    .bind(w.device_since)
                    .bind(i64::from(w.device_cap))
                    .bind(w.referrer_id)
                    .bind(w.email_key)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(InvitationCounts {
                    recipient_referrers,
                    device_invitations,
                    device_referrers,
                    own_email,
                })
            }

            async fn referral_counts(&self, tx: &mut Self::Tx, w: &ReferralWindows<'_>) -> StoreResult<ReferralCounts> {
                #[allow(clippy::type_complexity)]
                let row: (i64, i64, i64, i64, Option<String>, Option<i64>, Option<String>, Option<i64>) = sqlx::query_as(
                    "SELECT
                       (SELECT COUNT(*) FROM (SELECT 1 AS one FROM referral_facts
                          WHERE referrer_id = $1 AND occurred_at > $2 AND occurred_at <= $3
                          ORDER BY occurred_at DESC LIMIT $4) AS v),
                       (SELECT COUNT(*) FROM (SELECT 1 AS one FROM referral_facts
                          WHERE referrer_id = $1 AND ip_key = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                          ORDER BY occurred_at DESC LIMIT $7) AS i),
                       (SELECT COUNT(*) FROM identities WHERE person_id = $1 AND kind = 'email' AND value = $8 AND $8 <> ''),
                       (SELECT COUNT(*) FROM identities WHERE person_id = $1 AND kind = 'device' AND value = $9 AND $9 <> ''),
                       (SELECT cluster_id FROM cluster_members WHERE member_id = $10 AND $10 <> ''),
                       (SELECT c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $10 AND $10 <> ''),
                       (SELECT cluster_id FROM cluster_members WHERE member_id = $1),
                       (SELECT c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $1)",
                )
                .bind(w.referrer_id)
                .bind(w.velocity_since)
                .bind(w.until)
                .bind(i64::from(w.velocity_cap))
                .bind(w.ip_key)
                .bind(w.same_ip_since)
                .bind(i64::from(w.same_ip_cap))
                .bind(w.email_key)
                .bind(w.device_key)
                .bind(w.referee)
                .fetch_one(&mut **tx)
                .await?;
                Ok(ReferralCounts {
                    signups: row.0,
                    same_ip: row.1,
                    own_email: row.2,
                    own_device: row.3,
                    referee_cluster: cluster_size(row.4, row.5),
                    referrer_cluster: cluster_size(row.6, row.7),
                })
            }

            async fn recent_referees(
                &self,
                tx: &mut Self::Tx,
                referrer_id: &str,
                since: DateTime<Utc>,
                until: DateTime<Utc>,
                limit: i64,
            ) -> StoreResult<Vec<Peer>> {
                let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT referee_id, peer_sealed, occurred_at FROM referral_facts
                     WHERE referrer_id = $1 AND occurred_at > $2 AND occurred_at <= $3 ORDER BY occurred_at DESC LIMIT $4",
                )
                .bind(referrer_id)
                .bind(since)
                .bind(until)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                rows.into_iter()
                    .map(|(referee_id, peer, occurred_at)| {
                        let (email_local, name) = open_peer(&self.pii, &peer)?;
                        Ok(Peer {
                            referee_id,
                            email_local,
                            name,
                            occurred_at,
                        })
                    })
                    .collect()
            }

            async fn record_identities(
                &self,
                tx: &mut Self::Tx,
                person_id: &str,
                known: &[(&str, &str)],
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                if known.is_empty() {
                    return Ok(());
                }
                let rows: Vec<String> = (0..known.len())
                    .map(|i| format!("($1, ${}, ${}, $2)", 3 + 2 * i, 4 + 2 * i))
                    .collect();
                let sql = format!(
                    "INSERT INTO identities (person_id, kind, value, seen_at) VALUES {} ON CONFLICT (person_id, kind, value) DO NOTHING",
                    rows.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(person_id).bind(at);
                for (kind, value) in known {
                    q = q.bind(*kind).bind(*value);
                }
                q.execute(&mut **tx).await?;
                Ok(())
            }

            async fn ring_state(&self, tx: &mut Self::Tx, person_id: &str, keys: &[String]) -> StoreResult<RingState> {
                // part 0: the person's membership; part 1: each key's cluster, in key order.
                let sql = format!(
                    "SELECT CAST(0 AS BIGINT) AS part, '' AS link_key, m.cluster_id, m.role, c.size
                       FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $1
                     UNION ALL
                     SELECT 1, l.link_key, l.cluster_id, '', c.size
                       FROM cluster_links l JOIN clusters c ON c.id = l.cluster_id WHERE l.link_key IN ({})
                     ORDER BY part, link_key",
                    placeholders(2, keys.len())
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(person_id);
                for k in keys {
                    q = q.bind(k);
                }
                let rows: Vec<(i64, String, String, String, i64)> = q.fetch_all(&mut **tx).await?;
                let mut state = RingState::default();
                for (part, key, id, role, n) in rows {
                    let cluster = ClusterSize { id, size: size(n) };
                    if part == 0 {
                        state.member = Some((cluster, role));
                    } else {
                        state.keyed.push((key, cluster));
                    }
                }
                Ok(state)
            }

            async fn set_ring_role(&self, tx: &mut Self::Tx, person_id: &str, role: &str) -> StoreResult<()> {
                sqlx::query("UPDATE cluster_members SET role = $2 WHERE member_id = $1")
                    .bind(person_id)
                    .bind(role)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn hold_links(&self, tx: &mut Self::Tx, person_id: &str, keys: &[String]) -> StoreResult<Vec<String>> {
                let holds: Vec<String> = (0..keys.len()).map(|i| format!("(${}, $1)", i + 2)).collect();
                let sql = format!(
                    "INSERT INTO link_holders (link_key, member_id) VALUES {} ON CONFLICT (link_key, member_id) DO NOTHING RETURNING link_key",
                    holds.join(", ")
                );
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(person_id);
                for k in keys {
                    q = q.bind(k);
                }
                Ok(q.fetch_all(&mut **tx).await?)
            }

            async fn apply_union(
                &self,
                tx: &mut Self::Tx,
                plan: &ring::UnionPlan,
                person_id: &str,
                role: &str,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                let target = match &plan.target {
                    ring::Target::Existing(id) => id.clone(),
                    ring::Target::New => {
                        let id = referral_common::ids::new_id();
                        sqlx::query("INSERT INTO clusters (id, size, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                            .bind(&id)
                            .bind(i64::from(plan.size))
                            .bind(at)
                            .execute(&mut **tx)
                            .await?;
                        id
                    }
                };
                for other in &plan.merge {
                    for sql in [
                        "UPDATE cluster_members SET cluster_id = $1 WHERE cluster_id = $2",
                        "UPDATE cluster_links SET cluster_id = $1 WHERE cluster_id = $2",
                    ] {
                        sqlx::query(sql).bind(&target).bind(other).execute(&mut **tx).await?;
                    }
                    sqlx::query("DELETE FROM clusters WHERE id = $1")
                        .bind(other)
                        .execute(&mut **tx)
                        .await?;
                }
                if plan.add_person {
                    sqlx::query("INSERT INTO cluster_members (member_id, cluster_id, role, joined_at) VALUES ($1, $2, $3, $4)")
                        .bind(person_id)
                        .bind(&target)
                        .bind(role)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                }
                if !plan.new_links.is_empty() {
                    let rows: Vec<String> = (0..plan.new_links.len())
                        .map(|i| format!("(${}, $1, 1)", i + 2))
                        .collect();
                    let sql = format!(
                        "INSERT INTO cluster_links (link_key, cluster_id, holders) VALUES {}",
                        rows.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&target);
                    for k in &plan.new_links {
                        q = q.bind(k);
                    }
                    q.execute(&mut **tx).await?;
                }
                if !plan.more_holders.is_empty() {
                    let sql = format!(
                        "UPDATE cluster_links SET holders = holders + 1 WHERE link_key IN ({})",
                        placeholders(1, plan.more_holders.len())
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for k in &plan.more_holders {
                        q = q.bind(k);
                    }
                    q.execute(&mut **tx).await?;
                }
                if plan.target != ring::Target::New {
                    sqlx::query("UPDATE clusters SET size = $2, updated_at = $3 WHERE id = $1")
                        .bind(&target)
                        .bind(i64::from(plan.size))
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn clusters_of(
                &self,
                tx: &mut Self::Tx,
                a: &str,
                b: &str,
            ) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
                Self::clusters_in(tx, a, b).await
            }

            async fn cluster_snapshot(&self, tx: &mut Self::Tx, cluster: &ClusterSize, member_limit: i64) -> StoreResult<ClusterView> {
                Self::view_in(tx, cluster, member_limit).await
            }

            async fn insert_assessment(&self, tx: &mut Self::Tx, row: &AssessmentRow) -> StoreResult<()> {
                sqlx::query(concat!(
                    "INSERT INTO assessments (",
                    assessment_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .bind(&row.id)
                .bind(&row.subject_type)
                .bind(&row.subject_id)
                .bind(row.dedupe_key.as_deref())
                .bind(&row.referrer_id)
                .bind(&row.referee_id)
                .bind(row.score)
                .bind(&row.level)
                .bind(&row.action)
                .bind(&row.signals_json)
                .bind(&row.rules_json)
                .bind(&row.cluster_json)
                .bind(row.case_id.as_deref())
                .bind(row.occurred_at)
                .bind(row.assessed_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn open_case(&self, tx: &mut Self::Tx, case: &NewCase<'_>) -> StoreResult<()> {
                let a = case.assessment;
                sqlx::query(concat!(
                    "INSERT INTO cases (",
                    case_cols!(),
                    ") VALUES ($1, 'OPEN', $2, $3, $4, $5, $6, $7, '', '', '', NULL, $8)"
                ))
                .bind(case.id)
                .bind(&a.subject_type)
                .bind(&a.subject_id)
                .bind(&a.referrer_id)
                .bind(&a.referee_id)
                .bind(&a.id)
                .bind(case.cluster_member)
                .bind(case.created_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn last_offset(&self, source: &str) -> StoreResult<i64> {
                let mut conn = self.pool.acquire().await?;
                Ok(offsets::load_offset(&mut conn, source).await?)
            }

            async fn get_assessment(&self, id: &str) -> StoreResult<Option<AssessmentRow>> {
                Ok(sqlx::query_as(concat!("SELECT ", assessment_cols!(), " FROM assessments WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_assessment(&self, kind: SubjectKind, dedupe_key: &str) -> StoreResult<Option<AssessmentRow>> {
                let mut conn = self.pool.acquire().await?;
                Self::find_in(&mut conn, kind, dedupe_key).await
            }

            async fn get_case(&self, id: &str) -> StoreResult<Option<CaseRow>> {
                Ok(sqlx::query_as(concat!("SELECT ", case_cols!(), " FROM cases WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_cases(
                &self,
                state: Option<&str>,
                referrer_id: Option<&str>,
                after: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<CaseRow>> {
                // One statement per filter combination, each served by its own index.
                let mut sql = String::from(concat!("SELECT ", case_cols!(), " FROM cases WHERE id > $1"));
                let mut n = 1;
                if state.is_some() {
                    n += 1;
                    sql.push_str(&format!(" AND state = ${n}"));
                }
                if referrer_id.is_some() {
                    n += 1;
                    sql.push_str(&format!(" AND referrer_id = ${n}"));
                }
                sql.push_str(&format!(" ORDER BY id LIMIT ${}", n + 1));
                // No page token: from the first case.
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(after.unwrap_or(""));
                if let Some(s) = state {
                    q = q.bind(s);
                }
                if let Some(r) = referrer_id {
                    q = q.bind(r);
                }
                Ok(q.bind(limit).fetch_all(&self.pool).await?)
            }

            async fn resolve_case(
                &self,
                id: &str,
                decision: &str,
                note: &str,
                audit: &referral_common::audit::AuditEntry,
                at: DateTime<Utc>,
            ) -> StoreResult<ResolveOutcome> {
                let mut tx = self.begin_write().await?;
                let row: Option<CaseRow> =
                    sqlx::query_as(concat!("SELECT ", case_cols!(), " FROM cases WHERE id = $1", $for_update))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(mut row) = row else { return Ok(ResolveOutcome::NotFound) };
                if row.state == "RESOLVED" {
                    return Ok(ResolveOutcome::AlreadyResolved(Box::new(row)));
                }
                let before = serde_json::json!({ "state": row.state, "decision": row.decision });
                row.state = "RESOLVED".into();
                row.decision = decision.to_string();
                row.note = note.to_string();
                row.resolved_by = audit.actor.subject.clone();
                row.resolved_at = Some(at);
                sqlx::query(
                    "UPDATE cases SET state = $2, decision = $3, note = $4, resolved_by = $5, resolved_at = $6 WHERE id = $1",
                )
                .bind(&row.id)
                .bind(&row.state)
                .bind(&row.decision)
                .bind(&row.note)
                .bind(&row.resolved_by)
                .bind(row.resolved_at)
                .execute(&mut *tx)
                .await?;
                Self::stage_in(&mut tx, &events::fraud_resolved(&row)).await?;
                let entry = audit
                    .clone()
                    .before(before)
                    .after(serde_json::json!({
                        "state": row.state,
                        "decision": row.decision,
                        "subjectType": row.subject_type,
                        "subjectId": row.subject_id,
                        "referrerId": row.referrer_id,
                    }))
                    .note(&row.note);
                referral_common::audit::record(&mut *tx, &entry).await?;
                tx.commit().await?;
                self.wake_relay();
                Ok(ResolveOutcome::Resolved(Box::new(row)))
            }

            async fn erase_facts(&self, tx: &mut Self::Tx, who: &PersonKeys<'_>) -> StoreResult<Counts> {
                let (p, anon, keys) = (who.person_id, who.pseudonym, who.contact_keys);
                let mut counts = Counts::new();
                // Facts about them as referee, or carrying their e-mail: every key and sealed
                // value goes (the old plaintext columns too, in case `reencrypt` never ran).
                let by_key = if keys.is_empty() {
                    String::new()
                } else {
                    format!(" OR email_key IN ({})", placeholders(3, keys.len()))
                };
                let sql = format!(
                    "UPDATE referral_facts SET referee_id = CASE WHEN referee_id = $1 THEN $2 ELSE referee_id END,
                       email_key = '', peer_sealed = '', disposable_domain = '', ip_key = '', device_key = '',
                       email_local = '', email_norm = '', name_norm = '', ip = '', device_id = ''
                     WHERE referee_id = $1{by_key}"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(p).bind(anon);
                for k in keys {
                    q = q.bind(k);
                }
                let mut facts = q.execute(&mut **tx).await?.rows_affected();
                // Signups they referred stay, under the pseudonym: the referees' own windows.
                facts += sqlx::query("UPDATE referral_facts SET referrer_id = $2 WHERE referrer_id = $1")
                    .bind(p)
                    .bind(anon)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                counts.insert("referralFacts".into(), count(facts));

                // Invitations they received lose the recipient key; invitations they sent stay
                // under the pseudonym without their device.
                let mut received = Vec::new();
                if !keys.is_empty() {
                    received.push(format!("recipient_key IN ({})", placeholders(1, keys.len())));
                }
                if !who.invitation_ids.is_empty() {
                    received.push(format!("id IN ({})", placeholders(1 + keys.len(), who.invitation_ids.len())));
                }
                let mut invitations = 0;
                if !received.is_empty() {
                    let sql = format!(
                        "UPDATE invitation_facts SET recipient_key = '' WHERE recipient_key <> '' AND ({})",
                        received.join(" OR ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for k in keys.iter().chain(who.invitation_ids) {
                        q = q.bind(k);
                    }
                    invitations += q.execute(&mut **tx).await?.rows_affected();
                }
                invitations += sqlx::query(
                    "UPDATE invitation_facts SET referrer_id = $2, device_key = '', device_id = '', ip = '' WHERE referrer_id = $1",
                )
                .bind(p)
                .bind(anon)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                counts.insert("invitationFacts".into(), count(invitations));

                // Who they are: their identities, and anyone's record of their e-mail.
                let mut identities = sqlx::query("DELETE FROM identities WHERE person_id = $1")
                    .bind(p)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if !keys.is_empty() {
                    let sql = format!(
                        "DELETE FROM identities WHERE kind = 'email' AND value IN ({})",
                        placeholders(1, keys.len())
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for k in keys {
                        q = q.bind(k);
                    }
                    identities += q.execute(&mut **tx).await?.rows_affected();
                }
                counts.insert("identities".into(), count(identities));

                // Rings: the keys they hold and every link by their e-mail go; a link others
                // still hold stays with one holder fewer.
                let mut touched: Vec<String> = sqlx::query_scalar("SELECT link_key FROM link_holders WHERE member_id = $1")
                    .bind(p)
                    .fetch_all(&mut **tx)
                    .await?;
                let email_links: Vec<String> = keys.iter().map(|k| format!("email:{k}")).collect();
                touched.extend(email_links.iter().cloned());
                let mut links = sqlx::query("DELETE FROM link_holders WHERE member_id = $1")
                    .bind(p)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                for chunk in email_links.chunks(500) {
                    let sql = format!("DELETE FROM link_holders WHERE link_key IN ({})", placeholders(1, chunk.len()));
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for k in chunk {
                        q = q.bind(k);
                    }
                    links += q.execute(&mut **tx).await?.rows_affected();
                }
                // Every touched link counts its holders again; one nobody holds goes.
                for chunk in touched.chunks(500) {
                    let list = placeholders(1, chunk.len());
                    for sql in [
                        format!(
                            "UPDATE cluster_links SET holders = (SELECT COUNT(*) FROM link_holders h WHERE h.link_key = cluster_links.link_key) WHERE link_key IN ({list})"
                        ),
                        format!("DELETE FROM cluster_links WHERE link_key IN ({list}) AND holders = 0"),
                    ] {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for k in chunk {
                            q = q.bind(k);
                        }
                        q.execute(&mut **tx).await?;
                    }
                }
                counts.insert("ringLinks".into(), count(links));
                let cluster: Option<String> = sqlx::query_scalar("SELECT cluster_id FROM cluster_members WHERE member_id = $1")
                    .bind(p)
                    .fetch_optional(&mut **tx)
                    .await?;
                let mut memberships = 0;
                if let Some(cluster) = cluster {
                    memberships = sqlx::query("DELETE FROM cluster_members WHERE member_id = $1")
                        .bind(p)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    sqlx::query("UPDATE clusters SET size = size - 1 WHERE id = $1")
                        .bind(&cluster)
                        .execute(&mut **tx)
                        .await?;
                    // A ring left with nobody goes with its links.
                    let gone = sqlx::query("DELETE FROM clusters WHERE id = $1 AND size <= 0")
                        .bind(&cluster)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if gone > 0 {
                        sqlx::query("DELETE FROM cluster_links WHERE cluster_id = $1")
                            .bind(&cluster)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                counts.insert("ringMemberships".into(), count(memberships));
                Ok(counts)
            }

            async fn assessments_about_in(&self, tx: &mut Self::Tx, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<AssessmentRow>> {
                Self::assessments_about_on(tx, who, after, limit).await
            }

            async fn assessments_about(&self, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<AssessmentRow>> {
                let mut conn = self.pool.acquire().await?;
                Self::assessments_about_on(&mut conn, who, after, limit).await
            }

            async fn cases_about_in(&self, tx: &mut Self::Tx, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<CaseRow>> {
                Self::cases_about_on(tx, who, after, limit).await
            }

            async fn cases_about(&self, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<CaseRow>> {
                let mut conn = self.pool.acquire().await?;
                Self::cases_about_on(&mut conn, who, after, limit).await
            }

            async fn ring_mates(&self, tx: &mut Self::Tx, person_id: &str, limit: i64) -> StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT o.member_id FROM cluster_members m JOIN cluster_members o ON o.cluster_id = m.cluster_id
                     WHERE m.member_id = $1 AND o.member_id <> $1 ORDER BY o.member_id LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn rewrite_assessment(&self, tx: &mut Self::Tx, row: &AssessmentRow) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE assessments SET referrer_id = $2, referee_id = $3, dedupe_key = $4, signals_json = $5, rules_json = $6, cluster_json = $7 WHERE id = $1",
                )
                .bind(&row.id)
                .bind(&row.referrer_id)
                .bind(&row.referee_id)
                .bind(row.dedupe_key.as_deref())
                .bind(&row.signals_json)
                .bind(&row.rules_json)
                .bind(&row.cluster_json)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn rewrite_case(&self, tx: &mut Self::Tx, row: &CaseRow) -> StoreResult<()> {
                sqlx::query("UPDATE cases SET referrer_id = $2, referee_id = $3, cluster_member = $4, note = $5 WHERE id = $1")
                    .bind(&row.id)
                    .bind(&row.referrer_id)
                    .bind(&row.referee_id)
                    .bind(&row.cluster_member)
                    .bind(&row.note)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn reencrypt_facts(&self, tx: &mut Self::Tx, limit: i64) -> StoreResult<u64> {
                let pii = &self.pii;
                let mut converted = 0;
                let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
                    "SELECT referee_id, email_norm, email_local, name_norm, ip, device_id FROM referral_facts
                     WHERE email_norm <> '' OR email_local <> '' OR name_norm <> '' OR ip <> '' OR device_id <> '' LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                for (referee, email, local, name, ip, device) in rows {
                    let mut traits = EmailTraits::of(&email);
                    if traits.local.is_empty() {
                        traits.local = local;
                    }
                    let peer = seal_peer(pii, &traits.local, &name)?;
                    sqlx::query(
                        "UPDATE referral_facts SET email_key = $2, peer_sealed = $3, disposable_domain = $4, ip_key = $5, device_key = $6,
                           email_norm = '', email_local = '', name_norm = '', ip = '', device_id = '' WHERE referee_id = $1",
                    )
                    .bind(&referee)
                    .bind(pii.lookup("email", &email))
                    .bind(peer)
                    .bind(traits.disposable.as_deref().unwrap_or(""))
                    .bind(pii.lookup("ip", ip.trim()))
                    .bind(pii.lookup("device", device.trim()))
                    .execute(&mut **tx)
                    .await?;
                    converted += 1;
                }
                // Similarity pairs sealed under a key other than the first (rotation).
                let prefix = format!("pii1.{}.", pii.sealing_kid());
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT referee_id, peer_sealed FROM referral_facts WHERE peer_sealed <> '' AND substr(peer_sealed, 1, CAST($1 AS INTEGER)) <> $2 LIMIT $3",
                )
                .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
                .bind(&prefix)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                for (referee, sealed) in rows {
                    let Some(resealed) = pii
                        .reseal(&sealed)
                        .map_err(|e| StoreError::Encoding(format!("referral_facts.peer_sealed: {e}")))?
                    else {
                        continue;
                    };
                    sqlx::query("UPDATE referral_facts SET peer_sealed = $2 WHERE referee_id = $1")
                        .bind(&referee)
                        .bind(resealed)
                        .execute(&mut **tx)
                        .await?;
                    converted += 1;
                }
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, device_id FROM invitation_facts WHERE device_id <> '' OR ip <> '' LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                for (id, device) in rows {
                    sqlx::query("UPDATE invitation_facts SET device_key = $2, device_id = '', ip = '' WHERE id = $1")
                        .bind(&id)
                        .bind(pii.lookup("device", device.trim()))
                        .execute(&mut **tx)
                        .await?;
                    converted += 1;
                }
                let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT person_id, kind, value, seen_at FROM identities WHERE kind LIKE 'legacy-%' LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                for (person, legacy_kind, value, seen_at) in rows {
                    let kind = legacy_kind.trim_start_matches("legacy-");
                    let key = pii.lookup(kind, value.trim());
                    if !key.is_empty() {
                        sqlx::query(
                            "INSERT INTO identities (person_id, kind, value, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (person_id, kind, value) DO NOTHING",
                        )
                        .bind(&person)
                        .bind(kind)
                        .bind(&key)
                        .bind(seen_at)
                        .execute(&mut **tx)
                        .await?;
                    }
                    sqlx::query("DELETE FROM identities WHERE person_id = $1 AND kind = $2 AND value = $3")
                        .bind(&person)
                        .bind(&legacy_kind)
                        .bind(&value)
                        .execute(&mut **tx)
                        .await?;
                    converted += 1;
                }
                Ok(converted)
            }

            async fn legacy_link_holders(&self, tx: &mut Self::Tx, limit: i64) -> StoreResult<Vec<(String, String)>> {
                // 'legacy:' .. 'legacy;' is the prefix's range of the primary key.
                Ok(sqlx::query_as(
                    "SELECT link_key, member_id FROM link_holders WHERE link_key >= 'legacy:' AND link_key < 'legacy;' ORDER BY link_key LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?)
            }

            async fn drop_legacy_link(&self, tx: &mut Self::Tx, link_key: &str, member_id: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM link_holders WHERE link_key = $1 AND member_id = $2")
                    .bind(link_key)
                    .bind(member_id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "DELETE FROM cluster_links WHERE link_key = $1 AND NOT EXISTS (SELECT 1 FROM link_holders WHERE link_key = $1)",
                )
                .bind(link_key)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn assessments_after(&self, tx: &mut Self::Tx, after: &str, limit: i64) -> StoreResult<Vec<AssessmentRow>> {
                Ok(sqlx::query_as(concat!("SELECT ", assessment_cols!(), " FROM assessments WHERE id > $1 ORDER BY id LIMIT $2"))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?)
            }

            async fn cluster_of(&self, member_id: &str, member_limit: i64) -> StoreResult<Option<ClusterView>> {
                let mut conn = self.pool.acquire().await?;
                let (cluster, _) = Self::clusters_in(&mut conn, member_id, "").await?;
                let Some(cluster) = cluster else { return Ok(None) };
                Ok(Some(Self::view_in(&mut conn, &cluster, member_limit).await?))
            }
        }

        /// Reads shared by the assessment transaction and the pool.
        impl $store {
            /// The assessment of a subject by its dedupe key (none for an empty key).
            async fn find_in(conn: &mut $conn, kind: SubjectKind, dedupe_key: &str) -> StoreResult<Option<AssessmentRow>> {
                if dedupe_key.is_empty() {
                    return Ok(None);
                }
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    assessment_cols!(),
                    " FROM assessments WHERE subject_type = $1 AND dedupe_key = $2"
                ))
                .bind(kind.as_str())
                .bind(dedupe_key)
                .fetch_optional(conn)
                .await?)
            }

            /// Assessments about a person (see [`Store::assessments_about_in`]).
            async fn assessments_about_on(conn: &mut $conn, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<AssessmentRow>> {
                let select = concat!("SELECT ", assessment_cols!(), " FROM assessments");
                Self::about_on(conn, select, "referee_id = $2 OR referrer_id = $2", who, after, limit).await
            }

            /// Cases about a person (see [`Store::cases_about_in`]).
            async fn cases_about_on(conn: &mut $conn, who: &PersonKeys<'_>, after: &str, limit: i64) -> StoreResult<Vec<CaseRow>> {
                let select = concat!("SELECT ", case_cols!(), " FROM cases");
                let people = "referee_id = $2 OR referrer_id = $2 OR cluster_member = $2";
                Self::about_on(conn, select, people, who, after, limit).await
            }

            /// Rows of `select` about a person: `people` (on $2, the person's id) or about one of
            /// the invitations they received, with ids after $1, in id order, at most $3.
            async fn about_on<T>(
                conn: &mut $conn,
                select: &'static str,
                people: &'static str,
                who: &PersonKeys<'_>,
                after: &str,
                limit: i64,
            ) -> StoreResult<Vec<T>>
            where
                T: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let mut sql = format!("{select} WHERE id > $1 AND ({people}");
                if !who.invitation_ids.is_empty() {
                    sql.push_str(&format!(
                        " OR (subject_type = 'INVITATION' AND subject_id IN ({}))",
                        placeholders(4, who.invitation_ids.len())
                    ));
                }
                sql.push_str(") ORDER BY id LIMIT $3");
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(after).bind(who.person_id).bind(limit);
                for id in who.invitation_ids {
                    q = q.bind(id);
                }
                Ok(q.fetch_all(conn).await?)
            }

            /// The clusters of up to two people, in one read.
            async fn clusters_in(conn: &mut $conn, a: &str, b: &str) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT m.member_id, c.id, c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id IN ($1, $2)",
                )
                .bind(a)
                .bind(b)
                .fetch_all(conn)
                .await?;
                let of = |who: &str| {
                    rows.iter()
                        .find(|(m, _, _)| !who.is_empty() && m == who)
                        .and_then(|(_, id, n)| cluster_size(Some(id.clone()), Some(*n)))
                };
                Ok((of(a), of(b)))
            }

            /// A cluster's first members and shared links.
            async fn view_in(conn: &mut $conn, cluster: &ClusterSize, member_limit: i64) -> StoreResult<ClusterView> {
                // Members (part 0) and shared links (part 1) in one read, each its own bounded
                // index range; the outer sort only orders those few rows.
                let rows: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT CAST(0 AS BIGINT) AS part, member_id, role FROM (SELECT member_id, role FROM cluster_members
                       WHERE cluster_id = $1 ORDER BY member_id LIMIT $2) AS m
                     UNION ALL
                     SELECT 1, link_key, '' FROM (SELECT link_key FROM cluster_links
                       WHERE cluster_id = $1 AND holders > 1 ORDER BY link_key LIMIT $3) AS l
                     ORDER BY part, member_id",
                )
                .bind(&cluster.id)
                .bind(member_limit)
                .bind(VIEW_LINKS)
                .fetch_all(conn)
                .await?;
                let mut members = Vec::new();
                let mut links = Vec::new();
                for (part, name, role) in rows {
                    if part == 0 {
                        members.push((name, role));
                    } else {
                        links.push(name);
                    }
                }
                Ok(ClusterView {
                    id: cluster.id.clone(),
                    size: i64::from(cluster.size),
                    members,
                    links,
                })
            }
        }

        /// A receipt's count from rows affected.
        fn count(n: u64) -> i64 {
            i64::try_from(n).unwrap_or(i64::MAX)
        }

        /// A cluster size from a count column (sizes never exceed u32 in practice; saturate).
        fn size(n: i64) -> u32 {
            u32::try_from(n).unwrap_or(u32::MAX)
        }

        /// A cluster from its id and size columns, where the person has one.
        fn cluster_size(id: Option<String>, n: Option<i64>) -> Option<ClusterSize> {
            id.zip(n).map(|(id, n)| ClusterSize { id, size: size(n) })
        }

        /// `$from, $from+1, …` for `n` parameters.
        fn placeholders(from: usize, n: usize) -> String {
            (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        }
    };
}

pub(super) use {assessment_cols, case_cols, sql_store};
