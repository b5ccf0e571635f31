//! Conformance of the API key store on both backends: secrets never stored or listed, the
//! hash lookup, rotation and revocation taking effect at once, each change audited with its
//! row (and only a real change), last use coalesced.

use referral_common::{
    audit::{AuditEntry, action},
    auth::api_key,
    ids,
};

use super::{Harness, admin, audit_rows};
use crate::store::{
    PgStore, SqliteStore,
    api_keys::{ApiKeyRow, ApiKeyStore, KeyChange},
};

referral_test_support::conformance! {
    stores: SqliteStore, PgStore; worker_threads: 4;
    api_keys_lifecycle: sqlite_api_keys_lifecycle, pg_api_keys_lifecycle;
    api_keys_paging_and_last_use: sqlite_api_keys_paging_and_last_use, pg_api_keys_paging_and_last_use;
}

fn new_row(name: &str, prefix: &str) -> ApiKeyRow {
    ApiKeyRow {
        id: ids::new_id(),
        name: name.into(),
        prefix: prefix.into(),
        scopes: "conversions:write,reports:read".into(),
        created_at: ids::now().timestamp_micros(),
        created_by: "admin-1".into(),
        last_used_at: None,
        revoked_at: None,
    }
}

fn entry(action: &str, id: &str) -> AuditEntry {
    AuditEntry::new(&admin(), action, "api_key", id)
}

async fn insert<S: ApiKeyStore>(store: &S, name: &str) -> (ApiKeyRow, api_key::NewKey) {
    let key = api_key::generate();
    let row = new_row(name, &key.prefix);
    store
        .insert_api_key(&row, &key.hash, &entry(action::API_KEY_CREATE, &row.id))
        .await
        .unwrap();
    (row, key)
}

async fn api_keys_lifecycle<S: Harness>(store: &S) {
    let (row, key) = insert(store, "billing").await;
    let found = store.api_key_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.scopes.as_str()),
        (row.id.as_str(), row.scopes.as_str())
    );
    assert_eq!(found.revoked_at, None);
    assert!(
        store
            .api_key_by_hash(&api_key::hash("rmk_other"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_api_keys(None, 10).await.unwrap(), vec![row.clone()]);

    // Rotation: the old hash finds nothing at once, the new one finds the same key.
    let fresh = api_key::generate();
    let rotated = store
        .rotate_api_key(
            &row.id,
            &fresh.hash,
            &fresh.prefix,
            &entry(action::API_KEY_ROTATE, &row.id),
        )
        .await
        .unwrap();
    let KeyChange::Changed(rotated) = rotated else {
        panic!("{rotated:?}")
    };
    assert_eq!(rotated.prefix, fresh.prefix);
    assert!(store.api_key_by_hash(&key.hash).await.unwrap().is_none());
    assert_eq!(
        store.api_key_by_hash(&fresh.hash).await.unwrap().unwrap().id,
        row.id
    );

    // Revocation, then again: the second changes nothing and is not audited.
    let at = ids::now().timestamp_micros();
    let out = store
        .revoke_api_key(&row.id, at, &entry(action::API_KEY_REVOKE, &row.id))
        .await
        .unwrap();
    let KeyChange::Changed(revoked) = out else {
        panic!("{out:?}")
    };
    assert_eq!(revoked.revoked_at, Some(at));
    assert_eq!(
        store
            .api_key_by_hash(&fresh.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
    let again = store
        .revoke_api_key(&row.id, at + 5, &entry(action::API_KEY_REVOKE, &row.id))
        .await
        .unwrap();
    assert!(
        matches!(again, KeyChange::Revoked(ref r) if r.revoked_at == Some(at)),
        "{again:?}"
    );
    // A revoked key is not rotated back to life.
    let late = api_key::generate();
    let out = store
        .rotate_api_key(
            &row.id,
            &late.hash,
            &late.prefix,
            &entry(action::API_KEY_ROTATE, &row.id),
        )
        .await
        .unwrap();
    assert!(matches!(out, KeyChange::Revoked(_)), "{out:?}");
    assert!(store.api_key_by_hash(&late.hash).await.unwrap().is_none());
    for missing in [
        store
            .rotate_api_key(
                "nope",
                &late.hash,
                &late.prefix,
                &entry(action::API_KEY_ROTATE, "nope"),
            )
            .await
            .unwrap(),
        store
            .revoke_api_key("nope", at, &entry(action::API_KEY_REVOKE, "nope"))
            .await
            .unwrap(),
    ] {
        assert_eq!(missing, KeyChange::NotFound);
    }

    // Audited: create, rotate, revoke — newest first, with the admin, never a secret.
    let rows = audit_rows(store).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["api_key.revoke", "api_key.rotate", "api_key.create"]);
    for r in &rows {
        assert_eq!(
            (r.actor.as_str(), r.subject_id.as_str()),
            ("admin-1", row.id.as_str())
        );
        let text = format!("{r:?}");
        for secret in [&key.secret, &key.hash, &fresh.secret, &fresh.hash] {
            assert!(
                !text.contains(secret.as_str()),
                "audit row holds a secret: {text}"
            );
        }
    }
    let json = |v: &Option<pbjson_types::Value>| serde_json::to_value(v).unwrap();
    assert_eq!(
        json(&rows[2].after)["scopes"],
        serde_json::json!(["conversions:write", "reports:read"])
    );
    assert_eq!(json(&rows[1].before)["prefix"], key.prefix.as_str());
    assert_eq!(json(&rows[1].after)["prefix"], fresh.prefix.as_str());
    assert_eq!(json(&rows[0].after)["revoked"], true);

    // A second key cannot share a hash (the lookup stays one row).
    let dup = new_row("dup", &fresh.prefix);
    let refused = store
        .insert_api_key(&dup, &fresh.hash, &entry(action::API_KEY_CREATE, &dup.id))
        .await;
    assert!(refused.is_err(), "a duplicate hash is refused");
    assert_eq!(
        audit_rows(store).await.len(),
        3,
        "no audit row for a refused insert"
    );
}

async fn api_keys_paging_and_last_use<S: Harness>(store: &S) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert(store, &format!("key {i}")).await.0.id);
    }
    let first = store.list_api_keys(None, 2).await.unwrap();
    let rest = store.list_api_keys(Some(&first[1].id), 10).await.unwrap();
    let seen: Vec<String> = first.iter().chain(&rest).map(|r| r.id.clone()).collect();
    assert_eq!(seen, ids, "id order, no gaps or repeats");

    // Last use: written when stale, skipped within the minute, never on a revoked key.
    let id = &ids[0];
    let t0 = 1_800_000_000_000_000_i64;
    store.touch_api_key(id, t0, t0 - 60_000_000).await.unwrap();
    let last = |rows: Vec<ApiKeyRow>| rows.into_iter().find(|r| &r.id == id).unwrap().last_used_at;
    assert_eq!(last(store.list_api_keys(None, 10).await.unwrap()), Some(t0));
    store
        .touch_api_key(id, t0 + 1_000_000, t0 + 1_000_000 - 60_000_000)
        .await
        .unwrap();
    assert_eq!(last(store.list_api_keys(None, 10).await.unwrap()), Some(t0));
    let later = t0 + 61_000_000;
    store.touch_api_key(id, later, later - 60_000_000).await.unwrap();
    assert_eq!(last(store.list_api_keys(None, 10).await.unwrap()), Some(later));
    store
        .revoke_api_key(id, later, &entry(action::API_KEY_REVOKE, id))
        .await
        .unwrap();
    store
        .touch_api_key(id, later + 120_000_000, later + 60_000_000)
        .await
        .unwrap();
    assert_eq!(last(store.list_api_keys(None, 10).await.unwrap()), Some(later));
}
