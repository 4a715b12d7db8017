//! DescribeProducers: the idempotent and transactional producers a partition knows.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::error_codes;
use crate::listener::Context;

/// Handles one DescribeProducers request.
pub fn handle(ctx: &Arc<Context>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topics.get(t.name.as_str());
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    let Some(partition) = topic.as_ref().and_then(|x| x.partition(index)) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let producers = partition.with_log(|log| {
                        Ok(log
                            .producer_state()
                            .iter()
                            .map(|(pid, e)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(pid))
                                    .with_producer_epoch(i32::from(e.epoch))
                                    .with_last_sequence(
                                        e.batches.back().map(|b| b.last_seq).unwrap_or(-1),
                                    )
                                    .with_last_timestamp(e.last_timestamp_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(
                                        e.current_txn_first_offset.map(|o| o as i64).unwrap_or(-1),
                                    )
                            })
                            .collect::<Vec<_>>())
                    });
                    match producers {
                        Ok(p) => r.with_active_producers(p),
                        Err(e) => r.with_error_code(error_codes::code(&e)),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
