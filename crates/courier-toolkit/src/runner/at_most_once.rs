//! At-most-once: commit, then process, a batch at a time.
//!
//! The loop collects a batch (the first message waits; then more, until `batch_size` or
//! until `batch_linger` has passed), synchronously commits the next offset of every partition
//! in it (an answered OffsetCommit is durable on Courier), and only then hands its messages
//! to the handler, one at a time, in order. A handler failure is logged and the message is
//! not retried. Output records are sent after the handler returns, without waiting for more
//! than the send itself.
//!
//! **What a crash loses:** at most the batch being processed: its messages the handler had
//! not finished are committed, so never seen again; nothing is ever processed twice.
//! `batch_size` 1 commits each message before it is processed: a crash then loses only the
//! message being processed, at the price of one broker round trip (and fsync) per message.
//! A clean stop finishes the batch it committed.
//!
//! If the commit fails (typically during a rebalance), the batch is not processed: each of its
//! partitions is rewound to its first offset in the batch so that it is read again, or, if
//! the partition was taken away, the next owner starts from the last committed offset, which
//! is at or before it. A batch during whose collection the assignment changed is not
//! processed either (it may hold messages of partitions revoked since): its partitions still
//! assigned are rewound to the group's committed offsets.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::Offset;
use tracing::Instrument;

use super::config::{AtMostOnceSettings, RunnerConfig};
use super::context::{self, offsets_list, LiveGuard, NextBatch, RunnerConsumer};
use super::handler::{Handler, Message};
use super::RunStats;
use crate::producer::SafeProducer;
use crate::ToolkitError;

/// Attempts at committing one batch's offsets before it is put back.
const COMMIT_ATTEMPTS: u32 = 3;
/// Timeout of reading the group's committed offsets, and of a seek.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `shutdown` resolves; see the module docs.
pub(super) async fn run<H: Handler>(
    cfg: &RunnerConfig,
    settings: &AtMostOnceSettings,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, ToolkitError> {
    let (consumer, state) = context::subscribe(cfg)?;
    let _live = LiveGuard::arm(&state);
    let producer = SafeProducer::new(&cfg.producer_config())?;
    let mut stats = RunStats::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let limits = (settings.batch_size, settings.batch_linger);
    loop {
        let batch =
            match context::next_batch(&consumer, &cfg.keys, None, limits, &mut shutdown).await {
                NextBatch::Shutdown => break,
                NextBatch::Idle => continue,
                NextBatch::Messages {
                    rebalanced: true,
                    messages,
                } => {
                    tracing::info!(
                        messages = messages.len(),
                        "rebalanced while batching; reading again"
                    );
                    rewind(&consumer, &messages, Rewind::ToCommitted);
                    continue;
                }
                NextBatch::Messages { messages, .. } => messages,
            };
        if !commit_before(&consumer, &batch).await {
            continue;
        }
        for msg in &batch {
            process(handler, msg, &producer, &mut stats)
                .instrument(context::message_span(msg))
                .await;
        }
    }
    Ok(stats)
}

/// Runs the handler on `msg` (committed already) and sends its outputs.
async fn process<H: Handler>(
    handler: &H,
    msg: &Message,
    producer: &SafeProducer,
    stats: &mut RunStats,
) {
    match handler.handle(msg).await {
        Ok(out) => {
            stats.processed += 1;
            if let Err(e) = producer.send_all(&out.records).await {
                tracing::warn!(error = %e, "sending the output failed");
            }
        }
        Err(e) => {
            stats.failed += 1;
            tracing::warn!(error = %e, "handler failed; the message is dropped");
        }
    }
}

/// Commits past every message of `batch`; on failure rewinds its partitions to the batch's
/// first offsets and returns false.
async fn commit_before(consumer: &RunnerConsumer, batch: &[Message]) -> bool {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let end = next.entry((m.topic.clone(), m.partition)).or_default();
        *end = (*end).max(m.offset + 1);
    }
    let mut last_error = None;
    for attempt in 1..=COMMIT_ATTEMPTS {
        let committed =
            offsets_list(next.iter()).and_then(|tpl| Ok(consumer.commit(&tpl, CommitMode::Sync)?));
        match committed {
            Ok(()) => return true,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
    tracing::warn!(
        error = ?last_error,
        messages = batch.len(),
        "commit failed; not processing, reading again"
    );
    rewind(consumer, batch, Rewind::ToFirst);
    false
}

/// Where [`rewind`] puts a partition back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rewind {
    /// Its first offset in the batch: the batch's commit failed, so nothing of it was handed
    /// to a handler.
    ToFirst,
    /// The group's committed offset (else, if there is none, the first offset in the
    /// batch): the assignment changed during the batch, so the partition may have had
    /// another owner in between, whose commit marks what was handed out. If the committed
    /// offsets cannot be read, nothing is rewound and the batch is lost rather than risk
    /// processing a message twice.
    ToCommitted,
}

/// Seeks each partition of `batch` back (see [`Rewind`]) so that its messages are read
/// again. A partition no longer assigned fails to seek, which is fine: its next owner starts
/// at the committed offset.
fn rewind(consumer: &RunnerConsumer, batch: &[Message], to: Rewind) {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        first
            .entry((m.topic.clone(), m.partition))
            .or_insert(m.offset);
    }
    if to == Rewind::ToCommitted {
        let committed = offsets_list(first.iter())
            .and_then(|tpl| Ok(consumer.committed_offsets(tpl, CALL_TIMEOUT)?));
        match committed {
            Ok(tpl) => {
                for e in tpl.elements() {
                    if let Some(offset) = e.offset().to_raw().filter(|o| *o >= 0) {
                        first.insert((e.topic().to_string(), e.partition()), offset);
                    }
                }
            }
            Err(e) => {
                // Rewinding blindly could hand out again what another owner processed.
                tracing::warn!(
                    error = %e,
                    messages = batch.len(),
                    "reading the committed offsets failed; the batch is dropped"
                );
                return;
            }
        }
    }
    for ((topic, partition), offset) in first {
        if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(offset), CALL_TIMEOUT) {
            tracing::info!(
                topic,
                partition,
                offset,
                error = %e,
                "rewind failed (partition revoked?); its next owner reads it"
            );
        }
    }
}
