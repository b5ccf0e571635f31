//! Idempotency keys (IETF Idempotency-Key draft) for every create.
//!
//! The same key with the same request within 24 h returns the first response; the same key
//! with a different request is refused (FAILED_PRECONDITION, reason IDEMPOTENCY_KEY_REUSED,
//! 422 at the gateway); a retry while the first is still running is ABORTED with reason
//! IDEMPOTENCY_KEY_IN_USE (409). Records live in Redis when configured (every replica sees
//! them), else in the service's own database (table `idempotency_records`, shared migration
//! 75), so a retry after a restart still gets the first answer; the retention job deletes
//! expired rows. In Redis and in the database a record is sealed with the service's PII keys
//! (a stored answer may hold an invitation's email) and named by a SHA-256 of its slot (no
//! caller id in clear); an unreadable record is an error, never a reason to run the work
//! again. Process memory serves only tests. Failures the caller could not have caused
//! (internal, unavailable) are not remembered, so a retry runs again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status, metadata::MetadataMap};

use crate::{
    ApiError, ApiResult,
    auth::{self, Principal},
    ids,
    pii::PiiKeys,
    retention::RetentionDb,
};

pub const REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
pub const IN_USE: &str = "IDEMPOTENCY_KEY_IN_USE";
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a claim survives a caller that died mid-request.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Record {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        code: i32,
        message: String,
        details: String,
        body: String,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Record::InFlight { fingerprint } | Record::Done { fingerprint, .. } => fingerprint,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<HashMap<String, (Record, Instant)>>>),
    Redis(redis::aio::ConnectionManager, Arc<PiiKeys>),
    Database(RetentionDb, Arc<PiiKeys>),
}

#[derive(Clone)]
pub struct Idempotency {
    backend: Backend,
    namespace: String,
}

impl Idempotency {
    pub fn in_memory(namespace: &str) -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
            namespace: namespace.into(),
        }
    }

    /// Records in Redis, sealed with `keys`.
    pub fn redis(conn: redis::aio::ConnectionManager, namespace: &str, keys: PiiKeys) -> Self {
        Self {
            backend: Backend::Redis(conn, Arc::new(keys)),
            namespace: namespace.into(),
        }
    }

    /// Records in the service's database (`idempotency_records`), sealed with `keys`.
    pub fn database(db: impl Into<RetentionDb>, namespace: &str, keys: PiiKeys) -> Self {
        Self {
            backend: Backend::Database(db.into(), Arc::new(keys)),
            namespace: namespace.into(),
        }
    }

    /// A gRPC write behind Idempotency-Key: the caller's principal (refused when unreadable)
    /// and what `context` reads from the request go to `work` with the body, run at most once
    /// per (caller, method, key) as [`run`](Self::run) does.
    pub async fn serve<Req, C, T, Fut>(
        &self,
        req: Request<Req>,
        method: &str,
        context: impl FnOnce(&Request<Req>) -> Result<C, Status>,
        work: impl FnOnce(Principal, C, Req) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Req: prost::Message + Clone,
        T: prost::Message + Default,
        Fut: Future<Output = ApiResult<T>>,
    {
        let p = Principal::of(&req)?;
        let context = context(&req)?;
        let md = req.metadata().clone();
        let body = req.into_inner();
        let caller = p.sub.clone();
        let out = self
            .run(&md, &caller, method, &body, async {
                Ok(work(p, context, body.clone()).await?)
            })
            .await?;
        Ok(Response::new(out))
    }

    /// Runs `work` at most once per (caller, method, key); replays the stored answer after.
    pub async fn run<T, F>(
        &self,
        md: &MetadataMap,
        caller: &str,
        method: &str,
        request: &impl prost::Message,
        work: F,
    ) -> Result<T, Status>
    where
        T: prost::Message + Default,
        F: Future<Output = Result<T, Status>>,
    {
        let Some(key) = auth::metadata_text(md, auth::IDEMPOTENCY_KEY) else {
            return work.await;
        };
        if key.len() > 255 {
            return Err(ApiError::invalid("Idempotency-Key", "must be at most 255 characters").into());
        }
        let slot = format!("idem:{}:{caller}:{method}:{key}", self.namespace);
        let slot = match &self.backend {
            Backend::Memory(_) => slot,
            // Stored outside the process: named by a hash, no caller id or key in clear.
            _ => format!(
                "idem:{}:{}",
                self.namespace,
                hex::encode(Sha256::digest(slot.as_bytes()))
            ),
        };
        let fingerprint = hex::encode(Sha256::digest(request.encode_to_vec()));
        match self.claim(&slot, &fingerprint).await? {
            Some(Record::Done {
                fingerprint: f,
                code,
                message,
                details,
                body,
            }) if f == fingerprint => {
                return replay(code, message, &details, &body);
            }
            Some(existing) if existing.fingerprint() != fingerprint => {
                return Err(ApiError::FailedPrecondition {
                    message: "Idempotency-Key was already used with a different request".into(),
                    reason: REUSED,
                }
                .into());
            }
            Some(_) => return Err(in_use()),
            None => {}
        }
        let result = work.await;
        let remember = match &result {
            Ok(v) => Some(Record::Done {
                fingerprint,
                code: 0,
                message: String::new(),
                details: String::new(),
                body: STANDARD.encode(v.encode_to_vec()),
            }),
            Err(s) if caller_caused(s.code()) => Some(Record::Done {
                fingerprint,
                code: s.code() as i32,
                message: s.message().to_string(),
                details: STANDARD.encode(s.details()),
                body: String::new(),
            }),
            Err(_) => None,
        };
        match remember {
            Some(record) => self.put(&slot, record, TTL).await,
            None => self.release(&slot).await,
        }
        result
    }

    /// Claims the slot for this request, or returns what is already there.
    async fn claim(&self, slot: &str, fingerprint: &str) -> Result<Option<Record>, Status> {
        let claim = Record::InFlight {
            fingerprint: fingerprint.into(),
        };
        match &self.backend {
            Backend::Memory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| Status::internal("idempotency store poisoned"))?;
                let now = Instant::now();
                if map.len() > 100_000 {
                    map.retain(|_, (_, exp)| *exp > now);
                }
                match map.get(slot) {
                    Some((rec, exp)) if *exp > now => Ok(Some(rec.clone())),
                    _ => {
                        map.insert(slot.into(), (claim, now + IN_FLIGHT_TTL));
                        Ok(None)
                    }
                }
            }
            Backend::Redis(conn, keys) => {
                let mut conn = conn.clone();
                let text = seal(keys, &claim)?;
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(IN_FLIGHT_TTL.as_secs()));
                let set: Option<String> = conn.set_options(slot, text, opts).await.map_err(unavailable)?;
                if set.is_some() {
                    return Ok(None);
                }
                let existing: Option<String> = conn.get(slot).await.map_err(unavailable)?;
                match existing {
                    Some(text) => Ok(Some(unseal(keys, &text)?)),
                    // Expired between the two calls: claimed by nobody, so not by us either.
                    None => Err(in_use()),
                }
            }
            Backend::Database(db, keys) => db_claim(db, keys, slot, &claim).await,
        }
    }

    async fn put(&self, slot: &str, record: Record, ttl: Duration) {
        match &self.backend {
            Backend::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.insert(slot.into(), (record, Instant::now() + ttl));
                }
            }
            Backend::Redis(conn, keys) => {
                let mut conn = conn.clone();
                if let Ok(text) = seal(keys, &record) {
                    let r: redis::RedisResult<()> = conn.set_ex(slot, text, ttl.as_secs()).await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "could not store idempotency record");
                    }
                }
            }
            Backend::Database(db, keys) => {
                let stored = match seal(keys, &record) {
                    Ok(text) => db_put(db, slot, &text, ttl).await,
                    Err(e) => Err(sqlx::Error::Protocol(e.message().to_string())),
                };
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "could not store idempotency record");
                }
            }
        }
    }

    async fn release(&self, slot: &str) {
        match &self.backend {
            Backend::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.remove(slot);
                }
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let _: redis::RedisResult<()> = conn.del(slot).await;
            }
            Backend::Database(db, _) => {
                if let Err(e) = db_release(db, slot).await {
                    tracing::warn!(error = %e, "could not release idempotency claim");
                }
            }
        }
    }
}

fn in_use() -> Status {
    ApiError::Aborted {
        message: "a request with this Idempotency-Key is still in progress".into(),
        reason: IN_USE,
    }
    .into()
}

/// A record as stored outside the process: JSON sealed with the PII keys.
fn seal(keys: &PiiKeys, record: &Record) -> Result<String, Status> {
    let text = serde_json::to_string(record).map_err(|e| Status::internal(e.to_string()))?;
    Ok(keys.seal(&text))
}

/// Opens a stored record; unreadable (unknown key, tampered, not a record) is an error: the
/// work must not run a second time because the first answer cannot be read.
fn unseal(keys: &PiiKeys, stored: &str) -> Result<Record, Status> {
    let text = keys
        .open(stored)
        .map_err(|_| Status::internal("an idempotency record is unreadable"))?;
    serde_json::from_str(&text).map_err(|_| Status::internal("an idempotency record is unreadable"))
}

/// Takes the slot when it is free or expired, in one statement (concurrent claims: one wins).
const DB_CLAIM: &str = "INSERT INTO idempotency_records (slot, record, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (slot) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at
WHERE idempotency_records.expires_at <= $4";
const DB_GET: &str = "SELECT record FROM idempotency_records WHERE slot = $1 AND expires_at > $2";
const DB_PUT: &str = "INSERT INTO idempotency_records (slot, record, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (slot) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at";
const DB_DELETE: &str = "DELETE FROM idempotency_records WHERE slot = $1";

async fn db_claim(
    db: &RetentionDb,
    keys: &PiiKeys,
    slot: &str,
    claim: &Record,
) -> Result<Option<Record>, Status> {
    let now = ids::now();
    let expires = now + chrono::Duration::from_std(IN_FLIGHT_TTL).unwrap_or_default();
    let text = seal(keys, claim)?;
    let existing: Option<String> = crate::on_retention_db!(db, pool => {
        let taken = sqlx::query(DB_CLAIM)
            .bind(slot)
            .bind(&text)
            .bind(expires)
            .bind(now)
            .execute(pool)
            .await
            .map_err(db_unavailable)?
            .rows_affected()
            == 1;
        if taken {
            return Ok(None);
        }
        sqlx::query_scalar(DB_GET)
            .bind(slot)
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(db_unavailable)?
    });
    match existing {
        Some(text) => Ok(Some(unseal(keys, &text)?)),
        None => Err(in_use()),
    }
}

async fn db_put(db: &RetentionDb, slot: &str, text: &str, ttl: Duration) -> sqlx::Result<()> {
    let expires = ids::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    crate::on_retention_db!(db, pool => {
        sqlx::query(DB_PUT).bind(slot).bind(text).bind(expires).execute(pool).await?;
    });
    Ok(())
}

async fn db_release(db: &RetentionDb, slot: &str) -> sqlx::Result<()> {
    crate::on_retention_db!(db, pool => {
        sqlx::query(DB_DELETE).bind(slot).execute(pool).await?;
    });
    Ok(())
}

fn db_unavailable(e: sqlx::Error) -> Status {
    Status::unavailable(format!("idempotency store unreachable: {e}"))
}

/// Errors worth replaying: the same request would fail the same way again.
fn caller_caused(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
    )
}

fn replay<T: prost::Message + Default>(
    code: i32,
    message: String,
    details: &str,
    body: &str,
) -> Result<T, Status> {
    if code == 0 {
        let bytes = STANDARD
            .decode(body)
            .map_err(|e| Status::internal(e.to_string()))?;
        return T::decode(bytes.as_slice()).map_err(|e| Status::internal(e.to_string()));
    }
    let details = STANDARD
        .decode(details)
        .map_err(|e| Status::internal(e.to_string()))?;
    Err(Status::with_details(Code::from(code), message, details.into()))
}

fn unavailable(e: redis::RedisError) -> Status {
    Status::unavailable(format!("idempotency store unreachable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn md(key: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(auth::IDEMPOTENCY_KEY, key.parse().unwrap());
        m
    }

    #[tokio::test]
    async fn same_key_same_body_replays_and_other_body_is_refused() {
        let idem = Idempotency::in_memory("t");
        let runs = AtomicUsize::new(0);
        let req = "body-a".to_string();
        let work = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Status>("answer".to_string())
        };
        let a = idem.run(&md("k1"), "u", "M", &req, work()).await.unwrap();
        let b = idem.run(&md("k1"), "u", "M", &req, work()).await.unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("answer", "answer"));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let other = "body-b".to_string();
        let e = idem.run(&md("k1"), "u", "M", &other, work()).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        // Another caller's key space is separate.
        idem.run(&md("k1"), "v", "M", &other, work()).await.unwrap();
    }

    #[tokio::test]
    async fn internal_failures_are_not_remembered() {
        let idem = Idempotency::in_memory("t");
        let req = "x".to_string();
        let e = idem
            .run(&md("k"), "u", "M", &req, async {
                Err::<String, _>(Status::unavailable("down"))
            })
            .await;
        assert!(e.is_err());
        let ok = idem
            .run(&md("k"), "u", "M", &req, async {
                Ok::<_, Status>("y".to_string())
            })
            .await;
        assert_eq!(ok.unwrap(), "y");
    }
}
