//! OffsetDelete: remove committed offsets for topics the group no longer consumes.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind,
};
use kafka_protocol::protocol::Decodable;

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Topics in a member's consumer-protocol subscription (version in the first two bytes).
fn subscribed_topics(metadata: &bytes::Bytes) -> Vec<String> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// Handles one OffsetDelete request.
pub fn handle(ctx: &Arc<Context>, req: OffsetDeleteRequest) -> Reply {
    let group = req.group_id.to_string();
    let subscribed: HashSet<String> = ctx
        .broker
        .groups
        .read(|c| c.member_subscriptions(&group))
        .iter()
        .flat_map(subscribed_topics)
        .collect();
    type Partitions = Vec<(String, i32)>;
    let (partitions, unknown): (Partitions, Partitions) = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .partition(|(t, p)| {
            ctx.broker
                .topics
                .get(t)
                .and_then(|topic| topic.partition(*p))
                .is_some()
        });
    let groups = Arc::clone(&ctx.broker.groups);
    Reply::later(async move {
        let outcome = groups
            .delete_offsets(&group, &partitions, &subscribed)
            .await;
        let results = match outcome {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                return ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(error_codes::coordinator(&e)),
                )
            }
            Err(e) => {
                return ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(error_codes::code(&e)),
                )
            }
        };
        let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
        let results = results
            .into_iter()
            .map(|(t, p, e)| (t, p, error_codes::coordinator_outcome(e.as_ref())))
            .chain(
                unknown
                    .into_iter()
                    .map(|(t, p)| (t, p, ResponseError::UnknownTopicOrPartition.code())),
            );
        for (t, p, code) in results {
            let part = OffsetDeleteResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code);
            match topics.iter_mut().find(|x| x.name.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(kafka_protocol::messages::TopicName(
                            kafka_protocol::protocol::StrBytes::from_string(t),
                        ))
                        .with_partitions(vec![part]),
                ),
            }
        }
        ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics))
    })
}
