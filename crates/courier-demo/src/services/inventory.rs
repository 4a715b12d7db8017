//! Inventory: reserves stock for each order exactly once; stock never goes negative.
//!
//! Exactly-once into a database, like Payment: the stock decrement, the `reservations` row,
//! the idempotency key and the offset commit in one SQLite transaction. The decrement is
//! conditional (`quantity >= wanted`), and the table refuses a negative quantity besides: an
//! order that finds too little stock is recorded `sold_out` and takes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use courier_toolkit::runner::{db_handler_fn, Guarantee, HandlerError, Message, Runner};
use courier_toolkit::store::{ProcessedStore, Tx};

use super::{now_ms, order_of, runner_config, ServiceArgs};
use crate::order::{initial_stock, SKUS};
use crate::DemoError;

/// The stock table and the reservations log.
pub const INVENTORY_SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS stock (
        sku      INTEGER PRIMARY KEY,
        quantity INTEGER NOT NULL CHECK (quantity >= 0)
    )",
    "CREATE TABLE IF NOT EXISTS reservations (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        run             TEXT    NOT NULL,
        order_id        INTEGER NOT NULL,
        user_id         INTEGER NOT NULL,
        user_seq        INTEGER NOT NULL,
        sku             INTEGER NOT NULL,
        quantity        INTEGER NOT NULL,
        outcome         TEXT    NOT NULL CHECK (outcome IN ('reserved', 'sold_out')),
        kafka_partition INTEGER NOT NULL,
        kafka_offset    INTEGER NOT NULL,
        reserved_at_ms  INTEGER NOT NULL
    )",
];

const SEED_STOCK: &str =
    "INSERT INTO stock (sku, quantity) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING";
const TAKE: &str = "UPDATE stock SET quantity = quantity - $1 WHERE sku = $2 AND quantity >= $1";
const RECORD: &str = "INSERT INTO reservations
    (run, order_id, user_id, user_seq, sku, quantity, outcome, kafka_partition, kafka_offset,
     reserved_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(super) async fn run(
    args: &ServiceArgs,
    processed: Arc<AtomicU64>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let store = ProcessedStore::open_sqlite(args.kind.db_path(&args.dir)).await?;
    store
        .transaction(|tx| async move {
            for sql in INVENTORY_SCHEMA {
                tx.execute(sql, &[]).await?;
            }
            for sku in 0..SKUS {
                tx.execute(
                    SEED_STOCK,
                    &[i64::from(sku).into(), initial_stock(sku).into()],
                )
                .await?;
            }
            Ok(())
        })
        .await?;
    let config = runner_config(args, Guarantee::exactly_once_database(store));
    let runner = Runner::new_db(
        config,
        db_handler_fn(move |msg: Message, tx: Tx| {
            let processed = Arc::clone(&processed);
            async move {
                let outcome = reserve_in(&tx, &msg).await?;
                processed.fetch_add(1, Ordering::Relaxed);
                Ok(outcome.as_bytes().to_vec())
            }
        }),
    )?;
    runner.run_until(shutdown).await?;
    Ok(())
}

/// Takes the order's units if there are enough, and records the outcome.
async fn reserve_in(tx: &Tx, msg: &Message) -> Result<&'static str, HandlerError> {
    let o = order_of(msg)?;
    let taken = tx
        .execute(TAKE, &[o.quantity.into(), i64::from(o.sku).into()])
        .await
        .map_err(HandlerError::retriable)?;
    let outcome = if taken == 1 { "reserved" } else { "sold_out" };
    let params = [
        o.run.as_str().into(),
        (o.order_id as i64).into(),
        i64::from(o.user_id).into(),
        (o.user_seq as i64).into(),
        i64::from(o.sku).into(),
        o.quantity.into(),
        outcome.into(),
        msg.partition.into(),
        msg.offset.into(),
        now_ms().into(),
    ];
    tx.execute(RECORD, &params)
        .await
        .map_err(HandlerError::retriable)?;
    Ok(outcome)
}
