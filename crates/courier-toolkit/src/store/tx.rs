//! [`Tx`]: the handle a user's effect runs its SQL on, inside the store's transaction.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::postgres::PgConn;
use super::schema::Backend;
use super::sqlite::{self, SqliteConn};
use super::value::{Row, SqlValue};
use crate::ToolkitError;

/// A database transaction in progress: the effect's SQL and the store's own records commit
/// or roll back together.
///
/// SQL uses `$1, $2, …` placeholders on both backends; `params[0]` is `$1`. Use
/// [`query`](Self::query) for anything that returns rows (including `... RETURNING`).
///
/// Any statement that fails makes the whole transaction fail: it is rolled back at the end
/// even if the effect goes on and returns `Ok` (PostgreSQL aborts a transaction on the first
/// error; SQLite is held to the same rule so that code behaves the same on both).
///
/// The handle is cheap to clone. It is valid until the transaction ends; using it after
/// that returns [`ToolkitError::Database`].
#[derive(Clone)]
pub struct Tx {
    /// Which SQL dialect this transaction speaks, for effects that need to know.
    backend: Backend,
    /// The connection while the transaction is open; statements take turns on it.
    state: Arc<Mutex<TxState>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend)
            .finish()
    }
}

/// What a [`Tx`] shares between its clones.
struct TxState {
    /// `None` once the transaction ended (or a statement's worker was lost).
    conn: Option<Conn>,
    /// The first statement error, which dooms the transaction.
    failed: Option<String>,
}

/// A locked connection with an open transaction.
pub(crate) enum Conn {
    /// SQLite.
    Sqlite(SqliteConn),
    /// PostgreSQL.
    Postgres(PgConn),
}

/// What a statement returned.
enum Output {
    Count(u64),
    Rows(Vec<Row>),
}

impl Tx {
    /// Wraps a connection on which `BEGIN` succeeded.
    pub(crate) fn new(conn: Conn) -> Self {
        let backend = match conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        };
        Self {
            backend,
            state: Arc::new(Mutex::new(TxState {
                conn: Some(conn),
                failed: None,
            })),
        }
    }

    /// The backend, for an effect that needs dialect-specific SQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs a statement that returns no rows; the number of rows it inserted, updated or
    /// deleted.
    pub async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, ToolkitError> {
        match self.run(sql, params, false).await? {
            Output::Count(n) => Ok(n),
            Output::Rows(_) => unreachable!("run returns what it was asked for"),
        }
    }

    /// Runs a query; every row it returns, columns in `SELECT` order.
    pub async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, ToolkitError> {
        match self.run(sql, params, true).await? {
            Output::Rows(rows) => Ok(rows),
            Output::Count(_) => unreachable!("run returns what it was asked for"),
        }
    }

    async fn run(
        &self,
        sql: &str,
        params: &[SqlValue],
        rows: bool,
    ) -> Result<Output, ToolkitError> {
        let mut state = self.state.lock().await;
        if let Some(first) = &state.failed {
            return Err(ToolkitError::Database(format!(
                "an earlier statement in this transaction failed: {first}"
            )));
        }
        let conn = state.conn.take().ok_or_else(closed)?;
        let (conn, res) = match conn {
            Conn::Sqlite(c) => {
                let (sql, params) = (sql.to_owned(), params.to_vec());
                let (c, res) = sqlite::with_conn(c, move |c| {
                    if rows {
                        sqlite::query(c, &sql, &params).map(Output::Rows)
                    } else {
                        sqlite::execute(c, &sql, &params).map(Output::Count)
                    }
                })
                .await?;
                (Conn::Sqlite(c), res)
            }
            Conn::Postgres(mut c) => {
                let res = if rows {
                    c.query(sql, params).await.map(Output::Rows)
                } else {
                    c.execute(sql, params).await.map(Output::Count)
                };
                (Conn::Postgres(c), res)
            }
        };
        state.conn = Some(conn);
        if let Err(e) = &res {
            state.failed.get_or_insert_with(|| e.to_string());
        }
        res
    }

    /// Ends the transaction: commits if `commit` and no statement failed, else rolls back.
    /// Committing a transaction in which a statement failed rolls it back and fails.
    pub(crate) async fn finish(&self, commit: bool) -> Result<(), ToolkitError> {
        let mut state = self.state.lock().await;
        let conn = state.conn.take().ok_or_else(closed)?;
        let failed = state.failed.take();
        let wanted_commit = commit;
        let commit = commit && failed.is_none();
        match conn {
            Conn::Sqlite(c) => {
                sqlite::with_conn(c, move |c| sqlite::finish(c, commit))
                    .await?
                    .1?
            }
            Conn::Postgres(mut c) => c.finish(commit).await?,
        }
        match failed {
            Some(e) if wanted_commit => Err(ToolkitError::Database(format!(
                "transaction rolled back: a statement in it failed: {e}"
            ))),
            _ => Ok(()),
        }
    }
}

fn closed() -> ToolkitError {
    ToolkitError::Database("the transaction has ended".into())
}
