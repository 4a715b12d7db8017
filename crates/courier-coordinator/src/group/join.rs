//! JoinGroup.

use super::state::{Group, GroupState, Member};
use super::{Effect, GroupCoordinator, JoinRequest, JoinResult, JoinedMember, Token};
use crate::error::CoordinatorError;

impl GroupCoordinator {
    /// Handles a JoinGroup. The answer to `token` is among the effects, now or from a later
    /// call when the rebalance completes.
    pub fn join(&mut self, token: Token, req: JoinRequest, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Err(e) = self.join_inner(token, req.clone(), now_ms, &mut effects) {
            effects.push(Effect::Join(token, JoinResult::error(e, &req.member_id)));
        }
        effects
    }

    fn join_inner(
        &mut self,
        token: Token,
        req: JoinRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), CoordinatorError> {
        if req.group_id.is_empty() {
            return Err(CoordinatorError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(CoordinatorError::InvalidSessionTimeout);
        }
        if !req.member_id.is_empty() && !self.groups.contains_key(&req.group_id) {
            return Err(CoordinatorError::UnknownMemberId);
        }
        let delay = self.config.initial_rebalance_delay_ms;
        let max_size = self.config.max_group_size;
        let new_id = if req.member_id.is_empty() {
            Some(self.new_member_id(&req.client_id))
        } else {
            None
        };
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id));
        if !group.supports(&req.protocol_type, &req.protocols) {
            return Err(CoordinatorError::InconsistentGroupProtocol);
        }
        match new_id {
            Some(new_id) => join_new(group, token, req, new_id, now_ms, delay, max_size, effects)?,
            None => {
                if group.pending_members.remove(&req.member_id).is_some() {
                    if group.members.len() >= max_size {
                        return Err(CoordinatorError::GroupMaxSizeReached);
                    }
                    let id = req.member_id.clone();
                    add_and_park(group, token, &req, id, now_ms, delay, effects);
                } else {
                    group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
                    join_existing(group, token, &req, now_ms, delay, effects);
                }
            }
        }
        group.maybe_complete_join(now_ms, false, effects);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn join_new(
    group: &mut Group,
    token: Token,
    req: JoinRequest,
    new_id: String,
    now_ms: i64,
    delay: i64,
    max_size: usize,
    effects: &mut Vec<Effect>,
) -> Result<(), CoordinatorError> {
    if let Some(instance) = req.group_instance_id.clone() {
        if let Some(old_id) = group.static_members.get(&instance).cloned() {
            return rejoin_static(group, token, &req, old_id, new_id, now_ms, delay, effects);
        }
        if group.members.len() >= max_size {
            return Err(CoordinatorError::GroupMaxSizeReached);
        }
        group.static_members.insert(instance, new_id.clone());
        add_and_park(group, token, &req, new_id, now_ms, delay, effects);
        return Ok(());
    }
    if group.members.len() >= max_size {
        return Err(CoordinatorError::GroupMaxSizeReached);
    }
    if req.require_known_member_id {
        // KIP-394: the member learns its id first, so a client that times out and retries does
        // not leave a stranger in the group.
        group
            .pending_members
            .insert(new_id.clone(), now_ms + i64::from(req.session_timeout_ms));
        effects.push(Effect::Join(
            token,
            JoinResult::error(CoordinatorError::MemberIdRequired, &new_id),
        ));
        return Ok(());
    }
    add_and_park(group, token, &req, new_id, now_ms, delay, effects);
    Ok(())
}

/// A static member came back with a new process: it takes over its old member id's place,
/// fencing the old one; a stable group keeps its assignment without rebalancing (KIP-345).
#[allow(clippy::too_many_arguments)]
fn rejoin_static(
    group: &mut Group,
    token: Token,
    req: &JoinRequest,
    old_id: String,
    new_id: String,
    now_ms: i64,
    delay: i64,
    effects: &mut Vec<Effect>,
) -> Result<(), CoordinatorError> {
    let Some(mut member) = group.members.remove(&old_id) else {
        group
            .static_members
            .remove(req.group_instance_id.as_deref().unwrap_or_default());
        return Err(CoordinatorError::UnknownMemberId);
    };
    if let Some(t) = member.pending_join.take() {
        effects.push(Effect::Join(
            t,
            JoinResult::error(CoordinatorError::FencedInstanceId, &old_id),
        ));
    }
    if let Some(t) = member.pending_sync.take() {
        effects.push(Effect::Sync(
            t,
            super::SyncResult::error(CoordinatorError::FencedInstanceId),
        ));
    }
    let unchanged = member.protocols == req.protocols;
    member.member_id = new_id.clone();
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.protocols = req.protocols.clone();
    member.touch(now_ms);
    if group.leader.as_deref() == Some(old_id.as_str()) {
        group.leader = Some(new_id.clone());
    }
    if let Some(instance) = &req.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_id.clone());
    }
    group.members.insert(new_id.clone(), member);
    if group.state == GroupState::Stable && unchanged {
        let result = current_generation(group, &new_id, true);
        effects.push(Effect::Join(token, result));
        return Ok(());
    }
    park(group, token, &new_id, now_ms, delay, effects);
    Ok(())
}

fn join_existing(
    group: &mut Group,
    token: Token,
    req: &JoinRequest,
    now_ms: i64,
    delay: i64,
    effects: &mut Vec<Effect>,
) {
    let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
    let Some(member) = group.members.get_mut(&req.member_id) else {
        return;
    };
    let unchanged = member.protocols == req.protocols;
    member.protocols = req.protocols.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.touch(now_ms);
    let respond_now = match group.state {
        GroupState::CompletingRebalance => unchanged,
        GroupState::Stable => unchanged && !is_leader,
        GroupState::PreparingRebalance | GroupState::Empty => false,
    };
    if respond_now {
        let result = current_generation(group, &req.member_id, false);
        effects.push(Effect::Join(token, result));
        return;
    }
    park(group, token, &req.member_id, now_ms, delay, effects);
}

fn add_and_park(
    group: &mut Group,
    token: Token,
    req: &JoinRequest,
    member_id: String,
    now_ms: i64,
    delay: i64,
    effects: &mut Vec<Effect>,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    let mut member = Member {
        member_id: member_id.clone(),
        group_instance_id: req.group_instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocols: req.protocols.clone(),
        assignment: bytes::Bytes::new(),
        session_deadline_ms: 0,
        pending_join: None,
        pending_sync: None,
    };
    member.touch(now_ms);
    group.members.insert(member_id.clone(), member);
    park(group, token, &member_id, now_ms, delay, effects);
}

/// Parks the member's JoinGroup and makes sure a rebalance is under way.
fn park(
    group: &mut Group,
    token: Token,
    member_id: &str,
    now_ms: i64,
    delay: i64,
    effects: &mut Vec<Effect>,
) {
    if group.state != GroupState::PreparingRebalance {
        group.prepare_rebalance(now_ms, delay, effects);
    }
    if let Some(member) = group.members.get_mut(member_id) {
        if let Some(old) = member.pending_join.replace(token) {
            effects.push(Effect::Join(
                old,
                JoinResult::error(CoordinatorError::RebalanceInProgress, member_id),
            ));
        }
    }
}

/// The current generation's JoinGroup answer, for a member that need not wait.
fn current_generation(group: &Group, member_id: &str, static_rejoin: bool) -> JoinResult {
    let leader = group.leader.clone().unwrap_or_default();
    let is_leader = leader == member_id;
    let protocol = group.protocol_name.clone().unwrap_or_default();
    JoinResult {
        error: None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader,
        member_id: member_id.to_string(),
        members: if is_leader {
            group
                .members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
        skip_assignment: static_rejoin && is_leader,
    }
}
