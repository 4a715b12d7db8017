//! A plain SQLite table a service writes its effect to outside any processed-ID store: the
//! notification log, the analytics events, and the ledger of the at-least-once payment mode.
//!
//! WAL mode with `synchronous=NORMAL`: every insert commits on its own; a committed row
//! survives the process being killed (it is in the OS's page cache), though not a power loss.
//! That is all these services promise: the guarantee they demonstrate is about redelivery
//! and commits, not about this file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use courier_toolkit::runner::{handler_fn, Handler, HandlerError, HandlerOutput, Message};
use rusqlite::{params_from_iter, Connection};

use super::order_of;
use crate::order::Order;
use crate::DemoError;

/// One SQLite connection, shared by a service's handler calls.
#[derive(Debug)]
pub(crate) struct Sink {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Sink {
    /// Opens (creating) the database at `path` and runs `schema` (idempotent DDL).
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Self, DemoError> {
        let conn = Connection::open(path).map_err(DemoError::db(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.execute_batch(schema))
            .map_err(DemoError::db(path))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Runs one statement in its own transaction.
    pub(crate) fn insert(&self, sql: &str, params: &[i64], text: &str) -> Result<(), String> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut values: Vec<rusqlite::types::Value> = vec![text.to_string().into()];
        values.extend(params.iter().map(|v| rusqlite::types::Value::Integer(*v)));
        stmt.execute(params_from_iter(values))
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// The handler of a service whose whole effect is one row in `sink` per message: `sql`
/// takes the order's run as `$1`, then `columns(order, message)`. Counts into `processed`.
pub(crate) fn row_per_message(
    sink: Sink,
    sql: &'static str,
    columns: fn(&Order, &Message) -> Vec<i64>,
    processed: Arc<AtomicU64>,
) -> impl Handler {
    let sink = Arc::new(sink);
    handler_fn(move |msg: Message| {
        let (processed, sink) = (Arc::clone(&processed), Arc::clone(&sink));
        async move {
            let order = order_of(&msg)?;
            sink.insert(sql, &columns(&order, &msg), &order.run)
                .map_err(HandlerError::retriable)?;
            processed.fetch_add(1, Ordering::Relaxed);
            Ok(HandlerOutput::none())
        }
    })
}
