//! A group, its members and the transitions between Kafka's group states.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::offsets::CommittedOffset;
use super::{Effect, JoinResult, JoinedMember, SyncResult, Token};
use crate::error::CoordinatorError;

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (it may still hold committed offsets).
    Empty,
    /// Waiting for every member to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (assignor, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// What the leader assigned it in the current generation.
    pub assignment: Bytes,
    /// Its session ends at this time unless it heartbeats (or joins, or syncs) first.
    pub session_deadline_ms: i64,
    /// A JoinGroup waiting for the rebalance to complete.
    pub pending_join: Option<Token>,
    /// A SyncGroup waiting for the leader's assignment.
    pub pending_sync: Option<Token>,
}

impl Member {
    pub fn touch(&mut self, now_ms: i64) {
        self.session_deadline_ms = now_ms + i64::from(self.session_timeout_ms);
    }

    /// Its subscription metadata for `protocol` (empty if it does not support it).
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One group.
#[derive(Debug)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// Members by member id.
    pub members: BTreeMap<String, Member>,
    /// Members told MEMBER_ID_REQUIRED, by id, with the time their offer expires.
    pub pending_members: HashMap<String, i64>,
    /// group.instance.id to member id.
    pub static_members: HashMap<String, String>,
    /// When the current rebalance gives up waiting for members that have not rejoined.
    pub rebalance_deadline_ms: Option<i64>,
    /// True for the first rebalance of an empty group: it waits out its delay even when every
    /// member has joined.
    pub initial_rebalance: bool,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    pub fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_rebalance: false,
            offsets: BTreeMap::new(),
        }
    }

    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self.members.values().map(|m| m.session_deadline_ms);
        let pending = self.pending_members.values().copied();
        sessions
            .chain(pending)
            .chain(self.rebalance_deadline_ms)
            .min()
    }

    /// The largest rebalance timeout among members: how long a rebalance waits for rejoins.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Starts a rebalance. Members waiting in SyncGroup learn of it at once.
    pub fn prepare_rebalance(
        &mut self,
        now_ms: i64,
        initial_delay_ms: i64,
        effects: &mut Vec<Effect>,
    ) {
        for m in self.members.values_mut() {
            if let Some(token) = m.pending_sync.take() {
                effects.push(Effect::Sync(
                    token,
                    SyncResult::error(CoordinatorError::RebalanceInProgress),
                ));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.initial_rebalance = was_empty && initial_delay_ms > 0;
        let wait = if self.initial_rebalance {
            initial_delay_ms.min(self.rebalance_timeout_ms().max(1))
        } else {
            self.rebalance_timeout_ms()
        };
        self.rebalance_deadline_ms = Some(now_ms + wait);
    }

    /// Completes the join phase if every member has rejoined (or the deadline passed, when
    /// `force` or the clock says so): members that did not rejoin are dropped, a new generation
    /// starts, a protocol is chosen and every parked JoinGroup is answered.
    pub fn maybe_complete_join(&mut self, now_ms: i64, force: bool, effects: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline_ms.is_some_and(|d| now_ms >= d);
        let all_joined = self.members.values().all(|m| m.pending_join.is_some());
        if !(force || deadline_passed || (all_joined && !self.initial_rebalance)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.rebalance_deadline_ms = None;
        self.initial_rebalance = false;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let all: Vec<JoinedMember> = self
            .members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect();
        let generation_id = self.generation_id;
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.touch(now_ms);
            if let Some(token) = m.pending_join.take() {
                let is_leader = m.member_id == leader;
                effects.push(Effect::Join(
                    token,
                    JoinResult {
                        error: None,
                        generation_id,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        leader: leader.clone(),
                        member_id: m.member_id.clone(),
                        members: if is_leader { all.clone() } else { Vec::new() },
                        skip_assignment: false,
                    },
                ));
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Option<Vec<String>> = None;
        for m in self.members.values() {
            let names: Vec<String> = m.protocols.iter().map(|(p, _)| p.clone()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.into_iter().filter(|p| names.contains(p)).collect(),
            });
        }
        let candidates = candidates?;
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((first, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(p)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == first) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the candidate listed first, so the choice is deterministic.
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    /// True if a member with these protocols can join: same protocol type and at least one
    /// protocol in common with every current member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(p, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        })
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID is left to the
    /// caller (it knows whether they should see an error).
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        if let Some(instance) = &m.group_instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|id| id == member_id)
            {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        Some(m)
    }

    /// After a member left or expired: rebalance the rest, or become empty.
    pub fn after_member_removed(
        &mut self,
        now_ms: i64,
        initial_delay_ms: i64,
        effects: &mut Vec<Effect>,
    ) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty();
                } else {
                    self.prepare_rebalance(now_ms, initial_delay_ms, effects);
                }
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.generation_id += 1;
                    self.become_empty();
                } else {
                    self.maybe_complete_join(now_ms, false, effects);
                }
            }
            GroupState::Empty => {}
        }
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.protocol_name = None;
        self.leader = None;
        self.rebalance_deadline_ms = None;
        self.initial_rebalance = false;
        if self.members.is_empty() {
            self.protocol_type = None;
        }
    }

    /// Drops members whose session ended and offers of member ids nobody took up.
    pub fn expire_sessions(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        self.pending_members
            .retain(|_, deadline| *deadline > now_ms);
        // A member parked in JoinGroup is waiting on the coordinator, not failing to heartbeat;
        // the rebalance deadline bounds that wait instead.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.pending_join.is_none() && m.session_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            if let Some(m) = self.remove_member(id) {
                if let Some(token) = m.pending_sync {
                    effects.push(Effect::Sync(
                        token,
                        SyncResult::error(CoordinatorError::UnknownMemberId),
                    ));
                }
            }
        }
        self.after_member_removed(now_ms, 0, effects);
    }

    /// Checks that `member_id` (and its instance id, if any) belongs to the group.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                Some(id) if id != member_id => return Err(CoordinatorError::FencedInstanceId),
                None if !self.members.contains_key(member_id) => {
                    return Err(CoordinatorError::UnknownMemberId)
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(CoordinatorError::UnknownMemberId);
        }
        Ok(())
    }
}
