//! SyncGroup: followers wait for the leader's assignment.

use std::sync::Arc;

use courier_coordinator::group::SyncRequest;
use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one SyncGroup request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: SyncGroupRequest) -> Reply {
    let sync = SyncRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let groups = Arc::clone(&ctx.broker.groups);
    Reply::later(async move {
        let r = groups.sync(sync).await;
        let mut resp = SyncGroupResponse::default()
            .with_error_code(error_codes::coordinator_outcome(r.error.as_ref()))
            .with_assignment(r.assignment);
        if version >= 5 {
            resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
            resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
        }
        ResponseKind::SyncGroup(resp)
    })
}
