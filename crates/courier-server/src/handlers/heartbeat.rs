//! Heartbeat.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::error_codes;
use crate::listener::Context;

/// Handles one Heartbeat request.
pub fn handle(ctx: &Arc<Context>, req: HeartbeatRequest) -> HeartbeatResponse {
    let outcome = ctx.broker.groups.heartbeat(
        req.group_id.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
    );
    HeartbeatResponse::default()
        .with_error_code(error_codes::coordinator_outcome(outcome.err().as_ref()))
}
