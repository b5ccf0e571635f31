//! `GET /v1/audit`: every service's `referral.common.v1.AuditLog`, asked together and merged
//! newest first by (time, id). One opaque cursor pages the merge: each service answers the
//! entries strictly older than it, so the merged page is exact, with no gaps or repeats.
//!
//! A service that cannot answer fails the whole read (503 naming it, or its own error): an
//! audit trail that silently leaves out a service's actions would mislead its reader.

use referral_common::{
    audit::{Cursor, encode_cursor},
    ids, paging,
};
use referral_proto::common::v1::{AuditEntry, ListAuditEntriesRequest, ListAuditEntriesResponse};

use axum::http::Method;

use super::{
    privacy::PRIVACY_TAG,
    route::{Body, Handler, JsonFn, Route, Rpc, api},
};
use crate::mapping::{
    errors::{HttpError, HttpResult},
    json,
};

pub fn list_handler() -> Handler {
    let call: JsonFn = |state, ctx, input| {
        Box::pin(async move {
            let request: ListAuditEntriesRequest = json::decode(input)?;
            let page_size = paging::page_size(request.page_size)
                .map_err(|_| HttpError::invalid_field("pageSize", "must not be negative"))?;
            let calls = state.clients.audit.iter().map(|(name, client)| {
                let mut client = client.clone();
                let req = ctx.request(request.clone());
                async move {
                    (
                        *name,
                        client.list_audit_entries(req).await.map(|r| r.into_inner()),
                    )
                }
            });
            let results = futures::future::join_all(calls).await;
            merge(page_size as usize, results).map(|page| json::respond(&page))
        })
    };
    Handler::Json {
        call,
        decodes: |v| json::decode::<ListAuditEntriesRequest>(v).map(|_| ()),
        request_type: std::any::type_name::<ListAuditEntriesRequest>,
    }
}

/// The newest `page_size` entries of all the answers, and a token when more follow.
fn merge(
    page_size: usize,
    results: Vec<(&'static str, Result<ListAuditEntriesResponse, tonic::Status>)>,
) -> HttpResult<ListAuditEntriesResponse> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut more = false;
    for (service, result) in results {
        match result {
            Ok(answer) => {
                more |= !answer.next_page_token.is_empty();
                entries.extend(answer.entries);
            }
            Err(status) => {
                let mut e = HttpError::from_upstream(service, &status);
                e.message = format!("audit log of {service} could not be read: {}", e.message);
                return Err(e);
            }
        }
    }
    entries.sort_by(|a, b| sort_key(b).cmp(&sort_key(a)));
    more |= entries.len() > page_size;
    entries.truncate(page_size);
    let next_page_token = match entries.last() {
        Some(last) if more => {
            // An empty token would say the log ends here: an entry whose time does not read
            // is a failure, not the last page.
            let at = last.occurred_at.as_ref().and_then(ids::from_ts).ok_or_else(|| {
                HttpError::internal(format!(
                    "audit entry {} has no readable time: the next page cannot start after it",
                    last.id
                ))
            })?;
            encode_cursor(&Cursor {
                at,
                id: last.id.clone(),
            })
        }
        _ => String::new(),
    };
    Ok(ListAuditEntriesResponse {
        entries,
        next_page_token,
    })
}

/// (time, id): the order every service reads in, so merging keeps it.
fn sort_key(e: &AuditEntry) -> (i64, i32, &str) {
    let (s, n) = e.occurred_at.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos));
    (s, n, e.id.as_str())
}

const AUDIT: &str = "referral.common.v1.AuditLog";

/// The audit log's route.
pub fn routes() -> Vec<Route> {
    use Body::None as NoBody;
    use Method as M;
    vec![api(
        M::GET,
        "/v1/audit",
        "The audit log of admin and money actions, newest first, merged from every service (admin). \
            actor, action and subject (id) match exactly; since is inclusive, until exclusive (RFC 3339); \
            a service that cannot answer fails the read (503 naming it) rather than leave its actions out",
        PRIVACY_TAG,
        Rpc::new(AUDIT, "ListAuditEntries", NoBody),
        list_handler(),
    )]
}

#[cfg(test)]
mod tests {
    use referral_common::audit::decode_cursor;
    use referral_proto::Timestamp;

    use super::*;

    fn entry(id: &str, seconds: i64) -> AuditEntry {
        AuditEntry {
            id: id.into(),
            occurred_at: Some(Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    fn answer(entries: Vec<AuditEntry>, more: bool) -> Result<ListAuditEntriesResponse, tonic::Status> {
        Ok(ListAuditEntriesResponse {
            entries,
            next_page_token: if more { "x".into() } else { String::new() },
        })
    }

    #[test]
    fn an_entry_without_a_time_fails_the_page_rather_than_end_the_log() {
        let mut timeless = entry("01900000-0000-7000-8000-00000000000a", 10);
        timeless.occurred_at = None;
        let e = merge(5, vec![("invite-svc", answer(vec![timeless], true))]).unwrap_err();
        assert_eq!(e.status.as_u16(), 500);
        assert!(e.message.contains("no readable time"), "{}", e.message);
    }

    #[test]
    fn merges_newest_first_and_pages_from_the_last_taken() {
        let page = merge(
            3,
            vec![
                (
                    "invite-svc",
                    answer(
                        vec![
                            entry("01900000-0000-7000-8000-00000000000b", 30),
                            entry("01900000-0000-7000-8000-00000000000a", 10),
                        ],
                        false,
                    ),
                ),
                (
                    "fraud-svc",
                    answer(
                        vec![
                            entry("01900000-0000-7000-8000-00000000000c", 30),
                            entry("01900000-0000-7000-8000-00000000000d", 20),
                        ],
                        false,
                    ),
                ),
            ],
        )
        .unwrap();
        let ids: Vec<_> = page.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "01900000-0000-7000-8000-00000000000c",
                "01900000-0000-7000-8000-00000000000b",
                "01900000-0000-7000-8000-00000000000d"
            ]
        );
        assert!(!page.next_page_token.is_empty());
        // The next page starts after the last entry taken: (20 s, ...0d).
        let cursor = decode_cursor(&page.next_page_token).unwrap().unwrap();
        assert_eq!(cursor.id, "01900000-0000-7000-8000-00000000000d");
        assert_eq!(cursor.at.timestamp(), 20);

        let last = merge(
            5,
            vec![(
                "invite-svc",
                answer(vec![entry("01900000-0000-7000-8000-00000000000a", 10)], false),
            )],
        )
        .unwrap();
        assert!(last.next_page_token.is_empty(), "the last page has no token");
        // A service with more than it sent means more pages, even when the merge is short.
        let more = merge(
            5,
            vec![(
                "invite-svc",
                answer(vec![entry("01900000-0000-7000-8000-00000000000a", 10)], true),
            )],
        )
        .unwrap();
        assert!(!more.next_page_token.is_empty());
    }

    #[test]
    fn a_service_that_cannot_answer_fails_the_read_naming_it() {
        let e = merge(
            5,
            vec![
                (
                    "invite-svc",
                    answer(vec![entry("01900000-0000-7000-8000-00000000000a", 10)], false),
                ),
                ("fraud-svc", Err(tonic::Status::unavailable("connection refused"))),
            ],
        )
        .unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
        assert!(e.message.contains("fraud-svc"), "{}", e.message);
    }
}
