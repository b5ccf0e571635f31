//! The audit log: an append-only record of every admin or money action — who (principal
//! subject and role, request id), when, what (action and subject), the subject before and
//! after, and a note where the action takes one.
//!
//! A row is written with [`record`] inside the SAME transaction as the change it records, so
//! there is never a change without its row nor a row for a change that rolled back:
//!
//! ```ignore
//! let entry = AuditEntry::new(&actor, action::API_KEY_CREATE, "api_key", &key.id)
//!     .after(json!({"name": key.name, "scopes": key.scopes}));
//! referral_common::audit::record(&mut *tx, &entry).await?;
//! ```
//!
//! The table is defined once here (`postgres.sql`, `sqlite.sql`) and merged into each
//! service's migrations ([`crate::db::SHARED`]); the database refuses UPDATE and DELETE on it. Every service serves
//! `referral.common.v1.AuditLog` over its own table ([`AuditLogService`]).

pub mod action;
mod cursor;
mod read;
mod service;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, SqliteConnection};
use tonic::Request;

pub use self::{
    cursor::{Cursor, decode_cursor, encode_cursor},
    read::{AuditQuery, AuditStore, Page},
    service::AuditLogService,
};
use crate::{
    auth::{self, Principal},
    ids,
};

/// The table's definition: every service migrates it as version 40 (see
/// [`crate::db::SHARED`]).
pub const POSTGRES_SCHEMA: &str = include_str!("postgres.sql");
pub const SQLITE_SCHEMA: &str = include_str!("sqlite.sql");

/// A request id longer than this, or with anything but visible ASCII, is not recorded: the
/// gateway issues sane ones, and a direct gRPC caller does not get to write arbitrary text.
const MAX_REQUEST_ID: usize = 128;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    /// member | admin | service | system.
    pub role: String,
    pub request_id: Option<String>,
}

impl Actor {
    /// The authenticated caller of a gRPC request and its `x-request-id`.
    pub fn of<T>(req: &Request<T>) -> Result<Actor, tonic::Status> {
        let principal = Principal::of(req)?;
        Ok(Actor::from_principal(
            &principal,
            auth::metadata_text(req.metadata(), auth::REQUEST_ID).as_deref(),
        ))
    }

    pub fn from_principal(principal: &Principal, request_id: Option<&str>) -> Actor {
        Actor {
            subject: principal.sub.clone(),
            role: principal.role.as_str().to_string(),
            request_id: request_id.filter(|id| sane_request_id(id)).map(str::to_string),
        }
    }

    /// A change made by the service itself, with no person behind it.
    pub fn system() -> Actor {
        Actor {
            subject: SYSTEM.to_string(),
            role: SYSTEM.to_string(),
            request_id: None,
        }
    }

    /// A change caused by an event: its origin (the actor named by the event) when known,
    /// else [`Actor::system`].
    pub fn origin(subject: Option<&str>, role: Option<&str>) -> Actor {
        match subject.filter(|s| !s.is_empty()) {
            Some(subject) => Actor {
                subject: subject.to_string(),
                role: role.filter(|r| !r.is_empty()).unwrap_or(SYSTEM).to_string(),
                request_id: None,
            },
            None => Actor::system(),
        }
    }
}

/// The actor (and role) of changes no person made.
pub const SYSTEM: &str = "system";

fn sane_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// One audited action, built by the code that makes the change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub note: Option<String>,
}

impl AuditEntry {
    /// An entry stamped now with a fresh UUIDv7; add `before`, `after` and `note` as they apply.
    pub fn new(actor: &Actor, action: &str, subject_kind: &str, subject_id: &str) -> AuditEntry {
        AuditEntry {
            id: ids::new_id(),
            occurred_at: ids::now(),
            actor: actor.clone(),
            action: action.to_string(),
            subject_kind: subject_kind.to_string(),
            subject_id: subject_id.to_string(),
            before: None,
            after: None,
            note: None,
        }
    }

    pub fn before(mut self, before: Value) -> Self {
        self.before = Some(before).filter(|v| !v.is_null());
        self
    }

    pub fn after(mut self, after: Value) -> Self {
        self.after = Some(after).filter(|v| !v.is_null());
        self
    }

    /// A note; an empty one is none.
    pub fn note(mut self, note: &str) -> Self {
        self.note = Some(note.to_string()).filter(|n| !n.is_empty());
        self
    }
}

/// Writes one audit row in the caller's transaction (Postgres or SQLite connection).
pub async fn record<C: AuditWriter + ?Sized>(conn: &mut C, entry: &AuditEntry) -> sqlx::Result<()> {
    conn.write_audit(entry).await
}

/// A connection an audit row can be written on: Postgres and SQLite. There is deliberately
/// no update or delete counterpart.
pub trait AuditWriter {
    fn write_audit(&mut self, entry: &AuditEntry) -> impl Future<Output = sqlx::Result<()>> + Send;
}

const INSERT_PG: &str = "INSERT INTO audit_log (id, occurred_at, actor_subject, actor_role, request_id, action, \
     subject_kind, subject_id, before_json, after_json, note) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CAST($9 AS JSONB), CAST($10 AS JSONB), $11)";
const INSERT_SQLITE: &str = "INSERT INTO audit_log (id, occurred_at, actor_subject, actor_role, request_id, action, \
     subject_kind, subject_id, before_json, after_json, note) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

impl AuditWriter for PgConnection {
    async fn write_audit(&mut self, e: &AuditEntry) -> sqlx::Result<()> {
        sqlx::query(INSERT_PG)
            .bind(&e.id)
            .bind(e.occurred_at)
            .bind(&e.actor.subject)
            .bind(&e.actor.role)
            .bind(&e.actor.request_id)
            .bind(&e.action)
            .bind(&e.subject_kind)
            .bind(&e.subject_id)
            .bind(json_text(&e.before))
            .bind(json_text(&e.after))
            .bind(&e.note)
            .execute(self)
            .await?;
        Ok(())
    }
}

impl AuditWriter for SqliteConnection {
    async fn write_audit(&mut self, e: &AuditEntry) -> sqlx::Result<()> {
        sqlx::query(INSERT_SQLITE)
            .bind(&e.id)
            .bind(e.occurred_at.timestamp_micros())
            .bind(&e.actor.subject)
            .bind(&e.actor.role)
            .bind(&e.actor.request_id)
            .bind(&e.action)
            .bind(&e.subject_kind)
            .bind(&e.subject_id)
            .bind(json_text(&e.before))
            .bind(json_text(&e.after))
            .bind(&e.note)
            .execute(self)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn actors_keep_only_sane_request_ids() {
        let admin = Principal::new("ädmin ☃", Role::Admin, None);
        let a = Actor::from_principal(&admin, Some("req-1"));
        assert_eq!((a.subject.as_str(), a.role.as_str()), ("ädmin ☃", "admin"));
        assert_eq!(a.request_id.as_deref(), Some("req-1"));
        assert_eq!(Actor::from_principal(&admin, Some("a b")).request_id, None);
        assert_eq!(
            Actor::from_principal(&admin, Some(&"x".repeat(129))).request_id,
            None
        );
        assert_eq!(Actor::origin(None, None), Actor::system());
        assert_eq!(Actor::origin(Some(""), Some("admin")), Actor::system());
        assert_eq!(Actor::origin(Some("rev"), Some("admin")).role, "admin");
    }

    #[test]
    fn null_before_and_empty_note_are_none() {
        let e = AuditEntry::new(&Actor::system(), "x", "k", "1")
            .before(Value::Null)
            .after(serde_json::json!({"a": 1}))
            .note("");
        assert_eq!(e.before, None);
        assert_eq!(e.note, None);
        assert!(e.after.is_some());
    }
}
