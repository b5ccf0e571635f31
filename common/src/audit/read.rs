//! Reading the audit log: filters, keyset paging newest first, one implementation per
//! backend. There is no update or delete here, by design.

use chrono::{DateTime, Utc};
use referral_proto::common::v1::{AuditEntry as EntryMessage, ListAuditEntriesRequest};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use super::cursor::{Cursor, decode_cursor};
use crate::{ApiResult, Violations, ids, paging};

/// The longest `actor`, `action` or `subject` filter accepted.
pub const MAX_FILTER: usize = 200;

/// A validated read of the audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject: Option<String>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Entries strictly older (by time, then id) than this.
    pub after: Option<Cursor>,
    pub page_size: u32,
}

impl AuditQuery {
    /// Checks a request: filters length-capped and free of control characters, instants in
    /// range and in order, page size and token ours. 400s name the field.
    pub fn from_request(req: &ListAuditEntriesRequest) -> ApiResult<AuditQuery> {
        let mut v = Violations::default();
        let actor = filter(&mut v, "actor", &req.actor);
        let action = filter(&mut v, "action", &req.action);
        let subject = filter(&mut v, "subject", &req.subject);
        let instant = |v: &mut Violations, field: &str, ts: Option<&referral_proto::Timestamp>| {
            let ts = ts?;
            let t = ids::from_ts(ts);
            if t.is_none() {
                v.add(field, "is not a valid instant");
            }
            t
        };
        let since = instant(&mut v, "since", req.since.as_ref());
        let until = instant(&mut v, "until", req.until.as_ref());
        if let (Some(s), Some(u)) = (since, until)
            && u <= s
        {
            v.add("until", "must be after since");
        }
        let page_size = match paging::page_size(req.page_size) {
            Ok(n) => n,
            Err(_) => {
                v.add("pageSize", "must not be negative");
                paging::DEFAULT_PAGE_SIZE
            }
        };
        let after = match decode_cursor(&req.page_token) {
            Ok(c) => c,
            Err(_) => {
                v.add("pageToken", "is not an audit page token this API issued");
                None
            }
        };
        v.into_result()?;
        Ok(AuditQuery {
            actor,
            action,
            subject,
            since,
            until,
            after,
            page_size,
        })
    }
}

fn filter(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.chars().count() > MAX_FILTER {
        v.add(field, format!("must be at most {MAX_FILTER} characters"));
    } else if value.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
    Some(value.to_string())
}

/// One page of entries, newest first, and whether more follow.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<EntryMessage>,
    pub more: bool,
}

/// A database the audit log can be read from.
pub trait AuditStore: Clone + Send + Sync + 'static {
    fn list_audit(&self, q: &AuditQuery) -> impl Future<Output = sqlx::Result<Page>> + Send;
}

const COLUMNS: &str = "SELECT id, occurred_at, actor_subject, actor_role, request_id, action, subject_kind, \
     subject_id, CAST(before_json AS TEXT), CAST(after_json AS TEXT), note FROM audit_log WHERE TRUE";

type Row<T> = (
    String,
    T,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The filtered, keyset-paged SELECT, with times bound in the backend's own form.
fn select<DB, T>(q: &AuditQuery, time: fn(DateTime<Utc>) -> T) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    T: 'static + for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB> + Clone + Send,
    String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut b = QueryBuilder::new(COLUMNS);
    if let Some(actor) = &q.actor {
        b.push(" AND actor_subject = ").push_bind(actor.clone());
    }
    if let Some(action) = &q.action {
        b.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(subject) = &q.subject {
        b.push(" AND subject_id = ").push_bind(subject.clone());
    }
    if let Some(since) = q.since {
        b.push(" AND occurred_at >= ").push_bind(time(since));
    }
    if let Some(until) = q.until {
        b.push(" AND occurred_at < ").push_bind(time(until));
    }
    if let Some(c) = &q.after {
        let at = time(c.at);
        b.push(" AND (occurred_at < ")
            .push_bind(at.clone())
            .push(" OR (occurred_at = ")
            .push_bind(at)
            .push(" AND id < ")
            .push_bind(c.id.clone())
            .push("))");
    }
    // One more than the page: whether another page follows, without a second query.
    b.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(q.page_size) + 1);
    b
}

fn page<T>(q: &AuditQuery, rows: Vec<Row<T>>, at: fn(T) -> Option<DateTime<Utc>>) -> Page {
    let more = rows.len() > q.page_size as usize;
    let entries = rows
        .into_iter()
        .take(q.page_size as usize)
        .map(|r| EntryMessage {
            id: r.0,
            service: String::new(),
            occurred_at: at(r.1).map(ids::to_ts),
            actor: r.2,
            actor_role: r.3,
            // NULL columns: no request id / no note, which the message says with "".
            request_id: r.4.unwrap_or_default(),
            action: r.5,
            subject_kind: r.6,
            subject_id: r.7,
            before: Some(json_value(r.8)),
            after: Some(json_value(r.9)),
            note: r.10.unwrap_or_default(),
        })
        .collect();
    Page { entries, more }
}

/// Stored JSON as a protobuf Value: null when absent; text that is not JSON (a hand-edited
/// SQLite file) is shown as a string rather than failing the whole read.
fn json_value(text: Option<String>) -> pbjson_types::Value {
    let Some(text) = text else {
        return pbjson_types::Value::from(());
    };
    serde_json::from_str(&text).unwrap_or_else(|_| pbjson_types::Value::from(text))
}

impl AuditStore for PgPool {
    async fn list_audit(&self, q: &AuditQuery) -> sqlx::Result<Page> {
        let rows: Vec<Row<DateTime<Utc>>> = select::<sqlx::Postgres, _>(q, |t| t)
            .build_query_as()
            .fetch_all(self)
            .await?;
        Ok(page(q, rows, Some))
    }
}

impl AuditStore for SqlitePool {
    async fn list_audit(&self, q: &AuditQuery) -> sqlx::Result<Page> {
        let rows: Vec<Row<i64>> = select::<sqlx::Sqlite, _>(q, |t| t.timestamp_micros())
            .build_query_as()
            .fetch_all(self)
            .await?;
        Ok(page(q, rows, DateTime::from_timestamp_micros))
    }
}
