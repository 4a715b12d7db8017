//! Produce: append batches, then answer according to acks.
//!
//! The appends happen here, before the reply is queued, so requests on one connection append in
//! the order they arrived. acks=all replies wait for the group-commit fsync that covers the last
//! appended offset of every partition in the request; acks=1 replies are sent once the data is
//! in the OS; acks=0 gets no reply (and a closed connection if anything failed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_broker::{BrokerError, Partition, Topic};
use courier_coordinator::txn::PartitionCheck;
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

/// Checks a transactional batch against its transaction, adding the partition under
/// transaction version 2. `Ok` means append.
async fn verify_transaction(
    ctx: &Context,
    version: i16,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), i16> {
    let Ok(header) = courier_storage::batch::parse_header(records) else {
        return Ok(()); // Malformed: the append refuses it with the right code.
    };
    if !header.is_transactional() || header.is_control() {
        return Ok(());
    }
    let Some(id) = transactional_id else {
        tracing::warn!(
            topic,
            partition,
            "transactional batch without a transactional id"
        );
        return Err(ResponseError::InvalidRequest.code());
    };
    let txns = &ctx.broker.txns;
    let tp = (topic.to_string(), partition);
    let (pid, epoch) = (header.producer_id, header.producer_epoch);
    match txns.check_partition(id, pid, epoch, &tp) {
        Ok(PartitionCheck::InTransaction) => Ok(()),
        Ok(PartitionCheck::NotAdded) if version >= 12 && txns.transaction_version() >= 2 => {
            match txns
                .add(id, pid, epoch, std::slice::from_ref(&tp), &[])
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(error_codes::txn_produce(&e)),
                Err(e) => Err(error_codes::code(&e)),
            }
        }
        Ok(PartitionCheck::NotAdded) => {
            tracing::debug!(
                transactional_id = id,
                topic,
                partition,
                "transactional batch for a partition not in the transaction"
            );
            Err(ResponseError::InvalidTxnState.code())
        }
        Err(e) => Err(error_codes::txn_produce(&e)),
    }
}

/// Handles one Produce request.
pub async fn handle(ctx: &Arc<Context>, version: i16, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let valid_acks = matches!(acks, -1..=1);
    if !valid_acks {
        tracing::warn!(acks, "produce with invalid acks");
    }
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
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
            let target: Result<(&Arc<Topic>, Arc<Partition>, &Bytes), i16> = (|| {
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
                Ok((topic, partition, records))
            })();
            let outcome = match target {
                Err(code) => Err(code),
                Ok((topic, partition, records)) => {
                    match verify_transaction(
                        ctx,
                        version,
                        transactional_id.as_deref(),
                        &topic.name,
                        p.index,
                        records,
                    )
                    .await
                    {
                        Err(code) => Err(code),
                        Ok(()) => partition
                            .append(records, acks)
                            .map_err(|e| error_codes::code(&e))
                            .map(|info| (topic, partition, info)),
                    }
                }
            };
            match outcome {
                Ok((topic, partition, info)) => {
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
                }
                Err(code) => {
                    failed = true;
                    resp.error_code = code;
                }
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
