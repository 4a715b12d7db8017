//! The PostgreSQL backend: one connection per [`ProcessedStore`](super::ProcessedStore)
//! handle (tokio-postgres, no TLS: meant for loopback or a trusted network).
//!
//! Transactions run at PostgreSQL's default isolation, READ COMMITTED. Two instances
//! processing the same key cannot both apply the effect: the key's primary key makes the
//! second `INSERT ... ON CONFLICT DO NOTHING` wait until the first transaction ends; if it
//! committed, the second then reads the record (`SELECT ... FOR UPDATE`, a fresh snapshot)
//! as completed and skips the effect; if it rolled back, the second claims the key.
//!
//! Durability is the server's: with its defaults (`fsync=on`, `synchronous_commit=on`) a
//! `COMMIT` that returned is on disk. If the connection breaks while a `COMMIT` is in flight
//! the outcome is unknown and the call fails; processing the message again is safe, because
//! the key then tells whether the first attempt committed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::value::{Row, SqlValue};
use crate::ToolkitError;

/// Prepared statements kept per connection; past this many the cache starts over (so SQL
/// built with inlined values cannot grow it without bound).
const STATEMENT_CACHE_MAX: usize = 256;

/// A connected PostgreSQL database.
#[derive(Debug)]
pub(crate) struct PgDb {
    /// The one connection; a transaction holds the lock from `BEGIN` to its end.
    conn: Arc<Mutex<PgClient>>,
}

/// The connection and what this side knows of its state.
#[derive(Debug)]
pub(crate) struct PgClient {
    /// The tokio-postgres client; its connection task runs on the runtime.
    client: Client,
    /// A `BEGIN` was sent and no `COMMIT`/`ROLLBACK` succeeded since (a transaction future
    /// was dropped mid-way): the next `begin` rolls it back first.
    in_tx: bool,
    /// Prepared statements by SQL text.
    statements: HashMap<String, Statement>,
}

/// A connection inside a transaction (locked for it).
pub(crate) type PgConn = OwnedMutexGuard<PgClient>;

impl PgDb {
    /// Connects with a libpq-style configuration (`host=127.0.0.1 port=5432 user=app
    /// dbname=app`, or a `postgresql://` URL). Must be called inside a tokio runtime: the
    /// connection task is spawned on it.
    pub(crate) async fn connect(config: &str) -> Result<Self, ToolkitError> {
        let (client, connection) = tokio_postgres::connect(config, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Self {
            conn: Arc::new(Mutex::new(PgClient {
                client,
                in_tx: false,
                statements: HashMap::new(),
            })),
        })
    }

    /// Locks the connection and starts a transaction on it.
    pub(crate) async fn begin(&self) -> Result<PgConn, ToolkitError> {
        let mut conn = self.conn.clone().lock_owned().await;
        if conn.in_tx {
            conn.client.batch_execute("ROLLBACK").await?;
            conn.in_tx = false;
        }
        conn.in_tx = true;
        conn.client.batch_execute("BEGIN").await?;
        Ok(conn)
    }
}

impl PgClient {
    /// Ends the open transaction: `COMMIT` or `ROLLBACK`.
    pub(crate) async fn finish(&mut self, commit: bool) -> Result<(), ToolkitError> {
        self.client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await?;
        self.in_tx = false;
        Ok(())
    }

    /// The prepared statement for `sql`, preparing it on first use.
    async fn statement(&mut self, sql: &str) -> Result<Statement, ToolkitError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE_MAX {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs a statement; the number of rows it changed (or returned).
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<u64, ToolkitError> {
        let stmt = self.statement(sql).await?;
        Ok(self.client.execute(&stmt, &refs(params)).await?)
    }

    /// Runs a query; every row it returns.
    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Row>, ToolkitError> {
        let stmt = self.statement(sql).await?;
        let rows = self.client.query(&stmt, &refs(params)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(row.try_get::<_, SqlValue>(i)?);
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// The parameters as tokio-postgres takes them.
fn refs(params: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}
