//! Listing invitations page by page (docs/api.md, Conventions "Lists").

use std::collections::{HashMap, HashSet};

use referral_tests::{TestApp, assert_error, spawn_app, unique, violated_fields};
use serde_json::{Value, json};

async fn list(app: &TestApp, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let r = app
        .http
        .get(app.url("/v1/invitations"))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    TestApp::read(r).await
}

async fn batch(app: &TestApp, token: &str, referrer: &str, n: usize, tag: &str) -> Vec<String> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"refereeKind": "COUPLE", "channel": "LINK", "recipient": {"email": format!("{tag}{i}@example.com")}}))
        .collect();
    let (status, body) = app
        .post(
            token,
            "/v1/invitations:batchCreate",
            json!({"referrerId": referrer, "referrerKind": "SUPPLIER", "invitations": items}),
        )
        .await;
    assert_eq!(status, 200, "{body:.400}");
    assert_eq!(body["accepted"].as_i64(), Some(n as i64), "{body:.400}");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["invitation"]["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_hold_every_invitation_exactly_once_while_rows_are_added() {
    let app = spawn_app().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let before: HashSet<String> = batch(&app, &token, &sue, 55, "a").await.into_iter().collect();

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut token_in = String::new();
    let mut pages = 0;
    let mut added = Vec::new();
    loop {
        let mut q = vec![("referrerId", sue.as_str()), ("pageSize", "7")];
        if !token_in.is_empty() {
            q.push(("pageToken", token_in.as_str()));
        }
        let (status, body) = list(&app, &token, &q).await;
        assert_eq!(status, 200, "page {pages} -> {body:.400}");
        let items = body["invitations"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 7, "pageSize 7, got {}", items.len());
        for inv in &items {
            assert_eq!(inv["referrerId"], json!(sue));
            *seen
                .entry(inv["id"].as_str().expect("id").to_string())
                .or_default() += 1;
        }
        pages += 1;
        if pages == 2 {
            // Rows added between pages must not shift or repeat what follows.
            added = batch(&app, &token, &sue, 3, "late").await;
        }
        let next = body["nextPageToken"].as_str().unwrap_or_default().to_string();
        if next.is_empty() {
            break;
        }
        assert!(pages < 40, "paging does not end");
        token_in = next;
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "ids listed more than once: {dupes:?}");
    let missing: Vec<_> = before.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "ids never listed: {missing:?}");
    assert!(pages >= 8, "55 rows at 7 a page need 8 pages, got {pages}");
    assert_eq!(added.len(), 3);

    // The default page is 50.
    let (status, body) = list(&app, &token, &[("referrerId", sue.as_str())]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["invitations"].as_array().map(Vec::len),
        Some(50),
        "default pageSize is 50"
    );
    assert!(
        body["nextPageToken"].as_str().is_some_and(|t| !t.is_empty()),
        "more after 50 of 58"
    );

    // A page token that this API did not issue.
    let (status, body) = list(
        &app,
        &token,
        &[("referrerId", sue.as_str()), ("pageToken", "!!not a token!!")],
    )
    .await;
    assert_eq!(status, 400, "bad pageToken -> {body}");
    assert_error(&body, 3);
    assert!(
        violated_fields(&body).contains(&"pageToken".to_string()),
        "names pageToken: {body}"
    );

    // Filtering by status.
    let (status, body) = list(
        &app,
        &token,
        &[("referrerId", sue.as_str()), ("status", "SCHEDULED")],
    )
    .await;
    assert_eq!(status, 200, "{body:.300}");
    assert!(
        body["invitations"].as_array().is_none_or(Vec::is_empty),
        "LINK invitations are all SENT"
    );
    let (status, body) = list(
        &app,
        &token,
        &[
            ("referrerId", sue.as_str()),
            ("status", "SENT"),
            ("pageSize", "500"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body:.300}");
    assert_eq!(body["invitations"].as_array().map(Vec::len), Some(58));
    let (status, body) = list(
        &app,
        &token,
        &[("referrerId", sue.as_str()), ("status", "SOMEWHERE")],
    )
    .await;
    assert_eq!(status, 400, "unknown status -> {body}");
    assert!(
        violated_fields(&body).contains(&"status".to_string()),
        "names status: {body}"
    );
    app.stop().await;
}
