//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave in one request.

use std::sync::Arc;

use courier_coordinator::consumer::{Assignment, Heartbeat};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as resp, ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// Handles one ConsumerGroupHeartbeat request.
pub fn handle(
    ctx: &Arc<Context>,
    client_id: String,
    peer: std::net::SocketAddr,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let owned = req.topic_partitions.map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id.as_u128())
                .or_default()
                .extend(tp.partitions);
        }
        a
    });
    let hb = Heartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.to_string()).collect()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        client_id,
        client_host: format!("/{}", peer.ip()),
    };
    let view = ctx.broker.topics_view();
    match ctx.broker.groups.consumer_heartbeat(hb, &view) {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                resp::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(t, ps)| {
                            resp::TopicPartitions::default()
                                .with_topic_id(uuid::Uuid::from_u128(t))
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error_codes::coordinator(&e))
            .with_error_message(Some(StrBytes::from_string(e.to_string())))
            .with_member_epoch(-1),
    }
}
