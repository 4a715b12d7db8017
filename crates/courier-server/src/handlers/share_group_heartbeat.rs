//! ShareGroupHeartbeat (KIP-932): join, stay in and leave a share group. The assignment is
//! sent as topic ids, and only when it changed (or on joining).

use std::sync::Arc;

use courier_coordinator::share::{ShareAssignment, ShareHeartbeat};
use kafka_protocol::messages::share_group_heartbeat_response::{
    Assignment, ShareGroupHeartbeatResponse, TopicPartitions,
};
use kafka_protocol::messages::ShareGroupHeartbeatRequest;
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// The assignment by topic id; topics deleted since it was computed are left out.
fn by_topic_id(ctx: &Context, assignment: ShareAssignment) -> Assignment {
    let topic_partitions = assignment
        .into_iter()
        .filter_map(|(name, partitions)| {
            let topic = ctx.broker.topics.get(&name)?;
            Some(
                TopicPartitions::default()
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions.into_iter().collect()),
            )
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

/// Handles one ShareGroupHeartbeat request.
pub async fn handle(
    ctx: Arc<Context>,
    client_id: String,
    peer: std::net::SocketAddr,
    req: ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let hb = ShareHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.map(|s| s.to_string()),
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.to_string()).collect()),
        client_id,
        client_host: format!("/{}", peer.ip()),
    };
    let group = hb.group_id.clone();
    let outcome = ctx.broker.shares.heartbeat(&ctx.broker.topics, hb).await;
    let err = |code: i16, message: String| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_member_epoch(-1)
    };
    match outcome {
        Ok(Ok(r)) => ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| by_topic_id(&ctx, a))),
        Ok(Err(e)) => {
            tracing::debug!(%group, error = %e, "share group heartbeat refused");
            err(error_codes::coordinator(&e), e.to_string())
        }
        Err(e) => err(error_codes::code(&e), e.to_string()),
    }
}
