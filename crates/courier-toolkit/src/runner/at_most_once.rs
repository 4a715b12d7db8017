//! At-most-once: commit, then process.
//!
//! Each message's next offset is committed synchronously (an answered OffsetCommit is durable
//! on Courier) before the handler sees it. A crash after the commit loses that message; a
//! handler failure is logged and the message is not retried. Output records are sent after
//! the handler returns, without waiting for more than the send itself.
//!
//! If the commit fails (typically during a rebalance), the message is not processed: the
//! consumer is rewound to it so that it is read again, or, if the partition was taken away,
//! the next owner starts from the last committed offset, which is at or before it.

use std::future::Future;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::Offset;
use tracing::Instrument;

use super::config::RunnerConfig;
use super::context::{self, offsets_list, LiveGuard, Next, RunnerConsumer};
use super::handler::{Handler, Message};
use super::RunStats;
use crate::producer::SafeProducer;
use crate::ToolkitError;

/// Attempts at committing one message's offset before it is put back.
const COMMIT_ATTEMPTS: u32 = 3;

/// Runs until `shutdown` resolves; see the module docs.
pub(super) async fn run<H: Handler>(
    cfg: &RunnerConfig,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, ToolkitError> {
    let (consumer, state) = context::subscribe(cfg)?;
    let _live = LiveGuard::arm(&state);
    let producer = SafeProducer::new(&cfg.producer_config())?;
    let mut stats = RunStats::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (msg, span) =
            match context::next_message(&consumer, &cfg.keys, None, &mut shutdown).await {
                Next::Shutdown => break,
                Next::Idle => continue,
                Next::Message(msg, span) => (msg, span),
            };
        if !commit_before(&consumer, &msg)
            .instrument(span.clone())
            .await
        {
            continue;
        }
        async {
            match handler.handle(&msg).await {
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
        .instrument(span)
        .await;
    }
    Ok(stats)
}

/// Commits past `msg`; on failure rewinds to it and returns false.
async fn commit_before(consumer: &RunnerConsumer, msg: &Message) -> bool {
    let key = (msg.topic.clone(), msg.partition);
    let next = msg.offset + 1;
    let mut last_error = None;
    for attempt in 1..=COMMIT_ATTEMPTS {
        let committed = offsets_list(std::iter::once((&key, &next)))
            .and_then(|tpl| Ok(consumer.commit(&tpl, CommitMode::Sync)?));
        match committed {
            Ok(()) => return true,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
    }
    tracing::warn!(error = ?last_error, "commit failed; not processing, reading it again");
    if let Err(e) = consumer.seek(
        &msg.topic,
        msg.partition,
        Offset::Offset(msg.offset),
        Duration::from_secs(5),
    ) {
        tracing::info!(error = %e, "rewind failed (partition revoked?); its next owner reads it");
    }
    false
}
