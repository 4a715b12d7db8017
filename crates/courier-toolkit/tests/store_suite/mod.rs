//! The processed-ID store's shared test suite: the same tests run against SQLite and a real
//! PostgreSQL server. [`suite!`] turns a list of `async fn test(db: TestDb)` into
//! `sqlite::test` and `postgres::test`; [`TestDb`] is a fresh database per test.
//!
//! Include it with `#[macro_use] #[path = "store_suite/mod.rs"] mod store_suite;` and
//! `use store_suite::*;`.

#![allow(dead_code)]

#[path = "../support/postgres.rs"]
mod postgres_server;

use std::sync::Arc;

use courier_toolkit::store::{Backend, KeyRecord, ProcessRequest, ProcessedStore, SqlValue, Tx};
use courier_toolkit::ToolkitError;
use postgres_server::PgServer;

/// A database for one test; every `open` is a new handle (its own connection) on it.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres {
        /// Kept so that the server outlives the test.
        _server: Arc<PgServer>,
        conninfo: String,
    },
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    pub async fn postgres() -> TestDb {
        let server = tokio::task::spawn_blocking(PgServer::shared)
            .await
            .expect("start PostgreSQL");
        let db = server.create_database().await;
        TestDb::Postgres {
            conninfo: server.conninfo(&db),
            _server: server,
        }
    }

    pub async fn open(&self) -> ProcessedStore {
        let store = match self {
            TestDb::Sqlite(dir) => ProcessedStore::open_sqlite(dir.path().join("app.db")).await,
            TestDb::Postgres { conninfo, .. } => ProcessedStore::connect_postgres(conninfo).await,
        };
        let store = store.expect("open the store");
        store
            .transaction(|tx| async move {
                if tx.backend() == Backend::Postgres {
                    // Handles opened at once would race on CREATE TABLE IF NOT EXISTS.
                    tx.execute("SELECT pg_advisory_xact_lock(42)", &[]).await?;
                }
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS effects (idem TEXT NOT NULL, amount BIGINT NOT NULL)",
                    &[],
                )
                .await
            })
            .await
            .expect("create the effects table");
        store
    }
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

pub const GROUP: &str = "billing";
pub const TOPIC: &str = "orders";

pub fn req(key: &str, partition: i32, offset: i64) -> ProcessRequest<'_> {
    ProcessRequest {
        group: GROUP,
        topic: TOPIC,
        partition,
        offset,
        idempotency_key: key.as_bytes(),
    }
}

/// The effect of the tests: one row in `effects`; returns `result`.
pub async fn insert_effect(tx: Tx, key: &str, result: &[u8]) -> Result<Vec<u8>, ToolkitError> {
    tx.execute(
        "INSERT INTO effects (idem, amount) VALUES ($1, $2)",
        &[key.into(), 100.into()],
    )
    .await?;
    Ok(result.to_vec())
}

/// An effect for a key that is completed already.
pub async fn must_not_run(_tx: Tx) -> Result<Vec<u8>, ToolkitError> {
    panic!("the effect of a completed key must not run")
}

pub async fn exec(store: &ProcessedStore, sql: &str) {
    let sql = sql.to_owned();
    store
        .transaction(|tx| async move { tx.execute(&sql, &[]).await })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub async fn query(store: &ProcessedStore, sql: &str, params: &[SqlValue]) -> Vec<Vec<SqlValue>> {
    store
        .transaction(|tx| async move { tx.query(sql, params).await })
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// How many effect rows `key` has.
pub async fn effects(store: &ProcessedStore, key: &str) -> i64 {
    let rows = query(
        store,
        "SELECT COUNT(*) FROM effects WHERE idem = $1",
        &[key.into()],
    )
    .await;
    rows[0][0].as_i64().expect("count")
}

pub async fn offsets(store: &ProcessedStore) -> Vec<(i32, i64)> {
    let map = store
        .committed_offsets(GROUP, TOPIC)
        .await
        .expect("offsets");
    map.into_iter().collect()
}

/// The record of `key` in [`GROUP`], which must exist.
pub async fn record(store: &ProcessedStore, key: &str) -> KeyRecord {
    store
        .key_state(GROUP, key)
        .await
        .expect("read the key")
        .unwrap_or_else(|| panic!("{key} has no record"))
}
