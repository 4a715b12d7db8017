//! The four services of the order pipeline, each its own consumer group with the guarantee
//! the reference gives it, each run as its own OS process (`courier demo service <name>`) so
//! that the demo can SIGKILL it mid-batch.
//!
//! | Service | Group | Guarantee | Effect, and where the report reads it |
//! |---|---|---|---|
//! | Payment | `payment` | exactly-once into SQLite (toolkit `ExactlyOnceDatabase`) | a `ledger` row per charge (`payment.db`) |
//! | Inventory | `inventory` | exactly-once into SQLite | a stock decrement that never goes negative, and a `reservations` row (`inventory.db`) |
//! | Notification | `notification` | at-least-once (toolkit `AtLeastOnce`) | a `sent` row per notification (`notification.db`) |
//! | Analytics | `analytics` | at-most-once (toolkit `AtMostOnce`) | an `events` row per counted record (`analytics.db`) |
//!
//! The exactly-once services' databases are the toolkit's processed-ID stores (WAL,
//! `synchronous=FULL`): effect, idempotency key and offset commit together. The notification
//! and analytics sinks are plain SQLite files (`synchronous=NORMAL`: a committed row survives
//! the process being killed, which is the fault the demo injects).
//!
//! A service prints `processed <n>` on stdout several times a second (the handler calls so
//! far, for the live display only; the report never uses it) and stops cleanly on SIGTERM.

mod analytics;
mod inventory;
mod notification;
mod payment;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_toolkit::runner::{Message, RunnerConfig};

pub use payment::PaymentMode;
pub(crate) use sink::Sink;

use crate::order::{Order, TOPIC};
use crate::DemoError;

/// How often a service reports its count on stdout.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// One of the four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// Charges each order once.
    Payment,
    /// Reserves stock for each order once.
    Inventory,
    /// Tells the user, at least once.
    Notification,
    /// Counts orders, at most once.
    Analytics,
}

impl ServiceKind {
    /// All four, in report order.
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Payment,
        ServiceKind::Inventory,
        ServiceKind::Notification,
        ServiceKind::Analytics,
    ];

    /// Its name: also its consumer group, its command-line name and its database's stem.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Payment => "payment",
            ServiceKind::Inventory => "inventory",
            ServiceKind::Notification => "notification",
            ServiceKind::Analytics => "analytics",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Its database file in the run directory.
    pub fn db_path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.db", self.name()))
    }
}

/// What a service process is told.
#[derive(Debug, Clone)]
pub struct ServiceArgs {
    /// Which service.
    pub kind: ServiceKind,
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The run directory (its database lives there).
    pub dir: PathBuf,
    /// Payment's guarantee (exactly-once, or the at-least-once that shows why not).
    pub payment_mode: PaymentMode,
}

/// Runs the service until `shutdown` resolves (a clean stop); a SIGKILL is the crash.
pub async fn run(
    args: ServiceArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let processed = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn(report_progress(Arc::clone(&processed)));
    let result = match args.kind {
        ServiceKind::Payment => payment::run(&args, processed, shutdown).await,
        ServiceKind::Inventory => inventory::run(&args, processed, shutdown).await,
        ServiceKind::Notification => notification::run(&args, processed, shutdown).await,
        ServiceKind::Analytics => analytics::run(&args, processed, shutdown).await,
    };
    reporter.abort();
    tracing::info!(ok = result.is_ok(), "runner stopped");
    result
}

/// The runner settings every service shares: its group, `order-events`, and a short session
/// timeout so that a killed instance's partitions move to its restarted self within seconds.
pub(crate) fn runner_config(
    args: &ServiceArgs,
    guarantee: courier_toolkit::runner::Guarantee,
) -> RunnerConfig {
    RunnerConfig::new(&args.bootstrap, args.kind.name(), &[TOPIC], guarantee)
        .instance_id("1")
        .consumer_set("session.timeout.ms", "6000")
        .consumer_set("heartbeat.interval.ms", "1000")
        .consumer_set("fetch.wait.max.ms", "50")
}

/// The order in `msg`, or a permanent error (the message is dead-lettered).
pub(crate) fn order_of(msg: &Message) -> Result<Order, courier_toolkit::runner::HandlerError> {
    msg.value
        .as_deref()
        .and_then(Order::decode)
        .ok_or_else(|| courier_toolkit::runner::HandlerError::permanent("not an OrderPlaced event"))
}

/// The columns a ledger row and an analytics event share, after the run: order id, user,
/// user's order number, amount, source partition and offset, and now.
pub(crate) fn order_columns(o: &Order, msg: &Message) -> Vec<i64> {
    vec![
        o.order_id as i64,
        i64::from(o.user_id),
        o.user_seq as i64,
        o.amount_cents,
        i64::from(msg.partition),
        msg.offset,
        now_ms(),
    ]
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn report_progress(processed: Arc<AtomicU64>) {
    use std::io::Write as _;
    let mut last = u64::MAX;
    loop {
        let n = processed.load(Ordering::Relaxed);
        if n != last {
            let mut out = std::io::stdout().lock();
            // The demo reads these lines; if it went away there is nobody to tell.
            let _ = writeln!(out, "processed {n}");
            let _ = out.flush();
            last = n;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}
