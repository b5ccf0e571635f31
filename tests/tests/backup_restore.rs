//! `referral-mesh backup` / `restore` (issue #16): a busy mesh on SQLite is backed up while
//! suppliers invite, couples click, sign up and pay; the backup is restored elsewhere and a
//! mesh started on it: every invitation acknowledged before the backup began is there, the
//! ledger matches the conversions it was booked from, and every consumer catches up from
//! its recorded offset without gaps or double effects. Then each refusal: an altered or
//! missing file, an unknown format version, migrations newer than the binary, a non-empty
//! target, a mesh running on the target.

#![cfg(unix)]

use std::{
    collections::{BTreeMap, HashSet},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use referral_mesh::{
    MeshOptions, Storage,
    backup::{self, Manifest, RestoreError, RestoreOptions},
    lock::LockError,
};
use referral_tests::{TestApp, click_param, eventually, int, invitation, start_with, test_options, unique};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{
    ConnectOptions, Connection, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
};

/// A mesh on SQLite (the embedded stores are what `backup` copies) behind a trusted proxy,
/// so each couple comes from an address of its own (no velocity rule blurs the ledger).
fn sqlite_options(data_dir: Option<&Path>) -> MeshOptions {
    let mut options = test_options(
        vec!["--trusted-proxies".into(), "127.0.0.1/32".into()],
        vec![],
        false,
    );
    options.storage = Storage::Sqlite;
    if let Some(dir) = data_dir {
        options.data_dir = dir.to_path_buf();
    }
    options
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("backup-test-{name}-{}", uuid::Uuid::now_v7()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn gbp(minor: i64) -> Value {
    json!({"amountMinor": minor.to_string(), "currency": "GBP"})
}

/// One acknowledged piece of the load.
#[derive(Debug, Clone)]
struct Round {
    supplier: String,
    /// When the round's first request went out, and when its last was answered.
    started_at: Instant,
    finished_at: Instant,
    invitation_id: String,
    /// When the gateway answered 200 to the invitation.
    acked_at: Instant,
}

/// A supplier's code and invitation, a couple's click through the code, their signup and
/// first payment (15% reward + the first milestone), each acknowledged with 200.
async fn round(app: &TestApp, billing: &str, n: u32) -> Round {
    let started_at = Instant::now();
    let supplier = unique("bk-sup");
    let stoken = app.member(&supplier, "SUPPLIER");
    let email = format!("{}@example.com", unique("guest"));
    let code = app
        .code_ok(
            &stoken,
            json!({"referrerId": supplier, "referrerKind": "SUPPLIER"}),
        )
        .await["code"]
        .as_str()
        .expect("code")
        .to_string();
    let inv = app
        .invite_ok(&stoken, invitation(&supplier, "EMAIL", &email))
        .await;
    let acked_at = Instant::now();
    let invitation_id = inv["id"].as_str().expect("invitation id").to_string();
    let ip = format!(
        "{}.{}",
        ["192.0.2", "198.51.100", "203.0.113"][(n / 250) as usize % 3],
        n % 250 + 1
    );
    let click = app
        .send(
            Method::GET,
            None,
            &format!("/r/{code}"),
            None,
            &[("x-forwarded-for", &ip)],
        )
        .await;
    assert_eq!(click.status, 302, "GET /r/{code} -> {click:?}");
    let click_id = click.header("location").and_then(click_param).expect("rm_click");
    let user = unique("bk-couple");
    let signup = app
        .send(
            Method::POST,
            Some(&app.member(&user, "COUPLE")),
            "/v1/signups",
            Some(&json!({"userId": user, "userKind": "COUPLE", "email": email, "code": code, "clickId": click_id})),
            &[("x-forwarded-for", &ip)],
        )
        .await;
    assert_eq!(signup.status, 200, "signup -> {}", signup.body);
    let (status, conv) = app
        .post(
            billing,
            "/v1/conversions",
            json!({"userId": user, "value": gbp(20_000), "plan": "PROFESSIONAL", "annual": false}),
        )
        .await;
    assert_eq!(status, 200, "conversion -> {conv}");
    Round {
        supplier,
        started_at,
        finished_at: Instant::now(),
        invitation_id,
        acked_at,
    }
}

/// A read-only look at one store of a (running or stopped) mesh's data dir.
async fn store(dir: &Path, name: &str) -> SqliteConnection {
    SqliteConnectOptions::from_str("sqlite:")
        .expect("options")
        .filename(dir.join(format!("{name}.db")))
        .read_only(true)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("open the store")
}

async fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What the restored invite store implies, and what the consumers made of it.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    invitations: i64,
    signups: i64,
    conversions: i64,
    conversion_rewards: i64,
}

/// (invite's own counts, the counts analytics-svc and incentive-svc hold) of `dir`.
async fn books(dir: &Path) -> (Books, Books) {
    let mut invite = store(dir, "invite").await;
    let mut analytics = store(dir, "analytics").await;
    let mut incentive = store(dir, "incentive").await;
    let conversions = count(
        &mut invite,
        "SELECT COUNT(*) FROM conversions WHERE attributed AND first_paid",
    )
    .await;
    let implied = Books {
        invitations: count(&mut invite, "SELECT COUNT(*) FROM invitations").await,
        signups: count(&mut invite, "SELECT COUNT(*) FROM signups WHERE attributed").await,
        conversions,
        // One conversion reward per attributed first payment (every referrer is a supplier
        // under the default program).
        conversion_rewards: conversions,
    };
    // Counters (not rows keyed by id): an event applied twice would count twice here.
    let held = Books {
        invitations: count(
            &mut analytics,
            "SELECT COALESCE(SUM(invitations), 0) FROM referrers",
        )
        .await,
        signups: count(&mut analytics, "SELECT COALESCE(SUM(signups), 0) FROM referrers").await,
        conversions: count(
            &mut analytics,
            "SELECT COALESCE(SUM(conversions), 0) FROM referrers",
        )
        .await,
        conversion_rewards: count(
            &mut incentive,
            "SELECT COUNT(*) FROM entries WHERE kind = 'CONVERSION_REWARD'",
        )
        .await,
    };
    (implied, held)
}

/// Each store's consumer offsets and event-log head, read from the live files.
async fn offsets(dir: &Path) -> BTreeMap<String, (i64, BTreeMap<String, i64>)> {
    let mut all = BTreeMap::new();
    for name in backup::STORES {
        let mut conn = store(dir, name).await;
        let head = count(&mut conn, "SELECT COALESCE(MAX(log_offset), 0) FROM outbox").await;
        let offsets: Vec<(String, i64)> = sqlx::query_as("SELECT source, last_offset FROM consumer_offsets")
            .fetch_all(&mut conn)
            .await
            .expect("offsets");
        all.insert(name.to_string(), (head, offsets.into_iter().collect()));
    }
    all
}

/// Waits until every consumer has applied its producer's whole log and the counts agree;
/// returns the last look either way, for the assertion to show.
async fn caught_up(dir: &Path) -> (Books, Books) {
    let settled = eventually(Duration::from_secs(60), || async {
        let logs = offsets(dir).await;
        let all_read = logs.values().all(|(_, consumers)| {
            consumers
                .iter()
                .all(|(source, offset)| logs.get(source).is_none_or(|(head, _)| offset == head))
        });
        let (implied, held) = books(dir).await;
        (all_read && implied == held).then_some((implied, held))
    })
    .await;
    match settled {
        Some(b) => b,
        None => books(dir).await,
    }
}

/// The ledger of a restored mesh, referrer by referrer: the balance the API answers is the
/// sum of the entries it lists, every entry has its current state, and every conversion
/// reward stands on an attributed conversion the restored invite store holds (nothing
/// booked from beyond the backup), at 15% of the 200.00 paid.
async fn assert_ledger(app: &TestApp, dir: &Path, suppliers: &[String]) {
    let mut incentive = store(dir, "incentive").await;
    let orphans = count(
        &mut incentive,
        "SELECT COUNT(*) FROM entries e LEFT JOIN entry_current c ON c.entry_id = e.id WHERE c.entry_id IS NULL",
    )
    .await;
    assert_eq!(orphans, 0, "every ledger entry has its current state");
    let booked: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT conversion_id FROM entries WHERE kind = 'CONVERSION_REWARD'")
            .fetch_all(&mut incentive)
            .await
            .expect("entries");
    let mut invite = store(dir, "invite").await;
    let known: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM conversions WHERE attributed AND first_paid")
            .fetch_all(&mut invite)
            .await
            .expect("conversions")
            .into_iter()
            .collect();
    for id in &booked {
        assert!(
            known.contains(id),
            "a reward for conversion {id}, which the restored invite store does not hold"
        );
    }
    for supplier in suppliers {
        let (status, r) = app
            .get(
                &app.member(supplier, "SUPPLIER"),
                &format!("/v1/referrers/{supplier}/rewards"),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        let entries = r["entries"].as_array().cloned().unwrap_or_default();
        let live: i64 = entries
            .iter()
            .filter(|e| !matches!(e["state"].as_str(), Some("VOIDED" | "EXPIRED")))
            .map(|e| int(&e["amount"]["amountMinor"]))
            .sum();
        let balance = int(&r["balance"]["pending"]["amountMinor"])
            + int(&r["balance"]["eligible"]["amountMinor"])
            + int(&r["balance"]["paid"]["amountMinor"]);
        assert_eq!(
            balance, live,
            "{supplier}: the balance is the sum of its entries: {r}"
        );
        let converted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversions WHERE attributed AND first_paid AND referrer_id = ?1",
        )
        .bind(supplier)
        .fetch_one(&mut invite)
        .await
        .expect("count");
        let rewards: Vec<i64> = entries
            .iter()
            .filter(|e| e["kind"] == "CONVERSION_REWARD")
            .map(|e| int(&e["amount"]["amountMinor"]))
            .collect();
        assert_eq!(
            rewards,
            vec![3_000; converted as usize],
            "{supplier}: one 15% reward per conversion the restored store holds: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_mesh_backed_up_online_restores_elsewhere_whole_and_its_consumers_resume() {
    let app = Arc::new(start_with(sqlite_options(None)).await.expect("the mesh starts"));
    let billing = app.billing_key().await;
    let rounds: Arc<Mutex<Vec<Round>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (app, billing, rounds, stop, counter) = (
                app.clone(),
                billing.clone(),
                rounds.clone(),
                stop.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let r = round(&app, &billing, counter.fetch_add(1, Ordering::SeqCst)).await;
                    rounds.lock().expect("rounds").push(r);
                }
            })
        })
        .collect();
    let done = |n: usize| {
        let rounds = rounds.clone();
        async move {
            eventually(Duration::from_secs(60), || async {
                (rounds.lock().expect("rounds").len() >= n).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("{n} rounds of load"))
        }
    };
    done(8).await;

    // The backup, taken while the four workers keep writing.
    let backup_dir = scratch("busy");
    let began = Instant::now();
    let report = backup::backup(&app.data_dir, &backup_dir)
        .await
        .expect("the backup");
    let ended = Instant::now();
    let already = rounds.lock().expect("rounds").len();
    done(already + 8).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a load worker");
    }
    let rounds = rounds.lock().expect("rounds").clone();
    // The backup ran under load: rounds were in flight while it copied.
    let during = rounds
        .iter()
        .filter(|r| r.started_at < ended && r.finished_at > began)
        .count();
    assert!(during >= 1, "no round of load overlapped the backup");
    let Ok(app) = Arc::try_unwrap(app) else {
        panic!("the workers hold no app")
    };
    app.stop().await;

    // What the backup holds: the four stores and the secrets, all private, with a manifest
    // that checks out.
    assert_eq!(mode(&backup_dir), 0o700);
    let manifest = &report.manifest;
    assert_eq!(manifest.format_version, backup::FORMAT_VERSION);
    assert_eq!(manifest.stores.len(), 4, "{manifest:?}");
    for name in [
        "invite.db",
        "fraud.db",
        "incentive.db",
        "analytics.db",
        "pii-keys",
        "pii-lookup-key",
        "click-signing-keys",
    ] {
        assert!(manifest.files.contains_key(name), "{name} in {manifest:?}");
        assert_eq!(mode(&backup_dir.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&backup_dir.join("manifest.json")), 0o600);
    for (name, info) in &manifest.stores {
        assert_eq!(info.migrations, backup::known_migrations(name), "{name}");
    }
    assert!(manifest.stores["invite"].event_log_head > 0, "{manifest:?}");
    let written: Manifest =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).expect("manifest"))
            .expect("parses");
    assert_eq!(&written, manifest);
    println!(
        "backup in {:?} after {} attempt(s), {during} rounds of load in flight meanwhile; stores {:?}",
        ended - began,
        report.attempts,
        manifest.stores
    );

    // Restored into a new data dir, started there.
    let restored = scratch("restored");
    backup::restore(&RestoreOptions {
        from: backup_dir.clone(),
        data_dir: restored.clone(),
        force: false,
    })
    .await
    .expect("the restore");
    assert_eq!(mode(&restored), 0o700);
    for name in manifest.files.keys() {
        assert_eq!(mode(&restored.join(name)), 0o600, "{name}");
    }
    let app = start_with(sqlite_options(Some(&restored)))
        .await
        .expect("a mesh starts on the restored dir");

    // Every invitation acknowledged before the backup began is there.
    let mut invite = store(&restored, "invite").await;
    let present: HashSet<String> = sqlx::query_scalar("SELECT id FROM invitations")
        .fetch_all(&mut invite)
        .await
        .expect("invitations")
        .into_iter()
        .collect();
    let before: Vec<&Round> = rounds.iter().filter(|r| r.acked_at < began).collect();
    assert!(before.len() >= 8);
    for r in &before {
        assert!(
            present.contains(&r.invitation_id),
            "invitation {} acknowledged before the backup began is lost",
            r.invitation_id
        );
    }

    // The consumers catch up from their own offsets: the counts they hold are what the
    // restored producers imply — no gap (fewer), no double effect (more).
    let (implied, held) = caught_up(&restored).await;
    assert_eq!(
        held, implied,
        "analytics and the ledger against the restored invite store"
    );
    assert!(implied.conversions >= 8, "{implied:?}");
    for name in backup::STORES {
        let mut conn = store(&restored, name).await;
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) FROM parked_events").await,
            0,
            "{name} parked events"
        );
    }
    let suppliers: Vec<String> = rounds.iter().map(|r| r.supplier.clone()).collect();
    assert_ledger(&app, &restored, &suppliers).await;

    // Life goes on after the restore: new events follow the restored heads, and are
    // consumed without a gap.
    let billing = app.billing_key().await;
    let mut more = Vec::new();
    for n in 0..3 {
        more.push(round(&app, &billing, 600 + n).await.supplier);
    }
    let (implied_after, held_after) = caught_up(&restored).await;
    assert_eq!(held_after, implied_after);
    assert_eq!(implied_after.conversions, implied.conversions + 3);
    assert_ledger(&app, &restored, &more).await;

    app.stop().await;
    let _ = std::fs::remove_dir_all(&backup_dir);
}

// ---- refusals ---------------------------------------------------------------------

/// One small backup of a mesh that did one round of everything, taken once per test run;
/// each refusal test works on its own copy.
async fn pristine() -> &'static Path {
    static BACKUP: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BACKUP
        .get_or_init(|| async {
            let app = start_with(sqlite_options(None)).await.expect("the mesh starts");
            let billing = app.billing_key().await;
            round(&app, &billing, 700).await;
            let dir = scratch("pristine");
            backup::backup(&app.data_dir, &dir).await.expect("the backup");
            app.stop().await;
            dir
        })
        .await
}

async fn copy_of_backup() -> PathBuf {
    let from = pristine().await;
    let to = scratch("copy");
    std::fs::create_dir_all(&to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read the backup") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    to
}

async fn restore_into(from: &Path, data_dir: &Path, force: bool) -> Result<Manifest, RestoreError> {
    backup::restore(&RestoreOptions {
        from: from.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        force,
    })
    .await
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
}

#[tokio::test]
async fn an_altered_or_missing_file_is_refused_by_name_and_nothing_is_written() {
    let backup = copy_of_backup().await;
    let target = scratch("target");
    // One byte of the ledger's database changed.
    let db = backup.join("incentive.db");
    let mut bytes = std::fs::read(&db).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&db, &bytes).expect("write");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::Checksum { name, .. } if name == "incentive.db"),
        "{err}"
    );
    assert!(
        err.to_string().contains("incentive.db was altered or damaged"),
        "{err}"
    );
    assert!(!target.exists(), "nothing written before every check passed");

    // The PII keys gone: the personal data could never be read again.
    let backup = copy_of_backup().await;
    std::fs::remove_file(backup.join("pii-keys")).expect("rm");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::MissingFile { name, .. } if name == "pii-keys"),
        "{err}"
    );

    // No manifest: not a backup.
    let backup = copy_of_backup().await;
    std::fs::remove_file(backup.join("manifest.json")).expect("rm");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(matches!(err, RestoreError::NoManifest { .. }), "{err}");

    // A manifest naming a file outside the backup's set (a path, here).
    let backup = copy_of_backup().await;
    edit_manifest(&backup, |m| {
        m["files"]["../escape"] = json!({"sha256": "00", "bytes": 1});
    });
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::UnexpectedFile { name } if name == "../escape"),
        "{err}"
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn an_unknown_format_version_is_refused() {
    let backup = copy_of_backup().await;
    edit_manifest(&backup, |m| m["formatVersion"] = json!(2));
    let target = scratch("target");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::UnknownFormat { found } if found == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("format version is 2"), "{err}");
    assert!(!target.exists());
}

#[tokio::test]
async fn migrations_newer_than_this_binary_are_refused() {
    let backup = copy_of_backup().await;
    // As a newer referral-mesh would have left it: one more migration applied to invite.db,
    // the manifest (and its checksum) saying so.
    let db = backup.join("invite.db");
    let mut conn = SqliteConnectOptions::from_str("sqlite:")
        .expect("options")
        .filename(&db)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await
        .expect("open");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         VALUES (9999, 'from the future', CURRENT_TIMESTAMP, TRUE, X'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert");
    conn.close().await.expect("close");
    let bytes = std::fs::read(&db).expect("read");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    edit_manifest(&backup, |m| {
        m["files"]["invite.db"] = json!({"sha256": sha, "bytes": bytes.len()});
        m["stores"]["invite"]["migrations"]
            .as_array_mut()
            .expect("migrations")
            .push(json!(9999));
    });
    let target = scratch("target");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::NewerMigrations { file, versions, .. } if file == "invite.db" && versions == &[9999]),
        "{err}"
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn a_non_empty_target_is_refused_unless_forced_and_a_running_mesh_always() {
    let backup = copy_of_backup().await;
    let target = scratch("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("invite.db"), b"someone's data").expect("write");
    let err = restore_into(&backup, &target, false).await.expect_err("refused");
    assert!(
        matches!(&err, RestoreError::TargetNotEmpty { entries, .. } if entries == &["invite.db".to_string()]),
        "{err}"
    );
    assert_eq!(
        std::fs::read(target.join("invite.db")).expect("kept"),
        b"someone's data"
    );
    // A stale WAL beside the replaced database would be replayed onto it: it goes.
    std::fs::write(target.join("invite.db-wal"), b"stale").expect("write");
    restore_into(&backup, &target, true).await.expect("forced");
    assert!(!target.join("invite.db-wal").exists());
    assert_eq!(
        std::fs::read(target.join("invite.db")).expect("restored"),
        std::fs::read(backup.join("invite.db")).expect("backup")
    );

    // A mesh running on the data dir: refused even with --force.
    let app = start_with(sqlite_options(Some(&target)))
        .await
        .expect("a mesh on the restored dir");
    let err = restore_into(&backup, &target, true).await.expect_err("refused");
    assert!(
        matches!(err, RestoreError::Locked(LockError::InUse { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("running referral-mesh"), "{err}");
    // And a backup is never written over one.
    let err = backup::backup(&app.data_dir, &backup).await.expect_err("refused");
    assert!(err.to_string().contains("is not empty"), "{err}");
    app.stop().await;
}
