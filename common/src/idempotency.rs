//! Idempotency keys (IETF Idempotency-Key draft) for every create.
//!
//! The same key with the same request within 24 h returns the first response; the same key
//! with a different request is refused (FAILED_PRECONDITION, reason IDEMPOTENCY_KEY_REUSED,
//! 422 at the gateway); a retry while the first is still running is ABORTED with reason
//! IDEMPOTENCY_KEY_IN_USE (409). Records live in process memory, or in Redis when configured
//! so that every replica sees them. Failures the caller could not have caused (internal,
//! unavailable) are not remembered, so a retry runs again.

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
    Redis(redis::aio::ConnectionManager),
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

    pub fn redis(conn: redis::aio::ConnectionManager, namespace: &str) -> Self {
        Self {
            backend: Backend::Redis(conn),
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
            Some(_) => {
                return Err(ApiError::Aborted {
                    message: "a request with this Idempotency-Key is still in progress".into(),
                    reason: IN_USE,
                }
                .into());
            }
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
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let text = serde_json::to_string(&claim).map_err(|e| Status::internal(e.to_string()))?;
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(IN_FLIGHT_TTL.as_secs()));
                let set: Option<String> = conn.set_options(slot, text, opts).await.map_err(unavailable)?;
                if set.is_some() {
                    return Ok(None);
                }
                let existing: Option<String> = conn.get(slot).await.map_err(unavailable)?;
                Ok(existing.and_then(|s| serde_json::from_str(&s).ok()))
            }
        }
    }

    async fn put(&self, slot: &str, record: Record, ttl: Duration) {
        match &self.backend {
            Backend::Memory(map) => {
                if let Ok(mut map) = map.lock() {
                    map.insert(slot.into(), (record, Instant::now() + ttl));
                }
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                if let Ok(text) = serde_json::to_string(&record) {
                    let r: redis::RedisResult<()> = conn.set_ex(slot, text, ttl.as_secs()).await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "could not store idempotency record");
                    }
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
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let _: redis::RedisResult<()> = conn.del(slot).await;
            }
        }
    }
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
