//! ShareFetch (KIP-932): acknowledge what the request carries, then acquire records for the
//! member from every partition of its share session and return them, long-polling up to
//! `max_wait_ms` when nothing is available.
//!
//! Topics are named by id only, and a client may list one topic id twice (once for partitions
//! it adds, once for acknowledgements): entries are merged. Every acknowledged partition is
//! echoed with its `acknowledge_error_code` (a client marks the acknowledgements of a missing
//! partition as failed). `records` is never null: librdkafka drops the whole response if it is.
//! The acquired offsets are durable (their delivery counts fsynced) before they are sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_broker::share_session::{SessionChanges, SessionOutcome, SessionPartition};
use courier_broker::shares::read_acquired;
use courier_broker::{Partition, Topic};
use courier_coordinator::share::AcquiredRecords;
use indexmap::{IndexMap, IndexSet};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_fetch_response::{
    self as resp, LeaderIdAndEpoch, PartitionData, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{ResponseKind, ShareFetchRequest};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::handlers::metadata::LEADER_EPOCH;
use crate::handlers::share_acknowledge::{self, AckRequests};
use crate::listener::Context;
use crate::reply::Reply;

/// Records acquired per request when the client sets no limit (librdkafka's max.poll.records).
const DEFAULT_MAX_RECORDS: usize = 500;
/// The most records one request may acquire.
const MAX_RECORDS: usize = 10_000;

/// A session partition resolved against the topics: the topic and partition, or the error.
type Target = Result<(Arc<Topic>, Arc<Partition>), i16>;

/// One partition of the response as it is being built.
#[derive(Default)]
struct Out {
    error_code: i16,
    acknowledge_error_code: Option<i16>,
    acquired: Vec<AcquiredRecords>,
    records: Bytes,
}

/// Handles one ShareFetch request.
pub fn handle(ctx: &Arc<Context>, req: ShareFetchRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    Reply::later(async move { ResponseKind::ShareFetch(serve(&ctx, req).await) })
}

fn top_level(code: i16) -> ShareFetchResponse {
    ShareFetchResponse::default().with_error_code(code)
}

async fn serve(ctx: &Context, req: ShareFetchRequest) -> ShareFetchResponse {
    let ids = share_acknowledge::group_and_member(req.group_id.as_ref(), req.member_id.as_ref());
    let Some((group, member)) = ids else {
        return top_level(ResponseError::InvalidRequest.code());
    };
    let mut add: IndexSet<SessionPartition> = IndexSet::new();
    let mut acks = AckRequests::new();
    for t in &req.topics {
        for p in &t.partitions {
            let key = (t.topic_id, p.partition_index);
            add.insert(key);
            if !p.acknowledgement_batches.is_empty() {
                acks.entry(key).or_default().extend(
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone())),
                );
            }
        }
    }
    let forget: Vec<SessionPartition> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let add: Vec<SessionPartition> = add.into_iter().collect();
    let changes = SessionChanges {
        add: &add,
        forget: &forget,
        acks: !acks.is_empty(),
    };
    let epoch = req.share_session_epoch;
    let session = match ctx
        .broker
        .shares
        .fetch_session(&group, &member, epoch, changes)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%group, %member, epoch, ?e, "share session error");
            return top_level(error_codes::share_session(e));
        }
    };
    let mut out: IndexMap<SessionPartition, Out> = IndexMap::new();
    for (key, code) in share_acknowledge::apply(ctx, &group, &member, acks).await {
        out.entry(key).or_default().acknowledge_error_code = Some(code);
    }
    let parts = match session {
        SessionOutcome::Closed(parts) => {
            share_acknowledge::release_closed(ctx, &group, &member, &parts).await;
            return build(ctx, &group, out);
        }
        SessionOutcome::Open(parts) => parts,
        SessionOutcome::Replaced { open, closed } => {
            share_acknowledge::release_closed(ctx, &group, &member, &closed).await;
            open
        }
    };
    let targets: Vec<(SessionPartition, Target)> = parts
        .into_iter()
        .map(|key| (key, resolve(ctx, key)))
        .collect();
    match acquire(ctx, &req, &group, &member, &targets).await {
        Ok(acquired) => {
            let max_bytes = max_bytes(ctx, &req);
            for ((key, target), ranges) in targets.iter().zip(acquired) {
                match target {
                    Err(code) => out.entry(*key).or_default().error_code = *code,
                    Ok((_, partition)) if !ranges.is_empty() => {
                        let o = out.entry(*key).or_default();
                        o.records = read_acquired(partition, &ranges, max_bytes);
                        o.acquired = ranges;
                    }
                    Ok(_) => {}
                }
            }
        }
        Err(code) => return top_level(code),
    }
    build(ctx, &group, out)
}

fn resolve(ctx: &Context, (topic_id, index): SessionPartition) -> Target {
    let topic = ctx
        .broker
        .topics
        .get_by_id(topic_id)
        .ok_or(ResponseError::UnknownTopicId.code())?;
    let partition = topic
        .partition(index)
        .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
    Ok((topic, partition))
}

fn max_bytes(ctx: &Context, req: &ShareFetchRequest) -> u32 {
    let wanted = usize::try_from(req.max_bytes).unwrap_or(0).max(1);
    u32::try_from(wanted.min(ctx.config.fetch_max_bytes)).unwrap_or(u32::MAX)
}

/// Acquires from the resolved partitions; when nothing was acquired, waits for a high
/// watermark to move or records to come back and tries again, until `max_wait_ms`.
async fn acquire(
    ctx: &Context,
    req: &ShareFetchRequest,
    group: &str,
    member: &str,
    targets: &[(SessionPartition, Target)],
) -> Result<Vec<Vec<AcquiredRecords>>, i16> {
    let live: Vec<(Arc<Topic>, i32)> = targets
        .iter()
        .filter_map(|((_, index), t)| {
            t.as_ref()
                .ok()
                .map(|(topic, _)| (Arc::clone(topic), *index))
        })
        .collect();
    let max_records = [req.max_records, req.batch_size]
        .into_iter()
        .find(|n| *n > 0)
        .map_or(DEFAULT_MAX_RECORDS, |n| n as usize)
        .min(MAX_RECORDS);
    let max_bytes = max_bytes(ctx, req) as usize;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut hw = ctx.broker.watch_high_watermarks();
    let mut available = ctx.broker.shares.watch_available();
    let high_watermarks = || -> Vec<u64> {
        targets
            .iter()
            .filter_map(|(_, t)| t.as_ref().ok().map(|(_, p)| p.high_watermark()))
            .collect()
    };
    loop {
        hw.borrow_and_update();
        available.borrow_and_update();
        let seen = high_watermarks();
        let acquired = ctx
            .broker
            .shares
            .acquire(
                &ctx.broker.topics,
                group,
                member,
                &live,
                max_records,
                max_bytes,
            )
            .await
            .map_err(|e| error_codes::code(&e))?;
        let any = acquired.iter().any(|a| !a.is_empty());
        if any || tokio::time::Instant::now() >= deadline {
            // Back in the order of `targets`, with nothing for the unresolved ones.
            let mut acquired = acquired.into_iter();
            return Ok(targets
                .iter()
                .map(|(_, t)| match t {
                    Ok(_) => acquired.next().unwrap_or_default(),
                    Err(_) => Vec::new(),
                })
                .collect());
        }
        // Wait until one of these partitions grew or records came back (other partitions'
        // high watermarks move the broker-wide signal too), or the deadline.
        loop {
            let woke = tokio::select! {
                r = hw.changed() => r.is_ok() && high_watermarks() != seen,
                r = available.changed() => r.is_ok(),
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if !woke && (hw.has_changed().is_err() || available.has_changed().is_err()) {
                // A signal is gone (shutting down): no more wake-ups, only the deadline.
                tokio::time::sleep_until(deadline).await;
            }
            if woke || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
    }
}

fn build(ctx: &Context, group: &str, out: IndexMap<SessionPartition, Out>) -> ShareFetchResponse {
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(ctx.broker.config.node_id)
        .with_leader_epoch(LEADER_EPOCH);
    let mut topics: IndexMap<uuid::Uuid, Vec<PartitionData>> = IndexMap::new();
    for ((topic_id, index), o) in out {
        let acquired = o
            .acquired
            .iter()
            .map(|a| {
                resp::AcquiredRecords::default()
                    .with_first_offset(a.first_offset)
                    .with_last_offset(a.last_offset)
                    .with_delivery_count(i16::try_from(a.delivery_count).unwrap_or(i16::MAX))
            })
            .collect();
        topics.entry(topic_id).or_default().push(
            PartitionData::default()
                .with_partition_index(index)
                .with_error_code(o.error_code)
                .with_acknowledge_error_code(o.acknowledge_error_code.unwrap_or(0))
                .with_acknowledge_error_message(
                    o.acknowledge_error_code
                        .filter(|c| *c != 0)
                        .map(|c| StrBytes::from_string(format!("acknowledgement failed ({c})"))),
                )
                .with_current_leader(leader.clone())
                // Never null: librdkafka drops the whole response on a null record set.
                .with_records(Some(o.records))
                .with_acquired_records(acquired),
        );
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(
            i32::try_from(ctx.broker.shares.lock_duration_ms(group)).unwrap_or(i32::MAX),
        )
        .with_responses(
            topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
