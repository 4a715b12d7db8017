//! Heartbeat.

use super::state::GroupState;
use super::GroupCoordinator;
use crate::error::CoordinatorError;

impl GroupCoordinator {
    /// Handles a Heartbeat: extends the member's session and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(CoordinatorError::UnknownMemberId)?;
        group.validate_member(member_id, group_instance_id)?;
        if generation_id != group.generation_id {
            return Err(CoordinatorError::IllegalGeneration);
        }
        let state = group.state;
        if let Some(m) = group.members.get_mut(member_id) {
            m.touch(now_ms);
        }
        match state {
            GroupState::PreparingRebalance => Err(CoordinatorError::RebalanceInProgress),
            GroupState::Empty => Err(CoordinatorError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }
}
