//! Share-group membership driven by ShareGroupHeartbeat (KIP-932).
//!
//! A member joins with member epoch 0 and its subscribed topic names, heartbeats with the
//! epoch it was last given, and leaves with epoch -1; one that stays silent for the session
//! timeout is removed by [`ShareGroups::expire`]. The member id is the client's (KIP-1082) or,
//! when the client sends none, one the caller supplies.
//!
//! Assignment is the simple assignor: every member gets every partition of every topic it
//! subscribes to that exists. Partitions are shared, so unlike the consumer protocol there is
//! nothing to revoke: the group epoch moves when membership, subscriptions or the subscribed
//! topics' partition counts change, the assignment is recomputed at once for that epoch, and a
//! member takes the new epoch (and its assignment, if it changed) on its next heartbeat.
//! A heartbeat with any epoch other than the member's current or previous one (its answer may
//! have been lost) is FENCED_MEMBER_EPOCH.
//!
//! Membership is not persisted: after a restart members get UNKNOWN_MEMBER_ID and rejoin, as
//! with the consumer protocol here. What does persist, the share-partitions' delivery state,
//! is in [`super::partition`] and [`super::record`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::record::ShareRecord;
use super::{
    DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MAX_GROUPS, DEFAULT_MAX_SIZE,
    DEFAULT_SESSION_TIMEOUT_MS, MAX_MEMBER_ID_BYTES, MAX_SUBSCRIBED_TOPICS,
};
use crate::error::CoordinatorError;

/// Partitions by topic name.
pub type ShareAssignment = BTreeMap<String, BTreeSet<i32>>;
/// What the caller knows about topics: name to partition count.
pub type TopicPartitionCounts = HashMap<String, i32>;

/// Share-group settings (`group.share.*`).
#[derive(Debug, Clone)]
pub struct ShareGroupConfig {
    /// `group.share.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.share.max.size`: members per group.
    pub max_size: usize,
    /// `group.share.max.groups`: groups, empty ones included.
    pub max_groups: usize,
}

impl Default for ShareGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            max_size: DEFAULT_MAX_SIZE,
            max_groups: DEFAULT_MAX_GROUPS,
        }
    }
}

/// One ShareGroupHeartbeat.
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    /// The group.
    pub group_id: String,
    /// The member id the client chose (KIP-1082); empty to have the caller's one used.
    pub member_id: String,
    /// 0 to join, -1 to leave, else the epoch the member was last given.
    pub member_epoch: i32,
    /// The client's rack; `None` when unchanged.
    pub rack_id: Option<String>,
    /// Subscribed topic names; required to join, `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// client.id, for describe.
    pub client_id: String,
    /// Client address, for describe.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeartbeatResponse {
    /// The member id (a member whose client sent none learns it here).
    pub member_id: String,
    /// The member's epoch now; -1 after leaving.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's partitions, when they changed or the member just joined.
    pub assignment: Option<ShareAssignment>,
}

/// Kafka's share-group states that a live group can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareGroupState {
    /// No members.
    Empty,
    /// Members, each with its assignment.
    Stable,
}

impl ShareGroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            ShareGroupState::Empty => "Empty",
            ShareGroupState::Stable => "Stable",
        }
    }
}

/// A member removed by the session timeout: the broker releases the records it holds in
/// every share-partition of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredMember {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
}

/// One member as ShareGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMemberView {
    /// Member id.
    pub member_id: String,
    /// Its epoch.
    pub member_epoch: i32,
    /// Its rack.
    pub rack_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed: Vec<String>,
    /// Its partitions.
    pub assignment: ShareAssignment,
}

/// One group as ShareGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupView {
    /// The group.
    pub group_id: String,
    /// Empty or Stable.
    pub state: ShareGroupState,
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the assignment (always the group epoch: the simple assignor is immediate).
    pub assignment_epoch: i32,
    /// Members, by member id.
    pub members: Vec<ShareMemberView>,
}

#[derive(Debug, Clone)]
struct Member {
    /// The epoch the member was last given.
    epoch: i32,
    /// The one before, still accepted in case the answer that moved it was lost.
    previous_epoch: i32,
    rack_id: Option<String>,
    /// Sorted and without duplicates.
    subscribed: Vec<String>,
    /// Its partitions for the group's assignment epoch.
    assignment: ShareAssignment,
    /// What it was last sent, to send the assignment only when it changes.
    last_sent: Option<ShareAssignment>,
    session_deadline_ms: i64,
    client_id: String,
    client_host: String,
}

#[derive(Debug, Default)]
struct Group {
    group_epoch: i32,
    assignment_epoch: i32,
    /// At most `max_size` members.
    members: BTreeMap<String, Member>,
    /// Partition counts of the subscribed topics at the last assignment.
    topics_seen: BTreeMap<String, i32>,
}

/// Every share group on this broker (at most `max_groups`).
#[derive(Debug)]
pub struct ShareGroups {
    config: ShareGroupConfig,
    groups: BTreeMap<String, Group>,
}

impl ShareGroups {
    /// No groups yet.
    pub fn new(config: ShareGroupConfig) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ShareGroupConfig {
        &self.config
    }

    /// Handles one ShareGroupHeartbeat. `new_member_id` is used when the client sent no member
    /// id; `topics` is the current metadata of (at least) the subscribed topics.
    pub fn heartbeat(
        &mut self,
        req: ShareHeartbeat,
        new_member_id: &str,
        topics: &TopicPartitionCounts,
        now_ms: i64,
    ) -> Result<ShareHeartbeatResponse, CoordinatorError> {
        validate(&req)?;
        let interval = self.config.heartbeat_interval_ms;
        if req.member_epoch == -1 {
            let g = self
                .groups
                .get_mut(&req.group_id)
                .ok_or(CoordinatorError::UnknownMemberId)?;
            if g.members.remove(&req.member_id).is_none() {
                return Err(CoordinatorError::UnknownMemberId);
            }
            refresh_assignment(g, topics, true);
            return Ok(ShareHeartbeatResponse {
                member_id: req.member_id,
                member_epoch: -1,
                heartbeat_interval_ms: interval,
                assignment: None,
            });
        }
        let member_id = if req.member_id.is_empty() {
            if new_member_id.is_empty() || new_member_id.len() > MAX_MEMBER_ID_BYTES {
                return Err(CoordinatorError::InvalidRequest);
            }
            new_member_id.to_string()
        } else {
            req.member_id.clone()
        };
        if !self.groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return Err(CoordinatorError::UnknownMemberId);
            }
            if self.groups.len() >= self.config.max_groups || self.config.max_size == 0 {
                return Err(CoordinatorError::GroupMaxSizeReached);
            }
        }
        let max_size = self.config.max_size;
        let session_deadline_ms = now_ms.saturating_add(self.config.session_timeout_ms);
        let g = self.groups.entry(req.group_id.clone()).or_default();
        let subscribed = req.subscribed_topic_names.as_deref().map(sorted_unique);
        let mut changed = false;
        match g.members.get_mut(&member_id) {
            None if req.member_epoch != 0 => return Err(CoordinatorError::UnknownMemberId),
            None => {
                if g.members.len() >= max_size {
                    return Err(CoordinatorError::GroupMaxSizeReached);
                }
                g.members.insert(
                    member_id.clone(),
                    Member {
                        epoch: 0,
                        previous_epoch: -1,
                        rack_id: None,
                        subscribed: subscribed.unwrap_or_default(),
                        assignment: ShareAssignment::new(),
                        last_sent: None,
                        session_deadline_ms,
                        client_id: String::new(),
                        client_host: String::new(),
                    },
                );
                changed = true;
            }
            Some(m) => {
                // Epoch 0 from a known member is a rejoin (it was fenced, or restarted with
                // the same id): accepted, and it is sent its whole assignment again.
                if req.member_epoch != 0
                    && req.member_epoch != m.epoch
                    && req.member_epoch != m.previous_epoch
                {
                    return Err(CoordinatorError::FencedMemberEpoch);
                }
                if let Some(subscribed) = subscribed {
                    if subscribed != m.subscribed {
                        m.subscribed = subscribed;
                        changed = true;
                    }
                }
            }
        }
        refresh_assignment(g, topics, changed);
        let assignment_epoch = g.assignment_epoch;
        let Some(m) = g.members.get_mut(&member_id) else {
            return Err(CoordinatorError::UnknownMemberId);
        };
        m.session_deadline_ms = session_deadline_ms;
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id;
        }
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        let assignment = if req.member_epoch == 0 || m.last_sent.as_ref() != Some(&m.assignment) {
            m.last_sent = Some(m.assignment.clone());
            Some(m.assignment.clone())
        } else {
            None
        };
        Ok(ShareHeartbeatResponse {
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment,
        })
    }

    /// Removes members whose session ended by `now_ms` and returns them, so that the broker
    /// releases what they hold.
    pub fn expire(&mut self, topics: &TopicPartitionCounts, now_ms: i64) -> Vec<ExpiredMember> {
        let mut expired = Vec::new();
        for (group_id, g) in &mut self.groups {
            let gone: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.session_deadline_ms <= now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            if gone.is_empty() {
                continue;
            }
            for member_id in gone {
                g.members.remove(&member_id);
                expired.push(ExpiredMember {
                    group_id: group_id.clone(),
                    member_id,
                });
            }
            refresh_assignment(g, topics, true);
        }
        expired
    }

    /// The earliest session deadline, for the caller's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|g| g.members.values().map(|m| m.session_deadline_ms))
            .min()
    }

    /// True when `member_id` is a member of `group_id` now (ShareFetch and ShareAcknowledge
    /// come only from members).
    pub fn is_member(&self, group_id: &str, member_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| g.members.contains_key(member_id))
    }

    /// A member's partitions now.
    pub fn assignment(&self, group_id: &str, member_id: &str) -> Option<&ShareAssignment> {
        Some(
            &self
                .groups
                .get(group_id)?
                .members
                .get(member_id)?
                .assignment,
        )
    }

    /// Makes a group with persisted share-partition state known after a restart, Empty until
    /// members join. Never refused: state already on disk is not subject to `max_groups`.
    pub fn restore_group(&mut self, group_id: &str) {
        self.groups.entry(group_id.to_string()).or_default();
    }

    /// ShareGroupDescribe.
    pub fn describe(&self, group_id: &str) -> Option<ShareGroupView> {
        let g = self.groups.get(group_id)?;
        Some(ShareGroupView {
            group_id: group_id.to_string(),
            state: state_of(g),
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            members: g
                .members
                .iter()
                .map(|(id, m)| ShareMemberView {
                    member_id: id.clone(),
                    member_epoch: m.epoch,
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Every group and its state, for ListGroups.
    pub fn group_ids(&self) -> Vec<(String, ShareGroupState)> {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), state_of(g)))
            .collect()
    }

    /// DeleteShareGroups: only an Empty group; returns the tombstone to persist, after which the
    /// broker drops the group's share-partitions.
    pub fn delete_group(&mut self, group_id: &str) -> Result<ShareRecord, CoordinatorError> {
        let g = self
            .groups
            .get(group_id)
            .ok_or(CoordinatorError::GroupIdNotFound)?;
        if !g.members.is_empty() {
            return Err(CoordinatorError::NonEmptyGroup);
        }
        self.groups.remove(group_id);
        Ok(ShareRecord::DeleteGroup {
            group: group_id.to_string(),
        })
    }
}

/// The checks Kafka makes on a ShareGroupHeartbeat before looking at the group.
fn validate(req: &ShareHeartbeat) -> Result<(), CoordinatorError> {
    if req.group_id.is_empty() {
        return Err(CoordinatorError::InvalidGroupId);
    }
    let bad_epoch = req.member_epoch < -1;
    let missing_id = req.member_epoch != 0 && req.member_id.is_empty();
    let long_id = req.member_id.len() > MAX_MEMBER_ID_BYTES;
    let empty_rack = req.rack_id.as_deref() == Some("");
    let bad_topics = req
        .subscribed_topic_names
        .as_ref()
        .is_some_and(|t| t.len() > MAX_SUBSCRIBED_TOPICS || t.iter().any(String::is_empty));
    let join_without_topics = req.member_epoch == 0
        && req
            .subscribed_topic_names
            .as_ref()
            .is_none_or(Vec::is_empty);
    if bad_epoch || missing_id || long_id || empty_rack || bad_topics || join_without_topics {
        return Err(CoordinatorError::InvalidRequest);
    }
    Ok(())
}

fn sorted_unique(names: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = names.iter().collect();
    set.into_iter().cloned().collect()
}

fn state_of(g: &Group) -> ShareGroupState {
    if g.members.is_empty() {
        ShareGroupState::Empty
    } else {
        ShareGroupState::Stable
    }
}

/// Bumps the group epoch (once) if `members_changed` or if a subscribed topic appeared,
/// vanished or changed its partition count, and then recomputes every member's assignment.
fn refresh_assignment(g: &mut Group, topics: &TopicPartitionCounts, members_changed: bool) {
    let mut seen = BTreeMap::new();
    for m in g.members.values() {
        for t in &m.subscribed {
            if let Some(&count) = topics.get(t) {
                seen.insert(t.clone(), count);
            }
        }
    }
    if seen == g.topics_seen && !members_changed {
        return;
    }
    g.topics_seen = seen;
    g.group_epoch += 1;
    for m in g.members.values_mut() {
        m.assignment = m
            .subscribed
            .iter()
            .filter_map(|t| {
                let count = *g.topics_seen.get(t)?;
                (count > 0).then(|| (t.clone(), (0..count).collect()))
            })
            .collect();
    }
    g.assignment_epoch = g.group_epoch;
}
