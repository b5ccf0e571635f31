//! The assessment path (`Store::assess`, `Store::apply_events`) and its SQL, written once for
//! every backend against [`Db`]: one statement per call. Postgres runs it on a sqlx
//! transaction; SQLite on its writer thread's rusqlite transaction (see `sqlite_writer.rs`),
//! where every call completes at once. The store gathers the windows; `domain` decides.
//!
//! Parameters are `$1, $2, …` in both dialects (the SQLite side binds them by name).

use chrono::{DateTime, Utc};
use referral_common::{consumer, events as common_events, ids, outbox};
use referral_proto::events::v1::Event;

use crate::{
    convert,
    domain::{
        self, Action, ClusterSize, Count, Evidence, Peer, Scoring, SubjectKind, identity, ring,
        rules::ReferrerMatch,
    },
    events,
    store::{
        ApplySummary, AssessInput, Assessed, AssessmentRow, ClusterView, Consumed, Observation, REFEREE,
        REFERRER, SNAPSHOT_MEMBERS, StoreError, StoreResult, VIEW_LINKS, Work,
    },
};

/// One bound parameter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Real(f64),
    /// Stored as sqlx stores a `DateTime<Utc>`: `timestamptz` on Postgres, RFC 3339 text on
    /// SQLite (see `sqlite_writer::timestamp`).
    Time(DateTime<Utc>),
    Blob(&'a [u8]),
}

use Arg::{Int, Text, Time};

/// One result row, read by column position.
pub(super) trait Row {
    fn text(&self, i: usize) -> StoreResult<String>;
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>>;
    fn int(&self, i: usize) -> StoreResult<i64>;
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>>;
    fn real(&self, i: usize) -> StoreResult<f64>;
    fn time(&self, i: usize) -> StoreResult<DateTime<Utc>>;
}

/// A connection (inside the caller's transaction) that runs one statement per call.
pub(super) trait Db {
    /// Runs a statement that returns no rows; how many rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64>;
    /// Runs a query, mapping each row with `each`.
    async fn query<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        each: impl FnMut(&dyn Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>>;
}

async fn query_one<D: Db, T>(
    db: &mut D,
    sql: &str,
    args: &[Arg<'_>],
    each: impl FnMut(&dyn Row) -> StoreResult<T>,
) -> StoreResult<T> {
    db.query(sql, args, each)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Encoding(format!("no row from: {sql}")))
}

async fn query_opt<D: Db, T>(
    db: &mut D,
    sql: &str,
    args: &[Arg<'_>],
    each: impl FnMut(&dyn Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    Ok(db.query(sql, args, each).await?.into_iter().next())
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

pub(super) use {assessment_cols, case_cols};

/// An `assessments` row in [`assessment_cols`] order.
fn assessment_row(r: &dyn Row) -> StoreResult<AssessmentRow> {
    Ok(AssessmentRow {
        id: r.text(0)?,
        subject_type: r.text(1)?,
        subject_id: r.text(2)?,
        dedupe_key: r.opt_text(3)?,
        referrer_id: r.text(4)?,
        referee_id: r.text(5)?,
        score: r.real(6)?,
        level: r.text(7)?,
        action: r.text(8)?,
        signals_json: r.text(9)?,
        rules_json: r.text(10)?,
        cluster_json: r.text(11)?,
        case_id: r.opt_text(12)?,
        occurred_at: r.time(13)?,
        assessed_at: r.time(14)?,
    })
}

/// The assessment of a subject by its dedupe key.
pub(super) async fn find_assessment<D: Db>(
    db: &mut D,
    kind: SubjectKind,
    dedupe_key: &str,
) -> StoreResult<Option<AssessmentRow>> {
    if dedupe_key.is_empty() {
        return Ok(None);
    }
    query_opt(
        db,
        concat!(
            "SELECT ",
            assessment_cols!(),
            " FROM assessments WHERE subject_type = $1 AND dedupe_key = $2"
        ),
        &[Text(kind.as_str()), Text(dedupe_key)],
        assessment_row,
    )
    .await
}

/// Stages an event in the outbox of the caller's transaction.
async fn stage<D: Db>(db: &mut D, event: &Event) -> StoreResult<()> {
    let payload = common_events::encode(event);
    db.execute(
        outbox::INSERT,
        &[
            Text(&event.id),
            Text(common_events::event_type(event)),
            Arg::Blob(&payload),
            Time(ids::now()),
        ],
    )
    .await?;
    Ok(())
}

/// Numbers the outbox's committed unnumbered rows (the relay's turn); the newest offset.
pub(super) async fn number_outbox<D: Db>(db: &mut D) -> StoreResult<i64> {
    db.execute(outbox::ASSIGN, &[]).await?;
    query_one(db, outbox::HEAD, &[], |r| r.int(0)).await
}

/// Applies consumed events in the caller's transaction with the new offset of `source`,
/// dropping events already applied (see `Store::apply_events`).
pub(super) async fn apply_in<D: Db>(
    db: &mut D,
    source: &str,
    items: Vec<Consumed>,
    scoring: &Scoring,
) -> StoreResult<ApplySummary> {
    let mut summary = ApplySummary::default();
    let last = items.iter().map(|i| i.offset).max();
    for item in items {
        let first_time = db
            .execute(consumer::MARK, &[Text(&item.event_id), Time(ids::now())])
            .await?
            == 1;
        if !first_time {
            summary.duplicates += 1;
            continue;
        }
        summary.applied += 1;
        match item.work {
            Work::Nothing => {}
            Work::Observe(o) => observe_in(db, &o, scoring).await?,
            Work::Assess(input) => {
                if assess_in(db, *input, scoring).await?.fresh {
                    summary.assessed += 1;
                }
            }
            Work::ObserveAndAssess(o, input) => {
                observe_in(db, &o, scoring).await?;
                if assess_in(db, *input, scoring).await?.fresh {
                    summary.assessed += 1;
                }
            }
        }
    }
    if let Some(last) = last {
        db.execute(consumer::SAVE_OFFSET, &[Text(source), Int(last)])
            .await?;
    }
    Ok(summary)
}

/// One assessment inside the caller's transaction (see `Store::assess`).
pub(super) async fn assess_in<D: Db>(
    db: &mut D,
    input: AssessInput,
    scoring: &Scoring,
) -> StoreResult<Assessed> {
    if let Some(row) = find_assessment(db, input.kind, &input.dedupe_key).await? {
        return Ok(Assessed { row, fresh: false });
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
            invitation_facts_in(db, &input, scoring, &mut e).await?;
        }
        SubjectKind::Signup => {
            if !input.referrer_id.is_empty() && !input.referee_id.is_empty() {
                db.execute(
                    "INSERT INTO referral_facts (referee_id, referrer_id, subject_id, email_local, email_norm, name_norm, ip, device_id, occurred_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (referee_id) DO NOTHING",
                    &[
                        Text(&input.referee_id),
                        Text(&input.referrer_id),
                        Text(&input.subject_id),
                        Text(identity::email_local(&input.email)),
                        Text(&input.email),
                        Text(&input.name),
                        Text(&input.ip),
                        Text(&input.device_id),
                        Time(at),
                    ],
                )
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
            observe_in(db, &me, scoring).await?;
        }
        SubjectKind::Conversion => {
            // The referee as their signup showed them, where the conversion says less.
            let known = query_opt(
                db,
                "SELECT email_norm, name_norm, ip, device_id FROM referral_facts WHERE referee_id = $1",
                &[Text(&input.referee_id)],
                |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?)),
            )
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
                observe_in(db, &me, scoring).await?;
            }
        }
    }
    // The ring signal counts the larger of the referee's and the referrer's rings; the
    // referrer's windows read both clusters with them.
    let referrer_counts = input.kind != SubjectKind::Invitation && !input.referrer_id.is_empty();
    let (mut ring, theirs) = if referrer_counts {
        referral_windows_in(db, scoring, &mut e, &ring_person).await?
    } else {
        clusters_of(db, &ring_person, "").await?
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
        Some(c) => Some(cluster_view(db, c, SNAPSHOT_MEMBERS).await?),
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
    db.execute(
        concat!(
            "INSERT INTO assessments (",
            assessment_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            Text(&row.id),
            Text(&row.subject_type),
            Text(&row.subject_id),
            Arg::OptText(row.dedupe_key.as_deref()),
            Text(&row.referrer_id),
            Text(&row.referee_id),
            Arg::Real(row.score),
            Text(&row.level),
            Text(&row.action),
            Text(&row.signals_json),
            Text(&row.rules_json),
            Text(&row.cluster_json),
            Arg::OptText(row.case_id.as_deref()),
            Time(row.occurred_at),
            Time(row.assessed_at),
        ],
    )
    .await?;
    if let Some(case_id) = &case_id {
        let cluster_member = if ring_person.is_empty() {
            &input.referrer_id
        } else {
            &ring_person
        };
        db.execute(
            concat!(
                "INSERT INTO cases (",
                case_cols!(),
                ") VALUES ($1, 'OPEN', $2, $3, $4, $5, $6, $7, '', '', '', NULL, $8)"
            ),
            &[
                Text(case_id),
                Text(&row.subject_type),
                Text(&row.subject_id),
                Text(&row.referrer_id),
                Text(&row.referee_id),
                Text(&row.id),
                Text(cluster_member),
                Time(now),
            ],
        )
        .await?;
    }
    stage(db, &events::fraud_assessed(&row)).await?;
    Ok(Assessed { row, fresh: true })
}

/// Records an invitation's facts and gathers its windows (recipient, device, the referrer's
/// own e-mail) in one read.
async fn invitation_facts_in<D: Db>(
    db: &mut D,
    input: &AssessInput,
    scoring: &Scoring,
    e: &mut Evidence,
) -> StoreResult<()> {
    let at = input.occurred_at;
    let fact_id = if input.subject_id.is_empty() {
        &input.assessment_id
    } else {
        &input.subject_id
    };
    db.execute(
        "INSERT INTO invitation_facts (id, referrer_id, recipient_key, device_id, ip, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        &[
            Text(fact_id),
            Text(&input.referrer_id),
            Text(&input.recipient_key),
            Text(&input.device_id),
            Text(&input.ip),
            Time(at),
        ],
    )
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
    observe_in(db, &me, scoring).await?;
    let recipient_cap = domain::count_cap(scoring.recipient_referrer_limit);
    let device_cap = domain::count_cap(scoring.device_invitation_limit);
    let (recipient_referrers, device_invitations, device_referrers, own_email) = query_one(
        db,
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
        &[
            Text(&input.recipient_key),
            Time(at - domain::RECIPIENT_WINDOW),
            Time(at),
            Int(i64::from(recipient_cap)),
            Text(&input.device_id),
            Time(at - domain::DEVICE_WINDOW),
            Int(i64::from(device_cap)),
            Text(&input.referrer_id),
            Text(&input.email),
        ],
        |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?)),
    )
    .await?;
    e.recipient_known = !input.recipient_key.is_empty();
    e.recipient_referrers = Count::of(recipient_referrers, recipient_cap);
    e.device_invitations = Count::of(device_invitations, device_cap);
    e.device_referrers = Count::of(device_referrers, device_cap);
    e.referrer_match.same_email = own_email > 0;
    Ok(())
}

/// A cluster from its id and size columns, where the person has one.
fn cluster_size(id: Option<String>, n: Option<i64>) -> Option<ClusterSize> {
    id.zip(n).map(|(id, n)| ClusterSize {
        id,
        size: u32::try_from(n).unwrap_or(u32::MAX),
    })
}

/// The referrer's windows for a signup or conversion at `e.occurred_at`: the counts, the
/// referrer-identity checks and the clusters of `referee` and the referrer (as
/// [`clusters_of`] reads them) in one read, the recent referees in another.
async fn referral_windows_in<D: Db>(
    db: &mut D,
    scoring: &Scoring,
    e: &mut Evidence,
    referee: &str,
) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
    let at = e.occurred_at;
    let velocity_cap = domain::count_cap(scoring.velocity_limit);
    let ip_cap = domain::count_cap(scoring.ip_cluster_min);
    let (signups, same_ip, own_email, own_device, clusters) = query_one(
        db,
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
        &[
            Text(&e.referrer_id),
            Time(at - domain::VELOCITY_WINDOW),
            Time(at),
            Int(i64::from(velocity_cap)),
            Text(&e.ip),
            Time(at - domain::REFEREE_WINDOW),
            Int(i64::from(ip_cap)),
            Text(&e.email),
            Text(&e.device_id),
            Text(referee),
        ],
        |r| {
            let referee_cluster = cluster_size(r.opt_text(4)?, r.opt_int(5)?);
            let referrer_cluster = cluster_size(r.opt_text(6)?, r.opt_int(7)?);
            Ok((r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?, (referee_cluster, referrer_cluster)))
        },
    )
    .await?;
    e.signups_24h = Count::of(signups, velocity_cap);
    e.same_ip_referees = Count::of(same_ip, ip_cap);
    e.referrer_match = ReferrerMatch {
        same_email: own_email > 0,
        same_device: own_device > 0,
    };
    e.peers = db
        .query(
            "SELECT referee_id, email_local, name_norm, occurred_at FROM referral_facts
             WHERE referrer_id = $1 AND occurred_at > $2 AND occurred_at <= $3 ORDER BY occurred_at DESC LIMIT $4",
            &[
                Text(&e.referrer_id),
                Time(at - domain::REFEREE_WINDOW),
                Time(at),
                Int(domain::PEER_LIMIT),
            ],
            |r| {
                Ok(Peer {
                    referee_id: r.text(0)?,
                    email_local: r.text(1)?,
                    name: r.text(2)?,
                    occurred_at: r.time(3)?,
                })
            },
        )
        .await?;
    Ok(clusters)
}

/// Records who a person is (e-mail, device) and links them into rings by their keys.
async fn observe_in<D: Db>(db: &mut D, o: &Observation, scoring: &Scoring) -> StoreResult<()> {
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
        let mut args = vec![Text(&o.person_id), Time(o.at)];
        for (kind, value) in &known {
            args.extend([Text(kind), Text(value)]);
        }
        db.execute(&sql, &args).await?;
    }
    let keys = identity::link_keys(&o.email, &o.ip, &o.device_id, scoring.ring_ignores_non_public_ips);
    if keys.is_empty() {
        return Ok(());
    }
    link_in(db, &o.person_id, o.role, &keys, o.at).await
}

/// Union-find: puts `person` and every holder of `keys` in one cluster (see
/// [`domain::ring::plan_union`]). A person seen again with the same keys costs two
/// statements: one read (the person's cluster and the keys' clusters, by primary key) and the
/// holders insert.
async fn link_in<D: Db>(
    db: &mut D,
    person: &str,
    role: &str,
    keys: &[String],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let person_then_keys: Vec<Arg<'_>> = std::iter::once(Text(person))
        .chain(keys.iter().map(|k| Text(k)))
        .collect();
    // part 0: the person's membership; part 1: each key's cluster, in key order (ties in
    // plan_union go to the first). Read before the holders insert, which changes neither.
    let sql = format!(
        "SELECT CAST(0 AS BIGINT) AS part, '' AS link_key, m.cluster_id, m.role, c.size
           FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id = $1
         UNION ALL
         SELECT 1, l.link_key, l.cluster_id, '', c.size
           FROM cluster_links l JOIN clusters c ON c.id = l.cluster_id WHERE l.link_key IN ({})
         ORDER BY part, link_key",
        placeholders(2, keys.len())
    );
    let rows = db
        .query(&sql, &person_then_keys, |r| {
            Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.text(3)?, r.int(4)?))
        })
        .await?;
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
        db.execute(
            "UPDATE cluster_members SET role = $2 WHERE member_id = $1",
            &[Text(person), Text(role)],
        )
        .await?;
    }
    let holds: Vec<String> = (0..keys.len()).map(|i| format!("(${}, $1)", i + 2)).collect();
    let sql = format!(
        "INSERT INTO link_holders (link_key, member_id) VALUES {} ON CONFLICT (link_key, member_id) DO NOTHING RETURNING link_key",
        holds.join(", ")
    );
    let first_time = db.query(&sql, &person_then_keys, |r| r.text(0)).await?;
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
    let Some(plan) = ring::plan_union(mine.as_ref(), &first_time, &keyed) else {
        return Ok(());
    };
    let target = match &plan.target {
        ring::Target::Existing(id) => id.clone(),
        ring::Target::New => {
            let id = ids::new_id();
            db.execute(
                "INSERT INTO clusters (id, size, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                &[Text(&id), Int(i64::from(plan.size)), Time(at)],
            )
            .await?;
            id
        }
    };
    for other in &plan.merge {
        let args = [Text(&target), Text(other)];
        db.execute(
            "UPDATE cluster_members SET cluster_id = $1 WHERE cluster_id = $2",
            &args,
        )
        .await?;
        db.execute(
            "UPDATE cluster_links SET cluster_id = $1 WHERE cluster_id = $2",
            &args,
        )
        .await?;
        db.execute("DELETE FROM clusters WHERE id = $1", &[Text(other)])
            .await?;
    }
    if plan.add_person {
        db.execute(
            "INSERT INTO cluster_members (member_id, cluster_id, role, joined_at) VALUES ($1, $2, $3, $4)",
            &[Text(person), Text(&target), Text(role), Time(at)],
        )
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
        let args: Vec<Arg<'_>> = std::iter::once(Text(&target))
            .chain(plan.new_links.iter().map(|k| Text(k)))
            .collect();
        db.execute(&sql, &args).await?;
    }
    if !plan.more_holders.is_empty() {
        let sql = format!(
            "UPDATE cluster_links SET holders = holders + 1 WHERE link_key IN ({})",
            placeholders(1, plan.more_holders.len())
        );
        let args: Vec<Arg<'_>> = plan.more_holders.iter().map(|k| Text(k)).collect();
        db.execute(&sql, &args).await?;
    }
    if plan.target != ring::Target::New {
        db.execute(
            "UPDATE clusters SET size = $2, updated_at = $3 WHERE id = $1",
            &[Text(&target), Int(i64::from(plan.size)), Time(at)],
        )
        .await?;
    }
    Ok(())
}

/// The clusters of up to two people, in one read.
pub(super) async fn clusters_of<D: Db>(
    db: &mut D,
    a: &str,
    b: &str,
) -> StoreResult<(Option<ClusterSize>, Option<ClusterSize>)> {
    let rows = db
        .query(
            "SELECT m.member_id, c.id, c.size FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id WHERE m.member_id IN ($1, $2)",
            &[Text(a), Text(b)],
            |r| Ok((r.text(0)?, r.text(1)?, r.int(2)?)),
        )
        .await?;
    let of = |who: &str| {
        rows.iter()
            .find(|(m, _, _)| !who.is_empty() && m == who)
            .and_then(|(_, id, n)| cluster_size(Some(id.clone()), Some(*n)))
    };
    Ok((of(a), of(b)))
}

/// A cluster's first members and shared links.
pub(super) async fn cluster_view<D: Db>(
    db: &mut D,
    cluster: &ClusterSize,
    member_limit: i64,
) -> StoreResult<ClusterView> {
    // Members (part 0) and shared links (part 1) in one read, each its own bounded index
    // range; the outer sort only orders those few rows.
    let rows = db
        .query(
            "SELECT CAST(0 AS BIGINT) AS part, member_id, role FROM (SELECT member_id, role FROM cluster_members
               WHERE cluster_id = $1 ORDER BY member_id LIMIT $2) AS m
             UNION ALL
             SELECT 1, link_key, '' FROM (SELECT link_key FROM cluster_links
               WHERE cluster_id = $1 AND holders > 1 ORDER BY link_key LIMIT $3) AS l
             ORDER BY part, member_id",
            &[Text(&cluster.id), Int(member_limit), Int(VIEW_LINKS)],
            |r| Ok((r.int(0)?, r.text(1)?, r.text(2)?)),
        )
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

/// `$from, $from+1, …` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes `known` where the caller said nothing.
fn fill(slot: &mut String, known: String) {
    if slot.is_empty() {
        *slot = known;
    }
}

/// [`Db`] and [`Row`] on sqlx connections (Postgres transactions; SQLite pool reads).
macro_rules! sqlx_db {
    ($conn:ty, $row:ty, $db:ty) => {
        impl Row for $row {
            fn text(&self, i: usize) -> StoreResult<String> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn int(&self, i: usize) -> StoreResult<i64> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn real(&self, i: usize) -> StoreResult<f64> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn time(&self, i: usize) -> StoreResult<DateTime<Utc>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
        }

        impl Db for $conn {
            async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
                let q = <$db as Bind>::bind(sqlx::query(sqlx::AssertSqlSafe(sql)), args);
                Ok(q.execute(&mut *self).await?.rows_affected())
            }

            async fn query<T>(
                &mut self,
                sql: &str,
                args: &[Arg<'_>],
                mut each: impl FnMut(&dyn Row) -> StoreResult<T>,
            ) -> StoreResult<Vec<T>> {
                let rows = <$db as Bind>::bind(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
                    .fetch_all(&mut *self)
                    .await?;
                rows.iter().map(|r| each(r)).collect()
            }
        }

        impl Bind for $db {
            fn bind<'q>(
                mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                args: &[Arg<'_>],
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                for a in args {
                    q = match *a {
                        Arg::Text(s) => q.bind(s),
                        Arg::OptText(s) => q.bind(s),
                        Arg::Int(n) => q.bind(n),
                        Arg::Real(x) => q.bind(x),
                        Arg::Time(t) => q.bind(t),
                        Arg::Blob(b) => q.bind(b),
                    };
                }
                q
            }
        }
    };
}

/// Binds [`Arg`]s to a sqlx query.
trait Bind: sqlx::Database + Sized {
    fn bind<'q>(
        q: sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments>,
        args: &[Arg<'_>],
    ) -> sqlx::query::Query<'q, Self, <Self as sqlx::Database>::Arguments>;
}

sqlx_db!(sqlx::PgConnection, sqlx::postgres::PgRow, sqlx::Postgres);
sqlx_db!(sqlx::SqliteConnection, sqlx::sqlite::SqliteRow, sqlx::Sqlite);
