//! At-least-once: process, then commit.
//!
//! Messages are handled one at a time in the order the consumer returns them, which keeps
//! per-partition order (a retry blocks the other partitions too: the price of simplicity).
//! A message's offset becomes committable only once its handler succeeded and its output
//! records were acknowledged, or once its dead letter was acknowledged; processed offsets are
//! committed every `commit_every` messages, every `commit_interval`, on revoke and on a clean
//! shutdown. What a crash can redeliver is therefore at most the `commit_every` messages
//! processed since the last commit, plus the one in flight.

use std::future::Future;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::Instrument;

use super::config::{AtLeastOnceSettings, RunnerConfig};
use super::context::{self, LiveGuard, Next, RebalanceState, RunnerConsumer};
use super::dead_letter::send_dead_letter;
use super::handler::{Handler, HandlerError, Message};
use super::RunStats;
use crate::producer::SafeProducer;
use crate::ToolkitError;

/// How one message ended.
enum Outcome {
    /// The handler succeeded (after `retries` retries).
    Processed { retries: u32 },
    /// It was dead-lettered after `attempts` attempts.
    DeadLettered { attempts: u32 },
    /// Shutdown came during a backoff: not processed, not committed.
    Interrupted,
}

/// Runs until `shutdown` resolves; see the module docs.
pub(super) async fn run<H: Handler>(
    cfg: &RunnerConfig,
    settings: &AtLeastOnceSettings,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, ToolkitError> {
    let (consumer, state) = context::subscribe(cfg)?;
    let _live = LiveGuard::arm(&state);
    let producer = SafeProducer::new(&cfg.producer_config())?;
    let mut rng = StdRng::from_entropy();
    let mut stats = RunStats::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut uncommitted = 0usize;
    let mut last_commit = Instant::now();
    loop {
        if uncommitted > 0
            && (uncommitted >= settings.commit_every
                || last_commit.elapsed() >= settings.commit_interval)
        {
            commit(&state, &consumer, &mut uncommitted, &mut last_commit);
        }
        let wait = settings
            .commit_interval
            .saturating_sub(last_commit.elapsed())
            .max(std::time::Duration::from_millis(10));
        let (msg, span) =
            match context::next_message(&consumer, &cfg.keys, Some(wait), &mut shutdown).await {
                Next::Shutdown => break,
                Next::Idle => continue,
                Next::Message(msg, span) => (msg, span),
            };
        let outcome = process(handler, &msg, settings, &producer, &mut rng, &mut shutdown)
            .instrument(span)
            .await?;
        match outcome {
            Outcome::Processed { retries } => stats.count_processed(retries),
            Outcome::DeadLettered { attempts } => stats.count_dead_lettered(attempts),
            Outcome::Interrupted => break,
        }
        state.processed(&msg.topic, msg.partition, msg.offset + 1);
        uncommitted += 1;
    }
    // A clean stop: commit what is processed before the consumer leaves the group.
    state.commit_pending(&consumer)?;
    Ok(stats)
}

fn commit(
    state: &RebalanceState,
    consumer: &RunnerConsumer,
    uncommitted: &mut usize,
    last_commit: &mut Instant,
) {
    match state.commit_pending(consumer) {
        Ok(()) => *uncommitted = 0,
        // Kept pending: retried at the next commit, or handed over on revoke.
        Err(e) => tracing::warn!(error = %e, "commit failed; will retry"),
    }
    *last_commit = Instant::now();
}

/// Handles `msg` with retries, then dead-letters it if it still fails.
async fn process<H: Handler>(
    handler: &H,
    msg: &Message,
    settings: &AtLeastOnceSettings,
    producer: &SafeProducer,
    rng: &mut StdRng,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Outcome, ToolkitError> {
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match handler.handle(msg).await {
            Ok(out) => match producer.send_all(&out.records).await {
                Ok(_) => {
                    return Ok(Outcome::Processed {
                        retries: attempts - 1,
                    })
                }
                Err(e) => HandlerError::retriable(format!("sending the output: {e}")),
            },
            Err(e) => e,
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
        send_dead_letter(producer, &settings.dead_letter, msg, &error, attempts).await?;
        return Ok(Outcome::DeadLettered { attempts });
    }
}
