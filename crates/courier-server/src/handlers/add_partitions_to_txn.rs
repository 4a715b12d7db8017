//! AddPartitionsToTxn (client versions 0-3): the partitions a transaction will write to.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind,
};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one AddPartitionsToTxn request. Unknown partitions fail the whole request, the
/// others answering OPERATION_NOT_ATTEMPTED, as in Kafka.
pub fn handle(ctx: &Arc<Context>, version: i16, req: AddPartitionsToTxnRequest) -> Reply {
    let requested: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<bool> = requested
        .iter()
        .map(|(t, p)| {
            ctx.broker
                .topics
                .get(t)
                .and_then(|topic| topic.partition(*p))
                .is_none()
        })
        .collect();
    let ctx = Arc::clone(ctx);
    Reply::later(async move {
        let codes: Vec<i16> = if unknown.iter().any(|u| *u) {
            unknown
                .iter()
                .map(|u| {
                    if *u {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    }
                })
                .collect()
        } else {
            let code = match ctx
                .broker
                .txns
                .add(
                    req.v3_and_below_transactional_id.as_str(),
                    req.v3_and_below_producer_id.0,
                    req.v3_and_below_producer_epoch,
                    &requested,
                    &[],
                )
                .await
            {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => error_codes::txn(&e, version >= 2),
                Err(e) => error_codes::code(&e),
            };
            vec![code; requested.len()]
        };
        let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
        for ((t, p), code) in requested.into_iter().zip(codes) {
            let r = AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(p)
                .with_partition_error_code(code);
            match topics.iter_mut().find(|x| x.name.as_str() == t) {
                Some(x) => x.results_by_partition.push(r),
                None => topics.push(
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(kafka_protocol::messages::TopicName(
                            kafka_protocol::protocol::StrBytes::from_string(t),
                        ))
                        .with_results_by_partition(vec![r]),
                ),
            }
        }
        ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
        )
    })
}
