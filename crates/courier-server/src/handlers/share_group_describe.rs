//! ShareGroupDescribe (KIP-932): members, their subscriptions and assignments, epochs, state.

use std::sync::Arc;

use courier_coordinator::share::ShareAssignment;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member, ShareGroupDescribeResponse, TopicPartitions,
};
use kafka_protocol::messages::{ShareGroupDescribeRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// The share groups' only assignor: every member gets every partition it subscribes to.
const ASSIGNOR: &str = "simple";

fn assignment(ctx: &Context, a: ShareAssignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.into_iter()
            .filter_map(|(name, partitions)| {
                let topic = ctx.broker.topics.get(&name)?;
                Some(
                    TopicPartitions::default()
                        .with_topic_id(topic.topic_id)
                        .with_topic_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions.into_iter().collect()),
                )
            })
            .collect(),
    )
}

/// Handles one ShareGroupDescribe request.
pub fn handle(ctx: &Arc<Context>, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| match ctx.broker.shares.describe(id.as_str()) {
            None => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_group_state(StrBytes::from_static_str("Dead")),
            Some(g) => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(StrBytes::from_static_str(g.state.name()))
                .with_group_epoch(g.group_epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(StrBytes::from_static_str(ASSIGNOR))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            Member::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_rack_id(m.rack_id.map(StrBytes::from_string))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed
                                        .into_iter()
                                        .map(|t| TopicName(StrBytes::from_string(t)))
                                        .collect(),
                                )
                                .with_assignment(assignment(ctx, m.assignment))
                        })
                        .collect(),
                ),
        })
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}
