//! Fetch: read whole batches below the high watermark, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes, with KIP-227 incremental fetch sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_broker::fetch_session::{PartitionKey, SessionError, SessionPartition, SessionPlan};
use courier_broker::now_ms;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Resolves a request's topic to its (name, id) key part; an unknown id keeps an empty name.
fn topic_key(ctx: &Context, version: i16, name: &str, id: uuid::Uuid) -> (String, uuid::Uuid) {
    if version >= 13 {
        let name = ctx
            .broker
            .topics
            .get_by_id(id)
            .map(|t| t.name.to_string())
            .unwrap_or_default();
        (name, id)
    } else {
        let id = ctx
            .broker
            .topics
            .get(name)
            .map(|t| t.topic_id)
            .unwrap_or_default();
        (name.to_string(), id)
    }
}

/// Handles one Fetch request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: FetchRequest) -> Reply {
    let mut requested = Vec::new();
    for t in &req.topics {
        let (name, id) = topic_key(ctx, version, t.topic.as_str(), t.topic_id);
        for p in &t.partitions {
            let sp = SessionPartition {
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                last_sent: None,
            };
            requested.push(((name.clone(), id, p.partition), sp));
        }
    }
    let mut forgotten = Vec::new();
    for t in &req.forgotten_topics_data {
        let (name, id) = topic_key(ctx, version, t.topic.as_str(), t.topic_id);
        forgotten.extend(t.partitions.iter().map(|p| (name.clone(), id, *p)));
    }
    let plan = ctx.broker.fetch_sessions().begin(
        req.session_id,
        req.session_epoch,
        requested,
        forgotten,
        now_ms(),
    );
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            let code = match e {
                SessionError::NotFound => ResponseError::FetchSessionIdNotFound,
                SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
            };
            tracing::debug!(
                session_id = req.session_id,
                epoch = req.session_epoch,
                ?code,
                "fetch session error"
            );
            return Reply::now(ResponseKind::Fetch(
                FetchResponse::default().with_error_code(code.code()),
            ));
        }
    };
    let ctx = Arc::clone(ctx);
    Reply::later(async move { ResponseKind::Fetch(long_poll(&ctx, version, &req, plan).await) })
}

/// One partition's outcome in a read pass.
struct PartitionRead {
    error: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    /// (producer id, first offset) of aborted transactions in the returned range.
    aborted: Vec<(i64, u64)>,
    log_start_offset: i64,
    records: Bytes,
}

async fn long_poll(
    ctx: &Context,
    version: i16,
    req: &FetchRequest,
    plan: SessionPlan,
) -> FetchResponse {
    let max_bytes = (req.max_bytes.max(0) as usize).min(ctx.config.fetch_max_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut changes = ctx.broker.watch_high_watermarks();
    loop {
        changes.borrow_and_update();
        let reads = read_pass(ctx, &plan, max_bytes, req.isolation_level == 1);
        let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
        let errors = reads.iter().any(|r| r.error != 0);
        if bytes >= min_bytes.max(1) || errors || tokio::time::Instant::now() >= deadline {
            return build(ctx, version, req.isolation_level, &plan, reads);
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return build(ctx, version, req.isolation_level, &plan, reads) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn read_pass(
    ctx: &Context,
    plan: &SessionPlan,
    max_bytes: usize,
    read_committed: bool,
) -> Vec<PartitionRead> {
    let mut used = 0usize;
    plan.partitions
        .iter()
        .map(|((name, _, index), sp)| {
            let mut out = PartitionRead {
                error: 0,
                high_watermark: -1,
                last_stable_offset: -1,
                aborted: Vec::new(),
                log_start_offset: -1,
                records: Bytes::new(),
            };
            let Some(partition) = ctx
                .broker
                .topics
                .get(name)
                .and_then(|t| t.partition(*index))
            else {
                out.error = if name.is_empty() {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                return out;
            };
            out.high_watermark = partition.high_watermark() as i64;
            out.last_stable_offset = partition.last_stable_offset() as i64;
            out.log_start_offset = partition.log_start_offset() as i64;
            if sp.fetch_offset < 0 {
                out.error = ResponseError::OffsetOutOfRange.code();
                return out;
            }
            if used >= max_bytes {
                return out;
            }
            let limit = (sp.partition_max_bytes.max(0) as usize).min(max_bytes - used) as u32;
            match partition.read_isolated(sp.fetch_offset as u64, limit, read_committed) {
                Ok((data, lso, aborted)) => {
                    used += data.records.len();
                    out.records = data.records;
                    out.last_stable_offset = lso as i64;
                    out.aborted = aborted;
                }
                Err(e) => out.error = error_codes::code(&e),
            }
            out
        })
        .collect()
}

fn build(
    ctx: &Context,
    version: i16,
    isolation_level: i8,
    plan: &SessionPlan,
    reads: Vec<PartitionRead>,
) -> FetchResponse {
    let mut topics: BTreeMap<(String, uuid::Uuid), Vec<PartitionData>> = BTreeMap::new();
    let mut order: Vec<(String, uuid::Uuid)> = Vec::new();
    let mut sessions = ctx.broker.fetch_sessions();
    for (((name, id, index), _), read) in plan.partitions.iter().zip(reads) {
        let key: PartitionKey = (name.clone(), *id, *index);
        let has_news = read.error != 0 || !read.records.is_empty();
        let offsets = (
            read.high_watermark,
            read.high_watermark,
            read.log_start_offset,
        );
        let include =
            sessions.note_sent(plan.session_id, &key, offsets, has_news) || !plan.incremental;
        if !include {
            continue;
        }
        let data = PartitionData::default()
            .with_partition_index(*index)
            .with_error_code(read.error)
            .with_high_watermark(read.high_watermark)
            .with_last_stable_offset(read.last_stable_offset)
            .with_log_start_offset(read.log_start_offset)
            .with_aborted_transactions(if isolation_level == 1 {
                Some(
                    read.aborted
                        .iter()
                        .map(|(pid, first)| {
                            AbortedTransaction::default()
                                .with_producer_id(kafka_protocol::messages::ProducerId(*pid))
                                .with_first_offset(*first as i64)
                        })
                        .collect(),
                )
            } else {
                None
            })
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_records(Some(read.records));
        let tkey = (name.clone(), *id);
        if !topics.contains_key(&tkey) {
            order.push(tkey.clone());
        }
        topics.entry(tkey).or_default().push(data);
    }
    drop(sessions);
    let responses = order
        .into_iter()
        .map(|(name, id)| {
            let partitions = topics.remove(&(name.clone(), id)).unwrap_or_default();
            let mut t = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                t.topic_id = id;
            } else {
                t.topic = TopicName(StrBytes::from_string(name));
            }
            t
        })
        .collect();
    FetchResponse::default()
        .with_session_id(plan.session_id)
        .with_responses(responses)
}
