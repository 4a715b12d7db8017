//! The consumer's rebalance callbacks, and the state they share with the run loop.
//!
//! librdkafka runs the callbacks on the thread that polls the consumer, inside
//! `StreamConsumer::recv`. The run loops handle one message (or one batch) between polls, so
//! no handler call is ever in flight while a callback runs: on revoke there is nothing to
//! finish, only processed offsets to commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::RunnerConfig;
use crate::ToolkitError;

/// The consumer type every run loop uses.
pub(crate) type RunnerConsumer = StreamConsumer<RunnerContext>;

/// State shared by the run loop and the rebalance callbacks.
#[derive(Debug, Default)]
pub(crate) struct RebalanceState {
    /// At-least-once: the next offset of each partition whose messages up to it are
    /// processed but not yet committed.
    pending: Mutex<BTreeMap<(String, i32), i64>>,
    /// True while the run loop is alive. A revoke commits pending offsets only then: when
    /// the run future is dropped (a crash, as far as the guarantee is concerned) the
    /// consumer's close must not commit on its behalf.
    live: AtomicBool,
    /// Bumped on every assignment and revocation, so that a loop can tell that its
    /// partitions changed while it collected a batch.
    generation: AtomicU64,
}

impl RebalanceState {
    /// Records that messages of `topic`/`partition` before `next_offset` are processed.
    pub(crate) fn processed(&self, topic: &str, partition: i32, next_offset: i64) {
        self.lock_pending()
            .insert((topic.to_string(), partition), next_offset);
    }

    /// The rebalance generation (see [`RebalanceState::generation`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Synchronously commits every pending offset; they stay pending if the commit fails.
    pub(crate) fn commit_pending(&self, consumer: &RunnerConsumer) -> Result<(), ToolkitError> {
        let mut pending = self.lock_pending();
        if pending.is_empty() {
            return Ok(());
        }
        let tpl = offsets_list(pending.iter())?;
        consumer.commit(&tpl, CommitMode::Sync)?;
        tracing::debug!(partitions = pending.len(), "committed processed offsets");
        pending.clear();
        Ok(())
    }

    fn lock_pending(&self) -> MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the run loop live while it exists, and dead when dropped, whether the loop
/// returned or its future was dropped. Bind it after the consumer (`let _live = ...;` in a
/// statement of its own) so that it is dropped first.
pub(crate) struct LiveGuard(Arc<RebalanceState>);

impl LiveGuard {
    /// Marks the loop of `state` live.
    pub(crate) fn arm(state: &Arc<RebalanceState>) -> Self {
        state.live.store(true, Ordering::SeqCst);
        Self(Arc::clone(state))
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.store(false, Ordering::SeqCst);
    }
}

/// The rebalance callbacks.
pub(crate) struct RunnerContext {
    /// Shared with the run loop.
    state: Arc<RebalanceState>,
}

impl ClientContext for RunnerContext {}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut pending = self.state.lock_pending();
        let mine: Vec<((String, i32), i64)> = revoked
            .elements()
            .iter()
            .filter_map(|e| {
                let key = (e.topic().to_string(), e.partition());
                pending.remove(&key).map(|next| (key, next))
            })
            .collect();
        if mine.is_empty() || !self.state.live.load(Ordering::SeqCst) {
            return;
        }
        // Commit what was processed before handing the partitions over, so that the next
        // owner does not process it again. A failure only widens the redelivery window.
        let committed = offsets_list(mine.iter().map(|(k, v)| (k, v)))
            .and_then(|tpl| Ok(consumer.commit(&tpl, CommitMode::Sync)?));
        match committed {
            Ok(()) => tracing::info!(partitions = mine.len(), "committed on revoke"),
            Err(e) => tracing::warn!(error = %e, "commit on revoke failed; redelivery follows"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "assigned");
        }
    }
}

/// A list of (topic, partition) → offset.
pub(crate) fn offsets_list<'a>(
    offsets: impl Iterator<Item = (&'a (String, i32), &'a i64)>,
) -> Result<TopicPartitionList, ToolkitError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(tpl)
}

/// Creates the consumer, subscribes it, and returns it with its shared state.
pub(crate) fn subscribe(
    cfg: &RunnerConfig,
) -> Result<(RunnerConsumer, Arc<RebalanceState>), ToolkitError> {
    let state = Arc::new(RebalanceState::default());
    let consumer: RunnerConsumer = cfg.consumer_config()?.create_with_context(RunnerContext {
        state: Arc::clone(&state),
    })?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok((consumer, state))
}
