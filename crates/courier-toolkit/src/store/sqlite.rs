//! The SQLite backend: one connection per [`ProcessedStore`](super::ProcessedStore) handle,
//! its blocking calls run on tokio's blocking pool so they never stall the runtime.
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
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(ToolkitError::Database(format!(
                    "{}: SQLite refused WAL mode (journal_mode is {mode})",
                    p.display()
                )));
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
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

/// Runs `f` on the connection on the blocking pool; hands the connection back with the result.
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
