//! The SQLite backend: one connection per [`ProcessedStore`](super::ProcessedStore) handle.
//!
//! Its calls block, so they never run as plain async code. The calls that wait (opening,
//! `BEGIN IMMEDIATE` for another connection's write lock, `COMMIT` for its fsync) run on
//! tokio's blocking pool (an fsync made in place measured erratic, often ten times slower).
//! Statements inside a transaction, which hold the write lock already
//! and sync nothing, run in place with `block_in_place` on a multi-threaded runtime (the
//! worker hands its other tasks to another thread meanwhile), and on the blocking pool
//! elsewhere: a hand-off to the blocking pool costs more than most statements (measured on
//! 2 vCPUs: batches of 500 one-`INSERT` messages ran at ~27,000 messages/s with every
//! call handed off, ~150,000 with the statements in place).
//!
//! Durability: the database is in WAL mode with `synchronous=FULL`, so when a `COMMIT`
//! returns, the WAL frames of that transaction have been fsynced: the committed effect, key
//! and offset survive a process crash and a power loss. Transactions start with
//! `BEGIN IMMEDIATE`, which takes the database's write lock up front: of two handles (two
//! processes, or two connections in one) processing the same key, the second waits (up to
//! [`BUSY_TIMEOUT`]) until the first commits, then finds the key completed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{CachedStatement, Connection};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::value::{Row, SqlValue};
use crate::ToolkitError;

/// How long `BEGIN IMMEDIATE` waits for another connection's write transaction to end.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection (least recently used dropped first): the store's
/// own dozen and room for the effects' (rusqlite's default is 16).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// An open SQLite database.
#[derive(Debug)]
pub(crate) struct SqliteDb {
    /// The one connection; a transaction holds the lock from `BEGIN` to its end, so
    /// statements of two transactions never interleave on it.
    conn: Arc<Mutex<Connection>>,
    /// Where the database file is, for messages.
    path: PathBuf,
}

/// A connection inside a transaction (locked for it).
pub(crate) type SqliteConn = OwnedMutexGuard<Connection>;

impl SqliteDb {
    /// Opens (creating if missing) the database at `path` in WAL mode with
    /// `synchronous=FULL`.
    pub(crate) async fn open(path: &Path) -> Result<Self, ToolkitError> {
        let path = path.to_path_buf();
        let p = path.clone();
        let conn = blocking(move || {
            let conn = Connection::open(&p)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let mode = enable_wal(&conn)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(ToolkitError::Database(format!(
                    "{}: SQLite refused WAL mode (journal_mode is {mode})",
                    p.display()
                )));
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
            Ok(conn)
        })
        .await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Locks the connection and starts a write transaction on it (`BEGIN IMMEDIATE`).
    pub(crate) async fn begin(&self) -> Result<SqliteConn, ToolkitError> {
        let conn = self.conn.clone().lock_owned().await;
        let (conn, res) = with_conn(conn, |c| {
            // A transaction whose future was dropped mid-way left its BEGIN open.
            if !c.is_autocommit() {
                c.execute_batch("ROLLBACK")?;
            }
            c.execute_batch("BEGIN IMMEDIATE")?;
            Ok(())
        })
        .await?;
        res.map(|()| conn)
    }
}

/// Puts the database in WAL mode (it stays so, in the file); the journal mode it is in.
///
/// The database is read first: a connection learns that the file is in WAL mode already
/// only when it reads it, and until then `journal_mode=WAL` tries to convert it, which
/// fails at once with `SQLITE_BUSY` (without waiting) while another connection is writing.
/// Two connections converting a new file at once can still collide: the loser retries.
fn enable_wal(conn: &Connection) -> Result<String, ToolkitError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let converted = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))
            .and_then(|()| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)));
        match converted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

/// Runs `f` on the connection on the blocking pool; hands the connection back with the
/// result. For the calls that wait: `BEGIN IMMEDIATE` (for another connection's write lock)
/// and `COMMIT` (for the fsync).
pub(crate) async fn with_conn<T: Send + 'static>(
    conn: SqliteConn,
    f: impl FnOnce(&mut Connection) -> Result<T, ToolkitError> + Send + 'static,
) -> Result<(SqliteConn, Result<T, ToolkitError>), ToolkitError> {
    tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        let res = f(&mut conn);
        (conn, res)
    })
    .await
    .map_err(|e| ToolkitError::Database(format!("SQLite call panicked or was cancelled: {e}")))
}

/// [`with_conn`] for statements inside a transaction, which hold the write lock already and
/// sync nothing: in place on a multi-threaded runtime (see the module docs).
pub(crate) async fn with_conn_in_tx<T: Send + 'static>(
    conn: SqliteConn,
    f: impl FnOnce(&mut Connection) -> Result<T, ToolkitError> + Send + 'static,
) -> Result<(SqliteConn, Result<T, ToolkitError>), ToolkitError> {
    if !in_place_allowed() {
        return with_conn(conn, f).await;
    }
    let mut conn = conn;
    let res = tokio::task::block_in_place(|| f(&mut conn));
    Ok((conn, res))
}

/// True where `block_in_place` may be called: on a multi-threaded runtime (on its workers
/// and in its `block_on`); it panics on a current-thread runtime.
fn in_place_allowed() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolkitError> + Send + 'static,
) -> Result<T, ToolkitError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ToolkitError::Database(format!("SQLite call panicked or was cancelled: {e}"))
    })?
}

/// Ends the open transaction: `COMMIT` or `ROLLBACK`.
pub(crate) fn finish(conn: &Connection, commit: bool) -> Result<(), ToolkitError> {
    if commit {
        if let Err(e) = conn.execute_batch("COMMIT") {
            // Some failures (SQLITE_BUSY) leave the transaction open; never leave it so.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
        Ok(())
    } else if conn.is_autocommit() {
        // SQLite already rolled back by itself (e.g. after SQLITE_FULL).
        Ok(())
    } else {
        Ok(conn.execute_batch("ROLLBACK")?)
    }
}

/// Prepares `sql` and binds `params[i]` to the placeholder `$(i+1)`, wherever and however
/// often it appears. (SQLite reads `$1` as a *named* parameter, numbered by first
/// appearance, so binding by position would be wrong for `... $2 ... $1`.)
fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<CachedStatement<'c>, ToolkitError> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let index = stmt.parameter_index(&name)?.ok_or_else(|| {
            ToolkitError::Database(format!("SQL has no placeholder {name}: {sql}"))
        })?;
        stmt.raw_bind_parameter(index, value)?;
    }
    if stmt.parameter_count() != params.len() {
        return Err(ToolkitError::Database(format!(
            "SQL has {} placeholders, {} parameters given: {sql}",
            stmt.parameter_count(),
            params.len()
        )));
    }
    Ok(stmt)
}

/// Runs a statement that returns no rows; the number of rows it changed.
pub(crate) fn execute(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<u64, ToolkitError> {
    let mut stmt = prepare(conn, sql, params)?;
    Ok(stmt.raw_execute()? as u64)
}

/// Runs a query; every row it returns.
pub(crate) fn query(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
) -> Result<Vec<Row>, ToolkitError> {
    let mut stmt = prepare(conn, sql, params)?;
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(SqlValue::from_sqlite(row.get_ref(i)?));
        }
        out.push(values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::store::{Outcome, ProcessRequest, ProcessedStore};

    /// Where `block_in_place` is not allowed, statements go to the blocking pool.
    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_processes_batches_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ProcessedStore::open_sqlite(dir.path().join("app.db"))
            .await
            .expect("store");
        let req = |key: &'static str, offset| ProcessRequest {
            group: "g",
            topic: "t",
            partition: 0,
            offset,
            idempotency_key: key.as_bytes(),
        };
        let reqs = [req("a", 0), req("b", 1), req("a", 2)];
        let outcomes = store
            .process_batch(&reqs, |i, tx| async move {
                tx.query("SELECT $1", &[(i as i64).into()]).await?;
                Ok(vec![i as u8])
            })
            .await
            .expect("batch");
        assert_eq!(
            outcomes,
            [
                Outcome::Applied { result: vec![0] },
                Outcome::Applied { result: vec![1] },
                Outcome::Duplicate {
                    stored_result: vec![0]
                },
            ]
        );
        let offsets = store.committed_offsets("g", "t").await.expect("offsets");
        assert_eq!(offsets.into_iter().collect::<Vec<_>>(), [(0, 3)]);
    }
}
