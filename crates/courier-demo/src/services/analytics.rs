//! Analytics: counts orders at most once.
//!
//! The toolkit's at-most-once runner commits a batch's offsets before processing it, so a
//! crash loses the rest of that batch and nothing is ever counted twice. Each counted record
//! is a row in `analytics.db` (revenue and order counts are sums over it); the report
//! measures the loss and checks that no record was counted twice.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use courier_toolkit::runner::{Guarantee, Runner};

use super::sink::row_per_message;
use super::{runner_config, ServiceArgs, Sink};
use crate::DemoError;

/// One row per record counted.
pub const ANALYTICS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run             TEXT    NOT NULL,
    order_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    user_seq        INTEGER NOT NULL,
    amount_cents    INTEGER NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    counted_at_ms   INTEGER NOT NULL
)";

const COUNT: &str = "INSERT INTO events
    (run, order_id, user_id, user_seq, amount_cents, kafka_partition, kafka_offset, counted_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) async fn run(
    args: &ServiceArgs,
    processed: Arc<AtomicU64>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let sink = Sink::open(&args.kind.db_path(&args.dir), ANALYTICS_SCHEMA)?;
    let handler = row_per_message(sink, COUNT, super::order_columns, processed);
    let runner = Runner::new(runner_config(args, Guarantee::at_most_once()), handler)?;
    runner.run_until(shutdown).await?;
    Ok(())
}
