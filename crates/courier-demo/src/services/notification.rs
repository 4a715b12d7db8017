//! Notification: tells the user about each order at least once.
//!
//! The toolkit's at-least-once runner: the notification is written (here: a row in
//! `notification.db`, standing in for the e-mail provider) before the offset is committed, so
//! a crash between the two sends it again, and a client's retried order is a second record
//! that is notified again too. The report counts those duplicates; it fails the run only if an
//! order was never notified.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use courier_toolkit::runner::{Guarantee, Message, Runner};

use super::sink::row_per_message;
use super::{now_ms, runner_config, ServiceArgs, Sink};
use crate::order::Order;
use crate::DemoError;

/// One row per notification sent.
pub const NOTIFICATION_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sent (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run             TEXT    NOT NULL,
    order_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    user_seq        INTEGER NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    sent_at_ms      INTEGER NOT NULL
)";

const SEND: &str = "INSERT INTO sent
    (run, order_id, user_id, user_seq, kafka_partition, kafka_offset, sent_at_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) async fn run(
    args: &ServiceArgs,
    processed: Arc<AtomicU64>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let sink = Sink::open(&args.kind.db_path(&args.dir), NOTIFICATION_SCHEMA)?;
    let columns = |o: &Order, m: &Message| {
        vec![
            o.order_id as i64,
            i64::from(o.user_id),
            o.user_seq as i64,
            i64::from(m.partition),
            m.offset,
            now_ms(),
        ]
    };
    let handler = row_per_message(sink, SEND, columns, processed);
    let runner = Runner::new(runner_config(args, Guarantee::at_least_once()), handler)?;
    runner.run_until(shutdown).await?;
    Ok(())
}
