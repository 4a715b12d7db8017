//! A consumer runner with an explicit delivery guarantee.
//!
//! A [`Runner`] subscribes a consumer group to topics and calls a [`Handler`] for each
//! message, committing offsets where the chosen [`Guarantee`] says:
//!
//! | Guarantee | Commits | A handler failure | After a crash |
//! |---|---|---|---|
//! | [`AtMostOnce`](Guarantee::AtMostOnce) | each message's offset, synchronously, before the handler runs | logged; the message is gone | the message being processed (committed, not processed) is never seen again |
//! | [`AtLeastOnce`](Guarantee::AtLeastOnce) | after the handler succeeded (and its outputs were acknowledged), every `commit_every` messages or `commit_interval` | retried with exponential backoff and full jitter; after the last attempt, or at once on a permanent error, dead-lettered, then committed | what was processed since the last commit is delivered again; nothing is skipped |
//! | [`ExactlyOnceKafka`](Guarantee::ExactlyOnceKafka) | in the transaction that writes the outputs | the batch is aborted and read again; dead-lettered in the transaction after the last attempt | the open transaction is aborted; `read_committed` readers see every input's outputs once |
//! | [`ExactlyOnceDatabase`](Guarantee::ExactlyOnceDatabase) | as at-least-once | as at-least-once | redelivered; the handler's database transaction must skip processed keys (the extension point for [`crate::store`]) |
//!
//! Messages are handled one at a time (one batch at a time for exactly-once), in the order
//! the consumer returns them, so each partition's messages are handled in offset order.
//!
//! # Stopping and crashing
//!
//! [`Runner::run_until`] returns when its `shutdown` future resolves: a clean stop, which
//! commits what was processed (at-least-once) or finishes the current transaction
//! (exactly-once) before leaving the group. **Dropping** the `run_until` future instead is a
//! crash as far as the guarantee goes: nothing more is committed (the consumer still leaves
//! the group, so its partitions move on at once rather than after the session timeout).
//!
//! # Rebalances
//!
//! Rebalance callbacks run while the runner waits for the next message, never while a
//! handler runs. On revoke, at-least-once **commits** the processed offsets of the revoked
//! partitions before handing them over (if that commit fails, the next owner redelivers
//! them); there is no in-flight work to finish or drop. Exactly-once discards a batch that
//! was being collected when the assignment changed and reads it again.
//!
//! # Exactly-once Kafka-to-Kafka
//!
//! The transactional id is [`RunnerConfig::transactional_id`]: by default
//! `<group id>-<instance id>`. Starting a producer with a transactional id *fences* every
//! older producer with the same id (zombie fencing): the old one's open transaction is
//! aborted and its next transactional call fails fatally, which ends its runner with
//! [`ToolkitError::TransactionFatal`](crate::ToolkitError::TransactionFatal). Hence **one
//! transactional id per running instance**: give every instance of a group its own
//! `instance_id`, and keep it across restarts so that a restarted instance fences its own
//! zombie. Two live instances sharing an id keep fencing each other. Offsets are committed
//! with the consumer's group metadata (KIP-447), so correctness across rebalances does not
//! depend on which instance owns which partition.
//!
//! # Blocking calls
//!
//! Commits and transaction steps are librdkafka's blocking calls, made on the runner's task;
//! run the runner on a multi-threaded tokio runtime (or its own thread).

mod at_least_once;
mod at_most_once;
mod backoff;
mod config;
mod context;
pub mod dead_letter;
mod exactly_once;
mod handler;

use std::future::Future;

pub use backoff::RetryPolicy;
pub use config::{AtLeastOnceSettings, ExactlyOnceKafkaSettings, Guarantee, RunnerConfig};
pub use dead_letter::DeadLetterTopic;
pub use handler::{
    handler_fn, ErrorKind, FnHandler, Handler, HandlerError, HandlerOutput, Message,
};

use crate::ToolkitError;

/// Counters of one [`Runner::run_until`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Messages the handler processed successfully (under exactly-once, counted again when
    /// an aborted batch is read again).
    pub processed: u64,
    /// At-most-once: messages whose handler failed (and which are dropped).
    pub failed: u64,
    /// Messages sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Handler calls that failed and were retried.
    pub retries: u64,
    /// Exactly-once: transactions committed.
    pub transactions_committed: u64,
    /// Exactly-once: transactions aborted.
    pub transactions_aborted: u64,
}

/// A consumer group member that feeds messages to a [`Handler`] with a [`Guarantee`].
///
/// ```no_run
/// use courier_toolkit::runner::{handler_fn, Guarantee, HandlerOutput, Message, Runner, RunnerConfig};
///
/// # async fn example() -> Result<(), courier_toolkit::ToolkitError> {
/// let config = RunnerConfig::new("127.0.0.1:9092", "billing", &["orders"], Guarantee::at_least_once())
///     .instance_id("billing-1");
/// let runner = Runner::new(config, handler_fn(|msg: Message| async move {
///     tracing::info!(key = %msg.idempotency_key, "billing");
///     Ok(HandlerOutput::none())
/// }))?;
/// let stats = runner.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// tracing::info!(?stats, "stopped");
/// # Ok(())
/// # }
/// ```
pub struct Runner<H> {
    /// Where to read, as whom, with which guarantee.
    config: RunnerConfig,
    /// The application code.
    handler: H,
}

impl<H: Handler> Runner<H> {
    /// A runner for `config` (checked here) calling `handler`.
    pub fn new(config: RunnerConfig, handler: H) -> Result<Self, ToolkitError> {
        config.validate()?;
        Ok(Self { config, handler })
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Joins the group and handles messages until `shutdown` resolves (a clean stop; see
    /// the [module docs](self#stopping-and-crashing)), or until an error the runner cannot
    /// get past: a dead letter that cannot be written, a fenced transactional producer, a
    /// clean stop's final commit failing.
    pub async fn run_until(
        &self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunStats, ToolkitError> {
        let cfg = &self.config;
        let h = &self.handler;
        match &cfg.guarantee {
            Guarantee::AtMostOnce => at_most_once::run(cfg, h, shutdown).await,
            Guarantee::AtLeastOnce(s) | Guarantee::ExactlyOnceDatabase(s) => {
                at_least_once::run(cfg, s, h, shutdown).await
            }
            Guarantee::ExactlyOnceKafka(s) => exactly_once::run(cfg, s, h, shutdown).await,
        }
    }
}
