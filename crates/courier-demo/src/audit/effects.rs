//! Each service's effect rows, read from its database after the services stopped.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::services::ServiceKind;
use crate::DemoError;

/// One effect: a ledger row, a reservation, a notification or a counted event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectRow {
    /// The order.
    pub order_id: u64,
    /// Its user.
    pub user_id: u32,
    /// Its number among the user's orders.
    pub user_seq: u64,
    /// The record it came from.
    pub partition: i32,
    /// The record it came from.
    pub offset: i64,
    /// When it was applied (ms since the epoch).
    pub at_ms: i64,
    /// Payment and analytics: the amount.
    pub amount: i64,
    /// Inventory: the product.
    pub sku: u32,
    /// Inventory: the units.
    pub quantity: i64,
    /// Inventory: reserved (true) or refused as sold out.
    pub reserved: bool,
}

/// Every service's effects, and Inventory's stock table.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Effect rows per service, in the order they were applied.
    pub rows: BTreeMap<ServiceKind, Vec<EffectRow>>,
    /// Inventory's stock per product.
    pub stock: BTreeMap<u32, i64>,
}

/// The query reading one service's effects of `run` in applied order: the common columns,
/// then amount, sku, quantity, outcome.
fn query(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Payment => {
            "SELECT order_id, user_id, user_seq, kafka_partition, kafka_offset, charged_at_ms,
                    amount_cents, 0, 0, 'n/a'
             FROM ledger WHERE run = ?1 ORDER BY id"
        }
        ServiceKind::Inventory => {
            "SELECT order_id, user_id, user_seq, kafka_partition, kafka_offset, reserved_at_ms,
                    0, sku, quantity, outcome
             FROM reservations WHERE run = ?1 ORDER BY id"
        }
        ServiceKind::Notification => {
            "SELECT order_id, user_id, user_seq, kafka_partition, kafka_offset, sent_at_ms,
                    0, 0, 0, 'n/a'
             FROM sent WHERE run = ?1 ORDER BY id"
        }
        ServiceKind::Analytics => {
            "SELECT order_id, user_id, user_seq, kafka_partition, kafka_offset, counted_at_ms,
                    amount_cents, 0, 0, 'n/a'
             FROM events WHERE run = ?1 ORDER BY id"
        }
    }
}

/// Reads every service's effects of `run` from the databases in `dir`.
pub fn load(dir: &Path, run: &str) -> Result<Effects, DemoError> {
    let mut effects = Effects::default();
    for kind in ServiceKind::ALL {
        let path = kind.db_path(dir);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(DemoError::db(&path))?;
        let mut stmt = conn.prepare(query(kind)).map_err(DemoError::db(&path))?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(EffectRow {
                    order_id: r.get::<_, i64>(0)? as u64,
                    user_id: r.get::<_, i64>(1)? as u32,
                    user_seq: r.get::<_, i64>(2)? as u64,
                    partition: r.get(3)?,
                    offset: r.get(4)?,
                    at_ms: r.get(5)?,
                    amount: r.get(6)?,
                    sku: r.get::<_, i64>(7)? as u32,
                    quantity: r.get(8)?,
                    reserved: r.get::<_, String>(9)? == "reserved",
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(DemoError::db(&path))?;
        effects.rows.insert(kind, rows);
        if kind == ServiceKind::Inventory {
            let mut stmt = conn
                .prepare("SELECT sku, quantity FROM stock ORDER BY sku")
                .map_err(DemoError::db(&path))?;
            effects.stock = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)?))
                })
                .and_then(|rows| rows.collect::<Result<BTreeMap<_, _>, _>>())
                .map_err(DemoError::db(&path))?;
        }
    }
    Ok(effects)
}
