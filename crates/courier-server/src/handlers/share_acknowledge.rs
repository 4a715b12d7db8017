//! ShareAcknowledge (KIP-932): settle acquired records outside a ShareFetch, and close the
//! share session (epoch -1). Also the acknowledgement step ShareFetch shares ([`apply`]).

use std::sync::Arc;

use courier_broker::share_session::{SessionOutcome, SessionPartition};
use courier_broker::shares::PartitionAcks;
use courier_coordinator::share::{AcknowledgeType, AcknowledgementBatch};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch, PartitionData, ShareAcknowledgeResponse, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::{GroupId, ShareAcknowledgeRequest};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::handlers::metadata::LEADER_EPOCH;
use crate::listener::Context;

/// Acknowledgement batches as the wire carries them: (first offset, last offset, types).
pub type WireBatches = Vec<(i64, i64, Vec<i8>)>;

/// Each partition's acknowledgement batches, merged over repeated topic entries (a client may
/// list one topic id twice), in the order first seen.
pub type AckRequests = IndexMap<SessionPartition, WireBatches>;

/// Applies a request's acknowledgements; returns each partition's acknowledgement error code
/// (0 when settled), in request order.
pub async fn apply(
    ctx: &Context,
    group: &str,
    member: &str,
    acks: AckRequests,
) -> Vec<(SessionPartition, i16)> {
    let mut codes: Vec<(SessionPartition, i16)> = Vec::with_capacity(acks.len());
    let mut valid: Vec<(usize, PartitionAcks)> = Vec::new();
    for ((topic_id, index), wire) in acks {
        let at = codes.len();
        codes.push(((topic_id, index), 0));
        let Some(topic) = ctx.broker.topics.get_by_id(topic_id) else {
            codes[at].1 = ResponseError::UnknownTopicId.code();
            continue;
        };
        if topic.partition(index).is_none() {
            codes[at].1 = ResponseError::UnknownTopicOrPartition.code();
            continue;
        }
        match batches(wire) {
            Some(batches) => valid.push((
                at,
                PartitionAcks {
                    topic: topic.name.to_string(),
                    partition: index,
                    batches,
                },
            )),
            None => codes[at].1 = ResponseError::InvalidRequest.code(),
        }
    }
    let acks: Vec<PartitionAcks> = valid.iter().map(|(_, a)| a.clone()).collect();
    match ctx
        .broker
        .shares
        .acknowledge(&ctx.broker.topics, group, member, &acks)
        .await
    {
        Ok(results) => {
            for ((at, _), r) in valid.iter().zip(results) {
                codes[*at].1 = r.err().map_or(0, |e| error_codes::coordinator(&e));
            }
        }
        Err(e) => {
            let code = error_codes::code(&e);
            valid.iter().for_each(|(at, _)| codes[*at].1 = code);
        }
    }
    codes
}

/// The batches in offset order with their types decoded; `None` if a type is unknown.
fn batches(mut wire: WireBatches) -> Option<Vec<AcknowledgementBatch>> {
    wire.sort_by_key(|(first, ..)| *first);
    wire.into_iter()
        .map(|(first_offset, last_offset, types)| {
            let acknowledge_types = types
                .into_iter()
                .map(AcknowledgeType::from_code)
                .collect::<Option<Vec<_>>>()?;
            Some(AcknowledgementBatch {
                first_offset,
                last_offset,
                acknowledge_types,
            })
        })
        .collect()
}

/// Releases what the member still holds in a closed session's partitions.
pub async fn release_closed(ctx: &Context, group: &str, member: &str, parts: &[SessionPartition]) {
    let named: Vec<(String, i32)> = parts
        .iter()
        .filter_map(|(id, index)| {
            let topic = ctx.broker.topics.get_by_id(*id)?;
            Some((topic.name.to_string(), *index))
        })
        .collect();
    let released = ctx
        .broker
        .shares
        .release(&ctx.broker.topics, group, member, &named)
        .await;
    if let Err(e) = released {
        tracing::warn!(group, member, error = %e, "releasing a closed share session's records failed");
    }
}

/// The request's group id and member id, both required (else INVALID_REQUEST).
pub fn group_and_member(
    group_id: Option<&GroupId>,
    member_id: Option<&StrBytes>,
) -> Option<(String, String)> {
    let group = group_id.map(|g| g.to_string()).unwrap_or_default();
    let member = member_id.map(|m| m.to_string()).unwrap_or_default();
    (!group.is_empty() && !member.is_empty()).then_some((group, member))
}

/// Handles one ShareAcknowledge request.
pub async fn handle(ctx: Arc<Context>, req: ShareAcknowledgeRequest) -> ShareAcknowledgeResponse {
    let Some((group, member)) = group_and_member(req.group_id.as_ref(), req.member_id.as_ref())
    else {
        return ShareAcknowledgeResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    let session = ctx
        .broker
        .shares
        .acknowledge_session(&group, &member, req.share_session_epoch);
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%group, %member, epoch = req.share_session_epoch, ?e, "share session error");
            return ShareAcknowledgeResponse::default()
                .with_error_code(error_codes::share_session(e));
        }
    };
    let mut acks = AckRequests::new();
    for t in req.topics {
        for p in t.partitions {
            acks.entry((t.topic_id, p.partition_index))
                .or_default()
                .extend(
                    p.acknowledgement_batches
                        .into_iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types)),
                );
        }
    }
    let codes = apply(&ctx, &group, &member, acks).await;
    if let SessionOutcome::Closed(parts) = session {
        release_closed(&ctx, &group, &member, &parts).await;
    }
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(ctx.broker.config.node_id)
        .with_leader_epoch(LEADER_EPOCH);
    let mut responses: IndexMap<uuid::Uuid, Vec<PartitionData>> = IndexMap::new();
    for ((topic_id, index), code) in codes {
        responses.entry(topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(index)
                .with_error_code(code)
                .with_current_leader(leader.clone()),
        );
    }
    ShareAcknowledgeResponse::default().with_responses(
        responses
            .into_iter()
            .map(|(topic_id, partitions)| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_sorted_and_unknown_types_refused() {
        let b = batches(vec![(5, 6, vec![2]), (0, 1, vec![1, 3])]).expect("valid");
        assert_eq!(b[0].first_offset, 0);
        assert_eq!(
            b[0].acknowledge_types,
            vec![AcknowledgeType::Accept, AcknowledgeType::Reject]
        );
        assert_eq!(b[1].acknowledge_types, vec![AcknowledgeType::Release]);
        assert!(batches(vec![(0, 0, vec![9])]).is_none());
    }
}
