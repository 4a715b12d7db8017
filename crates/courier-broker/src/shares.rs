//! Runs share groups (KIP-932): membership, share sessions, the share-partitions' delivery
//! state, its durability, and the timers.
//!
//! The decisions are the plain state machines of `courier_coordinator::share`; this service
//! carries out what they ask for:
//!
//! - **Durability.** Every [`ShareRecord`] a decision returns is appended to the internal log
//!   `<data>/meta/__share_group_state` and fsynced before the answer that depends on it is
//!   sent: a ShareFetch hands out records only once the delivery counts it raised are on
//!   disk, so a broker crash never hides a delivery from the count; an acknowledgement is
//!   answered once its outcome is on disk. Decisions run one at a time (`op`), and their
//!   records are appended in decision order while `op` is held; the fsync wait happens after
//!   `op` is released, so concurrent requests share fsyncs.
//! - **Dead letters.** Records archived by REJECT or the delivery limit are copied to the
//!   group's dead-letter topic (see [`crate::share_dlq`]) and those copies are fsynced, still
//!   under `op`, before the snapshot that archived them is appended.
//! - **Replay.** On start the log is read in order: the newest snapshot of each (group, topic,
//!   partition) wins, a group tombstone drops what came before it, and the newest settings
//!   record of each group wins ([`crate::share_state_log`]). When the log holds far more
//!   records than the live state it is rewritten (compacted).
//! - **Timers.** [`spawn_timer`] expires members that stopped heartbeating (releasing what they
//!   held) and acquisition locks that ran out.
//!
//! Membership and share sessions are not persisted: after a restart members rejoin and open
//! new sessions, and records that were acquired come back available with their counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use courier_coordinator::share::{
    AcknowledgementBatch, AcquiredRecords, ArchiveEvent, ShareEffects, ShareGroupConfig,
    ShareGroupState, ShareGroupView, ShareGroups, ShareHeartbeat, ShareHeartbeatResponse,
    SharePartition, SharePartitionConfig, SharePartitionStats, ShareRecord, TopicPartitionCounts,
};
use courier_coordinator::CoordinatorError;
use courier_storage::StorageError;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::internal_log;
use crate::now_ms;
use crate::partition::Partition;
use crate::share_config::ShareGroupSettings;
use crate::share_dlq;
use crate::share_session::{SessionChanges, SessionOutcome, ShareSessionCache, ShareSessionError};
use crate::share_state_log::{replay, Replayed};
use crate::topics::{Topic, TopicRegistry};

/// A share-partition: (group, topic, partition).
pub type ShareKey = (String, String, i32);

/// How long a state-log write may wait for its fsync.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most share sessions at once.
const MAX_SHARE_SESSIONS: usize = 1000;
/// A share session unused this long may be evicted when the cache is full.
const SESSION_IDLE_MS: i64 = 120_000;
/// Compact the log once it holds more records than this and four times the live state.
const COMPACT_MIN_RECORDS: usize = 10_000;
/// The longest the timer sleeps, so that new deadlines are met within this.
const TIMER_MAX_SLEEP_MS: i64 = 250;

/// A share-partition with the settings it was built with.
struct Held {
    sp: SharePartition,
    config: SharePartitionConfig,
}

fn same_config(a: &SharePartitionConfig, b: &SharePartitionConfig) -> bool {
    a.record_lock_duration_ms == b.record_lock_duration_ms
        && a.delivery_count_limit == b.delivery_count_limit
        && a.max_record_locks == b.max_record_locks
}

/// Everything decided on, guarded together.
struct Inner {
    groups: ShareGroups,
    partitions: BTreeMap<ShareKey, Held>,
    /// Per-group settings (only groups that have any).
    settings: BTreeMap<String, ShareGroupSettings>,
    sessions: ShareSessionCache,
    /// Records in the state log since it was last compacted or replayed.
    records_in_log: usize,
    /// Some share-partition may still be built with settings its group no longer has.
    settings_changed: bool,
}

/// What a decision leaves to do before its answer.
#[derive(Default)]
struct Pending {
    /// Encoded records for the state log, in decision order.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    /// Archived records with their group's dead-letter topic.
    dead_letters: Vec<(ArchiveEvent, Option<String>)>,
    /// Records may have become available: long-polling share fetches look again.
    wake: bool,
}

impl Pending {
    /// Takes a call's effects; returns what it acquired.
    fn absorb(
        &mut self,
        settings: &BTreeMap<String, ShareGroupSettings>,
        effects: ShareEffects,
    ) -> Vec<AcquiredRecords> {
        self.records
            .extend(effects.records.iter().map(ShareRecord::encode));
        for e in effects.archived {
            let dlq = settings
                .get(&e.group)
                .cloned()
                .unwrap_or_default()
                .dead_letter_topic(&e.group);
            self.dead_letters.push((e, dlq));
        }
        effects.acquired
    }
}

/// One partition's acknowledgements, as ShareFetch and ShareAcknowledge carry them.
#[derive(Debug, Clone)]
pub struct PartitionAcks {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The batches, in order.
    pub batches: Vec<AcknowledgementBatch>,
}

/// The share-group service as the server sees it.
pub struct ShareService {
    /// The decision state.
    inner: Mutex<Inner>,
    /// Serialises decide, dead letters and append, so log order is decision order and no
    /// snapshot is appended before the dead letters of what it archived are durable.
    op: tokio::sync::Mutex<()>,
    /// `__share_group_state`.
    log: Arc<Partition>,
    /// Bumped when records may have become available without a durable change (a lock ran
    /// out, a RELEASE, a member left); long-polling share fetches wait on it.
    available: watch::Sender<u64>,
}

impl ShareService {
    /// Opens and replays the share-group state log.
    pub fn open(
        meta_dir: &Path,
        config: ShareGroupConfig,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let log = internal_log::open(meta_dir, "__share_group_state", hw_changed)?;
        let Replayed {
            snapshots,
            settings,
            total,
        } = replay(&log)?;
        let mut groups = ShareGroups::new(config);
        let mut partitions = BTreeMap::new();
        for (key, snapshot) in snapshots {
            let config = settings
                .get(&key.0)
                .map(ShareGroupSettings::partition_config)
                .unwrap_or_default();
            match SharePartition::from_snapshot(&snapshot, config.clone()) {
                Ok(sp) => {
                    groups.restore_group(&key.0);
                    partitions.insert(key, Held { sp, config });
                }
                Err(e) => {
                    tracing::warn!(group = %key.0, topic = %key.1, partition = key.2, error = %e, "skipping an unusable share-partition snapshot")
                }
            }
        }
        tracing::info!(
            share_partitions = partitions.len(),
            records_replayed = total,
            "share-group state loaded"
        );
        let service = Arc::new(Self {
            inner: Mutex::new(Inner {
                groups,
                partitions,
                settings,
                sessions: ShareSessionCache::new(MAX_SHARE_SESSIONS, SESSION_IDLE_MS),
                records_in_log: total,
                settings_changed: false,
            }),
            op: tokio::sync::Mutex::new(()),
            log,
            available: watch::channel(0).0,
        });
        Ok(service)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carries out a decision's pending work while `op` is held: dead letters (durable),
    /// then the state records (appended). Returns the log offset to wait for.
    async fn write(
        &self,
        topics: &TopicRegistry,
        pending: Pending,
    ) -> Result<Option<u64>, BrokerError> {
        if pending.wake {
            self.available.send_modify(|v| *v = v.wrapping_add(1));
        }
        if !pending.dead_letters.is_empty() {
            if let Err(e) = share_dlq::write(topics, &pending.dead_letters).await {
                tracing::error!(error = %e, records = pending.dead_letters.len(),
                    "writing dead letters failed; the records stay archived without a copy");
            }
        }
        if pending.records.is_empty() {
            return Ok(None);
        }
        let end = internal_log::append(&self.log, &pending.records)?;
        self.lock().records_in_log += pending.records.len();
        Ok(Some(end))
    }

    /// Waits until the state log is durable up to `end`.
    async fn durable(&self, end: Option<u64>) -> Result<(), BrokerError> {
        match end {
            Some(end) => self.log.wait_durable(end, PERSIST_TIMEOUT).await,
            None => Ok(()),
        }
    }

    /// Runs `decide` on the state under `op`, writes what it left, and returns its result once
    /// that is durable.
    async fn run<R>(
        &self,
        topics: &TopicRegistry,
        decide: impl FnOnce(&mut Inner, &mut Pending) -> R,
    ) -> Result<R, BrokerError> {
        let op = self.op.lock().await;
        let mut pending = Pending::default();
        let r = decide(&mut self.lock(), &mut pending);
        let end = self.write(topics, pending).await?;
        drop(op);
        self.durable(end).await?;
        Ok(r)
    }

    /// ShareGroupHeartbeat. A member that leaves gives back what it holds.
    pub async fn heartbeat(
        &self,
        topics: &TopicRegistry,
        req: ShareHeartbeat,
    ) -> Result<Result<ShareHeartbeatResponse, CoordinatorError>, BrokerError> {
        let counts: TopicPartitionCounts = topics
            .list()
            .iter()
            .map(|t| (t.name.to_string(), t.partition_count()))
            .collect();
        let new_member_id = uuid::Uuid::new_v4().simple().to_string();
        self.run(topics, |inner, pending| {
            let leaving = req.member_epoch == -1;
            let (group, member) = (req.group_id.clone(), req.member_id.clone());
            let r = inner
                .groups
                .heartbeat(req, &new_member_id, &counts, now_ms());
            if leaving && r.is_ok() {
                inner.release_member(&group, &member, pending);
                inner.sessions.remove(&group, &member);
            }
            r
        })
        .await
    }

    /// The share-session step of a ShareFetch.
    pub fn fetch_session(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        changes: SessionChanges<'_>,
    ) -> Result<SessionOutcome, ShareSessionError> {
        self.lock()
            .sessions
            .fetch(group, member, epoch, changes, now_ms())
    }

    /// The share-session step of a ShareAcknowledge.
    pub fn acknowledge_session(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
    ) -> Result<SessionOutcome, ShareSessionError> {
        self.lock()
            .sessions
            .acknowledge(group, member, epoch, now_ms())
    }

    /// Applies acknowledgements, one outcome per partition, each all or nothing.
    pub async fn acknowledge(
        &self,
        topics: &TopicRegistry,
        group: &str,
        member: &str,
        acks: &[PartitionAcks],
    ) -> Result<Vec<Result<(), CoordinatorError>>, BrokerError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        self.run(topics, |inner, pending| {
            pending.wake = true;
            let now = now_ms();
            let Inner {
                partitions,
                settings,
                ..
            } = inner;
            acks.iter()
                .map(|a| {
                    let key = (group.to_string(), a.topic.clone(), a.partition);
                    let held = partitions
                        .get_mut(&key)
                        .ok_or(CoordinatorError::InvalidRecordState)?;
                    let effects = held.sp.acknowledge(member, &a.batches, now)?;
                    pending.absorb(settings, effects);
                    Ok(())
                })
                .collect()
        })
        .await
    }

    /// Gives back what `member` holds in these partitions (its share session closed).
    pub async fn release(
        &self,
        topics: &TopicRegistry,
        group: &str,
        member: &str,
        parts: &[(String, i32)],
    ) -> Result<(), BrokerError> {
        self.run(topics, |inner, pending| {
            pending.wake = true;
            let Inner {
                partitions,
                settings,
                ..
            } = inner;
            for (topic, partition) in parts {
                let key = (group.to_string(), topic.clone(), *partition);
                if let Some(held) = partitions.get_mut(&key) {
                    pending.absorb(settings, held.sp.release_member(member));
                }
            }
        })
        .await
    }

    /// ShareFetch's acquisition: for each (topic, partition), up to `max_records` records in
    /// all, locked to `member` (nothing unless it is a member of the group now); new records only as far as `max_bytes` of log reaches. A
    /// share-partition used for the first time starts where the group's
    /// `share.auto.offset.reset` says. Returns once the raised delivery counts are durable.
    pub async fn acquire(
        &self,
        topics: &TopicRegistry,
        group: &str,
        member: &str,
        targets: &[(Arc<Topic>, i32)],
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<AcquiredRecords>>, BrokerError> {
        self.run(topics, |inner, pending| {
            if !inner.groups.is_member(group, member) {
                // Only members acquire (a member that expired, or one that has not rejoined
                // since a restart, gets nothing until it heartbeats again); this also keeps
                // requests for made-up groups from creating share-partitions.
                return vec![Vec::new(); targets.len()];
            }
            inner.apply_settings(pending);
            let mut records_left = max_records;
            let mut bytes_left = max_bytes;
            let now = now_ms();
            targets
                .iter()
                .map(|(topic, index)| {
                    let Some(partition) = topic.partition(*index) else {
                        return Vec::new();
                    };
                    let key = (group.to_string(), topic.name.to_string(), *index);
                    let Inner {
                        partitions,
                        settings,
                        ..
                    } = &mut *inner;
                    let hw = partition.high_watermark() as i64;
                    let held = held_or_new(partitions, settings, key, &partition, pending);
                    let sp = &mut held.sp;
                    let moved = sp.log_start_offset_moved(partition.log_start_offset() as i64);
                    pending.absorb(settings, moved);
                    let limit = if records_left == 0 {
                        sp.end_offset()
                    } else {
                        new_records_limit(&partition, sp.end_offset(), hw, &mut bytes_left)
                    };
                    let acquired =
                        pending.absorb(settings, sp.acquire(member, records_left, limit, now));
                    let n: i64 = acquired
                        .iter()
                        .map(|a| a.last_offset - a.first_offset + 1)
                        .sum();
                    records_left = records_left.saturating_sub(n as usize);
                    acquired
                })
                .collect()
        })
        .await
    }

    /// A receiver that changes when records may have become available to share fetches.
    pub fn watch_available(&self) -> watch::Receiver<u64> {
        self.available.subscribe()
    }

    /// `share.record.lock.duration.ms` of the group.
    pub fn lock_duration_ms(&self, group: &str) -> i64 {
        self.settings(group)
            .partition_config()
            .record_lock_duration_ms
    }

    /// The group's settings (defaults when it has none).
    pub fn settings(&self, group: &str) -> ShareGroupSettings {
        self.lock().settings.get(group).cloned().unwrap_or_default()
    }

    /// IncrementalAlterConfigs on a group: `edit` changes a copy of its settings, which is
    /// persisted (unless `validate_only`) before this returns.
    pub async fn alter_settings(
        &self,
        topics: &TopicRegistry,
        group: &str,
        validate_only: bool,
        edit: impl FnOnce(ShareGroupSettings) -> Result<ShareGroupSettings, BrokerError>,
    ) -> Result<(), BrokerError> {
        if group.is_empty() {
            return Err(BrokerError::InvalidConfig("empty group id".into()));
        }
        let new = edit(self.settings(group))?;
        if validate_only {
            return Ok(());
        }
        self.run(topics, |inner, pending| {
            pending.records.push(new.encode(group));
            inner.settings.insert(group.to_string(), new);
            inner.settings_changed = true;
            // Settings apply to share-partitions without acquired records at once, to the
            // others when their records come back (see `Inner::apply_settings`).
            inner.apply_settings(pending);
        })
        .await?;
        tracing::info!(group, "altered share group config");
        Ok(())
    }

    /// DeleteGroups for a share group: `None` when no share group has this id; else refused
    /// (NON_EMPTY_GROUP) while it has members, or done: its share-partitions are dropped and
    /// the tombstone is durable when this returns. Its settings stay (they may be set before a
    /// group exists, too).
    pub async fn delete_group(
        &self,
        topics: &TopicRegistry,
        group: &str,
    ) -> Result<Option<Result<(), CoordinatorError>>, BrokerError> {
        self.run(topics, |inner, pending| {
            inner.groups.describe(group)?;
            let deleted = inner.groups.delete_group(group).map(|tombstone| {
                pending.records.push(tombstone.encode());
                inner.partitions.retain(|k, _| k.0 != group);
                tracing::info!(group, "deleted share group");
            });
            Some(deleted)
        })
        .await
    }

    /// ShareGroupDescribe.
    pub fn describe(&self, group: &str) -> Option<ShareGroupView> {
        self.lock().groups.describe(group)
    }

    /// The counters of each of the group's share-partitions, in (topic, partition) order, for
    /// DescribeShareGroupOffsets and DescribeConfigs. Lag is measured against each partition's
    /// high watermark now (0 when the partition is gone).
    pub fn partition_stats(
        &self,
        topics: &TopicRegistry,
        group: &str,
    ) -> Vec<(String, i32, SharePartitionStats)> {
        let keys: Vec<ShareKey> = {
            let inner = self.lock();
            let from = (group.to_string(), String::new(), i32::MIN);
            inner
                .partitions
                .range(from..)
                .take_while(|(k, _)| k.0 == group)
                .map(|(k, _)| k.clone())
                .collect()
        };
        // High watermarks are read without holding the share state.
        let hws: Vec<i64> = keys
            .iter()
            .map(|(_, topic, index)| {
                topics
                    .get(topic)
                    .and_then(|t| t.partition(*index))
                    .map_or(0, |p| p.high_watermark() as i64)
            })
            .collect();
        let inner = self.lock();
        keys.into_iter()
            .zip(hws)
            .filter_map(|(key, hw)| {
                let stats = inner.partitions.get(&key)?.sp.stats(hw);
                Some((key.1, key.2, stats))
            })
            .collect()
    }

    /// Every share group with its state, for ListGroups.
    pub fn group_ids(&self) -> Vec<(String, ShareGroupState)> {
        self.lock().groups.group_ids()
    }

    /// The earliest member session or acquisition-lock deadline.
    fn next_deadline(&self) -> Option<i64> {
        let inner = self.lock();
        let locks = inner
            .partitions
            .values()
            .filter_map(|h| h.sp.next_lock_deadline())
            .min();
        match (inner.groups.next_deadline(), locks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires members and locks that are due, and compacts the log when it is large.
    pub async fn tick(&self, topics: &TopicRegistry) -> Result<(), BrokerError> {
        let now = now_ms();
        if self.next_deadline().is_some_and(|d| d <= now) {
            let counts: TopicPartitionCounts = topics
                .list()
                .iter()
                .map(|t| (t.name.to_string(), t.partition_count()))
                .collect();
            self.run(topics, |inner, pending| {
                for gone in inner.groups.expire(&counts, now) {
                    tracing::info!(group = %gone.group_id, member = %gone.member_id, "share group member expired");
                    inner.release_member(&gone.group_id, &gone.member_id, pending);
                    inner.sessions.remove(&gone.group_id, &gone.member_id);
                }
                let Inner {
                    partitions,
                    settings,
                    ..
                } = &mut *inner;
                for held in partitions.values_mut() {
                    if held.sp.next_lock_deadline().is_some_and(|d| d <= now) {
                        pending.wake = true;
                        pending.absorb(settings, held.sp.expire_locks(now));
                    }
                }
                inner.apply_settings(pending);
            })
            .await?;
        }
        let (total, live) = {
            let inner = self.lock();
            (
                inner.records_in_log,
                inner.partitions.len() + inner.settings.len(),
            )
        };
        if total > COMPACT_MIN_RECORDS && total > 4 * live {
            self.compact().await?;
        }
        Ok(())
    }

    /// Writes the live state again and drops the log before it.
    pub(crate) async fn compact(&self) -> Result<(), BrokerError> {
        let _op = self.op.lock().await;
        let records: Vec<(Vec<u8>, Vec<u8>)> = {
            let inner = self.lock();
            let settings = inner.settings.iter().map(|(g, s)| s.encode(g));
            let snapshots = inner
                .partitions
                .values()
                .map(|h| ShareRecord::Snapshot(h.sp.snapshot()).encode());
            settings.chain(snapshots).collect()
        };
        let start = self.log.log_end_offset();
        let mut end = start;
        for chunk in records.chunks(1000) {
            end = internal_log::append(&self.log, chunk)?;
        }
        self.log.wait_durable(end, PERSIST_TIMEOUT).await?;
        self.log
            .with_log(|log| Ok(log.delete_records_before(start)?))?;
        self.lock().records_in_log = records.len();
        tracing::info!(live = records.len(), "compacted the share-group state log");
        Ok(())
    }

    /// Closes the state log cleanly.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.log.close()
    }
}

impl Inner {
    /// Gives back what a member holds in every share-partition of its group.
    fn release_member(&mut self, group: &str, member: &str, pending: &mut Pending) {
        pending.wake = true;
        let from = (group.to_string(), String::new(), i32::MIN);
        for (key, held) in self.partitions.range_mut(from..) {
            if key.0 != group {
                break;
            }
            pending.absorb(&self.settings, held.sp.release_member(member));
        }
    }

    /// Rebuilds, with their group's current settings, the share-partitions built with other
    /// settings that hold no acquired records (a rebuild would drop the locks).
    fn apply_settings(&mut self, pending: &mut Pending) {
        if !self.settings_changed {
            return;
        }
        let mut waiting = false;
        for (key, held) in self.partitions.iter_mut() {
            let want = self
                .settings
                .get(&key.0)
                .map(ShareGroupSettings::partition_config)
                .unwrap_or_default();
            if same_config(&held.config, &want) {
                continue;
            }
            if held.sp.next_lock_deadline().is_some() {
                waiting = true;
                continue;
            }
            match SharePartition::from_snapshot(&held.sp.snapshot(), want.clone()) {
                Ok(sp) => {
                    *held = Held { sp, config: want };
                    pending.wake = true;
                }
                Err(e) => {
                    tracing::warn!(group = %key.0, topic = %key.1, partition = key.2, error = %e, "share-partition kept its old settings")
                }
            }
        }
        self.settings_changed = waiting;
    }
}

/// The share-partition, created (and its first snapshot queued) if the group never used it.
fn held_or_new<'a>(
    partitions: &'a mut BTreeMap<ShareKey, Held>,
    settings: &BTreeMap<String, ShareGroupSettings>,
    key: ShareKey,
    partition: &Partition,
    pending: &mut Pending,
) -> &'a mut Held {
    partitions.entry(key).or_insert_with_key(|(group, topic, index)| {
        let s = settings.get(group).cloned().unwrap_or_default();
        let config = s.partition_config();
        let (sp, record) = SharePartition::new(
            group.clone(),
            topic.clone(),
            *index,
            config.clone(),
            s.auto_offset_reset(),
            partition.log_start_offset() as i64,
            partition.high_watermark() as i64,
        );
        tracing::info!(%group, %topic, partition = index, start_offset = sp.start_offset(), "share-partition initialised");
        pending.records.push(record.encode());
        Held { sp, config }
    })
}

/// How far new records (from SPEO) may be acquired: to the high watermark, or to the end of
/// the batches that fit in `bytes_left` (at least one), which it reduces.
fn new_records_limit(
    partition: &Partition,
    end_offset: i64,
    hw: i64,
    bytes_left: &mut usize,
) -> i64 {
    if end_offset >= hw {
        return hw;
    }
    if *bytes_left == 0 {
        return end_offset;
    }
    let budget = u32::try_from(*bytes_left).unwrap_or(u32::MAX);
    match partition.read(end_offset as u64, budget) {
        Ok(data) => {
            *bytes_left = bytes_left.saturating_sub(data.records.len());
            data.last_offset
                .map_or(hw, |last| (last as i64 + 1).min(hw))
        }
        Err(_) => hw,
    }
}

/// Reads the whole batches that hold the acquired offsets, each batch once, in offset order.
/// Offsets no longer in the log are left out: the consumer acknowledges them as gaps.
pub fn read_acquired(partition: &Partition, acquired: &[AcquiredRecords], max_bytes: u32) -> Bytes {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut covered = i64::MIN;
    for a in acquired {
        let mut at = a.first_offset.max(covered);
        while at <= a.last_offset {
            match partition.read(at as u64, max_bytes.max(1)) {
                Ok(data) => {
                    let Some(last) = data.last_offset else { break };
                    parts.push(data.records);
                    covered = last as i64 + 1;
                    at = covered;
                }
                Err(BrokerError::Storage(StorageError::OffsetOutOfRange {
                    log_start_offset,
                    ..
                })) if (log_start_offset as i64) > at => at = log_start_offset as i64,
                Err(e) => {
                    tracing::warn!(partition = %partition.name(), offset = at, error = %e, "reading acquired records failed");
                    break;
                }
            }
        }
    }
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| out.extend_from_slice(p));
            out.freeze()
        }
    }
}

/// Starts the share-group timer: member expiry, lock expiry, compaction.
pub fn spawn_timer(broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    tokio::spawn(async move {
        loop {
            let wait = {
                let Some(broker) = weak.upgrade() else { return };
                broker
                    .shares
                    .next_deadline()
                    .map_or(TIMER_MAX_SLEEP_MS, |d| {
                        (d - now_ms()).clamp(0, TIMER_MAX_SLEEP_MS)
                    })
            };
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            let Some(broker) = weak.upgrade() else { return };
            if let Err(e) = broker.shares.tick(&broker.topics).await {
                tracing::warn!(error = %e, "share-group timer failed; will retry");
            }
        }
    });
}
