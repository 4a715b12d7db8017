//! The processed-ID store behind exactly-once into a database.
//!
//! A consumer that writes its effects to a database gets exactly-once by putting three things
//! in **one database transaction**: the handler's effect, the message's idempotency key, and
//! the group's next offset for the message's partition. [`ProcessedStore::process`] does
//! that for one message, [`ProcessedStore::process_batch`] for many in one transaction (one
//! commit, so one fsync, for the whole batch). On assignment the runner seeks to
//! [`ProcessedStore::committed_offsets`], not to the offsets committed in Kafka, so a
//! message is redelivered only if its transaction did not commit, and then nothing of it was
//! kept; a message delivered again anyway (a producer
//! that retried a send as a new record, a rebalance race) carries a key the store has seen,
//! and its effect is skipped.
//!
//! Two backends behind one API: SQLite ([`ProcessedStore::open_sqlite`], embedded, the
//! default) and PostgreSQL ([`ProcessedStore::connect_postgres`], for services on many
//! machines). The tables are created on open ([`schema`] lists them).
//!
//! Idempotency keys are scoped by consumer group: two groups that share a database and see
//! the same message each apply their own effect once.
//!
//! Module map: `process` is processing messages (one or a batch per transaction), [`value`]
//! the value type, [`tx`] the transaction handle effects run on, [`schema`] the tables and
//! the SQL, `sqlite` and `postgres` the two connections.

mod postgres;
mod process;
pub mod schema;
mod sqlite;
pub mod tx;
pub mod value;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use process::{Outcome, ProcessRequest};
pub use schema::Backend;
pub use sqlite::BUSY_TIMEOUT as SQLITE_BUSY_TIMEOUT;
pub use tx::Tx;
pub use value::{Row, SqlValue};

use crate::ToolkitError;
use postgres::PgDb;
use sqlite::SqliteDb;
use tx::Conn;

/// The state of an idempotency key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Claimed by a transaction that has not completed it. [`ProcessedStore::process`] claims
    /// and completes in one transaction, so a committed record is in this state only if
    /// something else wrote it; `process` then takes it over.
    InProgress,
    /// The effect committed; the result is stored.
    Completed,
}

/// An idempotency key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// In progress or completed.
    pub state: KeyState,
    /// The effect's result, once completed.
    pub result: Option<Vec<u8>>,
    /// Topic of the message that carried the key.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// When the record last changed (completed, for a completed one).
    pub updated_at: SystemTime,
}

/// The processed-ID store: a handle on one database connection (cheap to clone; clones
/// share the connection, and their transactions take turns on it). Open a second handle for
/// transactions that must run in parallel.
#[derive(Debug, Clone)]
pub struct ProcessedStore {
    db: Db,
}

#[derive(Debug, Clone)]
enum Db {
    Sqlite(Arc<SqliteDb>),
    Postgres(Arc<PgDb>),
}

impl ProcessedStore {
    /// Opens (creating if missing) the SQLite database at `path` and creates the store's
    /// tables in it. WAL mode, `synchronous=FULL`: a committed transaction survives a crash
    /// or a power loss.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Self, ToolkitError> {
        let db = SqliteDb::open(path.as_ref()).await?;
        tracing::debug!(path = %db.path().display(), "opened SQLite store");
        let store = Self {
            db: Db::Sqlite(Arc::new(db)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL (`host=127.0.0.1 port=5432 user=app dbname=app`, or a
    /// `postgresql://` URL; no TLS) and creates the store's tables. Call it inside a tokio
    /// runtime, which then runs the connection.
    pub async fn connect_postgres(config: &str) -> Result<Self, ToolkitError> {
        let store = Self {
            db: Db::Postgres(Arc::new(PgDb::connect(config).await?)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which backend this store is on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `f` in one database transaction: commits if it returns `Ok` (and none of its
    /// statements failed), rolls back otherwise. For writes that do not come from a message,
    /// such as a business change with its [outbox](crate::outbox) rows.
    ///
    /// On SQLite the transaction is `BEGIN IMMEDIATE`: it holds the database's write lock
    /// from the start, so keep it short.
    pub async fn transaction<T, F, Fut>(&self, f: F) -> Result<T, ToolkitError>
    where
        F: FnOnce(Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, ToolkitError>> + Send,
        T: Send,
    {
        let conn = match &self.db {
            Db::Sqlite(db) => Conn::Sqlite(db.begin().await?),
            Db::Postgres(db) => Conn::Postgres(db.begin().await?),
        };
        let tx = Tx::new(conn);
        match f(tx.clone()).await {
            Ok(value) => {
                tx.finish(true).await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = tx.finish(false).await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// The group's next offset per partition of `topic`: where a runner seeks on assignment.
    /// A partition the group never processed is absent (start from the reset policy).
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, ToolkitError> {
        let rows = self
            .transaction(|tx| async move {
                tx.query(schema::SELECT_OFFSETS, &[group.into(), topic.into()])
                    .await
            })
            .await?;
        rows.iter()
            .map(|r| Ok((int(&r[0])?.try_into().map_err(bad_value)?, int(&r[1])?)))
            .collect()
    }

    /// Sets the group's next offset for a partition to exactly `next_offset`, back or
    /// forward: an operator's rewind to reprocess. Key records at or above the new offset are
    /// kept by [`prune`](Self::prune), so the replayed messages are still recognised.
    pub async fn reset_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), ToolkitError> {
        let now = now_ms(SystemTime::now());
        self.transaction(|tx| async move {
            let params = [
                group.into(),
                topic.into(),
                partition.into(),
                next_offset.into(),
                now.into(),
            ];
            tx.execute(schema::RESET_OFFSET, &params).await
        })
        .await?;
        Ok(())
    }

    /// The record of `key` in `group`, if there is one.
    pub async fn key_state(
        &self,
        group: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<KeyRecord>, ToolkitError> {
        let key = key.as_ref();
        let rows = self
            .transaction(|tx| async move {
                tx.query(schema::SELECT_KEY, &[group.into(), key.into()])
                    .await
            })
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(KeyRecord {
            state: parse_state(&r[0])?,
            result: r[1].as_bytes().map(<[u8]>::to_vec),
            topic: r[2].as_str().ok_or_else(|| bad_value("topic"))?.to_owned(),
            partition: int(&r[3])?.try_into().map_err(bad_value)?,
            offset: int(&r[4])?,
            updated_at: UNIX_EPOCH + Duration::from_millis(int(&r[5])?.max(0) as u64),
        }))
    }

    /// Deletes the group's completed key records that no redelivery can reach any more;
    /// returns how many. A record goes only when **both** hold:
    ///
    /// - its message's offset is below the group's next offset for that partition in this
    ///   database: the runner seeks to that offset, so a redelivery of the message itself
    ///   can only come from at or above it (after a [`reset_offset`](Self::reset_offset)
    ///   rewind, the records above the new offset stay);
    /// - it completed more than `retention` before `now`: a producer that retried a send as
    ///   a *new* record puts the same key at a later offset, which the offset test cannot
    ///   see; the retention is how long such retries are recognised.
    pub async fn prune(
        &self,
        group: &str,
        retention: Duration,
        now: SystemTime,
    ) -> Result<u64, ToolkitError> {
        let cutoff = now_ms(now.checked_sub(retention).unwrap_or(UNIX_EPOCH));
        let deleted = self
            .transaction(|tx| async move {
                tx.execute(schema::PRUNE_KEYS, &[group.into(), cutoff.into()])
                    .await
            })
            .await?;
        tracing::debug!(group, deleted, "pruned processed keys");
        Ok(deleted)
    }

    /// Applies the schema migrations this database has not had yet.
    async fn migrate(&self) -> Result<(), ToolkitError> {
        let backend = self.backend();
        self.transaction(|tx| async move {
            if backend == Backend::Postgres {
                tx.execute(schema::PG_MIGRATION_LOCK, &[]).await?;
            }
            tx.execute(schema::CREATE_VERSION_TABLE, &[]).await?;
            let rows = tx.query(schema::SELECT_VERSION, &[]).await?;
            let applied = rows.first().map(|r| int(&r[0])).transpose()?.unwrap_or(0);
            for (i, statements) in schema::migrations(backend).iter().enumerate() {
                let version = i as i64 + 1;
                if version <= applied {
                    continue;
                }
                for sql in statements.iter() {
                    tx.execute(sql, &[]).await?;
                }
                tx.execute(schema::INSERT_VERSION, &[version.into()])
                    .await?;
                tracing::info!(version, ?backend, "applied store migration");
            }
            Ok(())
        })
        .await
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_state(v: &SqlValue) -> Result<KeyState, ToolkitError> {
    match v.as_str() {
        Some("completed") => Ok(KeyState::Completed),
        Some("in_progress") => Ok(KeyState::InProgress),
        _ => Err(bad_value(format!("key state {v:?}"))),
    }
}

fn int(v: &SqlValue) -> Result<i64, ToolkitError> {
    v.as_i64().ok_or_else(|| bad_value(format!("{v:?}")))
}

fn bad_value(what: impl std::fmt::Display) -> ToolkitError {
    ToolkitError::Database(format!("unexpected value in a store table: {what}"))
}
