//! Test-only support shared by the services: the store conformance harness.
//!
//! A service writes its conformance cases once, against its `Store` trait, as
//! `async fn case<S: Store>(store: &S)`, and lists them in [`conformance!`], which emits two
//! tests per case: `sqlite_<case>` on a fresh SQLite file (always) and `pg_<case>` in a
//! fresh Postgres schema when `TEST_DATABASE_URL` is set (skipped, saying so, otherwise).
//! How a store is opened for a test (migrated, seeded) is the service's
//! [`ConformanceStore`] implementation for each of its two store types.

use std::{future::Future, path::PathBuf};

/// Where one test's store lives: a fresh SQLite file in a directory of its own, or a fresh
/// schema of the Postgres database `TEST_DATABASE_URL` names.
#[derive(Debug, Clone)]
pub enum TestDb {
    Sqlite { dir: PathBuf, url: String },
    Postgres { url: String, schema: String },
}

impl TestDb {
    /// A fresh SQLite database, `<service>.db` in a new temporary directory.
    pub fn sqlite(service: &str) -> TestDb {
        let dir =
            std::env::temp_dir().join(format!("{service}-conformance-{}", uuid::Uuid::now_v7().simple()));
        let url = format!("sqlite:{}", dir.join(format!("{service}.db")).display());
        TestDb::Sqlite { dir, url }
    }

    /// A fresh schema (`<service>_t<uuid>`) on `TEST_DATABASE_URL`, or `None` (saying that
    /// `test` is skipped) when it is unset.
    pub fn postgres(service: &str, test: &str) -> Option<TestDb> {
        let url = referral_common::db::test_database_url(test)?;
        let schema = referral_common::db::test_schema(service);
        Some(TestDb::Postgres { url, schema })
    }

    /// The database URL (`sqlite:…` or `postgres://…`).
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    /// The SQLite file's directory; `None` on Postgres.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            TestDb::Sqlite { dir, .. } => Some(dir),
            TestDb::Postgres { .. } => None,
        }
    }

    /// The Postgres schema; empty on SQLite.
    pub fn schema(&self) -> &str {
        match self {
            TestDb::Sqlite { .. } => "",
            TestDb::Postgres { schema, .. } => schema,
        }
    }

    /// Removes the file's directory or drops the schema (best effort: a leftover only costs
    /// space). Called only once a case passed, so a failure leaves its data to inspect.
    pub async fn remove(self) {
        match self {
            TestDb::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres { url, schema } => referral_common::db::drop_test_schema(&url, &schema).await,
        }
    }
}

/// A store type the harness can open for one test: each service implements it for its
/// SQLite and its Postgres store.
pub trait ConformanceStore: Sized {
    /// The service's short name (`invite`): the SQLite file's and the schema's prefix.
    const SERVICE: &'static str;
    /// A store on `db`, ready for a case (migrated, and seeded where the service seeds);
    /// panics when it cannot be had.
    fn open(db: &TestDb) -> impl Future<Output = Self>;
    /// Closes its connections, so the file or schema can go.
    fn close(&self) -> impl Future<Output = ()>;
}

/// Runs `case` on a store opened on `db`, then closes the store and removes `db`.
pub async fn run_on<S: ConformanceStore>(db: TestDb, case: impl AsyncFnOnce(&S)) {
    let store = S::open(&db).await;
    case(&store).await;
    store.close().await;
    drop(store);
    db.remove().await;
}

/// Runs `case` on a fresh SQLite store.
pub async fn sqlite<S: ConformanceStore>(case: impl AsyncFnOnce(&S)) {
    run_on(TestDb::sqlite(S::SERVICE), case).await;
}

/// Runs `case` on a fresh Postgres store when `TEST_DATABASE_URL` is set; otherwise says
/// that `test` is skipped.
pub async fn postgres<S: ConformanceStore>(test: &str, case: impl AsyncFnOnce(&S)) {
    if let Some(db) = TestDb::postgres(S::SERVICE, test) {
        run_on(db, case).await;
    }
}

/// Emits `#[tokio::test]`s `sqlite_<case>` and `pg_<case>` for each generic case, on the
/// given store types:
///
/// ```ignore
/// referral_test_support::conformance! {
///     stores: SqliteStore, PgStore; worker_threads: 4;
///     codes: sqlite_codes, pg_codes;
/// }
/// ```
#[macro_export]
macro_rules! conformance {
    (
        stores: $sqlite:ty, $pg:ty; worker_threads: $threads:literal;
        $($case:ident: $sqlite_test:ident, $pg_test:ident;)*
    ) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $sqlite_test() {
            $crate::sqlite::<$sqlite>($case::<$sqlite>).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $pg_test() {
            $crate::postgres::<$pg>(stringify!($pg_test), $case::<$pg>).await;
        }
    )*};
}

/// Implements [`ConformanceStore`] for a service's SQLite and Postgres stores: opened with
/// their `connect(url)` and `connect(url, schema)`, then made ready by `ready`'s block (run
/// once per store type, with the store bound to the name given), closed by closing their
/// pool.
///
/// ```ignore
/// referral_test_support::conformance_stores! {
///     "invite": SqliteStore, PgStore;
///     ready(store) { store.migrate().await.expect("migrate the store") }
/// }
/// ```
#[macro_export]
macro_rules! conformance_stores {
    ($service:literal: $sqlite:ty, $pg:ty; ready($store:ident) $ready:block) => {
        impl $crate::ConformanceStore for $sqlite {
            const SERVICE: &'static str = $service;
            async fn open(db: &$crate::TestDb) -> Self {
                let $store = <$sqlite>::connect(db.url())
                    .await
                    .expect("open the SQLite store");
                $ready;
                $store
            }
            async fn close(&self) {
                self.pool().close().await;
            }
        }

        impl $crate::ConformanceStore for $pg {
            const SERVICE: &'static str = $service;
            async fn open(db: &$crate::TestDb) -> Self {
                let $store = <$pg>::connect(db.url(), db.schema())
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                $ready;
                $store
            }
            async fn close(&self) {
                self.pool().close().await;
            }
        }
    };
}
