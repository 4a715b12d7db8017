//! Exactly-once into a database: the effects, idempotency keys and offsets of a batch of
//! messages in one database transaction; partitions start at the database's offsets.
//!
//! The loop collects a batch (the first message waits; then more, until `batch_size` or
//! until `batch_linger` has passed) and applies it with
//! [`ProcessedStore::process_batch`](crate::store::ProcessedStore::process_batch): in **one
//! transaction** each message's effect runs (the handler, on the transaction) and its
//! idempotency key is completed, or, if the key was completed before, the effect is skipped
//! ([`Outcome::Duplicate`]); the group's next offset of each partition moves past the batch.
//! One commit, so one fsync, per batch. Messages are applied in the order the consumer
//! returned them, so each partition's in offset order.
//!
//! If the batch's transaction fails (a handler error, a failed statement, a failed commit),
//! it rolls back and nothing of the batch is recorded; its messages are then applied again
//! **one per transaction**, in order, with
//! [`ProcessedStore::process`](crate::store::ProcessedStore::process): a retriable handler
//! error or a failed transaction is retried with backoff; after the last attempt, or at once
//! on a permanent error, the message is dead-lettered and then recorded as processed with an
//! empty result, so that the database's offset moves past it. A handler may therefore be
//! called again for a message whose effect was rolled back with its batch. `batch_size` 1 is
//! a transaction per message.
//!
//! On assignment the rebalance callback positions every partition at the offset stored in
//! the database (see [`StoredPositions`]): Kafka's committed
//! offsets, committed asynchronously for lag monitoring, are never trusted for where to
//! start. A crash therefore redelivers only messages whose transaction did not commit. A
//! batch may hold messages of a partition revoked while it lingered: they are applied all
//! the same, which is safe, since their keys make the new owner's processing of the same
//! messages (or this instance's, re-positioned at the database's offset) a duplicate, and the
//! database's offsets never move back.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Instrument;

use super::config::{ExactlyOnceDbSettings, PruneSettings, RunnerConfig};
use super::context::{self, LiveGuard, NextBatch, StoredPositions};
use super::dead_letter::send_dead_letter;
use super::handler::{DbHandler, HandlerError, Message};
use super::RunStats;
use crate::producer::SafeProducer;
use crate::store::{Outcome as StoreOutcome, ProcessRequest, Tx};
use crate::ToolkitError;

/// How long the loop waits for a message before it looks at its commit timer again.
const IDLE: Duration = Duration::from_millis(500);

/// How one message ended.
enum Outcome {
    /// The effect was applied (after `retries` retries).
    Applied { retries: u32 },
    /// The key was completed before: the effect was skipped.
    Duplicate { retries: u32 },
    /// It was dead-lettered after `attempts` attempts, and recorded as processed.
    DeadLettered { attempts: u32 },
    /// Shutdown came during a backoff: nothing recorded.
    Interrupted,
}

/// A batch whose transaction rolled back.
struct BatchFailed {
    /// Why.
    error: ToolkitError,
    /// The message whose attempt failed (its position in the batch) and how: its handler's
    /// error, or a retriable one for a failed statement. `None` when no message's part
    /// failed (the transaction's start or commit).
    at: Option<(usize, HandlerError)>,
}

/// What applying messages needs, for the whole run.
struct Applier<'a, D> {
    cfg: &'a RunnerConfig,
    settings: &'a ExactlyOnceDbSettings,
    handler: &'a D,
    /// Sends dead letters.
    producer: SafeProducer,
}

/// Runs until `shutdown` resolves; see the module docs.
pub(super) async fn run<D: DbHandler>(
    cfg: &RunnerConfig,
    settings: &ExactlyOnceDbSettings,
    handler: &D,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, ToolkitError> {
    let runtime = Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
        .ok_or_else(|| {
            ToolkitError::Config(
                "ExactlyOnceDatabase runs on a multi-threaded tokio runtime: assignments wait \
                 for the database inside the consumer's rebalance callback"
                    .into(),
            )
        })?;
    let positions = StoredPositions {
        store: settings.store.clone(),
        group: cfg.group_id.clone(),
        runtime,
    };
    let (consumer, state) = context::subscribe_with(cfg, Some(positions))?;
    let _live = LiveGuard::arm(&state);
    let applier = Applier {
        cfg,
        settings,
        handler,
        producer: SafeProducer::new(&cfg.producer_config())?,
    };
    let mut rng = StdRng::from_entropy();
    let mut stats = RunStats::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_commit = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        if let Some(p) = settings.prune {
            if last_prune.elapsed() >= p.every {
                prune(cfg, settings, p, &mut stats).await;
                last_prune = Instant::now();
            }
        }
        if let Some(every) = settings.kafka_commit_interval {
            if last_commit.elapsed() >= every {
                state.commit_pending_async(&consumer);
                last_commit = Instant::now();
            }
        }
        let limits = (settings.batch_size, settings.batch_linger);
        let next =
            context::next_batch(&consumer, &cfg.keys, Some(IDLE), limits, &mut shutdown).await;
        if let NextBatch::Shutdown = next {
            break;
        }
        if let Some(e) = state.take_position_error() {
            return Err(ToolkitError::Database(format!(
                "positioning the assignment at the database's offsets: {e}"
            )));
        }
        let NextBatch::Messages { messages, .. } = next else {
            continue;
        };
        let done = applier
            .apply(&messages, &mut stats, &mut rng, &mut shutdown)
            .await?;
        if settings.kafka_commit_interval.is_some() {
            for msg in &messages[..done] {
                state.processed(&msg.topic, msg.partition, msg.offset + 1);
            }
        }
        if done < messages.len() {
            break; // interrupted by the shutdown during a backoff
        }
    }
    // A clean stop: bring Kafka's offsets (monitoring only) up to date; a failure is harmless.
    if settings.kafka_commit_interval.is_some() {
        if let Err(e) = state.commit_pending(&consumer) {
            tracing::warn!(error = %e, "final Kafka commit failed (the database's offsets hold)");
        }
    }
    Ok(stats)
}

/// Deletes the group's key records that no redelivery can reach any more. A failure is
/// logged and tried again next time: the records only take room meanwhile.
async fn prune(
    cfg: &RunnerConfig,
    settings: &ExactlyOnceDbSettings,
    p: PruneSettings,
    stats: &mut RunStats,
) {
    match settings
        .store
        .prune(&cfg.group_id, p.retention, std::time::SystemTime::now())
        .await
    {
        Ok(n) => {
            stats.keys_pruned += n;
            if n > 0 {
                tracing::info!(
                    pruned = n,
                    "pruned idempotency keys no redelivery can reach"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "pruning idempotency keys failed; trying again later"),
    }
}

/// Adds `outcome` to `stats`; false for an interruption.
fn count(stats: &mut RunStats, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Applied { retries } => stats.count_processed(retries),
        Outcome::Duplicate { retries } => {
            stats.duplicates += 1;
            stats.retries += u64::from(retries);
        }
        Outcome::DeadLettered { attempts } => stats.count_dead_lettered(attempts),
        Outcome::Interrupted => return false,
    }
    true
}

impl<D: DbHandler> Applier<'_, D> {
    /// What the store is told about `msg`.
    fn request<'m>(&'m self, msg: &'m Message) -> ProcessRequest<'m> {
        ProcessRequest {
            group: &self.cfg.group_id,
            topic: &msg.topic,
            partition: msg.partition,
            offset: msg.offset,
            idempotency_key: msg.idempotency_key.as_bytes(),
        }
    }

    /// The handler's effect for `msg` on `tx`; its error is kept in `failed` (the store
    /// sees only its text).
    async fn effect(
        &self,
        msg: &Message,
        tx: Tx,
        failed: &Mutex<Option<HandlerError>>,
    ) -> Result<Vec<u8>, ToolkitError> {
        self.handler.handle(msg, tx).await.map_err(|e| {
            let text = e.to_string();
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            ToolkitError::Handler(text)
        })
    }

    /// Applies `messages` in one transaction, or, if that fails, one per transaction (with
    /// retries and dead letters). A lone message goes to the one-message path at once, so
    /// that its first attempt is counted and backed off from like every other. Returns how
    /// many were dealt with: all, unless the shutdown interrupted a backoff.
    async fn apply(
        &self,
        messages: &[Message],
        stats: &mut RunStats,
        rng: &mut StdRng,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<usize, ToolkitError> {
        let mut earlier = None;
        if messages.len() > 1 {
            match self.batch(messages).await {
                Ok(outcomes) => {
                    for (msg, outcome) in messages.iter().zip(outcomes) {
                        let outcome = match outcome {
                            StoreOutcome::Applied { .. } => Outcome::Applied { retries: 0 },
                            StoreOutcome::Duplicate { .. } => {
                                let key = &msg.idempotency_key;
                                tracing::debug!(%key, "duplicate: effect skipped");
                                Outcome::Duplicate { retries: 0 }
                            }
                        };
                        count(stats, outcome);
                    }
                    return Ok(messages.len());
                }
                Err(BatchFailed { error, at }) => {
                    tracing::warn!(
                        %error,
                        messages = messages.len(),
                        "batch rolled back; applying its messages one per transaction"
                    );
                    earlier = at;
                }
            }
        }
        for (i, msg) in messages.iter().enumerate() {
            // The batch was the first attempt of the message that failed it.
            let first = earlier.take_if(|(at, _)| *at == i).map(|(_, e)| e);
            let outcome = self
                .one(msg, first, rng, shutdown)
                .instrument(context::message_span(msg))
                .await?;
            if !count(stats, outcome) {
                return Ok(i);
            }
        }
        Ok(messages.len())
    }

    /// Applies `batch` in one store transaction: all of it, or (on an error) nothing.
    async fn batch(&self, batch: &[Message]) -> Result<Vec<StoreOutcome>, BatchFailed> {
        let reqs: Vec<ProcessRequest<'_>> = batch.iter().map(|m| self.request(m)).collect();
        let failed = Mutex::new(None);
        let effect = |i: usize, tx| {
            let msg = &batch[i];
            let span = context::message_span(msg);
            self.effect(msg, tx, &failed).instrument(span)
        };
        let error = match self.settings.store.process_batch(&reqs, effect).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) => e,
        };
        let at = match &error {
            ToolkitError::BatchRolledBack {
                index: Some(i),
                source,
            } => {
                let handler_error = failed.into_inner().unwrap_or_else(|p| p.into_inner());
                Some((
                    *i,
                    handler_error.unwrap_or_else(|| HandlerError::retriable(source)),
                ))
            }
            _ => None,
        };
        Err(BatchFailed { error, at })
    }

    /// Applies `msg` in its own transaction, with retries (`earlier`: its first attempt
    /// failed already, in a batch), then dead-letters and records it if it still fails.
    async fn one(
        &self,
        msg: &Message,
        earlier: Option<HandlerError>,
        rng: &mut StdRng,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Outcome, ToolkitError> {
        let req = self.request(msg);
        let retry = &self.settings.retry;
        let mut attempts = u32::from(earlier.is_some());
        let mut last_error = earlier;
        let error = loop {
            if let Some(error) = last_error.take() {
                if !(error.is_retriable() && retry.may_retry(attempts)) {
                    break error;
                }
                let delay = retry.delay(attempts, rng);
                tracing::debug!(attempts, ?delay, error = %error.message, "retrying");
                tokio::select! {
                    biased;
                    () = &mut *shutdown => return Ok(Outcome::Interrupted),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            attempts += 1;
            let failed = Mutex::new(None);
            let done = self
                .settings
                .store
                .process(&req, |tx| self.effect(msg, tx, &failed))
                .await;
            match done {
                Ok(StoreOutcome::Applied { .. }) => {
                    return Ok(Outcome::Applied {
                        retries: attempts - 1,
                    })
                }
                Ok(StoreOutcome::Duplicate { .. }) => {
                    tracing::debug!(key = %msg.idempotency_key, "duplicate: effect skipped");
                    return Ok(Outcome::Duplicate {
                        retries: attempts - 1,
                    });
                }
                // The handler's own error, or the database's (the transaction rolled back).
                Err(e) => {
                    let handler_error = failed.into_inner().unwrap_or_else(|p| p.into_inner());
                    last_error = Some(handler_error.unwrap_or_else(|| HandlerError::retriable(e)));
                }
            }
        };
        self.dead_letter(msg, &req, &error, attempts, rng, shutdown)
            .await
    }

    /// Sends `msg`'s dead letter, then records it as processed (no effect), so that the
    /// database's offset moves past it.
    async fn dead_letter(
        &self,
        msg: &Message,
        req: &ProcessRequest<'_>,
        error: &HandlerError,
        attempts: u32,
        rng: &mut StdRng,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Outcome, ToolkitError> {
        let dlq = &self.settings.dead_letter;
        send_dead_letter(&self.producer, dlq, msg, error, attempts).await?;
        let mut failures = 0u32;
        loop {
            match self
                .settings
                .store
                .process(req, |_tx| async { Ok(Vec::new()) })
                .await
            {
                Ok(_) => return Ok(Outcome::DeadLettered { attempts }),
                Err(e) => {
                    failures += 1;
                    let delay = self.settings.retry.delay(failures, rng);
                    tracing::warn!(error = %e, ?delay, "recording a dead letter failed; retrying");
                    tokio::select! {
                        biased;
                        // Not recorded: delivered (and dead-lettered) again after a restart.
                        () = &mut *shutdown => return Ok(Outcome::Interrupted),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
