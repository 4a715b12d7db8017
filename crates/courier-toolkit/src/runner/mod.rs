//! A consumer runner with an explicit delivery guarantee.
//!
//! A [`Runner`] subscribes a consumer group to topics and calls a [`Handler`] for each
//! message, committing offsets where the chosen [`Guarantee`] says:
//!
//! | Guarantee | Commits | A handler failure | After a crash |
//! |---|---|---|---|
//! | [`AtMostOnce`](Guarantee::AtMostOnce) | a batch's offsets (up to `batch_size` messages, collected for up to `batch_linger`), synchronously, before the handler runs on any of them | logged; the message is gone | at most the batch being processed is lost: its messages not yet processed (committed, not processed) are never seen again; nothing is processed twice |
//! | [`AtLeastOnce`](Guarantee::AtLeastOnce) | after the handler succeeded (and its outputs were acknowledged), every `commit_every` messages or `commit_interval` | retried with exponential backoff and full jitter; after the last attempt, or at once on a permanent error, dead-lettered, then committed | what was processed since the last commit is delivered again; nothing is skipped |
//! | [`ExactlyOnceKafka`](Guarantee::ExactlyOnceKafka) | in the transaction that writes the outputs | the batch is aborted and read again; dead-lettered in the transaction after the last attempt | the open transaction is aborted; `read_committed` readers see every input's outputs once |
//! | [`ExactlyOnceDatabase`](Guarantee::ExactlyOnceDatabase) | in the database: the effects, the idempotency keys and the next offsets of a batch (up to `batch_size` messages, collected for up to `batch_linger`) in one transaction per batch ([`Runner::new_db`], a [`DbHandler`]); Kafka offsets only asynchronously, for lag monitoring | the batch's transaction rolls back (nothing of it recorded) and its messages are applied again one transaction each: a failing one is retried with backoff and jitter; after the last attempt, or at once on a permanent error, dead-lettered, then recorded as processed with an empty effect | partitions start at the database's offsets: only a message whose transaction did not commit is delivered again; a key seen before (a re-sent record) is skipped |
//!
//! Messages are handled one at a time (at-most-once and exactly-once: one batch at a time,
//! and its messages one at a time), in the order the consumer returns them, so each
//! partition's messages are handled in offset order.
//!
//! # Stopping and crashing
//!
//! [`Runner::run_until`] returns when its `shutdown` future resolves: a clean stop, which
//! commits what was processed (at-least-once), finishes the batch it committed
//! (at-most-once) or finishes the current transaction (exactly-once) before leaving the
//! group. **Dropping** the `run_until` future instead is a
//! crash as far as the guarantee goes: nothing more is committed (the consumer still leaves
//! the group, so its partitions move on at once rather than after the session timeout).
//!
//! # Rebalances
//!
//! Rebalance callbacks run while the runner waits for the next message, never while a
//! handler runs. On revoke, at-least-once **commits** the processed offsets of the revoked
//! partitions before handing them over (if that commit fails, the next owner redelivers
//! them); there is no in-flight work to finish or drop. At-most-once and exactly-once
//! Kafka-to-Kafka discard a batch that was being collected when the assignment changed and
//! read it again; exactly-once into a database applies it (its keys make any message that
//! the partition's next owner also processes a duplicate).
//!
//! # Exactly-once into a database
//!
//! [`Guarantee::ExactlyOnceDatabase`] carries the [`ProcessedStore`](crate::store::ProcessedStore)
//! ([`ExactlyOnceDbSettings`]) and runs a [`DbHandler`] built with [`Runner::new_db`]. Each
//! batch goes through
//! [`ProcessedStore::process_batch`](crate::store::ProcessedStore::process_batch), one
//! database transaction (one fsync) for the batch: each message's effect (the handler) runs
//! on the store's transaction, which also completes the message's idempotency key (from
//! [`RunnerConfig::keys`]: the `idempotency-key` header by default, else the message's
//! topic/partition/offset) and moves the group's next offset for each partition past the
//! batch; a key completed before skips the effect ([`RunStats::duplicates`]). A batch that
//! fails is rolled back and applied again one message per transaction
//! ([`ProcessedStore::process`](crate::store::ProcessedStore::process)), with the retries
//! and dead letters.
//!
//! Key records are pruned in the background ([`PruneSettings`], on by default): only those
//! below the partition's stored offset (no redelivery can reach them) that completed more
//! than a retention ago (a resend as a new record is recognised for that long).
//!
//! The database's offsets are the source of truth: the consumer's rebalance callback reads
//! them from the store on every assignment and assigns each partition at its stored offset
//! (a partition the database has none for starts at the group's Kafka offset, which the
//! runner never commits ahead of the database, else at `auto.offset.reset`). Waiting for the
//! store there blocks the polling worker thread (with `block_in_place`), so this guarantee
//! needs a multi-threaded tokio runtime; if the offsets cannot be read, the runner stops with
//! the error before processing anything.
//!
//! # Exactly-once Kafka-to-Kafka
//!
//! The transactional id is [`RunnerConfig::transactional_id`]: by default
//! `<group id>-<instance id>`. Starting a producer with a transactional id *fences* every
//! older producer with the same id (zombie fencing): the old one's open transaction is
//! aborted and its next transactional call fails fatally, which ends its runner with
//! [`ToolkitError::TransactionFatal`]. Hence **one
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
mod exactly_once_db;
mod handler;

use std::future::Future;

pub use backoff::RetryPolicy;
pub use config::{
    AtLeastOnceSettings, AtMostOnceSettings, ExactlyOnceDbSettings, ExactlyOnceKafkaSettings,
    Guarantee, PruneSettings, RunnerConfig,
};
pub use dead_letter::DeadLetterTopic;
pub use handler::{
    db_handler_fn, handler_fn, DbFnHandler, DbHandler, ErrorKind, FnHandler, Handler, HandlerError,
    HandlerOutput, InDatabase, Message,
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
    /// Exactly-once into a database: messages whose idempotency key was completed before,
    /// so their effect was skipped.
    pub duplicates: u64,
    /// Exactly-once into a database: key records pruned (see
    /// [`PruneSettings`]).
    pub keys_pruned: u64,
}

impl RunStats {
    /// Counts a message the handler processed after `retries` retries.
    fn count_processed(&mut self, retries: u32) {
        self.processed += 1;
        self.retries += u64::from(retries);
    }

    /// Counts a message dead-lettered after `attempts` attempts.
    fn count_dead_lettered(&mut self, attempts: u32) {
        self.dead_lettered += 1;
        self.retries += u64::from(attempts.saturating_sub(1));
    }
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
    /// A runner for `config` (checked here) calling `handler`. For
    /// [`Guarantee::ExactlyOnceDatabase`] use [`Runner::new_db`].
    pub fn new(config: RunnerConfig, handler: H) -> Result<Self, ToolkitError> {
        config.validate()?;
        if matches!(config.guarantee, Guarantee::ExactlyOnceDatabase(_)) {
            return Err(ToolkitError::Config(
                "ExactlyOnceDatabase needs a DbHandler: use Runner::new_db".into(),
            ));
        }
        Ok(Self { config, handler })
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
            Guarantee::AtMostOnce(s) => at_most_once::run(cfg, s, h, shutdown).await,
            Guarantee::AtLeastOnce(s) => at_least_once::run(cfg, s, h, shutdown).await,
            Guarantee::ExactlyOnceKafka(s) => exactly_once::run(cfg, s, h, shutdown).await,
            Guarantee::ExactlyOnceDatabase(_) => Err(ToolkitError::Config(
                "ExactlyOnceDatabase needs a DbHandler: use Runner::new_db".into(),
            )),
        }
    }
}

impl<D: DbHandler> Runner<InDatabase<D>> {
    /// A runner for `config`, whose guarantee must be [`Guarantee::ExactlyOnceDatabase`],
    /// applying `handler`'s effects in the store's transactions. See the
    /// [module docs](self#exactly-once-into-a-database).
    pub fn new_db(config: RunnerConfig, handler: D) -> Result<Self, ToolkitError> {
        config.validate()?;
        if !matches!(config.guarantee, Guarantee::ExactlyOnceDatabase(_)) {
            return Err(ToolkitError::Config(
                "Runner::new_db needs Guarantee::ExactlyOnceDatabase".into(),
            ));
        }
        Ok(Self {
            config,
            handler: InDatabase(handler),
        })
    }

    /// Joins the group and applies messages until `shutdown` resolves, or until an error
    /// the runner cannot get past: a dead letter that cannot be written, the database's
    /// offsets unreadable on assignment, a runtime that is not multi-threaded.
    pub async fn run_until(
        &self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunStats, ToolkitError> {
        match &self.config.guarantee {
            Guarantee::ExactlyOnceDatabase(s) => {
                exactly_once_db::run(&self.config, s, &self.handler.0, shutdown).await
            }
            _ => Err(ToolkitError::Config(
                "Runner::new_db needs Guarantee::ExactlyOnceDatabase".into(),
            )),
        }
    }
}

impl<H> Runner<H> {
    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}
