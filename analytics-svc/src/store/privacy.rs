//! What analytics-svc keeps about one person, for privacy requests (issue #16) and the
//! member's network view. `PersonStore` is a supertrait of `Store`, written once in
//! `privacy_sql!` and instantiated for both backends beside `sql_store!`.
//!
//! Erasure re-keys, it never deletes: a person's per-person rows (as a referred user, and as
//! a referrer with every rollup keyed by them) move to their pseudonym in one rollup write
//! transaction, so every count, distinct-referrer number, cohort and ranking is what it was.
//! Analytics holds no contact details, IPs or devices (events carrying them are reduced to
//! ids and facts before anything is stored); stored webhook bodies are rewritten the same way.

use sqlx::FromRow;

use super::StoreResult;

/// The tables and columns that name a person, re-keyed by erasure. `referred_users.user_id`,
/// `user_activity.user_id` and `referrers.referrer_id` are primary keys; the pseudonym is new
/// to them (a person is erased once), so no row collides.
pub const PERSON_COLUMNS: [(&str, &str, &str); 13] = [
    // (count kind, table, column)
    ("referredUsers", "referred_users", "user_id"),
    ("referredUsers", "referred_users", "referrer_id"),
    ("conversions", "conversion_facts", "user_id"),
    ("conversions", "conversion_facts", "referrer_id"),
    ("activity", "user_activity", "user_id"),
    ("invitations", "invitation_facts", "referrer_id"),
    ("referrerRollups", "referrers", "referrer_id"),
    ("referrerRollups", "referrer_days", "referrer_id"),
    ("referrerRollups", "active_days", "referrer_id"),
    ("referrerRollups", "referrer_firsts", "referrer_id"),
    ("referrerRollups", "attribution_days", "referrer_id"),
    ("referrerRollups", "conversion_credits", "referrer_id"),
    ("referrerRollups", "revenue_days", "referrer_id"),
];

/// Re-keyed too, after [`PERSON_COLUMNS`] (one more rollup keyed by referrer).
pub const CHURN_COLUMN: (&str, &str, &str) = ("referrerRollups", "churn_days", "referrer_id");

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct ReferredRow {
    pub user_id: String,
    pub referrer_id: String,
    pub invitation_id: String,
    pub flow: String,
    pub referrer_kind: String,
    pub channel: String,
    pub signed_up_at: i64,
    pub converted: i32,
    pub rejected: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct ConversionRow {
    pub conversion_id: String,
    pub referrer_id: String,
    pub conversion_day: i64,
    pub currency: String,
    pub amount_minor: i64,
    pub rejected: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct InvitationRow {
    pub invitation_id: String,
    pub referrer_id: String,
    pub flow: String,
    pub created_at: i64,
    pub stage: i32,
}

/// Everything analytics holds about a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonFacts {
    /// Their signups as a referred user (normally one).
    pub referred: Vec<ReferredRow>,
    pub conversions: Vec<ConversionRow>,
    /// (activated_at, churned_at), epoch seconds.
    pub activity: Option<(Option<i64>, Option<i64>)>,
    /// The invitations they received (the request's invitation ids), with the funnel stage
    /// each reached.
    pub received: Vec<InvitationRow>,
    /// Their totals as a referrer, if they ever invited.
    pub as_referrer: Option<super::ReferrerSums>,
    /// Cohort membership: (scope, first day) per scope they invited in.
    pub cohorts: Vec<(String, i64)>,
}

/// A referrer's network: distinct people per level (level 1: the people they brought in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRows {
    /// (level, people), levels 1 ..= depth with at least one person.
    pub levels: Vec<(i32, i64)>,
    /// The ids of level 1 (as stored: a user id, or the pseudonym of someone erased), newest
    /// signups first, at most the limit asked.
    pub first_level: Vec<String>,
}

/// A stored webhook body that names a person: rewritten by erasure.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeliveryBody {
    pub id: String,
    pub payload: String,
}

pub trait PersonStore {
    fn person_facts(
        &self,
        person_id: &str,
        invitation_ids: &[String],
        limit: i64,
    ) -> impl Future<Output = StoreResult<PersonFacts>> + Send;
    /// Moves every row keyed by `person_id` to `pseudonym` in one rollup write transaction;
    /// rows changed per count kind of [`PERSON_COLUMNS`].
    fn rekey_person(
        &self,
        person_id: &str,
        pseudonym: &str,
    ) -> impl Future<Output = StoreResult<Vec<(&'static str, i64)>>> + Send;
    /// Webhook bodies after `after` (id order) that contain `needle` as text, at most `limit`.
    fn deliveries_naming(
        &self,
        needle: &str,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<DeliveryBody>>> + Send;
    fn rewrite_delivery(&self, id: &str, payload: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// The people `referrer_id` brought in (attributed, not rejected signups), and theirs,
    /// `depth` levels deep.
    fn network(
        &self,
        referrer_id: &str,
        depth: i32,
        first_level_limit: i64,
    ) -> impl Future<Output = StoreResult<NetworkRows>> + Send;
}

/// `needle` as a LIKE pattern matching it anywhere (`\` escapes).
pub fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

macro_rules! privacy_sql {
    ($store:ty) => {
        impl $crate::store::privacy::PersonStore for $store {
            async fn person_facts(
                &self,
                person_id: &str,
                invitation_ids: &[String],
                limit: i64,
            ) -> $crate::store::StoreResult<$crate::store::privacy::PersonFacts> {
                use $crate::store::privacy::{ConversionRow, InvitationRow, PersonFacts, ReferredRow};
                let mut conn = self.pool.acquire().await?;
                let referred: Vec<ReferredRow> = sqlx::query_as(
                    "SELECT user_id, referrer_id, invitation_id, flow, referrer_kind, channel, signed_up_at,
                        CAST(converted AS INTEGER) AS converted, CAST(rejected AS INTEGER) AS rejected
                     FROM referred_users WHERE user_id = $1 ORDER BY signed_up_at LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                let conversions: Vec<ConversionRow> = sqlx::query_as(
                    "SELECT conversion_id, referrer_id, conversion_day, currency, amount_minor, CAST(rejected AS INTEGER) AS rejected
                     FROM conversion_facts WHERE user_id = $1 ORDER BY conversion_day, conversion_id LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                let activity: Option<(Option<i64>, Option<i64>)> =
                    sqlx::query_as("SELECT activated_at, churned_at FROM user_activity WHERE user_id = $1")
                        .bind(person_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                let mut received = Vec::new();
                for id in invitation_ids.iter().take(usize::try_from(limit).unwrap_or(0)) {
                    let row: Option<InvitationRow> = sqlx::query_as(
                        "SELECT invitation_id, referrer_id, flow, created_at, stage FROM invitation_facts WHERE invitation_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    received.extend(row);
                }
                let as_referrer: Option<$crate::store::ReferrerSums> = sqlx::query_as(
                    "SELECT referrer_id, referrer_kind, tier, badges, invitations, signups, conversions, revenue_minor,
                       stage_sum, last_day, second_order_reach
                     FROM referrers WHERE referrer_id = $1",
                )
                .bind(person_id)
                .fetch_optional(&mut *conn)
                .await?;
                let cohorts: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT scope, first_day FROM referrer_firsts WHERE referrer_id = $1 ORDER BY scope LIMIT $2",
                )
                .bind(person_id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                Ok(PersonFacts {
                    referred,
                    conversions,
                    activity,
                    received,
                    as_referrer,
                    cohorts,
                })
            }

            async fn rekey_person(
                &self,
                person_id: &str,
                pseudonym: &str,
            ) -> $crate::store::StoreResult<Vec<(&'static str, i64)>> {
                use $crate::store::privacy::{CHURN_COLUMN, PERSON_COLUMNS};
                // The rollups' write lock: no batch of events interleaves with the move.
                let mut tx = self.begin_write().await?;
                let mut counts = Vec::new();
                for (kind, table, column) in PERSON_COLUMNS.into_iter().chain([CHURN_COLUMN]) {
                    let sql = format!("UPDATE {table} SET {column} = $2 WHERE {column} = $1");
                    let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(person_id)
                        .bind(pseudonym)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    counts.push((kind, i64::try_from(n).unwrap_or(i64::MAX)));
                }
                tx.commit().await?;
                Ok(counts)
            }

            async fn deliveries_naming(
                &self,
                needle: &str,
                after: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::privacy::DeliveryBody>> {
                Ok(sqlx::query_as(
                    "SELECT id, payload FROM webhook_deliveries WHERE id > $1 AND payload LIKE $2 ESCAPE '\\' ORDER BY id LIMIT $3",
                )
                .bind(after)
                .bind($crate::store::privacy::contains_pattern(needle))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn rewrite_delivery(&self, id: &str, payload: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE webhook_deliveries SET payload = $2 WHERE id = $1")
                    .bind(id)
                    .bind(payload)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn network(
                &self,
                referrer_id: &str,
                depth: i32,
                first_level_limit: i64,
            ) -> $crate::store::StoreResult<$crate::store::privacy::NetworkRows> {
                let mut conn = self.pool.acquire().await?;
                // Each person once, at the nearest level (UNION drops repeats of a (person,
                // level) pair; the MIN keeps the nearest when cycles bring someone back).
                let levels: Vec<(i32, i64)> = sqlx::query_as(
                    "WITH RECURSIVE net(user_id, level) AS (
                        SELECT user_id, 1 FROM referred_users WHERE referrer_id = $1 AND rejected = 0
                        UNION
                        SELECT r.user_id, n.level + 1 FROM referred_users r JOIN net n ON r.referrer_id = n.user_id
                        WHERE n.level < $2 AND r.rejected = 0
                     ),
                     nearest AS (SELECT user_id, MIN(level) AS level FROM net WHERE user_id <> $1 GROUP BY user_id)
                     SELECT CAST(level AS INTEGER), COUNT(*) FROM nearest GROUP BY level ORDER BY level",
                )
                .bind(referrer_id)
                .bind(depth)
                .fetch_all(&mut *conn)
                .await?;
                let first_level: Vec<String> = sqlx::query_scalar(
                    "SELECT user_id FROM referred_users WHERE referrer_id = $1 AND rejected = 0
                     ORDER BY signed_up_at DESC, user_id LIMIT $2",
                )
                .bind(referrer_id)
                .bind(first_level_limit)
                .fetch_all(&mut *conn)
                .await?;
                Ok($crate::store::privacy::NetworkRows { levels, first_level })
            }
        }
    };
}

pub(super) use privacy_sql;
