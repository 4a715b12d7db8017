//! OffsetFetch: one group (v0-7) or several (v8+).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// (topic, partition, committed offset, leader epoch, metadata).
type Fetched = Vec<(String, i32, i64, i32, String)>;

fn lookup(ctx: &Context, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let wanted: Option<Vec<(String, i32)>> = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    ctx.broker
        .groups
        .fetch_offsets(group, wanted.as_deref())
        .into_iter()
        .map(|(t, p, o)| match o {
            Some(o) => (t, p, o.offset, o.leader_epoch, o.metadata),
            None => (t, p, -1, -1, String::new()),
        })
        .collect()
}

fn group_by_topic<T, P>(
    fetched: Fetched,
    topic: impl Fn(String, Vec<P>) -> T,
    partition: impl Fn(i32, i64, i32, String) -> P,
) -> Vec<T> {
    let mut order: Vec<String> = Vec::new();
    let mut parts: std::collections::HashMap<String, Vec<P>> = std::collections::HashMap::new();
    for (t, p, o, e, m) in fetched {
        if !parts.contains_key(&t) {
            order.push(t.clone());
        }
        parts.entry(t).or_default().push(partition(p, o, e, m));
    }
    order
        .into_iter()
        .map(|t| {
            let ps = parts.remove(&t).unwrap_or_default();
            topic(t, ps)
        })
        .collect()
}

/// An open transaction holds an uncommitted offset for the partition (require_stable).
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// Handles one OffsetFetch request. Unknown partitions answer offset -1, as Kafka does.
pub fn handle(ctx: &Arc<Context>, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let fetched = lookup(ctx, g.group_id.as_str(), topics);
                let topics = group_by_topic(
                    fetched,
                    |t, ps| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    },
                    |p, o, e, m| {
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(e)
                            .with_metadata(Some(StrBytes::from_string(m)))
                    },
                );
                let mut topics = topics;
                if req.require_stable {
                    for t in &mut topics {
                        for p in &mut t.partitions {
                            if ctx.broker.groups.has_pending_txn_offset(
                                g.group_id.as_str(),
                                t.name.as_str(),
                                p.partition_index,
                            ) {
                                p.error_code = UNSTABLE_OFFSET_COMMIT;
                            }
                        }
                    }
                }
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let fetched = lookup(ctx, req.group_id.as_str(), topics);
    let topics = group_by_topic(
        fetched,
        |t, ps| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(ps)
        },
        |p, o, e, m| {
            let part = OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
                .with_metadata(Some(StrBytes::from_string(m)));
            if version >= 5 {
                part.with_committed_leader_epoch(e)
            } else {
                part
            }
        },
    );
    let mut topics = topics;
    if version >= 7 && req.require_stable {
        for t in &mut topics {
            for p in &mut t.partitions {
                if ctx.broker.groups.has_pending_txn_offset(
                    req.group_id.as_str(),
                    t.name.as_str(),
                    p.partition_index,
                ) {
                    p.error_code = UNSTABLE_OFFSET_COMMIT;
                }
            }
        }
    }
    OffsetFetchResponse::default().with_topics(topics)
}
