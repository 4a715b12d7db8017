//! FindCoordinator: this broker coordinates every group and transactional id.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// Key type codes: 0 group, 1 transaction; 2 share group (KIP-932).
const KEY_TYPES: std::ops::RangeInclusive<i8> = 0..=2;

/// Handles one FindCoordinator request (single key before v4, batched from v4).
pub fn handle(
    ctx: &Arc<Context>,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let node = ctx.broker.config.node_id;
    let host = StrBytes::from_string(ctx.broker.config.advertised_host.clone());
    let port = ctx.broker.config.advertised_port;
    let error = if KEY_TYPES.contains(&req.key_type) {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key).with_error_code(error);
                if error == 0 {
                    c.with_node_id(BrokerId(node))
                        .with_host(host.clone())
                        .with_port(port)
                } else {
                    c.with_node_id(BrokerId(-1)).with_port(-1)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let resp = FindCoordinatorResponse::default().with_error_code(error);
    if error == 0 {
        resp.with_node_id(BrokerId(node))
            .with_host(host)
            .with_port(port)
    } else {
        resp.with_node_id(BrokerId(-1)).with_port(-1)
    }
}
