//! OffsetCommit, OffsetFetch, OffsetDelete, and applying persisted offset records.

use std::collections::HashSet;

use super::state::{Group, GroupState};
use super::GroupCoordinator;
use crate::error::CoordinatorError;
use crate::offset_record::OffsetRecord;

/// A committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp_ms: i64,
}

/// OffsetCommit's inputs (partitions already checked to exist by the caller).
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The group.
    pub group_id: String,
    /// The committing member; empty for a simple (group-less) commit.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// Its generation; -1 for a simple commit.
    pub generation_id: i32,
    /// (topic, partition, offset, leader epoch, metadata).
    pub offsets: Vec<(String, i32, i64, i32, String)>,
}

/// (topic, partition, error) for each partition of a request.
pub type PartitionResults = Vec<(String, i32, Option<CoordinatorError>)>;

/// What to persist for an accepted commit, and the per-partition outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPlan {
    /// Records to append and fsync before answering; then pass them to
    /// [`GroupCoordinator::apply`].
    pub records: Vec<OffsetRecord>,
    /// (topic, partition, error) for every partition of the request.
    pub results: PartitionResults,
}

impl GroupCoordinator {
    /// Validates an OffsetCommit as Kafka's classic coordinator does and returns what to persist.
    pub fn prepare_commit(
        &mut self,
        req: &CommitRequest,
        now_ms: i64,
    ) -> Result<CommitPlan, CoordinatorError> {
        if req.group_id.is_empty() {
            return Err(CoordinatorError::InvalidGroupId);
        }
        match self.groups.get_mut(&req.group_id) {
            None => {
                if req.generation_id >= 0 || !req.member_id.is_empty() {
                    return Err(CoordinatorError::UnknownMemberId);
                }
            }
            Some(group) => validate_commit(group, req, now_ms)?,
        }
        let max = self.config.offset_metadata_max_bytes;
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in &req.offsets {
            if metadata.len() > max {
                results.push((
                    topic.clone(),
                    *partition,
                    Some(CoordinatorError::OffsetMetadataTooLarge),
                ));
                continue;
            }
            records.push(OffsetRecord::Commit {
                group: req.group_id.clone(),
                topic: topic.clone(),
                partition: *partition,
                offset: CommittedOffset {
                    offset: *offset,
                    leader_epoch: *leader_epoch,
                    metadata: metadata.clone(),
                    commit_timestamp_ms: now_ms,
                },
            });
            results.push((topic.clone(), *partition, None));
        }
        Ok(CommitPlan { records, results })
    }

    /// Prepares a commit whose group membership was validated elsewhere (a KIP-848 consumer
    /// group member, checked by member epoch).
    pub fn prepare_commit_unchecked(
        &mut self,
        req: &CommitRequest,
        now_ms: i64,
    ) -> Result<CommitPlan, CoordinatorError> {
        let simple = CommitRequest {
            member_id: String::new(),
            generation_id: -1,
            group_instance_id: None,
            ..req.clone()
        };
        match self.groups.get(&req.group_id) {
            Some(g) if g.state != GroupState::Empty => {
                Err(CoordinatorError::InconsistentGroupProtocol)
            }
            _ => self.prepare_commit(&simple, now_ms),
        }
    }

    /// Records for a TxnOffsetCommit (the transaction itself is validated by the transaction
    /// coordinator): pending until the producer's transaction ends.
    pub fn prepare_txn_commit(
        &self,
        group: &str,
        producer_id: i64,
        offsets: &[(String, i32, i64, i32, String)],
        now_ms: i64,
    ) -> (Vec<OffsetRecord>, PartitionResults) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in offsets {
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push((
                    topic.clone(),
                    *partition,
                    Some(CoordinatorError::OffsetMetadataTooLarge),
                ));
                continue;
            }
            records.push(OffsetRecord::TxnCommit {
                group: group.to_string(),
                producer_id,
                topic: topic.clone(),
                partition: *partition,
                offset: CommittedOffset {
                    offset: *offset,
                    leader_epoch: *leader_epoch,
                    metadata: metadata.clone(),
                    commit_timestamp_ms: now_ms,
                },
            });
            results.push((topic.clone(), *partition, None));
        }
        (records, results)
    }

    /// True while an open transaction holds an uncommitted offset for the partition
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txn_pending.iter().any(|((g, _), offsets)| {
            g == group && offsets.contains_key(&(topic.to_string(), partition))
        })
    }

    /// Makes persisted records visible (also used to replay the offsets log at start-up).
    pub fn apply(&mut self, records: &[OffsetRecord]) {
        for r in records {
            match r {
                OffsetRecord::TxnCommit {
                    group,
                    producer_id,
                    topic,
                    partition,
                    offset,
                } => {
                    self.txn_pending
                        .entry((group.clone(), *producer_id))
                        .or_default()
                        .insert((topic.clone(), *partition), offset.clone());
                }
                OffsetRecord::TxnEnd {
                    group,
                    producer_id,
                    commit,
                } => {
                    let pending = self
                        .txn_pending
                        .remove(&(group.clone(), *producer_id))
                        .unwrap_or_default();
                    if *commit && !pending.is_empty() {
                        let g = self
                            .groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(group));
                        g.offsets.extend(pending);
                    }
                }
                OffsetRecord::Commit {
                    group,
                    topic,
                    partition,
                    offset,
                } => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group))
                        .offsets
                        .insert((topic.clone(), *partition), offset.clone());
                }
                OffsetRecord::Delete {
                    group,
                    topic,
                    partition,
                } => {
                    if let Some(g) = self.groups.get_mut(group) {
                        g.offsets.remove(&(topic.clone(), *partition));
                        if g.state == GroupState::Empty && g.offsets.is_empty() {
                            self.groups.remove(group);
                        }
                    }
                }
            }
        }
    }

    /// OffsetFetch: committed offsets for these partitions, or for all when `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let group = self.groups.get(group_id);
        match partitions {
            Some(list) => list
                .iter()
                .map(|(t, p)| {
                    (
                        t.clone(),
                        *p,
                        group.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned()),
                    )
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The subscription metadata of every member for the group's chosen protocol, so the caller
    /// can tell which topics the group consumes (OffsetDelete).
    pub fn member_subscriptions(&self, group_id: &str) -> Vec<bytes::Bytes> {
        let Some(g) = self.groups.get(group_id) else {
            return Vec::new();
        };
        let protocol = g.protocol_name.clone().unwrap_or_default();
        g.members
            .values()
            .map(|m| m.metadata_for(&protocol))
            .collect()
    }

    /// OffsetDelete: tombstones for partitions of topics no member subscribes to.
    pub fn prepare_offset_delete(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: &HashSet<String>,
    ) -> Result<(Vec<OffsetRecord>, PartitionResults), CoordinatorError> {
        let group = self
            .groups
            .get(group_id)
            .ok_or(CoordinatorError::GroupIdNotFound)?;
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (topic, partition) in partitions {
            if group.state != GroupState::Empty && subscribed.contains(topic) {
                results.push((
                    topic.clone(),
                    *partition,
                    Some(CoordinatorError::GroupSubscribedToTopic),
                ));
                continue;
            }
            if group.offsets.contains_key(&(topic.clone(), *partition)) {
                records.push(OffsetRecord::Delete {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
            }
            results.push((topic.clone(), *partition, None));
        }
        Ok((records, results))
    }
}

fn validate_commit(
    group: &mut Group,
    req: &CommitRequest,
    now_ms: i64,
) -> Result<(), CoordinatorError> {
    if req.generation_id < 0 && group.state == GroupState::Empty {
        return Ok(()); // A simple consumer committing for a group with no members.
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(CoordinatorError::RebalanceInProgress);
    }
    group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
    if req.generation_id != group.generation_id {
        return Err(CoordinatorError::IllegalGeneration);
    }
    if let Some(m) = group.members.get_mut(&req.member_id) {
        m.touch(now_ms);
    }
    Ok(())
}
