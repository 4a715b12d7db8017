//! The classic group coordinator (the protocol before KIP-848) as a state machine.
//!
//! A request that completes later (JoinGroup waits for the rebalance; SyncGroup waits for the
//! leader's assignment) is parked under a [`Token`] the caller chooses. Any call, including
//! [`GroupCoordinator::tick`] which the caller runs on a timer, may return [`Effect`]s: answers to
//! parked requests. Offsets take two steps: [`GroupCoordinator::prepare_commit`] validates and
//! returns the records to persist; once they are durable the caller calls
//! [`GroupCoordinator::apply`], and only then do they become visible to OffsetFetch.
//!
//! The files follow the protocol: `state.rs` (groups and members), `join.rs`, `sync.rs`,
//! `heartbeat.rs`, `leave.rs` (with session expiry), `offsets.rs` (commit, fetch, delete) and
//! `admin.rs` (list, describe, delete groups).

mod admin;
mod heartbeat;
mod join;
mod leave;
mod offsets;
mod state;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bytes::Bytes;

pub use admin::{GroupDescription, GroupListing, MemberDescription};
pub use leave::LeaveOutcome;
pub use offsets::{CommitPlan, CommitRequest, CommittedOffset, PartitionResults};
use state::Group;
pub use state::GroupState;

use crate::error::CoordinatorError;

/// Identifies a parked request; chosen by the caller, unique among its pending requests.
pub type Token = u64;

/// Limits and timings, Kafka's `group.*` broker settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms.
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms.
    pub max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms: how long the first rebalance of an empty group waits
    /// for more members, so a fleet starting together does not rebalance once per member.
    pub initial_rebalance_delay_ms: i64,
    /// group.max.size.
    pub max_group_size: usize,
    /// offset.metadata.max.bytes.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: 1_000,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

/// JoinGroup's inputs.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// group.instance.id, for static membership.
    pub group_instance_id: Option<String>,
    /// The client's client.id, prefix of the member id Courier assigns.
    pub client_id: String,
    /// The client's address, reported by DescribeGroups.
    pub client_host: String,
    /// session.timeout.ms.
    pub session_timeout_ms: i32,
    /// max.poll.interval.ms (rebalance timeout); JoinGroup v0 uses the session timeout.
    pub rebalance_timeout_ms: i32,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// (assignor name, subscription metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member must first learn its id (MEMBER_ID_REQUIRED) and rejoin with it.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// Its subscription metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// JoinGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// None on success.
    pub error: Option<CoordinatorError>,
    /// The new generation.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id (new members learn theirs here).
    pub member_id: String,
    /// Every member, for the leader only; empty for the others.
    pub members: Vec<JoinedMember>,
    /// Static leader rejoining a stable group: do not assign again (KIP-814).
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(err: CoordinatorError, member_id: &str) -> Self {
        Self {
            error: Some(err),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// SyncGroup's inputs.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
    /// Its group.instance.id.
    pub group_instance_id: Option<String>,
    /// The generation it joined.
    pub generation_id: i32,
    /// v5+: must match the group's.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment bytes); empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// SyncGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// None on success.
    pub error: Option<CoordinatorError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(err: CoordinatorError) -> Self {
        Self {
            error: Some(err),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A member to remove, by id or by group.instance.id (LeaveGroup v3+).
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    /// The member id (may be empty when the instance id is given).
    pub member_id: String,
    /// The group.instance.id.
    pub group_instance_id: Option<String>,
}

/// An answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Completes a parked JoinGroup.
    Join(Token, JoinResult),
    /// Completes a parked SyncGroup.
    Sync(Token, SyncResult),
}

/// Every group on this broker.
pub struct GroupCoordinator {
    /// Settings.
    config: GroupConfig,
    /// Groups by id, including empty ones that only hold committed offsets.
    groups: HashMap<String, Group>,
    /// Distinguishes member ids across broker restarts (the broker passes a random string).
    incarnation: String,
    /// Next number for a member id.
    next_member: u64,
    /// Offsets committed inside open transactions, by (group, producer id).
    txn_pending: HashMap<(String, i64), std::collections::BTreeMap<(String, i32), CommittedOffset>>,
}

impl GroupCoordinator {
    /// A coordinator with no groups. `incarnation` makes member ids unique across restarts.
    pub fn new(config: GroupConfig, incarnation: impl Into<String>) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            incarnation: incarnation.into(),
            next_member: 1,
            txn_pending: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        let n = self.next_member;
        self.next_member += 1;
        format!("{client_id}-{}-{n}", self.incarnation)
    }

    /// The earliest time at which [`GroupCoordinator::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups.values().filter_map(|g| g.next_deadline()).min()
    }

    /// Expires sessions and completes rebalances whose time has come.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            if let Some(group) = self.groups.get_mut(&id) {
                group.expire_sessions(now_ms, &mut effects);
                group.maybe_complete_join(now_ms, false, &mut effects);
            }
        }
        effects
    }
}
