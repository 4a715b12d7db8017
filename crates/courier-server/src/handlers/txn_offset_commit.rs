//! TxnOffsetCommit: consumer offsets that take effect only if the transaction commits.
//!
//! v5+ under transaction version 2 (KIP-890 part 2) also does AddOffsetsToTxn's work: the
//! group joins the transaction implicitly.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one TxnOffsetCommit request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: TxnOffsetCommitRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    Reply::later(async move {
        let group = req.group_id.to_string();
        let partitions: Vec<(String, i32, i64, i32, String)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        let implicit_add = version >= 5 && ctx.broker.txns.transaction_version() >= 2;
        let added = if implicit_add {
            ctx.broker
                .txns
                .add(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &[],
                    std::slice::from_ref(&group),
                )
                .await
        } else {
            Ok(Ok(()))
        };
        let fenced_code = version >= 2;
        let validated: Result<(), i16> = match added {
            Ok(Ok(())) => ctx
                .broker
                .txns
                .validate_offset_commit(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &group,
                )
                .map_err(|e| error_codes::txn(&e, fenced_code)),
            Ok(Err(e)) => Err(error_codes::txn(&e, fenced_code)),
            Err(e) => Err(error_codes::code(&e)),
        };
        let results: Vec<(String, i32, i16)> = match validated {
            Err(code) => partitions
                .iter()
                .map(|(t, p, ..)| (t.clone(), *p, code))
                .collect(),
            Ok(()) => {
                let known: Vec<_> = partitions
                    .iter()
                    .filter(|(t, p, ..)| {
                        ctx.broker
                            .topics
                            .get(t)
                            .and_then(|x| x.partition(*p))
                            .is_some()
                    })
                    .cloned()
                    .collect();
                let mut out: Vec<(String, i32, i16)> = partitions
                    .iter()
                    .filter(|x| !known.contains(x))
                    .map(|(t, p, ..)| {
                        (t.clone(), *p, ResponseError::UnknownTopicOrPartition.code())
                    })
                    .collect();
                match ctx
                    .broker
                    .groups
                    .txn_commit(&group, req.producer_id.0, &known)
                    .await
                {
                    Ok(results) => out.extend(
                        results
                            .into_iter()
                            .map(|(t, p, e)| (t, p, error_codes::coordinator_outcome(e.as_ref()))),
                    ),
                    Err(e) => {
                        let code = error_codes::code(&e);
                        out.extend(known.iter().map(|(t, p, ..)| (t.clone(), *p, code)));
                    }
                }
                out
            }
        };
        let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
        for (t, p, code) in results {
            let r = TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code);
            match topics.iter_mut().find(|x| x.name.as_str() == t) {
                Some(x) => x.partitions.push(r),
                None => topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(kafka_protocol::messages::TopicName(
                            kafka_protocol::protocol::StrBytes::from_string(t),
                        ))
                        .with_partitions(vec![r]),
                ),
            }
        }
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    })
}
