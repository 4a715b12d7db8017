//! ConsumerGroupDescribe (KIP-848).

use std::sync::Arc;

use courier_coordinator::consumer::Assignment;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as resp, ConsumerGroupDescribeResponse,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

fn assignment(ctx: &Context, a: Assignment) -> resp::Assignment {
    let names: std::collections::HashMap<u128, String> = ctx
        .broker
        .topics_view()
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    resp::Assignment::default().with_topic_partitions(
        a.into_iter()
            .map(|(t, ps)| {
                resp::TopicPartitions::default()
                    .with_topic_id(uuid::Uuid::from_u128(t))
                    .with_topic_name(TopicName(StrBytes::from_string(
                        names.get(&t).cloned().unwrap_or_default(),
                    )))
                    .with_partitions(ps.into_iter().collect())
            })
            .collect(),
    )
}

/// Handles one ConsumerGroupDescribe request.
pub fn handle(
    ctx: &Arc<Context>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let groups = req
        .group_ids
        .into_iter()
        .map(
            |id| match ctx.broker.groups.consumer_describe(id.as_str()) {
                None => resp::DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_group_state(StrBytes::from_static_str("Dead")),
                Some(g) => resp::DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(StrBytes::from_static_str(g.state))
                    .with_group_epoch(g.group_epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(StrBytes::from_string(g.assignor))
                    .with_authorized_operations(i32::MIN)
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                resp::Member::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_member_epoch(m.member_epoch)
                                    .with_instance_id(m.instance_id.map(StrBytes::from_string))
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed
                                            .into_iter()
                                            .map(|t| TopicName(StrBytes::from_string(t)))
                                            .collect(),
                                    )
                                    .with_assignment(assignment(ctx, m.assignment))
                                    .with_target_assignment(assignment(ctx, m.target))
                            })
                            .collect(),
                    ),
            },
        )
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
