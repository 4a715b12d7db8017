//! SyncGroup.

use super::state::GroupState;
use super::{Effect, GroupCoordinator, SyncRequest, SyncResult, Token};
use crate::error::CoordinatorError;

impl GroupCoordinator {
    /// Handles a SyncGroup. Followers wait for the leader's assignment; the leader's SyncGroup
    /// makes the group stable and answers everyone.
    pub fn sync(&mut self, token: Token, req: SyncRequest, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Err(e) = self.sync_inner(token, req, now_ms, &mut effects) {
            effects.push(Effect::Sync(token, SyncResult::error(e)));
        }
        effects
    }

    fn sync_inner(
        &mut self,
        token: Token,
        req: SyncRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), CoordinatorError> {
        let group = self
            .groups
            .get_mut(&req.group_id)
            .ok_or(CoordinatorError::UnknownMemberId)?;
        group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != group.generation_id {
            return Err(CoordinatorError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != group.protocol_name.as_ref())
        {
            return Err(CoordinatorError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => Err(CoordinatorError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(CoordinatorError::RebalanceInProgress),
            GroupState::Stable => {
                let member = group
                    .members
                    .get_mut(&req.member_id)
                    .ok_or(CoordinatorError::UnknownMemberId)?;
                member.touch(now_ms);
                effects.push(Effect::Sync(
                    token,
                    SyncResult {
                        error: None,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    },
                ));
                Ok(())
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
                if let Some(member) = group.members.get_mut(&req.member_id) {
                    member.touch(now_ms);
                    if let Some(old) = member.pending_sync.replace(token) {
                        effects.push(Effect::Sync(
                            old,
                            SyncResult::error(CoordinatorError::RebalanceInProgress),
                        ));
                    }
                }
                if is_leader {
                    for m in group.members.values_mut() {
                        m.assignment = req
                            .assignments
                            .iter()
                            .find(|(id, _)| *id == m.member_id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    let protocol_type = group.protocol_type.clone();
                    let protocol_name = group.protocol_name.clone();
                    for m in group.members.values_mut() {
                        if let Some(t) = m.pending_sync.take() {
                            effects.push(Effect::Sync(
                                t,
                                SyncResult {
                                    error: None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
