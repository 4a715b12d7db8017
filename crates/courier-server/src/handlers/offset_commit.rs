//! OffsetCommit: answered once the commit is fsynced.

use std::sync::Arc;

use courier_coordinator::group::CommitRequest;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one OffsetCommit request. Partitions of unknown topics fail on their own; the rest
/// are validated against the group and persisted together.
pub fn handle(ctx: &Arc<Context>, req: OffsetCommitRequest) -> Reply {
    let mut unknown = Vec::new();
    let mut offsets = Vec::new();
    for t in &req.topics {
        let topic = ctx.broker.topics.get(t.name.as_str());
        for p in &t.partitions {
            if topic
                .as_ref()
                .and_then(|tp| tp.partition(p.partition_index))
                .is_none()
            {
                unknown.push((t.name.to_string(), p.partition_index));
                continue;
            }
            offsets.push((
                t.name.to_string(),
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            ));
        }
    }
    let commit = CommitRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation_id: req.generation_id_or_member_epoch,
        offsets,
    };
    let groups = Arc::clone(&ctx.broker.groups);
    Reply::later(async move {
        let mut results: Vec<(String, i32, i16)> = match groups.commit(commit).await {
            Ok(results) => results
                .into_iter()
                .map(|(t, p, e)| (t, p, error_codes::coordinator_outcome(e.as_ref())))
                .collect(),
            Err(e) => {
                let code = error_codes::code(&e);
                tracing::warn!(error = %e, "offset commit could not be persisted");
                req_partitions(&req.topics)
                    .into_iter()
                    .map(|(t, p)| (t, p, code))
                    .collect()
            }
        };
        results.extend(
            unknown
                .into_iter()
                .map(|(t, p)| (t, p, ResponseError::UnknownTopicOrPartition.code())),
        );
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (t, p, code) in results {
            let partition = OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code);
            match topics.iter_mut().find(|x| x.name.as_str() == t) {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    })
}

fn req_partitions(
    topics: &[kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic],
) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect()
}
