//! Exactly-once Kafka-to-Kafka: transactional read-process-write (KIP-98, KIP-447).
//!
//! One batch is one transaction: the handler's output records for every message of the
//! batch, and the batch's next offsets sent to the transaction with the consumer's group
//! metadata (so the group coordinator rejects them if this member was fenced by a
//! rebalance), then commit. A `read_committed` reader of the outputs sees each input's
//! outputs once, whatever crashes and aborts happen.
//!
//! - A retriable handler error aborts the transaction and rewinds (seeks) every partition of
//!   the batch to its first offset; the batch is read again after a backoff. A message that
//!   failed `retry.max_attempts` times, or failed with a permanent error, is replaced by its
//!   dead letter inside the transaction.
//! - An abortable client error (a failed delivery, a rejected offset commit) aborts and
//!   rewinds too; a retriable commit error is retried.
//! - A fatal error (the producer was fenced by a newer instance with the same
//!   transactional id, or the coordinator says its epoch is stale) ends the runner with
//!   [`ToolkitError::TransactionFatal`].
//! - A rebalance while a batch is being collected discards the batch and rewinds the
//!   partitions still assigned; the transaction phase does not poll the consumer, so no
//!   rebalance happens inside a transaction.
//!
//! Only the Kafka outputs are exactly-once: a handler's other side effects happen again when
//! a batch is retried or redelivered.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::Offset;

use super::config::{ExactlyOnceKafkaSettings, RunnerConfig};
use super::context::{self, offsets_list, LiveGuard, NextBatch, RunnerConsumer};
use super::dead_letter::dead_letter;
use super::handler::{Handler, HandlerError, Message};
use super::RunStats;
use crate::producer::enqueue;
use crate::ToolkitError;

/// Timeout of each blocking transactional call.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a commit that failed with a retriable error.
const COMMIT_ATTEMPTS: u32 = 3;

/// (topic, partition, offset) of a message.
type Position = (String, i32, i64);

/// What a failed transactional step calls for.
enum Failure {
    /// Abort the transaction and read the batch again (after a backoff if the handler asked
    /// for one).
    Abort { backoff: Option<Duration> },
    /// The producer cannot go on.
    Fatal(KafkaError),
}

/// The state a run keeps across batches.
struct Loop<'a, H> {
    cfg: &'a RunnerConfig,
    settings: &'a ExactlyOnceKafkaSettings,
    handler: &'a H,
    producer: FutureProducer,
    consumer: RunnerConsumer,
    /// Failed attempts per message, until its batch commits.
    failures: HashMap<Position, (u32, HandlerError)>,
    rng: StdRng,
    stats: RunStats,
}

/// Runs until `shutdown` resolves; see the module docs.
pub(super) async fn run<H: Handler>(
    cfg: &RunnerConfig,
    settings: &ExactlyOnceKafkaSettings,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, ToolkitError> {
    let mut producer_config = cfg.producer_config().client_config();
    producer_config
        .set("transactional.id", cfg.transactional_id())
        .set(
            "transaction.timeout.ms",
            settings.transaction_timeout.as_millis().to_string(),
        );
    let producer: FutureProducer = producer_config.create()?;
    // Before the consumer reads the group's offsets: fences older instances with this
    // transactional id and aborts their open transaction, so that the offsets read are final.
    producer
        .init_transactions(TXN_CALL_TIMEOUT)
        .map_err(fatal_or_kafka)?;
    let (consumer, state) = context::subscribe(cfg)?;
    let _live = LiveGuard::arm(&state);
    let mut lp = Loop {
        cfg,
        settings,
        handler,
        producer,
        consumer,
        failures: HashMap::new(),
        rng: StdRng::from_entropy(),
        stats: RunStats::default(),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let generation = state.generation();
        let Some(batch) = lp.collect(&mut shutdown).await else {
            break;
        };
        if state.generation() != generation {
            tracing::info!(
                messages = batch.len(),
                "rebalanced while batching; reading again"
            );
            lp.rewind(&batch, true);
            continue;
        }
        if let Some(delay) = lp.transaction(&batch).await? {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
    Ok(lp.stats)
}

impl<H: Handler> Loop<'_, H> {
    /// Waits for a first message (or shutdown: `None`), then takes more for up to
    /// `batch_linger`, up to `batch_size`.
    async fn collect(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<Vec<Message>> {
        let limits = (self.settings.batch_size, self.settings.batch_linger);
        loop {
            match context::next_batch(&self.consumer, &self.cfg.keys, None, limits, shutdown).await
            {
                NextBatch::Shutdown => return None,
                NextBatch::Idle => continue,
                // A rebalance is checked by the caller, over the whole collection.
                NextBatch::Messages { messages, .. } => return Some(messages),
            }
        }
    }

    /// Runs one transaction over `batch`. Returns a backoff to wait before the next batch
    /// if the transaction was aborted for a retriable handler error.
    async fn transaction(&mut self, batch: &[Message]) -> Result<Option<Duration>, ToolkitError> {
        let outcome = match self.producer.begin_transaction() {
            Ok(()) => self.fill_and_commit(batch).await,
            Err(e) => Err(classify(e)),
        };
        match outcome {
            Ok(()) => {
                self.stats.transactions_committed += 1;
                for m in batch {
                    self.failures
                        .remove(&(m.topic.clone(), m.partition, m.offset));
                }
                Ok(None)
            }
            Err(Failure::Fatal(e)) => Err(ToolkitError::TransactionFatal(e)),
            Err(Failure::Abort { backoff }) => {
                self.abort()?;
                self.stats.transactions_aborted += 1;
                self.rewind(batch, false);
                Ok(backoff)
            }
        }
    }

    /// Sends the batch's outputs (or dead letters) and offsets, and commits.
    async fn fill_and_commit(&mut self, batch: &[Message]) -> Result<(), Failure> {
        let mut deliveries = Vec::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for msg in batch {
            let records = match self.handler.handle(msg).await {
                Ok(out) => {
                    self.stats.processed += 1;
                    out.records
                }
                Err(error) => vec![self.failed(msg, error)?],
            };
            for r in &records {
                let d = enqueue(&self.producer, r).await.map_err(|e| {
                    tracing::warn!(error = %e, "enqueueing an output failed");
                    toolkit_failure(e)
                })?;
                deliveries.push(d);
            }
            next.insert((msg.topic.clone(), msg.partition), msg.offset + 1);
        }
        for d in deliveries {
            d.await.map_err(|e| {
                tracing::warn!(error = %e, "an output was not delivered");
                toolkit_failure(e)
            })?;
        }
        let offsets = offsets_list(next.iter()).map_err(toolkit_failure)?;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or(Failure::Abort { backoff: None })?;
        self.producer
            .send_offsets_to_transaction(&offsets, &metadata, TXN_CALL_TIMEOUT)
            .map_err(classify)?;
        let mut attempt = 1;
        loop {
            match self.producer.commit_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && attempt < COMMIT_ATTEMPTS =>
                {
                    tracing::info!(error = %e, attempt, "commit failed; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }

    /// Records a handler failure on `msg`: either the transaction must abort (to retry), or
    /// the message's dead letter is what the transaction sends for it.
    fn failed(
        &mut self,
        msg: &Message,
        error: HandlerError,
    ) -> Result<crate::producer::ProducerRecord, Failure> {
        let key = (msg.topic.clone(), msg.partition, msg.offset);
        let attempts = self.failures.get(&key).map_or(0, |(n, _)| *n) + 1;
        if error.is_retriable() && self.settings.retry.may_retry(attempts) {
            tracing::debug!(attempts, error = %error.message, "handler failed; aborting the batch");
            let backoff = self.settings.retry.delay(attempts, &mut self.rng);
            self.stats.retries += 1;
            self.failures.insert(key, (attempts, error));
            return Err(Failure::Abort {
                backoff: Some(backoff),
            });
        }
        tracing::warn!(attempts, error = %error.message, "dead-lettering in the transaction");
        self.stats.dead_lettered += 1;
        Ok(dead_letter(
            &self.settings.dead_letter,
            msg,
            &error,
            attempts,
        ))
    }

    /// Aborts the open transaction, retrying a failed abort; a fatal error, or one that
    /// keeps failing, ends the runner.
    fn abort(&self) -> Result<(), ToolkitError> {
        let mut attempt = 1;
        loop {
            match self.producer.abort_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(e) if attempt < COMMIT_ATTEMPTS && !is_fatal(&e) => {
                    tracing::warn!(error = %e, attempt, "abort failed; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(fatal_or_kafka(e)),
            }
        }
    }

    /// Seeks each partition of `batch` back to its first offset, so that it is read again.
    /// With `assigned_only`, partitions no longer assigned are skipped (their next owner
    /// starts at the committed offset).
    fn rewind(&self, batch: &[Message], assigned_only: bool) {
        let mut first: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            first
                .entry((m.topic.as_str(), m.partition))
                .or_insert(m.offset);
        }
        let assignment = self.consumer.assignment().ok();
        for ((topic, partition), offset) in first {
            let held = assignment
                .as_ref()
                .is_none_or(|a| a.find_partition(topic, partition).is_some());
            if assigned_only && !held {
                continue;
            }
            if let Err(e) = self.consumer.seek(
                topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(5),
            ) {
                tracing::info!(topic, partition, offset, error = %e, "rewind failed");
            }
        }
    }
}

/// True for an error after which the transactional producer is unusable (fenced).
fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

/// What a transactional client error calls for.
fn classify(e: KafkaError) -> Failure {
    if is_fatal(&e) {
        return Failure::Fatal(e);
    }
    tracing::warn!(error = %e, "transaction step failed; aborting");
    Failure::Abort { backoff: None }
}

/// A toolkit error inside the transaction: fatal client errors stay fatal.
fn toolkit_failure(e: ToolkitError) -> Failure {
    match e {
        ToolkitError::Kafka(k) => classify(k),
        _ => Failure::Abort { backoff: None },
    }
}

/// `init_transactions` errors: fatal ones end the runner as such.
fn fatal_or_kafka(e: KafkaError) -> ToolkitError {
    if is_fatal(&e) {
        ToolkitError::TransactionFatal(e)
    } else {
        ToolkitError::Kafka(e)
    }
}
