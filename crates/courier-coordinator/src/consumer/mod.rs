//! The KIP-848 consumer group protocol (ConsumerGroupHeartbeat) as a state machine: the broker
//! computes assignments with a server-side assignor, and each member moves to its target by
//! revoking first and receiving partitions only once their previous owner has released them,
//! so a partition never has two owners.
//!
//! Epochs: the group epoch moves whenever membership, subscriptions or the subscribed topics'
//! partition counts change; the target assignment is recomputed for it (assignment epoch). A
//! member's epoch moves to the assignment epoch once it holds nothing it must revoke.
//! Heartbeats with another epoch are fenced (FENCED_MEMBER_EPOCH).

pub mod assignor;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::CoordinatorError;

/// A topic id (KIP-516), as 128 bits.
pub type TopicId = u128;
/// Partitions by topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;
/// What the caller knows about topics: name to (id, partition count).
pub type TopicsView = HashMap<String, (TopicId, i32)>;

/// Consumer-protocol settings (group.consumer.*).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// group.consumer.session.timeout.ms.
    pub session_timeout_ms: i64,
    /// group.consumer.heartbeat.interval.ms.
    pub heartbeat_interval_ms: i32,
    /// The assignor used when a member names none.
    pub default_assignor: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            default_assignor: "uniform".into(),
        }
    }
}

/// One ConsumerGroupHeartbeat.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// The group.
    pub group_id: String,
    /// The member (v1: chosen by the client; v0: empty on join, assigned here).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving temporarily, else its epoch.
    pub member_epoch: i32,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// Subscribed topic names; `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Preferred assignor; `None` when unchanged.
    pub server_assignor: Option<String>,
    /// Partitions the member owns now; `None` when unchanged.
    pub owned: Option<Assignment>,
    /// Rebalance timeout: how long it may take to revoke.
    pub rebalance_timeout_ms: i32,
    /// client.id, for describe.
    pub client_id: String,
    /// Client address, for describe.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The member id (new members learn theirs).
    pub member_id: String,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The partitions the member should own, when they changed.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    previous_epoch: i32,
    instance_id: Option<String>,
    subscribed: Vec<String>,
    assignor: Option<String>,
    /// What it is allowed to own now.
    assigned: Assignment,
    /// What it was told to give up and has not yet confirmed releasing.
    revoking: Assignment,
    /// What it was last sent.
    last_sent: Option<Assignment>,
    session_deadline_ms: i64,
    revoke_deadline_ms: Option<i64>,
    rebalance_timeout_ms: i32,
    client_id: String,
    client_host: String,
}

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// Its epoch.
    pub member_epoch: i32,
    /// group.instance.id.
    pub instance_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed: Vec<String>,
    /// What it owns now.
    pub assignment: Assignment,
    /// Where it is heading.
    pub target: Assignment,
}

/// One group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Kafka's state name: Empty, Assigning, Reconciling or Stable.
    pub state: &'static str,
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: String,
    /// Members.
    pub members: Vec<MemberView>,
}

#[derive(Debug, Default)]
struct Group {
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    /// (topic id, partitions) of every subscribed topic at the last assignment.
    topics_seen: BTreeMap<String, (TopicId, i32)>,
}

/// Every consumer-protocol group.
pub struct ConsumerGroups {
    config: ConsumerConfig,
    groups: HashMap<String, Group>,
    incarnation: String,
    next_member: u64,
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, parts) in a {
        let rest: BTreeSet<i32> = parts
            .iter()
            .filter(|p| !b.get(t).is_some_and(|x| x.contains(p)))
            .copied()
            .collect();
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, parts) in a {
        if let Some(other) = b.get(t) {
            let both: BTreeSet<i32> = parts.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

fn union_into(into: &mut Assignment, b: &Assignment) {
    for (t, parts) in b {
        into.entry(*t).or_default().extend(parts.iter().copied());
    }
}

impl ConsumerGroups {
    /// No groups yet. `incarnation` makes generated member ids unique across restarts.
    pub fn new(config: ConsumerConfig, incarnation: impl Into<String>) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            incarnation: incarnation.into(),
            next_member: 1,
        }
    }

    /// True when the group exists here with at least one member.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Checks an OffsetCommit from a member of a consumer-protocol group.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), CoordinatorError> {
        let g = self
            .groups
            .get(group_id)
            .ok_or(CoordinatorError::GroupIdNotFound)?;
        let m = g
            .members
            .get(member_id)
            .ok_or(CoordinatorError::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(CoordinatorError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Handles one heartbeat.
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        topics: &TopicsView,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, CoordinatorError> {
        if req.group_id.is_empty() {
            return Err(CoordinatorError::InvalidGroupId);
        }
        let interval = self.config.heartbeat_interval_ms;
        if req
            .server_assignor
            .as_deref()
            .is_some_and(|a| !assignor::ASSIGNORS.contains(&a))
        {
            return Err(CoordinatorError::UnsupportedAssignor);
        }
        if req.member_epoch < 0 {
            let g = self
                .groups
                .get_mut(&req.group_id)
                .ok_or(CoordinatorError::UnknownMemberId)?;
            if g.members.remove(&req.member_id).is_none() {
                return Err(CoordinatorError::UnknownMemberId);
            }
            g.target.remove(&req.member_id);
            g.group_epoch += 1;
            return Ok(HeartbeatResponse {
                member_id: req.member_id,
                member_epoch: req.member_epoch,
                heartbeat_interval_ms: interval,
                assignment: None,
            });
        }
        let member_id = if req.member_id.is_empty() {
            let n = self.next_member;
            self.next_member += 1;
            format!("{}-{}-{n}", req.client_id, self.incarnation)
        } else {
            req.member_id.clone()
        };
        let session = self.config.session_timeout_ms;
        let default_assignor = self.config.default_assignor.clone();
        let g = self.groups.entry(req.group_id.clone()).or_default();
        if req.member_epoch == 0 {
            let subscribed = req
                .subscribed_topic_names
                .clone()
                .ok_or(CoordinatorError::InvalidRequest)?;
            // A static member coming back replaces its old incarnation.
            if let Some(instance) = &req.instance_id {
                let old: Vec<String> = g
                    .members
                    .iter()
                    .filter(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in old {
                    g.members.remove(&id);
                    g.target.remove(&id);
                }
            }
            let rejoin = g.members.remove(&member_id);
            g.members.insert(
                member_id.clone(),
                Member {
                    epoch: 0,
                    previous_epoch: -1,
                    instance_id: req.instance_id.clone(),
                    subscribed,
                    assignor: req.server_assignor.clone(),
                    assigned: rejoin.map(|m| m.assigned).unwrap_or_default(),
                    revoking: Assignment::new(),
                    last_sent: None,
                    session_deadline_ms: now_ms + session,
                    revoke_deadline_ms: None,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                },
            );
            g.group_epoch += 1;
        } else {
            let m = g
                .members
                .get_mut(&member_id)
                .ok_or(CoordinatorError::UnknownMemberId)?;
            if req.member_epoch != m.epoch
                && !(req.member_epoch == m.previous_epoch && m.previous_epoch >= 0)
            {
                return Err(CoordinatorError::FencedMemberEpoch);
            }
            m.session_deadline_ms = now_ms + session;
            if let Some(subscribed) = &req.subscribed_topic_names {
                if *subscribed != m.subscribed {
                    m.subscribed = subscribed.clone();
                    g.group_epoch += 1;
                }
            }
            if req.server_assignor.is_some() && req.server_assignor != m.assignor {
                m.assignor = req.server_assignor.clone();
                g.group_epoch += 1;
            }
        }
        if let Some(m) = g.members.get_mut(&member_id) {
            if let Some(owned) = &req.owned {
                // Partitions being revoked that the member no longer reports are released.
                m.revoking = intersect(&m.revoking, owned);
            }
            if m.revoking.is_empty() {
                m.revoke_deadline_ms = None;
            }
        }
        refresh_target(g, topics, &default_assignor);
        let resp = reconcile(g, &member_id, now_ms);
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: resp.0,
            heartbeat_interval_ms: interval,
            assignment: resp.1,
        })
    }

    /// Expires members whose session ended or who did not revoke in time.
    pub fn tick(&mut self, topics: &TopicsView, now_ms: i64) {
        let default_assignor = self.config.default_assignor.clone();
        for g in self.groups.values_mut() {
            let gone: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.session_deadline_ms <= now_ms
                        || m.revoke_deadline_ms.is_some_and(|d| d <= now_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            if gone.is_empty() {
                continue;
            }
            for id in gone {
                g.members.remove(&id);
                g.target.remove(&id);
            }
            g.group_epoch += 1;
            refresh_target(g, topics, &default_assignor);
        }
        self.groups
            .retain(|_, g| !g.members.is_empty() || g.group_epoch == 0);
    }

    /// The earliest deadline, for the caller's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|g| {
                g.members.values().flat_map(|m| {
                    std::iter::once(m.session_deadline_ms).chain(m.revoke_deadline_ms)
                })
            })
            .min()
    }

    /// ConsumerGroupDescribe.
    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let g = self.groups.get(group_id)?;
        let reconciling = g.members.values().any(|m| m.epoch != g.assignment_epoch);
        Some(GroupView {
            state: if g.members.is_empty() {
                "Empty"
            } else if g.assignment_epoch < g.group_epoch {
                "Assigning"
            } else if reconciling {
                "Reconciling"
            } else {
                "Stable"
            },
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g
                .members
                .values()
                .find_map(|m| m.assignor.clone())
                .unwrap_or_else(|| self.config.default_assignor.clone()),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    member_epoch: m.epoch,
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    assignment: m.assigned.clone(),
                    target: g.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// Ids of groups with members, for ListGroups.
    pub fn group_ids(&self) -> Vec<(String, &'static str)> {
        self.groups
            .keys()
            .filter_map(|id| self.describe(id).map(|d| (id.clone(), d.state)))
            .collect()
    }
}

/// Recomputes the target assignment when the group epoch or the subscribed topics moved.
fn refresh_target(g: &mut Group, topics: &TopicsView, default_assignor: &str) {
    let mut seen = BTreeMap::new();
    for m in g.members.values() {
        for t in &m.subscribed {
            if let Some(info) = topics.get(t) {
                seen.insert(t.clone(), *info);
            }
        }
    }
    if seen != g.topics_seen {
        g.topics_seen = seen;
        g.group_epoch += 1;
    }
    if g.assignment_epoch == g.group_epoch {
        return;
    }
    let assignor = g
        .members
        .values()
        .find_map(|m| m.assignor.clone())
        .unwrap_or_else(|| default_assignor.to_string());
    let subs: Vec<assignor::MemberSubscription<'_>> = g
        .members
        .iter()
        .map(|(id, m)| assignor::MemberSubscription {
            member_id: id,
            topics: m
                .subscribed
                .iter()
                .filter_map(|t| topics.get(t).copied())
                .collect(),
            previous: g.target.get(id),
        })
        .collect();
    g.target = assignor::assign(&assignor, &subs);
    g.assignment_epoch = g.group_epoch;
}

/// Moves one member toward its target without ever giving a partition two owners.
/// Returns (member epoch, assignment to send if it changed).
fn reconcile(g: &mut Group, member_id: &str, now_ms: i64) -> (i32, Option<Assignment>) {
    let target = g.target.get(member_id).cloned().unwrap_or_default();
    let mut held_by_others = Assignment::new();
    for (id, m) in &g.members {
        if id != member_id {
            union_into(&mut held_by_others, &m.assigned);
            union_into(&mut held_by_others, &m.revoking);
        }
    }
    let assignment_epoch = g.assignment_epoch;
    let Some(m) = g.members.get_mut(member_id) else {
        return (-1, None);
    };
    let to_revoke = minus(&m.assigned, &target);
    if !to_revoke.is_empty() {
        union_into(&mut m.revoking, &to_revoke);
        m.assigned = intersect(&m.assigned, &target);
        m.revoke_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(1)));
    }
    if m.revoking.is_empty() {
        let free = minus(&minus(&target, &m.assigned), &held_by_others);
        union_into(&mut m.assigned, &free);
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
    }
    let send = if m.last_sent.as_ref() != Some(&m.assigned) {
        m.last_sent = Some(m.assigned.clone());
        Some(m.assigned.clone())
    } else {
        None
    };
    (m.epoch, send)
}
