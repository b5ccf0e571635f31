//! The trust boundary through the real mesh: every subject either works as exactly that
//! member — never as the gateway's service identity — or is refused with 401.

use referral_common::auth::Role;
use referral_tests::{invitation, spawn_app, unique};
use serde_json::json;

/// Subjects a token may carry, and whether the gateway accepts them.
fn subjects() -> Vec<(String, bool)> {
    vec![
        ("josé".into(), true),
        ("名前".into(), true),
        ("invite-svc".into(), true),
        ("gateway".into(), true),
        ("a".repeat(128), true),
        (String::new(), false),
        ("   ".into(), false),
        ("a".repeat(256), false),
        ("é".repeat(129), false),
        ("a\nb".into(), false),
        ("a\u{0}b".into(), false),
        ("a\u{7f}".into(), false),
        ("a\u{85}b".into(), false),
        ("a\u{202E}b".into(), false),
        ("\u{2067}a".into(), false),
    ]
}

#[tokio::test]
async fn every_subject_is_exactly_that_member_or_401() {
    let app = spawn_app().await;
    // Someone else's invitation, to try reading.
    let other = unique("other");
    let (status, theirs) = app
        .post(
            &app.member(&other, "SUPPLIER"),
            "/v1/invitations",
            invitation(&other, "LINK", &format!("{}@example.com", unique("g"))),
        )
        .await;
    assert_eq!(status, 200, "{theirs}");
    let theirs = theirs["id"].as_str().expect("id").to_string();

    for (sub, accepted) in subjects() {
        let token = app.member(&sub, "SUPPLIER");
        let email = format!("{}@example.com", unique("guest"));
        let (status, created) = app
            .post(&token, "/v1/invitations", invitation(&sub, "LINK", &email))
            .await;
        if !accepted {
            assert_eq!(status, 401, "{sub:?}: {created}");
            let (status, _) = app.get(&token, "/v1/fraud/cases").await;
            assert_eq!(status, 401, "{sub:?}");
            continue;
        }
        assert_eq!(status, 200, "{sub:?}: {created}");
        assert_eq!(created["referrerId"], sub.as_str(), "{sub:?}");
        let mine = created["id"].as_str().expect("id");
        let (status, read) = app.get(&token, &format!("/v1/invitations/{mine}")).await;
        assert_eq!(
            (status, read["referrerId"].as_str()),
            (200, Some(sub.as_str())),
            "{sub:?}"
        );
        let (status, _) = app.get(&token, &format!("/v1/invitations/{theirs}")).await;
        assert!(
            matches!(status, 403 | 404),
            "{sub:?} read another's invitation: {status}"
        );
        // Acting for someone else, or as an admin or a service, is refused.
        let (status, _) = app
            .post(&token, "/v1/invitations", invitation(&other, "LINK", &email))
            .await;
        assert_eq!(status, 403, "{sub:?} invited as another referrer");
        let (status, _) = app.get(&token, "/v1/fraud/cases").await;
        assert_eq!(status, 403, "{sub:?} listed fraud cases");
        let (status, _) = app
            .put(
                &token,
                &format!("/v1/referrers/{other}/tier"),
                json!({"tier": "PREMIUM"}),
            )
            .await;
        assert_eq!(status, 403, "{sub:?} changed a tier");
        let (status, _) = app
            .post(
                &token,
                "/v1/webhook-endpoints",
                json!({"url": "https://hooks.example.com/x", "eventTypes": ["InvitationCreated"]}),
            )
            .await;
        assert_eq!(status, 403, "{sub:?} created a webhook endpoint");
        let (status, _) = app.get(&token, "/v1/events").await;
        assert_eq!(status, 403, "{sub:?} read the live feed");
    }
    app.stop().await;
}

#[tokio::test]
async fn service_tokens_and_unbounded_tokens_are_refused_at_the_edge() {
    let app = spawn_app().await;
    // A service-key token (what the services themselves use) is never a web credential.
    let (status, _) = app.get(&app.service_token(), "/v1/fraud/cases").await;
    assert_eq!(status, 401);
    // A member token without a kind.
    let no_kind = app
        .mesh
        .keys
        .mint("k1", Role::Member, None, std::time::Duration::from_secs(60));
    let (status, _) = app.get(&no_kind, "/v1/invitations?referrerId=k1").await;
    assert_eq!(status, 401);
    // A web token living longer than JWT_MAX_LIFETIME (24 h).
    let long = app.mesh.keys.mint(
        "ops",
        Role::Admin,
        None,
        std::time::Duration::from_secs(3 * 86400),
    );
    let (status, _) = app.get(&long, "/v1/fraud/cases").await;
    assert_eq!(status, 401);
    app.stop().await;
}
