//! Privacy requests in invite-svc's database (`privacy_requests`, `privacy_request_parts`,
//! migration 0081) and the reads and writes of a person's own records that erasure and
//! export make. The SQL is written once (`privacy_store!`) for both backends.
//!
//! Values cross this trait in plain form; how they are kept at rest (sealed, looked up by
//! keyed hash) is the store's business.

use chrono::{DateTime, Utc};
use referral_common::audit::AuditEntry;
use referral_proto::events::v1::Event;
use sqlx::FromRow;

use super::{ClickRow, ConversionRow, InvitationRow, SignupRow, StoreResult};

/// A privacy request as stored.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PrivacyRequestRow {
    pub id: String,
    /// ERASE | EXPORT
    pub kind: String,
    pub person_id: String,
    /// PENDING | DONE
    pub state: String,
    /// The `PrivacySubject` as JSON: lookup hashes and ids, no plaintext.
    pub subject_json: String,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub export_purged_at: Option<DateTime<Utc>>,
}

/// One service's part of a request.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PrivacyPartRow {
    pub request_id: String,
    pub service: String,
    pub state: String,
    /// The receipt's counts by record kind, as a JSON object.
    pub counts_json: String,
    /// An export's document as stored (sealed); `None` for an erasure, while pending and
    /// once purged.
    pub document: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A request with its parts (in service order).
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyRequestView {
    pub request: PrivacyRequestRow,
    pub parts: Vec<PrivacyPartRow>,
}

/// What opening a request did.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// A new request, its pending parts, its audit row and its event, in one transaction.
    Created(PrivacyRequestView),
    /// One of the same kind for the same person was pending: that one, nothing written.
    Pending(PrivacyRequestView),
}

/// What completing a part did.
#[derive(Debug, Clone, PartialEq)]
pub enum Completed {
    /// The part is DONE now (or was already: a repeated confirmation changes nothing).
    Done(Box<PrivacyRequestView>),
    /// No such request, or it has no part for that service.
    NotFound,
}

/// The rows one erasure rewrites, already erased by the caller; written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonErasure {
    /// Invitations with their personal columns as they are to be stored.
    pub invitations: Vec<InvitationRow>,
    pub signup: Option<SignupRow>,
    pub clicks: Vec<ClickRow>,
    /// Conversions of `from` user ids move to `to` (the pseudonym).
    pub conversions_from: Vec<String>,
    pub conversions_to: String,
}

/// invite-svc's privacy requests and a person's records; part of every [`super::Store`].
pub trait PrivacyStore: Clone + Send + Sync + 'static {
    /// Opens `row` with a PENDING part per service, `audit` and `event` in one transaction,
    /// unless a request of the same kind for the same person is pending.
    fn open_privacy_request(
        &self,
        row: &PrivacyRequestRow,
        services: &[&str],
        audit: &AuditEntry,
        event: &Event,
    ) -> impl Future<Output = StoreResult<Opened>> + Send;
    fn get_privacy_request(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<PrivacyRequestView>>> + Send;
    /// Marks `service`'s part DONE with its counts and (sealed) document, and the request
    /// DONE when it was the last; a part already DONE keeps its first receipt.
    fn complete_privacy_part(
        &self,
        request_id: &str,
        service: &str,
        counts_json: &str,
        document: Option<&str>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Completed>> + Send;
    /// Requests whose part for `service` is still PENDING, oldest first.
    fn pending_privacy_parts(
        &self,
        service: &str,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<PrivacyRequestRow>>> + Send;
    /// Deletes the documents of up to `limit` exports done before `before`; returns how
    /// many requests were purged.
    fn purge_privacy_exports(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The signup of any of `user_ids` (a person's id, or the pseudonym an erasure gave it).
    fn signup_of(&self, user_ids: &[String]) -> impl Future<Output = StoreResult<Option<SignupRow>>> + Send;
    fn invitations_by_ids(
        &self,
        ids: &[String],
    ) -> impl Future<Output = StoreResult<Vec<InvitationRow>>> + Send;
    /// Invitations addressed to any of these normalised e-mail addresses or phone numbers.
    fn invitations_to(
        &self,
        contacts: &[String],
    ) -> impl Future<Output = StoreResult<Vec<InvitationRow>>> + Send;
    /// Invitations `referrer_id` sent, oldest first.
    fn invitations_sent_by(
        &self,
        referrer_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<InvitationRow>>> + Send;
    /// Clicks with one of these ids or on one of these invitations.
    fn clicks_of(
        &self,
        click_ids: &[String],
        invitation_ids: &[String],
    ) -> impl Future<Output = StoreResult<Vec<ClickRow>>> + Send;
    fn conversions_of(
        &self,
        user_ids: &[String],
    ) -> impl Future<Output = StoreResult<Vec<ConversionRow>>> + Send;
    /// Writes an erasure's rows in one transaction.
    fn erase_person(&self, erasure: &PersonErasure) -> impl Future<Output = StoreResult<()>> + Send;
}

macro_rules! privacy_store {
    ($store:ty, $for_update:literal) => {
        mod privacy_sql {
            use chrono::{DateTime, Utc};
            use referral_common::audit::{self, AuditEntry};
            use referral_proto::events::v1::Event;

            use super::*;
            use crate::store::{
                ClickRow, ConversionRow, InvitationRow, SignupRow, StoreResult,
                privacy::{
                    Completed, Opened, PersonErasure, PrivacyPartRow, PrivacyRequestRow, PrivacyRequestView,
                    PrivacyStore,
                },
                sql::signup_cols,
            };

            const REQUEST_COLS: &str =
                "id, kind, person_id, state, subject_json, requested_by, created_at, completed_at, export_purged_at";
            const PART_COLS: &str = "request_id, service, state, counts_json, document, completed_at";
            const INVITATION_COLS: &str = "id, code, referrer_id, referrer_kind, referee_kind, vendor_type, flow, channel, recipient_email, recipient_phone, recipient_name, recipient_timezone, recipient_key, status, status_reason, risk_json, template_id, template_variant, message, campaign_id, utm_source, utm_medium, utm_campaign, wedding_date, scheduled_for, sent_at, expires_at, ip, device_id, created_at, updated_at, referrer_name, business_name";
            const CLICK_COLS: &str = "click_id, code, referrer_id, invitation_id, visitor_id, user_agent, ip, device_id, utm_source, utm_medium, utm_campaign, occurred_at, expires_at, previous_click_id";
            /// Ids per `IN (...)` list: far under both backends' bind limits.
            const CHUNK: usize = 500;

            impl $store {
                async fn privacy_view(
                    conn: &mut <Db as sqlx::Database>::Connection,
                    id: &str,
                ) -> sqlx::Result<Option<PrivacyRequestView>> {
                    let request: Option<PrivacyRequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {REQUEST_COLS} FROM privacy_requests WHERE id = $1"
                    )))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(request) = request else { return Ok(None) };
                    let parts: Vec<PrivacyPartRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {PART_COLS} FROM privacy_request_parts WHERE request_id = $1 ORDER BY service"
                    )))
                    .bind(id)
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(Some(PrivacyRequestView { request, parts }))
                }

                async fn pending_request_of(
                    conn: &mut <Db as sqlx::Database>::Connection,
                    person_id: &str,
                    kind: &str,
                ) -> sqlx::Result<Option<PrivacyRequestView>> {
                    let id: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM privacy_requests WHERE person_id = $1 AND kind = $2 AND state = 'PENDING'",
                    )
                    .bind(person_id)
                    .bind(kind)
                    .fetch_optional(&mut *conn)
                    .await?;
                    match id {
                        Some(id) => Self::privacy_view(conn, &id).await,
                        None => Ok(None),
                    }
                }

                async fn rows_in<T>(&self, select: &str, column: &str, ids: &[String]) -> StoreResult<Vec<T>>
                where
                    T: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
                {
                    let mut out = Vec::new();
                    for chunk in ids.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::<Db>::new(format!("{select} WHERE {column} IN ("));
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(id.as_str());
                        }
                        q.push(")");
                        out.extend(q.build_query_as::<T>().fetch_all(&self.pool).await?);
                    }
                    Ok(out)
                }
            }

            impl PrivacyStore for $store {
                async fn open_privacy_request(
                    &self,
                    row: &PrivacyRequestRow,
                    services: &[&str],
                    entry: &AuditEntry,
                    event: &Event,
                ) -> StoreResult<Opened> {
                    let mut tx = self.begin_write().await?;
                    // Two asks at once for one person and kind: the second waits here (and
                    // the partial unique index stands behind it).
                    Self::lock_key(&mut tx, &format!("privacy:{}:{}", row.person_id, row.kind)).await?;
                    if let Some(pending) = Self::pending_request_of(&mut tx, &row.person_id, &row.kind).await? {
                        return Ok(Opened::Pending(pending));
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO privacy_requests ({REQUEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    )))
                    .bind(&row.id)
                    .bind(&row.kind)
                    .bind(&row.person_id)
                    .bind(&row.state)
                    .bind(&row.subject_json)
                    .bind(&row.requested_by)
                    .bind(row.created_at)
                    .bind(row.completed_at)
                    .bind(row.export_purged_at)
                    .execute(&mut *tx)
                    .await?;
                    for service in services {
                        sqlx::query(
                            "INSERT INTO privacy_request_parts (request_id, service, state, counts_json, document, completed_at)
                             VALUES ($1, $2, 'PENDING', '{}', NULL, NULL)",
                        )
                        .bind(&row.id)
                        .bind(*service)
                        .execute(&mut *tx)
                        .await?;
                    }
                    audit::record(&mut *tx, entry).await?;
                    Self::stage(&mut tx, event).await?;
                    let view = Self::privacy_view(&mut tx, &row.id).await?;
                    tx.commit().await?;
                    self.outbox.wake();
                    view.map(Opened::Created).ok_or_else(|| {
                        crate::store::StoreError::Encoding(format!("privacy request {} vanished", row.id))
                    })
                }

                async fn get_privacy_request(&self, id: &str) -> StoreResult<Option<PrivacyRequestView>> {
                    let mut conn = self.pool.acquire().await?;
                    Ok(Self::privacy_view(&mut conn, id).await?)
                }

                async fn complete_privacy_part(
                    &self,
                    request_id: &str,
                    service: &str,
                    counts_json: &str,
                    document: Option<&str>,
                    at: DateTime<Utc>,
                ) -> StoreResult<Completed> {
                    let mut tx = self.begin_write().await?;
                    let state: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT state FROM privacy_requests WHERE id = $1{}",
                        $for_update
                    )))
                    .bind(request_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if state.is_none() {
                        return Ok(Completed::NotFound);
                    }
                    let part: Option<String> = sqlx::query_scalar(
                        "SELECT state FROM privacy_request_parts WHERE request_id = $1 AND service = $2",
                    )
                    .bind(request_id)
                    .bind(service)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match part.as_deref() {
                        None => return Ok(Completed::NotFound),
                        Some("PENDING") => {
                            sqlx::query(
                                "UPDATE privacy_request_parts SET state = 'DONE', counts_json = $3, document = $4, completed_at = $5
                                 WHERE request_id = $1 AND service = $2 AND state = 'PENDING'",
                            )
                            .bind(request_id)
                            .bind(service)
                            .bind(counts_json)
                            .bind(document)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                            let open: i64 = sqlx::query_scalar(
                                "SELECT count(*) FROM privacy_request_parts WHERE request_id = $1 AND state = 'PENDING'",
                            )
                            .bind(request_id)
                            .fetch_one(&mut *tx)
                            .await?;
                            if open == 0 {
                                sqlx::query(
                                    "UPDATE privacy_requests SET state = 'DONE', completed_at = $2 WHERE id = $1 AND state = 'PENDING'",
                                )
                                .bind(request_id)
                                .bind(at)
                                .execute(&mut *tx)
                                .await?;
                            }
                        }
                        Some(_) => {}
                    }
                    let view = Self::privacy_view(&mut tx, request_id).await?;
                    tx.commit().await?;
                    Ok(view.map(|v| Completed::Done(Box::new(v))).unwrap_or(Completed::NotFound))
                }

                async fn pending_privacy_parts(&self, service: &str, limit: i64) -> StoreResult<Vec<PrivacyRequestRow>> {
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {} FROM privacy_requests r JOIN privacy_request_parts p ON p.request_id = r.id
                         WHERE p.service = $1 AND p.state = 'PENDING' ORDER BY r.created_at, r.id LIMIT $2",
                        REQUEST_COLS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
                    )))
                    .bind(service)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn purge_privacy_exports(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
                    let mut tx = self.begin_write().await?;
                    let ids: Vec<String> = sqlx::query_scalar(
                        "SELECT id FROM privacy_requests WHERE state = 'DONE' AND export_purged_at IS NULL
                         AND completed_at < $1 ORDER BY completed_at LIMIT $2",
                    )
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                    let now = referral_common::ids::now();
                    for id in &ids {
                        sqlx::query("UPDATE privacy_request_parts SET document = NULL WHERE request_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("UPDATE privacy_requests SET export_purged_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(ids.len() as u64)
                }

                async fn signup_of(&self, user_ids: &[String]) -> StoreResult<Option<SignupRow>> {
                    let rows: Vec<SignupRow> = self
                        .rows_in(concat!("SELECT ", signup_cols!(), " FROM signups"), "user_id", user_ids)
                        .await?;
                    // The person's own id first: a pseudonymised row is what is left after.
                    let row = user_ids
                        .iter()
                        .find_map(|u| rows.iter().find(|r| &r.user_id == u))
                        .cloned();
                    $crate::store::sealed::open_opt(&self.pii, row)
                }

                async fn invitations_by_ids(&self, ids: &[String]) -> StoreResult<Vec<InvitationRow>> {
                    let rows = self.rows_in(&format!("SELECT {INVITATION_COLS} FROM invitations"), "id", ids).await?;
                    $crate::store::sealed::open_all(&self.pii, rows)
                }

                async fn invitations_to(&self, contacts: &[String]) -> StoreResult<Vec<InvitationRow>> {
                    let mut rows: Vec<InvitationRow> = Vec::new();
                    // Both are keyed hashes: recipient_key of the normalised email (else phone),
                    // contact_lookup of the address the invitation was sent to (the phone of an
                    // SMS invitation that also names an email).
                    for column in ["recipient_key", "contact_lookup"] {
                        let found: Vec<InvitationRow> = self
                            .rows_in(&format!("SELECT {INVITATION_COLS} FROM invitations"), column, contacts)
                            .await?;
                        for row in found {
                            if !rows.iter().any(|r| r.id == row.id) {
                                rows.push(row);
                            }
                        }
                    }
                    rows.sort_by(|a, b| a.id.cmp(&b.id));
                    $crate::store::sealed::open_all(&self.pii, rows)
                }

                async fn invitations_sent_by(&self, referrer_id: &str) -> StoreResult<Vec<InvitationRow>> {
                    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {INVITATION_COLS} FROM invitations WHERE referrer_id = $1 ORDER BY id"
                    )))
                    .bind(referrer_id)
                    .fetch_all(&self.pool)
                    .await?;
                    $crate::store::sealed::open_all(&self.pii, rows)
                }

                async fn clicks_of(&self, click_ids: &[String], invitation_ids: &[String]) -> StoreResult<Vec<ClickRow>> {
                    let select = format!("SELECT {CLICK_COLS} FROM clicks");
                    let mut rows: Vec<ClickRow> = self.rows_in(&select, "click_id", click_ids).await?;
                    for row in self.rows_in::<ClickRow>(&select, "invitation_id", invitation_ids).await? {
                        if !rows.iter().any(|r| r.click_id == row.click_id) {
                            rows.push(row);
                        }
                    }
                    rows.sort_by(|a, b| (a.occurred_at, &a.click_id).cmp(&(b.occurred_at, &b.click_id)));
                    $crate::store::sealed::open_all(&self.pii, rows)
                }

                async fn conversions_of(&self, user_ids: &[String]) -> StoreResult<Vec<ConversionRow>> {
                    let mut rows: Vec<ConversionRow> = self
                        .rows_in(
                            "SELECT id, user_id, amount_minor, currency, plan, annual, first_paid, attributed, referrer_id, invitation_id, flow, occurred_at, created_at FROM conversions",
                            "user_id",
                            user_ids,
                        )
                        .await?;
                    rows.sort_by(|a, b| a.id.cmp(&b.id));
                    Ok(rows)
                }

                async fn erase_person(&self, e: &PersonErasure) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    // What is left of a person's fields (a truncated IP) is sealed like any other.
                    for r in &e.invitations {
                        let r = $crate::store::sealed::seal(&self.pii, r);
                        sqlx::query(
                            "UPDATE invitations SET recipient_email = $2, recipient_phone = $3, recipient_name = $4, recipient_key = $5,
                             message = $6, wedding_date = $7, ip = $8, device_id = $9, referrer_name = $10,
                             contact_lookup = CASE WHEN $5 = '' THEN '' ELSE contact_lookup END WHERE id = $1",
                        )
                        .bind(&r.id)
                        .bind(&r.recipient_email)
                        .bind(&r.recipient_phone)
                        .bind(&r.recipient_name)
                        .bind(&r.recipient_key)
                        .bind(&r.message)
                        .bind(&r.wedding_date)
                        .bind(&r.ip)
                        .bind(&r.device_id)
                        .bind(&r.referrer_name)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(s) = &e.signup {
                        let s = $crate::store::sealed::seal(&self.pii, s);
                        sqlx::query(
                            "UPDATE signups SET user_id = $2, email = $3, email_norm = $4, name = $5, ip = $6, device_id = $7 WHERE id = $1",
                        )
                        .bind(&s.id)
                        .bind(&s.user_id)
                        .bind(&s.email)
                        .bind(&s.email_norm)
                        .bind(&s.name)
                        .bind(&s.ip)
                        .bind(&s.device_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for c in &e.clicks {
                        let c = $crate::store::sealed::seal(&self.pii, c);
                        sqlx::query(
                            "UPDATE clicks SET visitor_id = $2, user_agent = $3, ip = $4, device_id = $5 WHERE click_id = $1",
                        )
                        .bind(&c.click_id)
                        .bind(&c.visitor_id)
                        .bind(&c.user_agent)
                        .bind(&c.ip)
                        .bind(&c.device_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for from in &e.conversions_from {
                        if from == &e.conversions_to {
                            continue;
                        }
                        sqlx::query("UPDATE conversions SET user_id = $2 WHERE user_id = $1")
                            .bind(from)
                            .bind(&e.conversions_to)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            }
        }
    };
}

pub(super) use privacy_store;
