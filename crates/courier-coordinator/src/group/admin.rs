//! ListGroups, DescribeGroups and DeleteGroups.

use bytes::Bytes;

use super::state::GroupState;
use super::GroupCoordinator;
use crate::error::CoordinatorError;
use crate::offset_record::OffsetRecord;

/// One group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its protocol type ("consumer"), empty for offset-only groups.
    pub protocol_type: String,
    /// Its state's Kafka name.
    pub state: &'static str,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// group.instance.id.
    pub group_instance_id: Option<String>,
    /// client.id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscription metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

/// One group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state's Kafka name ("Dead" for an unknown group, as Kafka reports it).
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
    /// The generation.
    pub generation_id: i32,
    /// The leader's member id.
    pub leader: String,
}

impl GroupCoordinator {
    /// Every group, sorted by id.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let mut all: Vec<GroupListing> = self
            .groups
            .values()
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        all
    }

    /// One group's description; an unknown group is described as Dead with no members.
    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
                generation_id: -1,
                leader: String::new(),
            };
        };
        let protocol = g.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            group_id: g.group_id.clone(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            generation_id: g.generation_id,
            leader: g.leader.clone().unwrap_or_default(),
        }
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// DeleteGroups for one group: only an empty group can go. Returns the tombstones for its
    /// offsets; [`GroupCoordinator::apply`] of them, then [`GroupCoordinator::forget_group`],
    /// finish the deletion once they are durable.
    pub fn prepare_delete_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<OffsetRecord>, CoordinatorError> {
        let g = self
            .groups
            .get(group_id)
            .ok_or(CoordinatorError::GroupIdNotFound)?;
        if g.state != GroupState::Empty {
            return Err(CoordinatorError::NonEmptyGroup);
        }
        Ok(g.offsets
            .keys()
            .map(|(t, p)| OffsetRecord::Delete {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
            })
            .collect())
    }

    /// Drops an empty group entirely.
    pub fn forget_group(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.state == GroupState::Empty)
        {
            self.groups.remove(group_id);
        }
    }
}
