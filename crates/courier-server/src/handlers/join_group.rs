//! JoinGroup: parked until the group's rebalance completes.

use std::sync::Arc;

use courier_coordinator::group::JoinRequest;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one JoinGroup request.
pub fn handle(
    ctx: &Arc<Context>,
    version: i16,
    client_id: String,
    peer: std::net::SocketAddr,
    req: JoinGroupRequest,
) -> Reply {
    let join = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id,
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let groups = Arc::clone(&ctx.broker.groups);
    Reply::later(async move {
        let r = groups.join(join).await;
        let mut resp = JoinGroupResponse::default()
            .with_error_code(error_codes::coordinator_outcome(r.error.as_ref()))
            .with_generation_id(r.generation_id)
            .with_leader(StrBytes::from_string(r.leader))
            .with_member_id(StrBytes::from_string(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        let member = JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_metadata(m.metadata);
                        if version >= 5 {
                            member.with_group_instance_id(
                                m.group_instance_id.map(StrBytes::from_string),
                            )
                        } else {
                            member
                        }
                    })
                    .collect(),
            );
        let name = r.protocol_name.map(StrBytes::from_string);
        if version >= 7 {
            resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
            resp.protocol_name = name;
        } else {
            resp.protocol_name = Some(name.unwrap_or_default());
        }
        if version >= 9 {
            resp.skip_assignment = r.skip_assignment;
        }
        ResponseKind::JoinGroup(resp)
    })
}
