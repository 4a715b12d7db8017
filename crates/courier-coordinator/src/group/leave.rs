//! LeaveGroup.

use super::{Effect, GroupCoordinator, JoinResult, LeavingMember, SyncResult};
use crate::error::CoordinatorError;

/// Per leaving member: its member id, or why it could not leave; or an error for the whole group.
pub type LeaveOutcome = Result<Vec<Result<String, CoordinatorError>>, CoordinatorError>;

impl GroupCoordinator {
    /// Handles a LeaveGroup: one result per member (v3+ batches them), then the rest of the
    /// group rebalances. Parked requests of a leaving member are answered with
    /// UNKNOWN_MEMBER_ID.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[LeavingMember],
        now_ms: i64,
    ) -> (LeaveOutcome, Vec<Effect>) {
        let mut effects = Vec::new();
        let Some(group) = self.groups.get_mut(group_id) else {
            return (Err(CoordinatorError::UnknownMemberId), effects);
        };
        let mut results = Vec::with_capacity(members.len());
        let mut removed_any = false;
        for leaving in members {
            let member_id = match (&leaving.group_instance_id, leaving.member_id.is_empty()) {
                (Some(instance), _) => match group.static_members.get(instance) {
                    Some(id) if leaving.member_id.is_empty() || *id == leaving.member_id => {
                        id.clone()
                    }
                    Some(_) => {
                        results.push(Err(CoordinatorError::FencedInstanceId));
                        continue;
                    }
                    None => {
                        results.push(Err(CoordinatorError::UnknownMemberId));
                        continue;
                    }
                },
                (None, false) => leaving.member_id.clone(),
                (None, true) => {
                    results.push(Err(CoordinatorError::UnknownMemberId));
                    continue;
                }
            };
            match group.remove_member(&member_id) {
                Some(m) => {
                    if let Some(t) = m.pending_join {
                        effects.push(Effect::Join(
                            t,
                            JoinResult::error(CoordinatorError::UnknownMemberId, &member_id),
                        ));
                    }
                    if let Some(t) = m.pending_sync {
                        effects.push(Effect::Sync(
                            t,
                            SyncResult::error(CoordinatorError::UnknownMemberId),
                        ));
                    }
                    removed_any = true;
                    results.push(Ok(member_id));
                }
                None => {
                    if group.pending_members.remove(&member_id).is_some() {
                        results.push(Ok(member_id));
                    } else {
                        results.push(Err(CoordinatorError::UnknownMemberId));
                    }
                }
            }
        }
        if removed_any {
            group.after_member_removed(now_ms, 0, &mut effects);
        }
        (Ok(results), effects)
    }
}
