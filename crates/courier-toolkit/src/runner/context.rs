//! The consumer's rebalance callbacks, and the state they share with the run loop.
//!
//! librdkafka runs the callbacks on the thread that polls the consumer, inside
//! `StreamConsumer::recv`. The run loops handle one message (or one batch) between polls, so
//! no handler call is ever in flight while a callback runs: on revoke there is nothing to
//! finish, only processed offsets to commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
    StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::RunnerConfig;
use crate::store::ProcessedStore;
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
    /// Exactly-once into a database: why positioning an assignment at the stored offsets
    /// failed; the run loop stops with it before processing anything.
    position_error: Mutex<Option<String>>,
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

    /// Commits every pending offset without waiting for the broker (lag monitoring only);
    /// they are no longer pending.
    pub(crate) fn commit_pending_async(&self, consumer: &RunnerConsumer) {
        let mut pending = self.lock_pending();
        if pending.is_empty() {
            return;
        }
        let committed = offsets_list(pending.iter())
            .and_then(|tpl| Ok(consumer.commit(&tpl, CommitMode::Async)?));
        if let Err(e) = committed {
            tracing::debug!(error = %e, "asynchronous commit failed");
        }
        pending.clear();
    }

    /// Takes the error of a failed positioning (see [`StoredPositions`]), if any.
    pub(crate) fn take_position_error(&self) -> Option<String> {
        self.position_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
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

/// Where exactly-once into a database positions assigned partitions: the group's next
/// offsets stored in the database.
pub(crate) struct StoredPositions {
    /// The processed-ID store.
    pub(crate) store: ProcessedStore,
    /// The consumer group.
    pub(crate) group: String,
    /// The (multi-threaded) runtime the store's connection runs on.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl StoredPositions {
    /// Sets the offset of every partition of `tpl` that the store has an offset for; the
    /// others keep theirs (the group's committed Kafka offset, which the runner never
    /// commits ahead of the database, else `auto.offset.reset`). Returns how many were set.
    ///
    /// Called inside librdkafka's rebalance callback, on a runtime worker thread that is
    /// polling the consumer: `block_in_place` hands the worker's other tasks (such as a
    /// PostgreSQL connection) to other workers while it waits for the store.
    fn position(&self, tpl: &mut TopicPartitionList) -> Result<usize, ToolkitError> {
        let topics: BTreeSet<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_string())
            .collect();
        let read = async {
            let mut stored = Vec::new();
            for topic in topics {
                let offsets = self.store.committed_offsets(&self.group, &topic).await?;
                stored.extend(offsets.into_iter().map(|(p, o)| (topic.clone(), p, o)));
            }
            Ok::<_, ToolkitError>(stored)
        };
        let stored = tokio::task::block_in_place(|| self.runtime.block_on(read))?;
        let mut set = 0;
        for (topic, partition, next) in stored {
            if tpl.find_partition(&topic, partition).is_some() {
                tpl.set_partition_offset(&topic, partition, Offset::Offset(next))?;
                set += 1;
            }
        }
        Ok(set)
    }
}

/// The rebalance callbacks.
pub(crate) struct RunnerContext {
    /// Shared with the run loop.
    state: Arc<RebalanceState>,
    /// Exactly-once into a database: where assigned partitions start.
    positions: Option<StoredPositions>,
}

impl ClientContext for RunnerContext {}

impl ConsumerContext for RunnerContext {
    /// librdkafka's default rebalance (as in `rdkafka`), except that under exactly-once into
    /// a database an assignment's offsets are first set to the stored ones.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if let (true, Some(positions)) = (assign, &self.positions) {
            match positions.position(tpl) {
                Ok(set) => tracing::info!(
                    partitions = tpl.count(),
                    positioned = set,
                    "positioned the assignment at the database's offsets"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "reading the database's offsets failed");
                    *self
                        .state
                        .position_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
            }
        }
        let tpl = &*tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            _ => Rebalance::Error(KafkaError::Rebalance(err.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match (assign, cooperative) {
            (true, true) => consumer.incremental_assign(tpl),
            (true, false) => consumer.assign(tpl),
            (false, true) => consumer.incremental_unassign(tpl),
            (false, false) => consumer.unassign(),
        };
        if let Err(e) = done {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

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
    subscribe_with(cfg, None)
}

/// [`subscribe`], positioning assignments at `positions` if given.
pub(crate) fn subscribe_with(
    cfg: &RunnerConfig,
    positions: Option<StoredPositions>,
) -> Result<(RunnerConsumer, Arc<RebalanceState>), ToolkitError> {
    let state = Arc::new(RebalanceState::default());
    let consumer: RunnerConsumer = cfg.consumer_config()?.create_with_context(RunnerContext {
        state: Arc::clone(&state),
        positions,
    })?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok((consumer, state))
}

/// What waiting for the next message gave.
pub(crate) enum Next {
    /// The shutdown future resolved.
    Shutdown,
    /// Nothing arrived within the wait (or the consumer reported an error, logged).
    Idle,
    /// A message, with its tracing span.
    Message(super::handler::Message, tracing::Span),
}

/// Waits for the next message, up to `wait` (`None`: until one comes), or for `shutdown`,
/// which wins when both are ready. The one receive loop of every runner.
pub(crate) async fn next_message(
    consumer: &RunnerConsumer,
    keys: &crate::keys::KeyExtractor,
    wait: Option<std::time::Duration>,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Next {
    let recv = async {
        match wait {
            Some(w) => tokio::time::timeout(w, consumer.recv()).await.ok(),
            None => Some(consumer.recv().await),
        }
    };
    let received = tokio::select! {
        biased;
        () = shutdown => return Next::Shutdown,
        r = recv => r,
    };
    match received {
        None => Next::Idle,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "consumer error");
            Next::Idle
        }
        Some(Ok(m)) => {
            let msg = super::handler::Message::from_kafka(&m, keys);
            let span = message_span(&msg);
            Next::Message(msg, span)
        }
    }
}

/// The tracing span of handling `msg`.
pub(crate) fn message_span(msg: &super::handler::Message) -> tracing::Span {
    tracing::debug_span!(
        "message",
        topic = %msg.topic,
        partition = msg.partition,
        offset = msg.offset
    )
}

/// What waiting for the next batch gave.
pub(crate) enum NextBatch {
    /// The shutdown future resolved before a first message came.
    Shutdown,
    /// No first message within the wait (or the consumer reported an error, logged).
    Idle,
    /// One or more messages, in the order the consumer returned them.
    Messages {
        /// The batch.
        messages: Vec<super::handler::Message>,
        /// The assignment changed after the first message arrived: the batch may hold
        /// messages of partitions revoked since (and, if they were assigned again, the
        /// consumer restarted them at their committed offsets).
        rebalanced: bool,
    },
}

/// Waits for a first message as [`next_message`] does, then takes more until the batch
/// holds `size` or `linger` has passed (messages already fetched are taken even when the
/// linger is over). Shutdown is watched only during the first wait: the linger is short.
pub(crate) async fn next_batch(
    consumer: &RunnerConsumer,
    keys: &crate::keys::KeyExtractor,
    wait: Option<std::time::Duration>,
    (size, linger): (usize, std::time::Duration),
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> NextBatch {
    let first = match next_message(consumer, keys, wait, shutdown).await {
        Next::Shutdown => return NextBatch::Shutdown,
        Next::Idle => return NextBatch::Idle,
        Next::Message(msg, _span) => msg,
    };
    let generation = consumer.context().state.generation();
    let mut messages = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while messages.len() < size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_linger_over) => break,
            Ok(Ok(m)) => messages.push(super::handler::Message::from_kafka(&m, keys)),
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
        }
    }
    let rebalanced = consumer.context().state.generation() != generation;
    NextBatch::Messages {
        messages,
        rebalanced,
    }
}
