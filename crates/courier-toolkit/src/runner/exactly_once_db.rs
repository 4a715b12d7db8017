//! Exactly-once into a database: the effect, the idempotency key and the offset in one
//! database transaction; partitions start at the database's offsets.
//!
//! Messages are handled one at a time in the order the consumer returns them. For each one
//! [`ProcessedStore::process`](crate::store::ProcessedStore::process) runs the handler's
//! effect in a transaction that also completes the message's idempotency key and moves the
//! group's next offset for the partition past it: the effect is applied
//! ([`Outcome::Applied`]) or, if the key was completed before, skipped
//! ([`Outcome::Duplicate`]). A retriable handler error or a failed transaction (rolled back:
//! nothing recorded) is retried with backoff; after the last attempt, or at once on a
//! permanent error, the message is dead-lettered and then recorded as processed with an
//! empty result, so that the database's offset moves past it.
//!
//! On assignment the rebalance callback positions every partition at the offset stored in
//! the database (see [`StoredPositions`](super::context::StoredPositions)): Kafka's committed
//! offsets, committed asynchronously for lag monitoring, are never trusted for where to
//! start. A crash therefore redelivers only messages whose transaction did not commit.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Instrument;

use super::config::{ExactlyOnceDbSettings, RunnerConfig};
use super::context::{self, LiveGuard, Next, StoredPositions};
use super::dead_letter::dead_letter;
use super::handler::{DbHandler, HandlerError, Message};
use super::RunStats;
use crate::producer::SafeProducer;
use crate::store::{Outcome as StoreOutcome, ProcessRequest};
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
    let producer = SafeProducer::new(&cfg.producer_config())?;
    let mut rng = StdRng::from_entropy();
    let mut stats = RunStats::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_commit = Instant::now();
    loop {
        if let Some(every) = settings.kafka_commit_interval {
            if last_commit.elapsed() >= every {
                state.commit_pending_async(&consumer);
                last_commit = Instant::now();
            }
        }
        let next = context::next_message(&consumer, &cfg.keys, Some(IDLE), &mut shutdown).await;
        if let Next::Shutdown = next {
            break;
        }
        if let Some(e) = state.take_position_error() {
            return Err(ToolkitError::Database(format!(
                "positioning the assignment at the database's offsets: {e}"
            )));
        }
        let Next::Message(msg, span) = next else {
            continue;
        };
        let outcome = process(
            cfg,
            settings,
            handler,
            &msg,
            &producer,
            &mut rng,
            &mut shutdown,
        )
        .instrument(span)
        .await?;
        match outcome {
            Outcome::Applied { retries } => {
                stats.processed += 1;
                stats.retries += u64::from(retries);
            }
            Outcome::Duplicate { retries } => {
                stats.duplicates += 1;
                stats.retries += u64::from(retries);
            }
            Outcome::DeadLettered { attempts } => {
                stats.dead_lettered += 1;
                stats.retries += u64::from(attempts.saturating_sub(1));
            }
            Outcome::Interrupted => break,
        }
        if settings.kafka_commit_interval.is_some() {
            state.processed(&msg.topic, msg.partition, msg.offset + 1);
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

/// Applies `msg` in the store with retries, then dead-letters and records it if it still
/// fails.
async fn process<D: DbHandler>(
    cfg: &RunnerConfig,
    settings: &ExactlyOnceDbSettings,
    handler: &D,
    msg: &Message,
    producer: &SafeProducer,
    rng: &mut StdRng,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Outcome, ToolkitError> {
    let req = ProcessRequest {
        group: &cfg.group_id,
        topic: &msg.topic,
        partition: msg.partition,
        offset: msg.offset,
        idempotency_key: msg.idempotency_key.as_bytes(),
    };
    let mut attempts = 0u32;
    let error = loop {
        attempts += 1;
        let mut failed: Option<HandlerError> = None;
        let slot = &mut failed;
        let done = settings
            .store
            .process(&req, |tx| async move {
                handler.handle(msg, tx).await.map_err(|e| {
                    let text = e.to_string();
                    *slot = Some(e);
                    ToolkitError::Handler(text)
                })
            })
            .await;
        let error = match done {
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
            Err(e) => failed.unwrap_or_else(|| HandlerError::retriable(e)),
        };
        if error.is_retriable() && settings.retry.may_retry(attempts) {
            let delay = settings.retry.delay(attempts, rng);
            tracing::debug!(attempts, ?delay, error = %error.message, "retrying");
            tokio::select! {
                biased;
                () = &mut *shutdown => return Ok(Outcome::Interrupted),
                () = tokio::time::sleep(delay) => continue,
            }
        }
        break error;
    };
    let letter = dead_letter(&settings.dead_letter, msg, &error, attempts);
    tracing::warn!(attempts, error = %error.message, dlq = %letter.topic, "dead-lettering");
    producer
        .send(&letter)
        .await
        .map_err(|e| ToolkitError::DeadLetter {
            source_topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            dlq: letter.topic.clone(),
            reason: e.to_string(),
        })?;
    // Record it as processed (no effect), so that the database's offset moves past it.
    let mut failures = 0u32;
    loop {
        match settings
            .store
            .process(&req, |_tx| async { Ok(Vec::new()) })
            .await
        {
            Ok(_) => return Ok(Outcome::DeadLettered { attempts }),
            Err(e) => {
                failures += 1;
                let delay = settings.retry.delay(failures, rng);
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
