//! The reads and case resolution of fraud-svc, written once on sqlx and instantiated for
//! Postgres and SQLite by `sql_store!`; the assessment path is `assess.rs`. Each backend
//! supplies `write_assessment()` and `write_events()` (the assessment path in one write
//! transaction), `begin_write()` (Postgres: a transaction holding the assessment advisory
//! lock; SQLite: BEGIN IMMEDIATE, its one-writer lock), `stage()` (outbox insert),
//! `wake_relay()` (after a commit that staged events), its consumer-offset helpers and the
//! row-lock suffix.

macro_rules! sql_store {
    ($store:ty, $consumer:ident, $for_update:literal) => {
        use chrono::{DateTime, Utc};
        use referral_common::consumer::$consumer as offsets;

        use crate::{
            domain::{Scoring, SubjectKind},
            events,
            store::{
                ApplySummary, AssessInput, Assessed, AssessmentRow, CaseRow, ClusterView, Consumed, ResolveOutcome, Store,
                StoreResult,
                assess::{self, assessment_cols, case_cols},
            },
        };

        impl Store for $store {
            fn outbox(&self) -> &Outbox {
                &self.outbox
            }

            async fn assess(&self, input: AssessInput, scoring: &Scoring) -> StoreResult<Assessed> {
                let assessed = self.write_assessment(input, scoring).await?;
                if assessed.fresh {
                    self.wake_relay();
                }
                Ok(assessed)
            }

            async fn apply_events(&self, source: &str, items: Vec<Consumed>, scoring: &Scoring) -> StoreResult<ApplySummary> {
                if items.is_empty() {
                    return Ok(ApplySummary::default());
                }
                let summary = self.write_events(source, items, scoring).await?;
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
                let mut conn = self.pool.acquire().await?;
                assess::find_assessment(&mut *conn, kind, dedupe_key).await
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
                Self::stage(&mut tx, &events::fraud_resolved(&row)).await?;
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

            async fn cluster_of(&self, member_id: &str, member_limit: i64) -> StoreResult<Option<ClusterView>> {
                let mut conn = self.pool.acquire().await?;
                let (cluster, _) = assess::clusters_of(&mut *conn, member_id, "").await?;
                let Some(cluster) = cluster else { return Ok(None) };
                Ok(Some(assess::cluster_view(&mut *conn, &cluster, member_limit).await?))
            }
        }
    };
}

pub(super) use sql_store;
