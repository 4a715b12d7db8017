//! LeaveGroup: one member (v0-2) or a batch (v3+).

use std::sync::Arc;

use courier_coordinator::group::LeavingMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// Handles one LeaveGroup request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let leaving: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    match ctx.broker.groups.leave(req.group_id.as_str(), &leaving) {
        Err(e) => LeaveGroupResponse::default().with_error_code(error_codes::coordinator(&e)),
        Ok(results) => {
            if version < 3 {
                let code = results
                    .first()
                    .map(|r| error_codes::coordinator_outcome(r.as_ref().err()))
                    .unwrap_or(0);
                return LeaveGroupResponse::default().with_error_code(code);
            }
            let members = leaving
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_error_code(error_codes::coordinator_outcome(r.as_ref().err()))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
    }
}
