//! The SQL of fraud-svc, written once and instantiated for Postgres and SQLite by
//! `sql_store!`. Each backend supplies `begin_write()` (Postgres: a transaction holding the
//! assessment advisory lock; SQLite: BEGIN IMMEDIATE, its one-writer lock), `stage()` (outbox
//! insert), `wake_relay()` (after a commit that staged events), its connection type, its
//! consumer-offset helpers and the row-lock suffix.

macro_rules! sql_store {
    ($store:ty, $conn:ty, $consumer:ident, $for_update:literal) => {
        use chrono::{DateTime, Utc};
        use referral_common::{consumer::$consumer as offsets, ids};

        use crate::{
            convert,
            domain::{
                self, Action, ClusterSize, Count, Evidence, Peer, Scoring, SubjectKind, identity, ring, rules::ReferrerMatch,
            },
            events,
            store::{
                ApplySummary, AssessInput, Assessed, AssessmentRow, CaseRow, ClusterView, Consumed, Observation,
                REFEREE, REFERRER, ResolveOutcome, SNAPSHOT_MEMBERS, Store, StoreResult, VIEW_LINKS, Work,
            },
        };

        impl Store for $store {
            fn outbox(&self) -> &Outbox {
                &self.outbox
            }

            async fn assess(&self, input: AssessInput, scoring: &Scoring) -> StoreResult<Assessed> {
                let mut tx = self.begin_write().await?;
                let assessed = self.assess_in(&mut tx, input, scoring).await?;
                tx.commit().await?;
                if assessed.fresh {
                    self.wake_relay();
                }
                Ok(assessed)
            }

            async fn apply_events(&self, source: &str, items: Vec<Consumed>, scoring: &Scoring) -> StoreResult<ApplySummary> {
                let mut summary = ApplySummary::default();
                let Some(last) = items.iter().map(|i| i.offset).max() else {
                    return Ok(summary);
                };
                let mut tx = self.begin_write().await?;
                for item in items {
                    if !offsets::first_time(&mut tx, &item.event_id).await? {
                        summary.duplicates += 1;
                        continue;
                    }
                    summary.applied += 1;
                    match item.work {
                        Work::Nothing => {}
                        Work::Observe(o) => self.observe_in(&mut tx, &o, scoring).await?,
                        Work::Assess(input) => {
                            if self.assess_in(&mut tx, *input, scoring).await?.fresh {
                                summary.assessed += 1;
                            }
                        }
                        Work::ObserveAndAssess(o, input) => {
                            self.observe_in(&mut tx, &o, scoring).await?;
                            if self.assess_in(&mut tx, *input, scoring).await?.fresh {
                                summary.assessed += 1;
                            }
                        }
                    }
                }
                offsets::save_offset(&mut tx, source, last).await?;
                tx.commit().await?;
                if summary.assessed > 0 {
                    self.wake_relay();
                }
                Ok(summary)
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
                if dedupe_key.is_empty() {
                    return Ok(None);
                }
                Ok(sqlx::query_as(concat!(
                    "SELECT ", assessment_cols!(), " FROM assessments WHERE subject_type = $1 AND dedupe_key = $2"
                ))
                .bind(kind.as_str())
                .bind(dedupe_key)
                .fetch_optional(&self.pool)
                .await?)
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
                resolved_by: &str,
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
                row.state = "RESOLVED".into();
                row.decision = decision.to_string();
                row.note = note.to_string();
                row.resolved_by = resolved_by.to_string();
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
                Self::stage(&mut tx, &events::fraud_resolved(&row)).await?;
                tx.commit().await?;
                self.wake_relay();
                Ok(ResolveOutcome::Resolved(Box::new(row)))
            }

            async fn cluster_of(&self, member_id: &str, member_limit: i64) -> StoreResult<Option<ClusterView>> {
                let mut conn = self.pool.acquire().await?;
                let (cluster, _) = Self::clusters_of_on(&mut conn, member_id, "").await?;
                let Some(cluster) = cluster else { return Ok(None) };
                Ok(Some(Self::cluster_view_on(&mut conn, &cluster, member_limit).await?))
            }
        }

        impl $store {
            /// One assessment inside the caller's transaction (see [`Store::assess`]).
            async fn assess_in(&self, tx: &mut Tx, input: AssessInput, scoring: &Scoring) -> StoreResult<Assessed> {
                if !input.dedupe_key.is_empty() {
                    let existing: Option<AssessmentRow> = sqlx::query_as(concat!(
                        "SELECT ", assessment_cols!(), " FROM assessments WHERE subject_type = $1 AND dedupe_key = $2"
                    ))
                    .bind(input.kind.as_str())
                    .bind(&input.dedupe_key)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if let Some(row) = existing {
                        return Ok(Assessed { row, fresh: false });
                    }
                }
                let at = input.occurred_at;
                let mut e = Evidence::new(input.kind, at);
                e.referrer_id = input.referrer_id.clone();
                e.referee_id = input.referee_id.clone();
                e.email = input.email.clone();
                e.name = input.name.clone();
                e.ip = input.ip.clone();
                e.device_id = input.device_id.clone();
                e.click_at = input.click_at;
                // Whose ring the assessment shows: the referee's, or an invitation's referrer's.
                let mut ring_person = input.referee_id.clone();
                match input.kind {
                    SubjectKind::Invitation => {
                        ring_person = input.referrer_id.clone();
                        self.invitation_facts_in(tx, &input, scoring, &mut e).await?;
                    }
                    SubjectKind::Signup => {
                        if !input.referrer_id.is_empty() && !input.referee_id.is_empty() {
                            sqlx::query(
                                "INSERT INTO referral_facts (referee_id, referrer_id, subject_id, email_local, email_norm, name_norm, ip, device_id, occurred_at)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (referee_id) DO NOTHING",
                            )
                            .bind(&input.referee_id)
                            .bind(&input.referrer_id)
                            .bind(&input.subject_id)
                            .bind(identity::email_local(&input.email))
                            .bind(&input.email)
                            .bind(&input.name)
                            .bind(&input.ip)
                            .bind(&input.device_id)
                            .bind(at)
                            .execute(&mut **tx)
                            .await?;
                        }
                        let me = Observation {
                            person_id: input.referee_id.clone(),
                            role: REFEREE,
                            email: input.email.clone(),
                            ip: input.ip.clone(),
                            device_id: input.device_id.clone(),
                            at,
                        };
                        self.observe_in(tx, &me, scoring).await?;
                    }
                    SubjectKind::Conversion => {
                        // The referee as their signup showed them, where the conversion says less.
                        let known: Option<(String, String, String, String)> = sqlx::query_as(
                            "SELECT email_norm, name_norm, ip, device_id FROM referral_facts WHERE referee_id = $1",
                        )
                        .bind(&input.referee_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                        if let Some((email, name, ip, device)) = known {
                            fill(&mut e.email, email);
                            fill(&mut e.name, name);
                            fill(&mut e.ip, ip);
                            fill(&mut e.device_id, device);
                        }
                        if !input.ip.is_empty() || !input.device_id.is_empty() {
                            let me = Observation {
                                person_id: input.referee_id.clone(),
                                role: REFEREE,
                                email: String::new(),
                                ip: input.ip.clone(),
                                device_id: input.device_id.clone(),
                                at,
                            };
                            self.observe_in(tx, &me, scoring).await?;
                        }
                    }
                }
                // The ring signal counts the larger of the referee's and the referrer's rings;
                // the referrer's windows read both clusters with them.
                let referrer_counts = input.kind != SubjectKind::Invitation && !input.referrer_id.is_empty();
                let (mut ring, theirs) = if referrer_counts {
                    self.referral_windows_in(tx, scoring, &mut e, &ring_person).await?
                } else {
                    Self::clusters_of_on(&mut **tx, &ring_person, "").await?
                };
                if let Some(t) = theirs
                    && ring.as_ref().is_none_or(|r| t.size > r.size)
                {
                    ring_person = input.referrer_id.clone();
                    ring = Some(t);
                }
                e.cluster = ring.clone();
                let verdict = scoring.evaluate(&e);
                let snapshot = match &ring {
                    Some(c) => Some(Self::cluster_view_on(&mut **tx, c, SNAPSHOT_MEMBERS).await?),
                    None => None,
                };
                let now = ids::now();
                let case_id = (verdict.action != Action::Approve).then(ids::new_id);
                let row = AssessmentRow {
                    id: input.assessment_id.clone(),
                    subject_type: input.kind.as_str().to_string(),
                    subject_id: input.subject_id.clone(),
                    dedupe_key: (!input.dedupe_key.is_empty()).then(|| input.dedupe_key.clone()),
                    referrer_id: input.referrer_id.clone(),
                    referee_id: input.referee_id.clone(),
                    score: verdict.score,
                    level: verdict.level.as_str().to_string(),
                    action: verdict.action.as_str().to_string(),
                    signals_json: convert::signals_json(&verdict.signals)?,
                    rules_json: convert::rules_json(&verdict.rules)?,
                    cluster_json: convert::cluster_json(snapshot.as_ref())?,
                    case_id: case_id.clone(),
                    occurred_at: at,
                    assessed_at: now,
                };
                sqlx::query(concat!(
                    "INSERT INTO assessments (", assessment_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .bind(&row.id)
                .bind(&row.subject_type)
                .bind(&row.subject_id)
                .bind(&row.dedupe_key)
                .bind(&row.referrer_id)
                .bind(&row.referee_id)
                .bind(row.score)
                .bind(&row.level)
                .bind(&row.action)
                .bind(&row.signals_json)
                .bind(&row.rules_json)
                .bind(&row.cluster_json)
                .bind(&row.case_id)
                .bind(row.occurred_at)
                .bind(row.assessed_at)
                .execute(&mut **tx)
                .await?;
                if let Some(case_id) = &case_id {
                    let cluster_member = if ring_person.is_empty() {
                        input.referrer_id.clone()
                    } else {
                        ring_person.clone()
                    };
                    sqlx::query(concat!(
                        "INSERT INTO cases (", case_cols!(), ") VALUES ($1, 'OPEN', $2, $3, $4, $5, $6, $7, '', '', '', NULL, $8)"
                    ))
                    .bind(case_id)
                    .bind(&row.subject_type)
                    .bind(&row.subject_id)
                    .bind(&row.referrer_id)
                    .bind(&row.referee_id)
                    .bind(&row.id)
                    .bind(cluster_member)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                Self::stage(tx, &events::fraud_assessed(&row)).await?;
                Ok(Assessed { row, fresh: true })
            }

            /// Records an invitation's facts and gathers its windows (recipient, device,
            /// the referrer's own e-mail) in one read.
            async fn invitation_facts_in(
                &self,
                tx: &mut Tx,
                input: &AssessInput,
                scoring: &Scoring,
                e: &mut Evidence,
            ) -> StoreResult<()> {
                let at = input.occurred_at;
                let fact_id = if input.subject_id.is_empty() { &input.assessment_id } else { &input.subject_id };
                sqlx::query(
                    "INSERT INTO invitation_facts (id, referrer_id, recipient_key, device_id, ip, occurred_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(fact_id)
                .bind(&input.referrer_id)
                .bind(&input.recipient_key)
                .bind(&input.device_id)
                .bind(&input.ip)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                // The device an invitation comes from is the referrer's own.
                let me = Observation {
                    person_id: input.referrer_id.clone(),
                    role: REFERRER,
                    email: String::new(),
                    ip: input.ip.clone(),
                    device_id: input.device_id.clone(),
                    at,
                };
                self.observe_in(tx, &me, scoring).await?;
                let recipient_cap = domain::count_cap(scoring.recipient_referrer_limit);
                let device_cap = domain::count_cap(scoring.device_invitation_limit);
                let (recipient_referrers, device_invitations, device_referrers, own_email): (i64, i64, i64, i64) =
                    sqlx::query_as(
                        "SELECT
                           (SELECT COUNT(DISTINCT referrer_id) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE recipient_key = $1 AND $1 <> '' AND occurred_at > $2 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $4) AS r),
                           (SELECT COUNT(*) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE device_id = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $7) AS d),
                           (SELECT COUNT(DISTINCT referrer_id) FROM (SELECT referrer_id FROM invitation_facts
                              WHERE device_id = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                              ORDER BY occurred_at DESC LIMIT $7) AS dr),
                           (SELECT COUNT(*) FROM identities WHERE person_id = $8 AND kind = 'email' AND value = $9 AND $9 <> '')",
                    )
                    .bind(&input.recipient_key)
                    .bind(at - domain::RECIPIENT_WINDOW)
                    .bind(at)
                    .bind(i64::from(recipient_cap))
                    .bind(&input.device_id)
                    .bind(at - domain::DEVICE_WINDOW)
                    .bind(i64::from(device_cap))
                    .bind(&input.referrer_id)
                    .bind(&input.email)
                    .fetch_one(&mut **tx)
                    .await?;
                e.recipient_known = !input.recipient_key.is_empty();
                e.recipient_referrers = Count::of(recipient_referrers, recipient_cap);
                e.device_invitations = Count::of(device_invitations, device_cap);
                e.device_referrers = Count::of(device_referrers, device_cap);
                e.referrer_match.same_email = own_email > 0;
                Ok(())
            }

            /// The referrer's windows for a signup or conversion at `e.occurred_at`: the
            /// counts, the referrer-identity checks and the clusters of `referee` and the
            /// referrer (as [`Self::clusters_of_on`] reads them) in one read, the recent
            /// referees in another.
            async fn referral_windows_in(
                &self,
                tx: &mut Tx,
                scoring: &Scoring,
                e: &mut Evidence,
                referee: &str,
            ) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
                let at = e.occurred_at;
                let velocity_cap = domain::count_cap(scoring.velocity_limit);
                let ip_cap = domain::count_cap(scoring.ip_cluster_min);
                #[allow(clippy::type_complexity)]
                let (signups, same_ip, own_email, own_device, referee_cluster, referee_size, referrer_cluster, referrer_size): (
                    i64,
                    i64,
                    i64,
                    i64,
                    Option<String>,
                    Option<i64>,
                    Option<String>,
                    Option<i64>,
                ) = sqlx::query_as(
                    "SELECT
                       (SELECT COUNT(*) FROM (SELECT 1 AS one FROM referral_facts
                          WHERE referrer_id = $1 AND occurred_at > $2 AND occurred_at <= $3
                          ORDER BY occurred_at DESC LIMIT $4) AS v),
                       (SELECT COUNT(*) FROM (SELECT 1 AS one FROM referral_facts
                          WHERE referrer_id = $1 AND ip = $5 AND $5 <> '' AND occurred_at > $6 AND occurred_at <= $3
                          ORDER BY occurred_at DESC LIMIT $7) AS i),
                       (SELECT COUNT(*) FROM identities WHERE person_id = $1 AND kind = 'email' AND value = $8 AND $8 <> ''),
                       (SELECT COUNT(*) FROM identities WHERE person_id = $1 AND kind = 'device' AND value = $9 AND $9 <> ''),
                       (SELECT cluster_id FROM cluster_members WHERE member_id = $10 AND $10 <> ''),
                       (SELECT c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $10 AND $10 <> ''),
                       (SELECT cluster_id FROM cluster_members WHERE member_id = $1),
                       (SELECT c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $1)",
                )
                .bind(&e.referrer_id)
                .bind(at - domain::VELOCITY_WINDOW)
                .bind(at)
                .bind(i64::from(velocity_cap))
                .bind(&e.ip)
                .bind(at - domain::REFEREE_WINDOW)
                .bind(i64::from(ip_cap))
                .bind(&e.email)
                .bind(&e.device_id)
                .bind(referee)
                .fetch_one(&mut **tx)
                .await?;
                let cluster = |id: Option<String>, n: Option<i64>| {
                    id.zip(n).map(|(id, n)| ClusterSize {
                        id,
                        size: u32::try_from(n).unwrap_or(u32::MAX),
                    })
                };
                let clusters = (cluster(referee_cluster, referee_size), cluster(referrer_cluster, referrer_size));
                e.signups_24h = Count::of(signups, velocity_cap);
                e.same_ip_referees = Count::of(same_ip, ip_cap);
                e.referrer_match = ReferrerMatch {
                    same_email: own_email > 0,
                    same_device: own_device > 0,
                };
                let peers: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT referee_id, email_local, name_norm, occurred_at FROM referral_facts
                     WHERE referrer_id = $1 AND occurred_at > $2 AND occurred_at <= $3 ORDER BY occurred_at DESC LIMIT $4",
                )
                .bind(&e.referrer_id)
                .bind(at - domain::REFEREE_WINDOW)
                .bind(at)
                .bind(domain::PEER_LIMIT)
                .fetch_all(&mut **tx)
                .await?;
                e.peers = peers
                    .into_iter()
                    .map(|(referee_id, email_local, name, occurred_at)| Peer {
                        referee_id,
                        email_local,
                        name,
                        occurred_at,
                    })
                    .collect();
                Ok(clusters)
            }

            /// Records who a person is (e-mail, device) and links them into rings by their keys.
            async fn observe_in(&self, tx: &mut Tx, o: &Observation, scoring: &Scoring) -> StoreResult<()> {
                if o.person_id.is_empty() {
                    return Ok(());
                }
                let known: Vec<(&str, &str)> = [("email", o.email.as_str()), ("device", o.device_id.as_str())]
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                if !known.is_empty() {
                    let rows: Vec<String> = (0..known.len())
                        .map(|i| format!("($1, ${}, ${}, $2)", 3 + 2 * i, 4 + 2 * i))
                        .collect();
                    let sql = format!(
                        "INSERT INTO identities (person_id, kind, value, seen_at) VALUES {} ON CONFLICT (person_id, kind, value) DO NOTHING",
                        rows.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&o.person_id).bind(o.at);
                    for (kind, value) in &known {
                        q = q.bind(*kind).bind(*value);
                    }
                    q.execute(&mut **tx).await?;
                }
                let keys = identity::link_keys(&o.email, &o.ip, &o.device_id, scoring.ring_ignores_non_public_ips);
                if keys.is_empty() {
                    return Ok(());
                }
                Self::link_in(tx, &o.person_id, o.role, &keys, o.at).await
            }

            /// Union-find: puts `person` and every holder of `keys` in one cluster (see
            /// [`domain::ring::plan_union`]). A person seen again with the same keys costs
            /// two statements: one read (the person's cluster and the keys' clusters, by
            /// primary key) and the holders insert.
            async fn link_in(tx: &mut Tx, person: &str, role: &str, keys: &[String], at: DateTime<Utc>) -> StoreResult<()> {
                // part 0: the person's membership; part 1: each key's cluster, in key order
                // (ties in plan_union go to the first). Read before the holders insert, which
                // changes neither.
                let sql = format!(
                    "SELECT CAST(0 AS BIGINT) AS part, '' AS link_key, m.cluster_id, m.role, c.size
                       FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $1
                     UNION ALL
                     SELECT 1, l.link_key, l.cluster_id, '', c.size
                       FROM cluster_links l JOIN clusters c ON c.id = l.cluster_id WHERE l.link_key IN ({})
                     ORDER BY part, link_key",
                    placeholders(2, keys.len())
                );
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(person);
                for k in keys {
                    q = q.bind(k);
                }
                let rows: Vec<(i64, String, String, String, i64)> = q.fetch_all(&mut **tx).await?;
                let mut member: Option<(String, String, i64)> = None;
                let mut keyed: Vec<(String, String, i64)> = Vec::new();
                for (part, key, cluster_id, member_role, n) in rows {
                    if part == 0 {
                        member = Some((cluster_id, member_role, n));
                    } else {
                        keyed.push((key, cluster_id, n));
                    }
                }
                if let Some((_, current_role, _)) = &member
                    && role == REFERRER
                    && current_role != REFERRER
                {
                    sqlx::query("UPDATE cluster_members SET role = $2 WHERE member_id = $1")
                        .bind(person)
                        .bind(role)
                        .execute(&mut **tx)
                        .await?;
                }
                let holds: Vec<String> = (0..keys.len()).map(|i| format!("(${}, $1)", i + 2)).collect();
                let sql = format!(
                    "INSERT INTO link_holders (link_key, member_id) VALUES {} ON CONFLICT (link_key, member_id) DO NOTHING RETURNING link_key",
                    holds.join(", ")
                );
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(person);
                for k in keys {
                    q = q.bind(k);
                }
                let first_time: Vec<String> = q.fetch_all(&mut **tx).await?;
                if first_time.is_empty() {
                    return Ok(());
                }
                // Only the keys this person holds for the first time take part in the union.
                keyed.retain(|(key, _, _)| first_time.contains(key));
                let size = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
                let mine = member.map(|(id, _, n)| ClusterSize { id, size: size(n) });
                let keyed: Vec<(String, ClusterSize)> = keyed
                    .into_iter()
                    .map(|(key, id, n)| (key, ClusterSize { id, size: size(n) }))
                    .collect();
                let Some(plan) = ring::plan_union(mine.as_ref(), &first_time, &keyed) else { return Ok(()) };
                let target = match &plan.target {
                    ring::Target::Existing(id) => id.clone(),
                    ring::Target::New => {
                        let id = ids::new_id();
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
                    sqlx::query("UPDATE cluster_members SET cluster_id = $1 WHERE cluster_id = $2")
                        .bind(&target)
                        .bind(other)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("UPDATE cluster_links SET cluster_id = $1 WHERE cluster_id = $2")
                        .bind(&target)
                        .bind(other)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM clusters WHERE id = $1")
                        .bind(other)
                        .execute(&mut **tx)
                        .await?;
                }
                if plan.add_person {
                    sqlx::query("INSERT INTO cluster_members (member_id, cluster_id, role, joined_at) VALUES ($1, $2, $3, $4)")
                        .bind(person)
                        .bind(&target)
                        .bind(role)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                }
                if !plan.new_links.is_empty() {
                    let rows: Vec<String> = (0..plan.new_links.len()).map(|i| format!("(${}, $1, 1)", i + 2)).collect();
                    let sql = format!("INSERT INTO cluster_links (link_key, cluster_id, holders) VALUES {}", rows.join(", "));
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

            /// The clusters of up to two people, in one read.
            async fn clusters_of_on(conn: &mut $conn, a: &str, b: &str) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT m.member_id, c.id, c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id IN ($1, $2)",
                )
                .bind(a)
                .bind(b)
                .fetch_all(&mut *conn)
                .await?;
                let of = |who: &str| {
                    rows.iter().find(|(m, _, _)| !who.is_empty() && m == who).map(|(_, id, n)| ClusterSize {
                        id: id.clone(),
                        size: u32::try_from(*n).unwrap_or(u32::MAX),
                    })
                };
                Ok((of(a), of(b)))
            }

            async fn cluster_view_on(conn: &mut $conn, cluster: &ClusterSize, member_limit: i64) -> StoreResult<ClusterView> {
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
                .fetch_all(&mut *conn)
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

        /// `$from, $from+1, …` for `n` parameters.
        fn placeholders(from: usize, n: usize) -> String {
            (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        }

        /// Takes `known` where the caller said nothing.
        fn fill(slot: &mut String, known: String) {
            if slot.is_empty() {
                *slot = known;
            }
        }
    };
}

macro_rules! assessment_cols {
    () => {
        "id, subject_type, subject_id, dedupe_key, referrer_id, referee_id, score, level, action, signals_json, rules_json, cluster_json, case_id, occurred_at, assessed_at"
    };
}

macro_rules! case_cols {
    () => {
        "id, state, subject_type, subject_id, referrer_id, referee_id, assessment_id, cluster_member, decision, note, resolved_by, resolved_at, created_at"
    };
}

pub(super) use {assessment_cols, case_cols, sql_store};
