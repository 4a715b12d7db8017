//! Runs the group coordinator: delivers its answers, drives its timers and keeps committed
//! offsets durable.
//!
//! Committed offsets live in an internal log (`<data>/meta/__consumer_offsets`), a partition
//! like any other with its own group-commit syncer. A commit is appended under the coordinator
//! lock (so log order is decision order), the OffsetCommit answer waits for the fsync, and only
//! then are the records applied to the coordinator's view, in log order, so OffsetFetch never
//! shows an offset that a crash could take back. On start the log is replayed; when it holds
//! much more than the live offsets, the live set is written again and the old segments dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use courier_coordinator::consumer::{
    ConsumerConfig, ConsumerGroups, GroupView, Heartbeat, HeartbeatResponse, TopicsView,
};
use courier_coordinator::group::{
    CommitRequest, Effect, GroupConfig, GroupCoordinator, JoinRequest, JoinResult, LeaveOutcome,
    LeavingMember, PartitionResults, SyncRequest, SyncResult, Token,
};
use courier_coordinator::offset_record::OffsetRecord;
use courier_coordinator::CoordinatorError;
use tokio::sync::{oneshot, watch, Notify};

use crate::error::BrokerError;
use crate::internal_log;
use crate::now_ms;
use crate::partition::Partition;

/// How long an OffsetCommit waits for its fsync before failing.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is waiting for a parked request's answer.
enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// The coordinator and the offset records appended but not yet applied, guarded together so
/// that append order and apply order are the same.
struct Inner {
    coordinator: GroupCoordinator,
    /// KIP-848 consumer-protocol groups (their offsets live in `coordinator` too).
    consumer: ConsumerGroups,
    /// (log end offset after the append, records), oldest first.
    unapplied: VecDeque<(u64, Vec<OffsetRecord>)>,
}

/// The group coordinator as the server sees it.
pub struct GroupService {
    inner: Mutex<Inner>,
    waiters: Mutex<HashMap<Token, Waiter>>,
    next_token: AtomicU64,
    /// The internal offsets log.
    log: Arc<Partition>,
    /// Wakes the timer task when a request may have moved the next deadline earlier.
    timer: Notify,
}

impl GroupService {
    /// Opens the offsets log under `meta_dir`, replays it, and starts the timer task.
    pub fn open(
        meta_dir: &Path,
        config: GroupConfig,
        consumer_config: ConsumerConfig,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let log = internal_log::open(meta_dir, "__consumer_offsets", hw_changed)?;
        let incarnation = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let mut coordinator = GroupCoordinator::new(config, incarnation.clone());
        let consumer = ConsumerGroups::new(consumer_config, incarnation);
        let (live, total) = replay(&log, &mut coordinator)?;
        let service = Arc::new(Self {
            inner: Mutex::new(Inner {
                coordinator,
                consumer,
                unapplied: VecDeque::new(),
            }),
            waiters: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            log,
            timer: Notify::new(),
        });
        if total > 1000 && total > 2 * live {
            service.compact()?;
        }
        tracing::info!(
            live_offsets = live,
            records_replayed = total,
            "group offsets loaded"
        );
        tokio::spawn(Arc::clone(&service).run_timers());
        Ok(service)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    fn deliver(&self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for effect in effects {
            match effect {
                Effect::Join(t, r) => {
                    if let Some(Waiter::Join(tx)) = waiters.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
                Effect::Sync(t, r) => {
                    if let Some(Waiter::Sync(tx)) = waiters.remove(&t) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }

    /// JoinGroup; resolves when the rebalance completes (or at once).
    pub async fn join(&self, req: JoinRequest) -> JoinResult {
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, Waiter::Join(tx));
        let member_id = req.member_id.clone();
        let effects = {
            let mut inner = self.lock();
            if inner.consumer.has_members(&req.group_id) {
                // The id belongs to a KIP-848 consumer group.
                vec![Effect::Join(
                    token,
                    JoinResult {
                        error: Some(CoordinatorError::InconsistentGroupProtocol),
                        generation_id: -1,
                        protocol_type: None,
                        protocol_name: None,
                        leader: String::new(),
                        member_id: member_id.clone(),
                        members: Vec::new(),
                        skip_assignment: false,
                    },
                )]
            } else {
                inner.coordinator.join(token, req, now_ms())
            }
        };
        self.deliver(effects);
        self.timer.notify_one();
        rx.await.unwrap_or_else(|_| JoinResult {
            error: Some(CoordinatorError::RebalanceInProgress),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        })
    }

    /// SyncGroup; resolves when the leader has assigned (or at once).
    pub async fn sync(&self, req: SyncRequest) -> SyncResult {
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token, Waiter::Sync(tx));
        let effects = self.lock().coordinator.sync(token, req, now_ms());
        self.deliver(effects);
        self.timer.notify_one();
        rx.await.unwrap_or(SyncResult {
            error: Some(CoordinatorError::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        })
    }

    /// ConsumerGroupHeartbeat (KIP-848). `topics` is the current topic metadata.
    pub fn consumer_heartbeat(
        &self,
        req: Heartbeat,
        topics: &TopicsView,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        let mut inner = self.lock();
        if inner
            .coordinator
            .group_state(&req.group_id)
            .is_some_and(|s| s != courier_coordinator::group::GroupState::Empty)
        {
            // A classic group with members owns the id.
            return Err(CoordinatorError::InconsistentGroupProtocol);
        }
        let r = inner.consumer.heartbeat(req, topics, now_ms());
        drop(inner);
        self.timer.notify_one();
        r
    }

    /// ConsumerGroupDescribe.
    pub fn consumer_describe(&self, group_id: &str) -> Option<GroupView> {
        self.lock().consumer.describe(group_id)
    }

    /// Consumer-protocol groups with their states, for ListGroups.
    pub fn consumer_groups(&self) -> Vec<(String, &'static str)> {
        self.lock().consumer.group_ids()
    }

    /// Runs consumer-group timers with fresh topic metadata (called by the broker's tick).
    pub fn consumer_tick(&self, topics: &TopicsView) {
        self.lock().consumer.tick(topics, now_ms());
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), CoordinatorError> {
        self.lock()
            .coordinator
            .heartbeat(group, member, instance, generation, now_ms())
    }

    /// LeaveGroup.
    pub fn leave(&self, group: &str, members: &[LeavingMember]) -> LeaveOutcome {
        let (outcome, effects) = self.lock().coordinator.leave(group, members, now_ms());
        self.deliver(effects);
        self.timer.notify_one();
        outcome
    }

    /// Appends records under the coordinator lock and returns the offset to wait for.
    fn append(
        inner: &mut Inner,
        log: &Partition,
        records: Vec<OffsetRecord>,
    ) -> Result<u64, BrokerError> {
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = records.iter().map(OffsetRecord::encode).collect();
        let end = internal_log::append(log, &encoded)?;
        inner.unapplied.push_back((end, records));
        Ok(end)
    }

    /// Waits for `end` to be durable, then applies every appended record up to the high
    /// watermark, in log order.
    async fn persist(&self, end: u64) -> Result<(), BrokerError> {
        self.log.wait_durable(end, COMMIT_TIMEOUT).await?;
        let hw = self.log.high_watermark();
        let mut inner = self.lock();
        while inner.unapplied.front().is_some_and(|(e, _)| *e <= hw) {
            if let Some((_, records)) = inner.unapplied.pop_front() {
                inner.coordinator.apply(&records);
            }
        }
        Ok(())
    }

    /// OffsetCommit: validated, appended, fsynced, then visible.
    pub async fn commit(&self, req: CommitRequest) -> Result<PartitionResults, BrokerError> {
        let (end, results) = {
            let mut inner = self.lock();
            let consumer_member =
                !req.member_id.is_empty() && inner.consumer.has_members(&req.group_id);
            if consumer_member {
                if let Err(e) =
                    inner
                        .consumer
                        .validate_commit(&req.group_id, &req.member_id, req.generation_id)
                {
                    return Ok(whole_request_error(&req, e));
                }
            }
            let prepared = if consumer_member {
                inner.coordinator.prepare_commit_unchecked(&req, now_ms())
            } else {
                inner.coordinator.prepare_commit(&req, now_ms())
            };
            let plan = match prepared {
                Ok(plan) => plan,
                Err(e) => return Ok(whole_request_error(&req, e)),
            };
            if plan.records.is_empty() {
                return Ok(plan.results);
            }
            let end = Self::append(&mut inner, &self.log, plan.records)?;
            (end, plan.results)
        };
        self.persist(end).await?;
        Ok(results)
    }

    /// TxnOffsetCommit: persisted as pending offsets of the producer's transaction.
    pub async fn txn_commit(
        &self,
        group: &str,
        producer_id: i64,
        offsets: &[(String, i32, i64, i32, String)],
    ) -> Result<PartitionResults, BrokerError> {
        let end = {
            let mut inner = self.lock();
            let (records, results) =
                inner
                    .coordinator
                    .prepare_txn_commit(group, producer_id, offsets, now_ms());
            if records.is_empty() {
                return Ok(results);
            }
            (Self::append(&mut inner, &self.log, records)?, results)
        };
        self.persist(end.0).await?;
        Ok(end.1)
    }

    /// The end of a transaction: its pending offsets in `group` apply (commit) or vanish.
    pub async fn end_txn(
        &self,
        group: &str,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), BrokerError> {
        let end = {
            let mut inner = self.lock();
            let record = OffsetRecord::TxnEnd {
                group: group.to_string(),
                producer_id,
                commit,
            };
            Self::append(&mut inner, &self.log, vec![record])?
        };
        self.persist(end).await
    }

    /// True while an open transaction holds an uncommitted offset for the partition.
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock()
            .coordinator
            .has_pending_txn_offset(group, topic, partition)
    }

    /// OffsetFetch for one group.
    pub fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<(
        String,
        i32,
        Option<courier_coordinator::group::CommittedOffset>,
    )> {
        self.lock().coordinator.fetch_offsets(group, partitions)
    }

    /// DeleteGroups for one group.
    pub async fn delete_group(
        &self,
        group: &str,
    ) -> Result<Result<(), CoordinatorError>, BrokerError> {
        let end = {
            let mut inner = self.lock();
            let records = match inner.coordinator.prepare_delete_group(group) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if records.is_empty() {
                inner.coordinator.forget_group(group);
                return Ok(Ok(()));
            }
            Self::append(&mut inner, &self.log, records)?
        };
        self.persist(end).await?;
        self.lock().coordinator.forget_group(group);
        Ok(Ok(()))
    }

    /// OffsetDelete: `subscribed` are the topics the group's members consume.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
        subscribed: &HashSet<String>,
    ) -> Result<Result<PartitionResults, CoordinatorError>, BrokerError> {
        let (end, results) = {
            let mut inner = self.lock();
            let (records, results) = match inner
                .coordinator
                .prepare_offset_delete(group, partitions, subscribed)
            {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if records.is_empty() {
                return Ok(Ok(results));
            }
            (Self::append(&mut inner, &self.log, records)?, results)
        };
        self.persist(end).await?;
        Ok(Ok(results))
    }

    /// Runs `f` with read access to the coordinator (list, describe, subscriptions).
    pub fn read<R>(&self, f: impl FnOnce(&GroupCoordinator) -> R) -> R {
        f(&self.lock().coordinator)
    }

    /// Writes every live offset again and drops the segments before them.
    fn compact(&self) -> Result<(), BrokerError> {
        let mut inner = self.lock();
        let groups: Vec<String> = inner
            .coordinator
            .list_groups()
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        let mut live = Vec::new();
        for g in groups {
            for (topic, partition, offset) in inner.coordinator.fetch_offsets(&g, None) {
                if let Some(offset) = offset {
                    live.push(OffsetRecord::Commit {
                        group: g.clone(),
                        topic,
                        partition,
                        offset,
                    });
                }
            }
        }
        let start = self.log.log_end_offset();
        for chunk in live.chunks(1000) {
            Self::append(&mut inner, &self.log, chunk.to_vec())?;
        }
        // These are the offsets already applied; nothing new to apply when they are durable.
        inner.unapplied.clear();
        // Durable before the old records go.
        self.log.with_log(|log| Ok(log.sync_target().sync()?))?;
        self.log
            .with_log(|log| Ok(log.delete_records_before(start)?))?;
        tracing::info!(live = live.len(), "compacted the offsets log");
        Ok(())
    }

    /// Expires sessions and completes rebalances on time.
    async fn run_timers(self: Arc<Self>) {
        loop {
            let next = self.lock().coordinator.next_deadline();
            let wait = next.map(|d| (d - now_ms()).clamp(0, 1000)).unwrap_or(1000);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = self.timer.notified() => {}
            }
            let effects = self.lock().coordinator.tick(now_ms());
            self.deliver(effects);
            if Arc::strong_count(&self) == 1 {
                return;
            }
        }
    }

    /// Closes the offsets log cleanly.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.log.close()
    }
}

fn whole_request_error(req: &CommitRequest, e: CoordinatorError) -> PartitionResults {
    req.offsets
        .iter()
        .map(|(t, p, ..)| (t.clone(), *p, Some(e.clone())))
        .collect()
}

/// Replays the offsets log into the coordinator. Returns (live offsets, records read).
fn replay(
    log: &Partition,
    coordinator: &mut GroupCoordinator,
) -> Result<(usize, usize), BrokerError> {
    let mut total = 0usize;
    internal_log::replay(log, |offset, key, value| {
        match OffsetRecord::decode(key, value) {
            Ok(record) => {
                total += 1;
                coordinator.apply(&[record]);
            }
            Err(reason) => tracing::warn!(offset, %reason, "skipping an unreadable offsets record"),
        }
    })?;
    let live = coordinator
        .list_groups()
        .iter()
        .map(|g| coordinator.fetch_offsets(&g.group_id, None).len())
        .sum();
    Ok((live, total))
}
