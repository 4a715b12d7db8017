//! Produce: append batches, then answer according to acks.
//!
//! The appends happen here, before the reply is queued, so requests on one connection append in
//! the order they arrived. acks=all replies wait for the group-commit fsync that covers the last
//! appended offset of every partition in the request; acks=1 replies are sent once the data is
//! in the OS; acks=0 gets no reply (and a closed connection if anything failed).

use std::sync::Arc;
use std::time::Duration;

use courier_broker::{BrokerError, Partition, Topic};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// A partition whose reply waits for an fsync.
struct DurableWait {
    partition: Arc<Partition>,
    end_offset: u64,
    topic: usize,
    index: usize,
}

fn resolve(
    ctx: &Context,
    version: i16,
    name: &str,
    topic_id: uuid::Uuid,
) -> Result<Arc<Topic>, ResponseError> {
    let broker = &ctx.broker;
    if version >= 13 && name.is_empty() {
        return broker
            .topics
            .get_by_id(topic_id)
            .ok_or(ResponseError::UnknownTopicId);
    }
    if let Err(e) = courier_broker::topic_name::validate(name) {
        return Err(error_codes::broker(&e));
    }
    broker
        .topics
        .get(name)
        .ok_or(ResponseError::UnknownTopicOrPartition)
}

/// Handles one Produce request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let valid_acks = matches!(acks, -1..=1);
    if !valid_acks {
        tracing::warn!(acks, "produce with invalid acks");
    }
    let mut failed = false;
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let resolved = resolve(ctx, version, topic.name.as_str(), topic.topic_id);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, p) in topic.partition_data.into_iter().enumerate() {
            let mut resp = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let outcome: Result<(), i16> = (|| {
                if !valid_acks {
                    return Err(ResponseError::InvalidRequiredAcks.code());
                }
                let topic = resolved.as_ref().map_err(|e| e.code())?;
                let partition = topic
                    .partition(p.index)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
                let records = p
                    .records
                    .as_ref()
                    .ok_or(ResponseError::CorruptMessage.code())?;
                let info = partition
                    .append(records, acks)
                    .map_err(|e| error_codes::code(&e))?;
                tracing::trace!(topic = %topic.name, partition = p.index, base_offset = info.base_offset, last_offset = info.last_offset, duplicate = info.duplicate, "appended");
                resp.base_offset = info.base_offset as i64;
                resp.log_append_time_ms = info.log_append_time_ms;
                resp.log_start_offset = partition.log_start_offset() as i64;
                if acks == -1 {
                    waits.push(DurableWait {
                        partition,
                        end_offset: info.last_offset + 1,
                        topic: ti,
                        index: pi,
                    });
                }
                Ok(())
            })();
            if let Err(code) = outcome {
                failed = true;
                resp.error_code = code;
            }
            partitions.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return if failed {
            Reply::Close
        } else {
            Reply::NoResponse
        };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return Reply::now(ResponseKind::Produce(response));
    }
    Reply::later(async move {
        let mut response = response;
        let deadline = tokio::time::Instant::now() + timeout;
        for w in waits {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = w.partition.wait_durable(w.end_offset, left).await {
                let code = match e {
                    BrokerError::DurabilityTimeout => ResponseError::RequestTimedOut.code(),
                    other => error_codes::code(&other),
                };
                let r = &mut response.responses[w.topic].partition_responses[w.index];
                r.error_code = code;
                r.base_offset = -1;
            }
        }
        ResponseKind::Produce(response)
    })
}
