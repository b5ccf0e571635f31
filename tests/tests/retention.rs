//! Storage that stays bounded (issue #16): idempotency keys outlive a restart without
//! Redis, the retention job anonymises what is old, and every durable consumer tells the
//! producer how far it has read (what the outbox purge waits for).

use std::time::Duration;

use referral_mesh::Storage;
use referral_tests::{Reply, TestApp, eventually, invitation, start_with, try_spawn_app_redis, unique};
use reqwest::Method;
use serde_json::Value;

async fn app_without_redis() -> TestApp {
    try_spawn_app_redis(vec![], vec![], false)
        .await
        .expect("the mesh starts")
}

async fn create(app: &TestApp, token: &str, body: &Value, key: &str) -> Reply {
    app.send(
        Method::POST,
        Some(token),
        "/v1/invitations",
        Some(body),
        &[("Idempotency-Key", key)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_returns_the_first_answer_and_creates_nothing() {
    let app = app_without_redis().await;
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let key = unique("key");
    let body = invitation(&sue, "EMAIL", "restart-couple@example.com");
    let first = create(&app, &token, &body, &key).await;
    assert_eq!(first.status, 200, "{}", first.body);

    let app = app.restart().await;
    let again = create(&app, &token, &body, &key).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.body, first.body,
        "the first answer, replayed after the restart"
    );

    let (status, list) = app
        .get(&token, &format!("/v1/invitations?referrerId={sue}"))
        .await;
    assert_eq!(status, 200, "{list}");
    let n = list["invitations"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 1, "no second invitation: {list}");
    app.stop().await;
}

/// The embedded invite.db of an app (the SQLite runs only).
async fn invite_db(app: &TestApp) -> Option<sqlx::SqlitePool> {
    if !matches!(app.options.storage, Storage::Sqlite) {
        eprintln!("skipping: this case edits the embedded SQLite files");
        return None;
    }
    let url = format!("sqlite://{}", app.data_dir.join("invite.db").display());
    Some(sqlx::SqlitePool::connect(&url).await.expect("invite.db"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_closed_invitations_and_old_clicks_lose_their_personal_data_and_consumers_are_known() {
    let app = app_without_redis().await;
    let Some(db) = invite_db(&app).await else {
        app.stop().await;
        return;
    };
    let sue = unique("sue");
    let token = app.member(&sue, "SUPPLIER");
    let old = app
        .invite_ok(&token, invitation(&sue, "EMAIL", "old-couple@example.com"))
        .await;
    let fresh = app
        .invite_ok(&token, invitation(&sue, "EMAIL", "fresh-couple@example.com"))
        .await;
    let code = old["code"].as_str().expect("code").to_string();
    let click = app
        .send(
            Method::GET,
            None,
            &format!("/r/{code}"),
            None,
            &[("User-Agent", "Mozilla/5.0 (retention test)")],
        )
        .await;
    assert!(matches!(click.status, 302 | 303 | 307), "{}", click.status);

    // Every durable consumer of invite-svc's log has said where it is; one-off readers
    // (the live feed) have not.
    let consumers: Vec<String> = eventually(Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            let names: Vec<String> =
                sqlx::query_scalar("SELECT consumer FROM event_log_consumers ORDER BY consumer")
                    .fetch_all(&db)
                    .await
                    .ok()?;
            (names.len() >= 3).then_some(names)
        }
    })
    .await
    .expect("the consumers of invite-svc's log are recorded");
    for name in ["fraud-svc", "incentive-svc", "analytics-svc"] {
        assert!(consumers.iter().any(|c| c == name), "{name} in {consumers:?}");
    }
    assert!(!consumers.iter().any(|c| c.ends_with("-live")), "{consumers:?}");

    // Stopped, the clock shifted: the old invitation closed 400 days ago, the click's
    // window over 30 days ago.
    let options = app.options.clone();
    app.mesh.stop(Duration::from_secs(10)).await;
    let long_ago = referral_common::ids::now() - chrono::Duration::days(400);
    sqlx::query("UPDATE invitations SET status = 'EXPIRED', updated_at = $1 WHERE id = $2")
        .bind(long_ago)
        .bind(old["id"].as_str())
        .execute(&db)
        .await
        .expect("shift the invitation");
    let clicks = sqlx::query("UPDATE clicks SET expires_at = $1 WHERE code = $2")
        .bind(referral_common::ids::now() - chrono::Duration::days(30))
        .bind(&code)
        .execute(&db)
        .await
        .expect("shift the click")
        .rows_affected();
    assert_eq!(clicks, 1, "the click was recorded");

    // The job runs at start-up.
    let app = start_with(options).await.expect("the mesh starts again");
    let old_id = old["id"].as_str().expect("id").to_string();
    let row: (String, String, String) = eventually(Duration::from_secs(20), || {
        let (db, id) = (db.clone(), old_id.clone());
        async move {
            let row: (String, String, String) = sqlx::query_as(
                "SELECT recipient_email, recipient_name, recipient_key FROM invitations WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&db)
            .await
            .ok()?;
            (row.0 == "erased").then_some(row)
        }
    })
    .await
    .expect("the old closed invitation is anonymised");
    assert_eq!(row, ("erased".into(), "erased".into(), "erased".into()));
    let click: (String, String) = sqlx::query_as("SELECT ip, user_agent FROM clicks WHERE code = $1")
        .bind(&code)
        .fetch_one(&db)
        .await
        .expect("the click row stays");
    assert_eq!(
        click,
        (String::new(), String::new()),
        "the click's IP and user agent are gone"
    );
    let email: String = sqlx::query_scalar("SELECT recipient_email FROM invitations WHERE id = $1")
        .bind(fresh["id"].as_str())
        .fetch_one(&db)
        .await
        .expect("the fresh invitation");
    assert_ne!(email, "erased", "an open, recent invitation keeps its recipient");

    // The owner still sees the invitation (its status and code), without the recipient.
    let (status, body) = app.get(&token, &format!("/v1/invitations/{old_id}")).await;
    assert_eq!(status, 200, "{body}");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(|l| l.starts_with("retention_rows_total")
            && l.contains("kind=\"invitations\"")
            && l.contains("anonymise")),
        "retention metrics are exported"
    );
    db.close().await;
    app.stop().await;
}
