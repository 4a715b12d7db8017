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

impl Output {
    /// The count of a statement run for one ([`Tx::run`] returns what it was asked for).
    fn count(self) -> u64 {
        match self {
            Output::Count(n) => n,
            Output::Rows(_) => unreachable!("run returns what it was asked for"),
        }
    }

    /// The rows of a query.
    fn rows(self) -> Vec<Row> {
        match self {
            Output::Rows(rows) => rows,
            Output::Count(_) => unreachable!("run returns what it was asked for"),
        }
    }
}

/// Statements to run in one go: SQL and parameters each.
pub(crate) type Statements = Vec<(String, Vec<SqlValue>)>;

/// The position of the statement that failed, and why.
pub(crate) type StatementFailed = (usize, ToolkitError);

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
        let statement = vec![(sql.to_owned(), params.to_vec())];
        let counts = self.execute_all(statement).await.map_err(|(_, e)| e)?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    /// Runs a query; every row it returns, columns in `SELECT` order.
    pub async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, ToolkitError> {
        let statement = vec![(sql.to_owned(), params.to_vec())];
        let results = self.query_all(statement).await.map_err(|(_, e)| e)?;
        Ok(results.into_iter().next().unwrap_or_default())
    }

    /// Runs statements that return no rows, in order, stopping at the first that fails; the
    /// number of rows each changed. On SQLite they run in one blocking call (where that
    /// means a hand-off to the blocking pool, one for all of them rather than one each).
    pub(crate) async fn execute_all(
        &self,
        statements: Statements,
    ) -> Result<Vec<u64>, StatementFailed> {
        let outputs = self.run(statements, false).await?;
        Ok(outputs.into_iter().map(Output::count).collect())
    }

    /// Runs queries as [`execute_all`](Self::execute_all) runs statements; the rows of each.
    pub(crate) async fn query_all(
        &self,
        statements: Statements,
    ) -> Result<Vec<Vec<Row>>, StatementFailed> {
        let outputs = self.run(statements, true).await?;
        Ok(outputs.into_iter().map(Output::rows).collect())
    }

    /// The first statement failure that doomed this transaction, if one did.
    pub(crate) async fn failure(&self) -> Option<String> {
        self.state.lock().await.failed.clone()
    }

    async fn run(
        &self,
        statements: Statements,
        rows: bool,
    ) -> Result<Vec<Output>, StatementFailed> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.state.lock().await;
        if let Some(first) = &state.failed {
            return Err((
                0,
                ToolkitError::Database(format!(
                    "an earlier statement in this transaction failed: {first}"
                )),
            ));
        }
        let conn = state.conn.take().ok_or_else(|| (0, closed()))?;
        let (conn, res) = match conn {
            Conn::Sqlite(c) => {
                let (c, res) = sqlite::with_conn_in_tx(c, move |c| {
                    let mut out = Vec::with_capacity(statements.len());
                    for (i, (sql, params)) in statements.iter().enumerate() {
                        let done = if rows {
                            sqlite::query(c, sql, params).map(Output::Rows)
                        } else {
                            sqlite::execute(c, sql, params).map(Output::Count)
                        };
                        match done {
                            Ok(o) => out.push(o),
                            Err(e) => return Ok(Err((i, e))),
                        }
                    }
                    Ok(Ok(out))
                })
                .await
                .map_err(|e| (0, e))?;
                (Conn::Sqlite(c), res.unwrap_or_else(|e| Err((0, e))))
            }
            Conn::Postgres(mut c) => {
                let mut out = Vec::with_capacity(statements.len());
                let mut failed = None;
                for (i, (sql, params)) in statements.iter().enumerate() {
                    let done = if rows {
                        c.query(sql, params).await.map(Output::Rows)
                    } else {
                        c.execute(sql, params).await.map(Output::Count)
                    };
                    match done {
                        Ok(o) => out.push(o),
                        Err(e) => {
                            failed = Some((i, e));
                            break;
                        }
                    }
                }
                (Conn::Postgres(c), failed.map_or(Ok(out), Err))
            }
        };
        state.conn = Some(conn);
        if let Err((_, e)) = &res {
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
