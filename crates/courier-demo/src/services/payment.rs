//! Payment: charges each order exactly once into a ledger.
//!
//! Exactly-once (the default) is the toolkit's exactly-once into a database: the ledger row,
//! the order's idempotency key and the partition's next offset commit in one SQLite
//! transaction, so a crash re-charges nothing and a client's retried order (same key, a second
//! record) is skipped. `--payment-guarantee at-least-once` runs the same charge under the
//! at-least-once runner with no idempotency key, to show what that costs under the same
//! faults: orders redelivered after a crash, and every retried order, are charged twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use courier_toolkit::runner::{db_handler_fn, Guarantee, HandlerError, Message, Runner};
use courier_toolkit::store::{ProcessedStore, Tx};

use super::sink::row_per_message;
use super::{order_of, runner_config, ServiceArgs, Sink};
use crate::DemoError;

/// The ledger: one row per charge. No uniqueness on `order_id`, on purpose: a double charge
/// must be visible in the data, not hidden by a constraint.
pub const LEDGER_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run             TEXT    NOT NULL,
    order_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    user_seq        INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    charged_at_ms   INTEGER NOT NULL
)";

const CHARGE: &str = "INSERT INTO ledger
    (run, order_id, user_id, user_seq, amount_cents, kafka_partition, kafka_offset, charged_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Which guarantee Payment runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaymentMode {
    /// Ledger row, idempotency key and offset in one transaction.
    #[default]
    ExactlyOnce,
    /// Process, then commit, no idempotency key: charges twice what is delivered twice.
    AtLeastOnce,
}

impl PaymentMode {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PaymentMode::ExactlyOnce => "exactly-once",
            PaymentMode::AtLeastOnce => "at-least-once",
        }
    }
}

pub(super) async fn run(
    args: &ServiceArgs,
    processed: Arc<AtomicU64>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let path = args.kind.db_path(&args.dir);
    match args.payment_mode {
        PaymentMode::ExactlyOnce => {
            let store = ProcessedStore::open_sqlite(&path).await?;
            store
                .transaction(|tx| async move { tx.execute(LEDGER_SCHEMA, &[]).await })
                .await?;
            let config = runner_config(args, Guarantee::exactly_once_database(store));
            let runner = Runner::new_db(
                config,
                db_handler_fn(move |msg: Message, tx: Tx| {
                    let processed = Arc::clone(&processed);
                    async move {
                        charge_in(&tx, &msg).await?;
                        processed.fetch_add(1, Ordering::Relaxed);
                        Ok(b"charged".to_vec())
                    }
                }),
            )?;
            runner.run_until(shutdown).await?;
        }
        PaymentMode::AtLeastOnce => {
            let sink = Sink::open(&path, LEDGER_SCHEMA)?;
            let handler = row_per_message(sink, CHARGE, super::order_columns, processed);
            let runner = Runner::new(runner_config(args, Guarantee::at_least_once()), handler)?;
            runner.run_until(shutdown).await?;
        }
    }
    Ok(())
}

/// Writes the ledger row of `msg`'s order on the store's transaction.
async fn charge_in(tx: &Tx, msg: &Message) -> Result<(), HandlerError> {
    let o = order_of(msg)?;
    let mut params = vec![o.run.as_str().into()];
    params.extend(super::order_columns(&o, msg).into_iter().map(Into::into));
    tx.execute(CHARGE, &params)
        .await
        .map_err(HandlerError::retriable)?;
    Ok(())
}
