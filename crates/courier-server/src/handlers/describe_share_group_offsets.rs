//! DescribeShareGroupOffsets (KIP-932): each share-partition's start offset (SPSO), the offset
//! below which every record is settled (acknowledged or archived).
//!
//! Errors as in Kafka: per group GROUP_ID_NOT_FOUND (no share group has the id) or
//! INVALID_GROUP_ID (empty); per partition UNKNOWN_TOPIC_OR_PARTITION. A partition that exists
//! but that the group has never fetched from has start offset -1. Courier keeps no leader
//! epoch with the state, so it is always -1. With `topics` null every share-partition the
//! group has is described (an empty list describes none, as in Kafka).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// Start offset of a partition the group has not used yet.
const UNINITIALIZED: i64 = -1;

fn partition(index: i32, start_offset: i64) -> DescribeShareGroupOffsetsResponsePartition {
    DescribeShareGroupOffsetsResponsePartition::default()
        .with_partition_index(index)
        .with_start_offset(start_offset)
        .with_leader_epoch(-1)
}

fn unknown_partition(index: i32, topic: &str) -> DescribeShareGroupOffsetsResponsePartition {
    partition(index, UNINITIALIZED)
        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
        .with_error_message(Some(StrBytes::from_string(format!(
            "unknown partition {topic}-{index}"
        ))))
}

fn describe_group(
    ctx: &Context,
    req: DescribeShareGroupOffsetsRequestGroup,
) -> DescribeShareGroupOffsetsResponseGroup {
    let id = req.group_id.as_str();
    let out = DescribeShareGroupOffsetsResponseGroup::default().with_group_id(req.group_id.clone());
    if id.is_empty() {
        return out
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_error_message(Some(StrBytes::from_static_str("empty group id")));
    }
    if ctx.broker.shares.describe(id).is_none() {
        return out
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(StrBytes::from_string(format!("no share group {id}"))));
    }
    let mut starts: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for (topic, index, stats) in ctx.broker.shares.partition_stats(&ctx.broker.topics, id) {
        starts
            .entry(topic)
            .or_default()
            .insert(index, stats.start_offset);
    }
    let wanted: Vec<(String, Vec<i32>)> = match req.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic_name.to_string(), t.partitions))
            .collect(),
        None => starts
            .iter()
            .map(|(t, ps)| (t.clone(), ps.keys().copied().collect()))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|(name, partitions)| {
            let topic = ctx.broker.topics.get(&name);
            let known = starts.get(&name);
            let partitions = partitions
                .into_iter()
                .map(|index| match &topic {
                    Some(t) if t.partition(index).is_some() => partition(
                        index,
                        known
                            .and_then(|k| k.get(&index))
                            .copied()
                            .unwrap_or(UNINITIALIZED),
                    ),
                    _ => unknown_partition(index, &name),
                })
                .collect();
            DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_id(topic.map(|t| t.topic_id).unwrap_or_default())
                .with_topic_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    out.with_topics(topics)
}

/// Handles one DescribeShareGroupOffsets request.
pub fn handle(
    ctx: &Arc<Context>,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|g| describe_group(ctx, g))
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}
