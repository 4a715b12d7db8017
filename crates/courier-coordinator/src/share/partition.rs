//! One share-partition: the in-flight window `[SPSO, SPEO)` of one (group, topic, partition),
//! the state and delivery count of each offset in it, and what ShareFetch and ShareAcknowledge
//! do to them.
//!
//! The window is kept as runs of consecutive offsets with one state and delivery count (a
//! fetched batch usually stays one run), split where a request touches part of a run and
//! merged again afterwards, so acknowledging a single offset works as well as a whole batch.
//! The runs cover the window exactly: no gaps, no overlaps, each offset in one run.
//!
//! Every call that changes what [`ShareSnapshot`] would hold returns the snapshot to persist in
//! [`ShareEffects::records`]; calls that only move locks (RENEW, a lock that ends without
//! archiving) return none, since locks are not durable.

use std::collections::BTreeMap;

use super::delivery::{
    AcknowledgeType, AcknowledgementBatch, AcquiredRecords, ArchiveEvent, ArchiveReason,
    ShareEffects, SharePartitionStats,
};
use super::record::{DeliveryState, ShareRecord, ShareSnapshot, StateBatch};
use super::{
    DEFAULT_DELIVERY_COUNT_LIMIT, DEFAULT_PARTITION_MAX_RECORD_LOCKS,
    DEFAULT_RECORD_LOCK_DURATION_MS,
};
use crate::error::CoordinatorError;

/// Share-partition settings (`group.share.*`).
#[derive(Debug, Clone)]
pub struct SharePartitionConfig {
    /// `group.share.record.lock.duration.ms`.
    pub record_lock_duration_ms: i64,
    /// `group.share.delivery.count.limit`.
    pub delivery_count_limit: u16,
    /// `group.share.partition.max.record.locks`: the most offsets in flight (SPEO − SPSO).
    pub max_record_locks: usize,
}

impl Default for SharePartitionConfig {
    fn default() -> Self {
        Self {
            record_lock_duration_ms: DEFAULT_RECORD_LOCK_DURATION_MS,
            delivery_count_limit: DEFAULT_DELIVERY_COUNT_LIMIT,
            max_record_locks: DEFAULT_PARTITION_MAX_RECORD_LOCKS,
        }
    }
}

/// `share.auto.offset.reset`: where a share-partition starts the first time it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// At the high watermark: only records produced from now on (Kafka's default).
    #[default]
    Latest,
    /// At the log start offset: everything still in the log.
    Earliest,
}

/// The state of one in-flight offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// May be acquired by any member.
    Available,
    /// Locked to one member until the deadline.
    Acquired {
        /// The member holding it.
        member_id: String,
        /// When the lock ends unless renewed.
        deadline_ms: i64,
    },
    /// Accepted: settled.
    Acknowledged,
    /// Rejected, past the delivery limit, or a gap: settled, never delivered again.
    Archived,
}

impl RecordState {
    fn settled(&self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }

    fn durable(&self) -> DeliveryState {
        match self {
            RecordState::Available | RecordState::Acquired { .. } => DeliveryState::Available,
            RecordState::Acknowledged => DeliveryState::Acknowledged,
            RecordState::Archived => DeliveryState::Archived,
        }
    }

    /// (member, lock deadline) when acquired.
    fn holder(&self) -> Option<(&str, i64)> {
        match self {
            RecordState::Acquired {
                member_id,
                deadline_ms,
            } => Some((member_id, *deadline_ms)),
            _ => None,
        }
    }

    fn held_by(&self, member: &str, now_ms: i64) -> bool {
        self.holder()
            .is_some_and(|(m, deadline_ms)| m == member && deadline_ms > now_ms)
    }
}

/// A run of consecutive in-flight offsets with one state; keyed by its first offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    last: i64,
    state: RecordState,
    delivery_count: u16,
}

/// One share-partition's state.
#[derive(Debug, Clone)]
pub struct SharePartition {
    /// The share group, for records and archive events.
    group: String,
    /// The topic.
    topic: String,
    /// The partition.
    partition: i32,
    /// Limits and durations.
    config: SharePartitionConfig,
    /// Persisted with every snapshot; moved by [`SharePartition::alter_start_offset`].
    state_epoch: i32,
    /// SPSO.
    start_offset: i64,
    /// SPEO (exclusive): the next offset never handed out.
    end_offset: i64,
    /// The window's runs by first offset, covering `[start_offset, end_offset)` exactly.
    /// At most `end_offset - start_offset` entries, itself at most `max_record_locks` (plus
    /// whatever a snapshot written under a larger limit brought back).
    runs: BTreeMap<i64, Run>,
    /// Records accepted since load.
    acknowledged_total: u64,
    /// Records archived by rejection or the delivery limit since load.
    archived_total: u64,
}

/// Collects what one call changed.
#[derive(Default)]
struct Changes {
    effects: ShareEffects,
    /// The durable state changed: a snapshot is due.
    durable: bool,
}

impl SharePartition {
    /// A share-partition used for the first time: SPSO is the high watermark (`Latest`) or the
    /// log start offset (`Earliest`). The snapshot returned must be persisted before the
    /// first fetch is answered, or a restart would start again from a later high watermark
    /// and skip what was produced in between.
    pub fn new(
        group: impl Into<String>,
        topic: impl Into<String>,
        partition: i32,
        config: SharePartitionConfig,
        reset: AutoOffsetReset,
        log_start_offset: i64,
        high_watermark: i64,
    ) -> (Self, ShareRecord) {
        let start = match reset {
            AutoOffsetReset::Latest => high_watermark,
            AutoOffsetReset::Earliest => log_start_offset,
        }
        .max(0);
        let sp = Self {
            group: group.into(),
            topic: topic.into(),
            partition,
            config,
            state_epoch: 0,
            start_offset: start,
            end_offset: start,
            runs: BTreeMap::new(),
            acknowledged_total: 0,
            archived_total: 0,
        };
        let record = ShareRecord::Snapshot(sp.snapshot());
        (sp, record)
    }

    /// Rebuilds a share-partition from its last persisted snapshot. Nothing is acquired
    /// afterwards: records that were acquired come back available with the delivery count
    /// they had, and offsets between batches come back available with count 0.
    pub fn from_snapshot(
        snapshot: &ShareSnapshot,
        config: SharePartitionConfig,
    ) -> Result<Self, CoordinatorError> {
        snapshot.validate()?;
        let mut runs = BTreeMap::new();
        let mut next = snapshot.start_offset;
        for b in &snapshot.batches {
            if b.first_offset > next {
                runs.insert(
                    next,
                    Run::new(b.first_offset - 1, RecordState::Available, 0),
                );
            }
            let state = match b.delivery_state {
                DeliveryState::Available => RecordState::Available,
                DeliveryState::Acknowledged => RecordState::Acknowledged,
                DeliveryState::Archived => RecordState::Archived,
            };
            runs.insert(
                b.first_offset,
                Run::new(b.last_offset, state, b.delivery_count),
            );
            next = b.last_offset + 1;
        }
        let mut sp = Self {
            group: snapshot.group.clone(),
            topic: snapshot.topic.clone(),
            partition: snapshot.partition,
            config,
            state_epoch: snapshot.state_epoch,
            start_offset: snapshot.start_offset,
            end_offset: snapshot.end_offset(),
            runs,
            acknowledged_total: 0,
            archived_total: 0,
        };
        sp.settle();
        Ok(sp)
    }

    /// The durable state now.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut batches: Vec<StateBatch> = Vec::new();
        for (&first, run) in &self.runs {
            let state = run.state.durable();
            match batches.last_mut() {
                Some(b) if b.delivery_state == state && b.delivery_count == run.delivery_count => {
                    b.last_offset = run.last;
                }
                _ => batches.push(StateBatch {
                    first_offset: first,
                    last_offset: run.last,
                    delivery_state: state,
                    delivery_count: run.delivery_count,
                }),
            }
        }
        ShareSnapshot {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            state_epoch: self.state_epoch,
            start_offset: self.start_offset,
            batches,
        }
    }

    /// SPSO.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// SPEO: the offset after the last one ever handed out.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// The state and delivery count of an in-flight offset; `None` outside `[SPSO, SPEO)`.
    pub fn state_at(&self, offset: i64) -> Option<(&RecordState, u16)> {
        if offset < self.start_offset || offset >= self.end_offset {
            return None;
        }
        let (_, run) = self.runs.range(..=offset).next_back()?;
        Some((&run.state, run.delivery_count))
    }

    /// The window as (first offset, last offset, state, delivery count) runs, in order.
    pub fn in_flight(&self) -> impl Iterator<Item = (i64, i64, &RecordState, u16)> {
        self.runs
            .iter()
            .map(|(&first, r)| (first, r.last, &r.state, r.delivery_count))
    }

    /// The earliest lock deadline, for the caller's timer.
    pub fn next_lock_deadline(&self) -> Option<i64> {
        self.runs
            .values()
            .filter_map(|r| r.state.holder().map(|(_, deadline_ms)| deadline_ms))
            .min()
    }

    /// Counters; `high_watermark` is the partition's now.
    pub fn stats(&self, high_watermark: i64) -> SharePartitionStats {
        let (mut acquired, mut available) = (0, 0);
        for (&first, run) in &self.runs {
            let n = run.last - first + 1;
            match run.state {
                RecordState::Acquired { .. } => acquired += n,
                RecordState::Available => available += n,
                _ => {}
            }
        }
        SharePartitionStats {
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            acquired,
            available,
            acknowledged_total: self.acknowledged_total,
            archived_total: self.archived_total,
            lag: (high_watermark - self.start_offset).max(0),
        }
    }

    /// ShareFetch: locks up to `max_records` offsets to `member_id`, lowest first: available
    /// offsets in the window, then new ones from SPEO up to `high_watermark`, as long as the
    /// window stays within `max_record_locks`. Each acquired offset's delivery count goes up
    /// by one and its lock ends at `now_ms + record_lock_duration_ms`. Locks that have ended
    /// by `now_ms` are expired first; an available offset already at the delivery limit
    /// (possible after a restart, or a lowered limit) is archived instead of delivered.
    pub fn acquire(
        &mut self,
        member_id: &str,
        max_records: usize,
        high_watermark: i64,
        now_ms: i64,
    ) -> ShareEffects {
        let mut ch = Changes::default();
        self.expire_into(now_ms, &mut ch);
        if member_id.is_empty() || max_records == 0 {
            return self.finish(ch);
        }
        let limit = self.config.delivery_count_limit;
        let deadline_ms = now_ms.saturating_add(self.config.record_lock_duration_ms);
        let acquired = RecordState::Acquired {
            member_id: member_id.to_string(),
            deadline_ms,
        };
        let mut left = i64::try_from(max_records).unwrap_or(i64::MAX);
        let candidates: Vec<(i64, i64, u16)> = self
            .runs
            .iter()
            .filter(|(_, r)| r.state == RecordState::Available)
            .map(|(&first, r)| (first, r.last, r.delivery_count))
            .collect();
        for (first, last, count) in candidates {
            if left == 0 {
                break;
            }
            if count >= limit {
                self.archive(first, last, ArchiveReason::DeliveryLimit, &mut ch);
                continue;
            }
            let last = last.min(first.saturating_add(left - 1));
            self.update(first, last, |run| {
                run.state = acquired.clone();
                run.delivery_count = count + 1;
            });
            ch.effects.acquired.push(AcquiredRecords {
                first_offset: first,
                last_offset: last,
                delivery_count: count + 1,
            });
            ch.durable = true;
            left -= last - first + 1;
        }
        let room = i64::try_from(self.config.max_record_locks)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.end_offset - self.start_offset);
        let new = left
            .min(room)
            .min(high_watermark.saturating_sub(self.end_offset));
        if new > 0 {
            let first = self.end_offset;
            self.runs
                .insert(first, Run::new(first + new - 1, acquired, 1));
            self.end_offset += new;
            ch.effects.acquired.push(AcquiredRecords {
                first_offset: first,
                last_offset: first + new - 1,
                delivery_count: 1,
            });
            ch.durable = true;
        }
        merge_acquired(&mut ch.effects.acquired);
        self.finish(ch)
    }

    /// ShareAcknowledge for one partition, all or nothing: every acknowledged offset must be
    /// in the window and locked to `member_id` with a lock that has not ended by `now_ms`,
    /// or nothing changes and the answer is INVALID_RECORD_STATE. Malformed batches (first
    /// after last, out of order, overlapping, a type count that fits neither the range nor
    /// one) are INVALID_REQUEST.
    pub fn acknowledge(
        &mut self,
        member_id: &str,
        batches: &[AcknowledgementBatch],
        now_ms: i64,
    ) -> Result<ShareEffects, CoordinatorError> {
        let mut previous_last = -1;
        for b in batches {
            let len = b.last_offset.checked_sub(b.first_offset).map(|d| d + 1);
            let types_fit =
                b.acknowledge_types.len() == 1 || len == Some(b.acknowledge_types.len() as i64);
            if b.first_offset < 0
                || b.last_offset < b.first_offset
                || b.first_offset <= previous_last
                || !types_fit
            {
                return Err(CoordinatorError::InvalidRequest);
            }
            previous_last = b.last_offset;
        }
        for b in batches {
            if !self.held(member_id, b.first_offset, b.last_offset, now_ms) {
                return Err(CoordinatorError::InvalidRecordState);
            }
        }
        let mut ch = Changes::default();
        for b in batches {
            for (first, last, ack) in type_runs(b) {
                self.apply_ack(first, last, ack, now_ms, &mut ch);
            }
        }
        Ok(self.finish(ch))
    }

    /// The acquisition-lock timer: offsets whose lock ended by `now_ms` become available, or
    /// archived if they have had their last allowed delivery.
    pub fn expire_locks(&mut self, now_ms: i64) -> ShareEffects {
        let mut ch = Changes::default();
        self.expire_into(now_ms, &mut ch);
        self.finish(ch)
    }

    /// A member left or was expired (or closed its share session): whatever it holds comes
    /// back, available or archived as for an ended lock.
    pub fn release_member(&mut self, member_id: &str) -> ShareEffects {
        let mut ch = Changes::default();
        let held: Vec<(i64, i64)> = self
            .runs
            .iter()
            .filter(|(_, r)| r.state.holder().is_some_and(|(m, _)| m == member_id))
            .map(|(&first, r)| (first, r.last))
            .collect();
        for (first, last) in held {
            self.give_back(first, last, &mut ch);
        }
        self.finish(ch)
    }

    /// The log start offset moved (retention, DeleteRecords): offsets below it are gone, so
    /// they leave the window whatever their state (a later acknowledgement of one is
    /// INVALID_RECORD_STATE) and SPSO moves up to it.
    pub fn log_start_offset_moved(&mut self, log_start_offset: i64) -> ShareEffects {
        let mut ch = Changes::default();
        if log_start_offset > self.start_offset {
            self.split_at(log_start_offset);
            self.runs = self.runs.split_off(&log_start_offset);
            self.start_offset = log_start_offset;
            self.end_offset = self.end_offset.max(log_start_offset);
            ch.durable = true;
        }
        self.finish(ch)
    }

    /// AlterShareGroupOffsets (the group must have no members): the window is dropped, SPSO is
    /// set to `start_offset`, and the state epoch moves.
    pub fn alter_start_offset(&mut self, start_offset: i64) -> ShareEffects {
        self.runs.clear();
        self.start_offset = start_offset.max(0);
        self.end_offset = self.start_offset;
        self.state_epoch = self.state_epoch.wrapping_add(1);
        self.finish(Changes {
            durable: true,
            ..Changes::default()
        })
    }

    /// Applies one acknowledgement type to `[first, last]`, already checked to be held.
    fn apply_ack(
        &mut self,
        first: i64,
        last: i64,
        ack: AcknowledgeType,
        now_ms: i64,
        ch: &mut Changes,
    ) {
        match ack {
            AcknowledgeType::Accept => {
                self.update(first, last, |run| run.state = RecordState::Acknowledged);
                self.acknowledged_total += (last - first + 1) as u64;
                ch.durable = true;
            }
            AcknowledgeType::Release => {
                let runs: Vec<(i64, i64)> = self.runs_within(first, last);
                for (f, l) in runs {
                    self.give_back(f, l, ch);
                }
            }
            AcknowledgeType::Reject => self.archive(first, last, ArchiveReason::Rejected, ch),
            AcknowledgeType::Gap => {
                self.update(first, last, |run| run.state = RecordState::Archived);
                ch.durable = true;
            }
            AcknowledgeType::Renew => {
                let deadline = now_ms.saturating_add(self.config.record_lock_duration_ms);
                self.update(first, last, |run| {
                    if let RecordState::Acquired { deadline_ms, .. } = &mut run.state {
                        *deadline_ms = deadline;
                    }
                });
            }
        }
    }

    /// Ends the locks that ran out by `now_ms`.
    fn expire_into(&mut self, now_ms: i64, ch: &mut Changes) {
        let ended: Vec<(i64, i64)> = self
            .runs
            .iter()
            .filter(|(_, r)| r.state.holder().is_some_and(|(_, d)| d <= now_ms))
            .map(|(&first, r)| (first, r.last))
            .collect();
        for (first, last) in ended {
            self.give_back(first, last, ch);
        }
    }

    /// An acquired run (one run: one delivery count) comes back: available, or archived at
    /// the delivery limit.
    fn give_back(&mut self, first: i64, last: i64, ch: &mut Changes) {
        let count = self.runs.get(&first).map_or(0, |r| r.delivery_count);
        if count >= self.config.delivery_count_limit {
            self.archive(first, last, ArchiveReason::DeliveryLimit, ch);
        } else {
            self.update(first, last, |run| run.state = RecordState::Available);
        }
    }

    /// Archives `[first, last]` with an event per offset.
    fn archive(&mut self, first: i64, last: i64, reason: ArchiveReason, ch: &mut Changes) {
        for (f, l) in self.runs_within(first, last) {
            let Some(run) = self.runs.get_mut(&f) else {
                continue;
            };
            run.state = RecordState::Archived;
            let delivery_count = run.delivery_count;
            ch.effects
                .archived
                .extend((f..=l).map(|offset| ArchiveEvent {
                    group: self.group.clone(),
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset,
                    delivery_count,
                    reason,
                }));
        }
        self.archived_total += (last - first + 1) as u64;
        ch.durable = true;
    }

    /// True when every offset of `[first, last]` is in the window and held by `member_id`.
    fn held(&self, member_id: &str, first: i64, last: i64, now_ms: i64) -> bool {
        if first < self.start_offset || last >= self.end_offset {
            return false;
        }
        let Some((&from, _)) = self.runs.range(..=first).next_back() else {
            return false;
        };
        self.runs
            .range(from..=last)
            .all(|(_, r)| r.state.held_by(member_id, now_ms))
    }

    /// Makes `offset` the first offset of a run, if it falls inside one.
    fn split_at(&mut self, offset: i64) {
        let Some((&first, run)) = self.runs.range_mut(..offset).next_back() else {
            return;
        };
        if run.last < offset || first == offset {
            return;
        }
        let tail = Run::new(run.last, run.state.clone(), run.delivery_count);
        run.last = offset - 1;
        self.runs.insert(offset, tail);
    }

    /// The (first, last) of the runs exactly covering `[first, last]`, splitting as needed.
    fn runs_within(&mut self, first: i64, last: i64) -> Vec<(i64, i64)> {
        self.split_at(first);
        self.split_at(last + 1);
        self.runs
            .range(first..=last)
            .map(|(&f, r)| (f, r.last))
            .collect()
    }

    /// Applies `f` to every run of `[first, last]`, in order, splitting runs at its edges.
    fn update(&mut self, first: i64, last: i64, mut f: impl FnMut(&mut Run)) {
        self.split_at(first);
        self.split_at(last + 1);
        for (_, run) in self.runs.range_mut(first..=last) {
            f(run);
        }
    }

    /// Moves SPSO over the settled prefix and merges runs that became alike.
    fn settle(&mut self) {
        while let Some(entry) = self.runs.first_entry() {
            if !entry.get().state.settled() {
                break;
            }
            self.start_offset = entry.remove().last + 1;
        }
        if self.runs.is_empty() {
            self.start_offset = self.end_offset;
        }
        let mut merged: BTreeMap<i64, Run> = BTreeMap::new();
        for (first, run) in std::mem::take(&mut self.runs) {
            if let Some((_, prev)) = merged.iter_mut().next_back() {
                if prev.state == run.state && prev.delivery_count == run.delivery_count {
                    prev.last = run.last;
                    continue;
                }
            }
            merged.insert(first, run);
        }
        self.runs = merged;
    }

    /// Settles the window and adds the snapshot to persist if anything durable changed.
    fn finish(&mut self, ch: Changes) -> ShareEffects {
        let start = self.start_offset;
        self.settle();
        let mut effects = ch.effects;
        if ch.durable || self.start_offset != start {
            effects.records.push(ShareRecord::Snapshot(self.snapshot()));
        }
        effects
    }
}

impl Run {
    fn new(last: i64, state: RecordState, delivery_count: u16) -> Self {
        Self {
            last,
            state,
            delivery_count,
        }
    }
}

/// A batch's offsets as (first, last, type) runs of one type each.
fn type_runs(b: &AcknowledgementBatch) -> Vec<(i64, i64, AcknowledgeType)> {
    if let [only] = b.acknowledge_types.as_slice() {
        return vec![(b.first_offset, b.last_offset, *only)];
    }
    let mut out: Vec<(i64, i64, AcknowledgeType)> = Vec::new();
    for (offset, ack) in (b.first_offset..).zip(&b.acknowledge_types) {
        match out.last_mut() {
            Some((_, last, t)) if t == ack => *last = offset,
            _ => out.push((offset, offset, *ack)),
        }
    }
    out
}

/// Joins adjacent acquired ranges with the same delivery count.
fn merge_acquired(acquired: &mut Vec<AcquiredRecords>) {
    let mut out: Vec<AcquiredRecords> = Vec::with_capacity(acquired.len());
    for a in acquired.drain(..) {
        match out.last_mut() {
            Some(p)
                if p.last_offset + 1 == a.first_offset && p.delivery_count == a.delivery_count =>
            {
                p.last_offset = a.last_offset;
            }
            _ => out.push(a),
        }
    }
    *acquired = out;
}
