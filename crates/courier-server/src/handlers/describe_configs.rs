//! DescribeConfigs: topic configs (overrides and defaults), the broker's settings, and share
//! groups' settings with their share-partitions' delivery state.
//!
//! The delivery state of a share group has no Kafka API, so it is shown on resource type GROUP
//! as read-only entries of Courier's own, one per share-partition:
//! `courier.share.state.<topic>.<partition>` = `start=S end=E acquired=Q available=A
//! archived=R acknowledged=K` (S the share-partition start offset, E its end offset, Q the
//! records locked to a consumer now, A those waiting for redelivery in the window, R and K the
//! records archived and accepted since the broker loaded the share-partition). They cannot be
//! set: IncrementalAlterConfigs answers INVALID_CONFIG for them.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use crate::listener::Context;

/// Kafka's resource type code for a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type code for a broker.
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's resource type code for a group (share-group settings).
pub const RESOURCE_GROUP: i8 = 32;
/// Config source code: the broker's static config.
const SOURCE_STATIC_BROKER: i8 = 4;
/// Config source code: a group's config.
const SOURCE_GROUP: i8 = 8;
/// The name prefix of a share-partition's delivery-state entry.
pub const SHARE_STATE_PREFIX: &str = "courier.share.state.";

/// (name, value, Kafka type code, doc) of every entry, with whether it is the default.
type Entry = (String, String, bool, i8, &'static str);

fn broker_entries(ctx: &Context) -> Vec<Entry> {
    let c = &ctx.broker.config;
    let d = &c.topic_defaults;
    vec![
        (
            "node.id".into(),
            c.node_id.to_string(),
            false,
            3,
            "This broker's id.",
        ),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics.to_string(),
            false,
            1,
            "Create unknown topics on Metadata requests.",
        ),
        (
            "num.partitions".into(),
            c.default_partitions.to_string(),
            false,
            3,
            "Partitions of auto-created topics.",
        ),
        (
            "log.dirs".into(),
            c.data_dir.display().to_string(),
            false,
            2,
            "Where data is stored.",
        ),
        (
            "log.retention.ms".into(),
            d.log.retention_ms.to_string(),
            false,
            5,
            "Default retention.ms.",
        ),
        (
            "log.retention.bytes".into(),
            d.log.retention_bytes.to_string(),
            false,
            5,
            "Default retention.bytes.",
        ),
        (
            "log.segment.bytes".into(),
            d.log.segment_bytes.to_string(),
            false,
            3,
            "Default segment.bytes.",
        ),
        (
            "log.flush.interval.ms".into(),
            d.flush_ms.to_string(),
            false,
            5,
            "Default flush.ms.",
        ),
        (
            "message.max.bytes".into(),
            d.log.max_message_bytes.to_string(),
            false,
            3,
            "Default max.message.bytes.",
        ),
        (
            "log.retention.check.interval.ms".into(),
            c.retention_check_interval_ms.to_string(),
            false,
            5,
            "How often retention runs.",
        ),
        (
            "socket.request.max.bytes".into(),
            ctx.config.max_frame_bytes.to_string(),
            false,
            3,
            "Largest request accepted.",
        ),
        (
            "max.connections".into(),
            ctx.config.max_connections.to_string(),
            false,
            3,
            "Most client connections at once.",
        ),
        (
            "default.replication.factor".into(),
            "1".into(),
            false,
            4,
            "Courier is one node and keeps one copy.",
        ),
        (
            "min.insync.replicas".into(),
            "1".into(),
            false,
            3,
            "One node: the in-sync set is that node.",
        ),
    ]
}

/// The read-only delivery-state entries of a share group's share-partitions.
fn share_state_entries(ctx: &Context, group: &str) -> Vec<Entry> {
    ctx.broker
        .shares
        .partition_stats(&ctx.broker.topics, group)
        .into_iter()
        .map(|(topic, partition, s)| {
            (
                format!("{SHARE_STATE_PREFIX}{topic}.{partition}"),
                format!(
                    "start={} end={} acquired={} available={} archived={} acknowledged={}",
                    s.start_offset,
                    s.end_offset,
                    s.acquired,
                    s.available,
                    s.archived_total,
                    s.acknowledged_total
                ),
                false,
                2,
                "Courier: this share-partition's delivery state (read-only).",
            )
        })
        .collect()
}

/// Handles one DescribeConfigs request.
pub fn handle(
    ctx: &Arc<Context>,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let (entries, read_only, override_source) = match res.resource_type {
                RESOURCE_TOPIC => match ctx.broker.topics.get(res.resource_name.as_str()) {
                    Some(topic) => {
                        let entries = topic
                            .config()
                            .entries(ctx.broker.topics.defaults())
                            .into_iter()
                            .map(|e| (e.name, e.value, e.is_default, e.config_type, e.doc))
                            .collect();
                        (entries, false, SOURCE_TOPIC)
                    }
                    None => {
                        out.error_code = ResponseError::UnknownTopicOrPartition.code();
                        out.error_message = Some(StrBytes::from_string(format!(
                            "unknown topic {}",
                            res.resource_name.as_str()
                        )));
                        return out;
                    }
                },
                RESOURCE_GROUP => {
                    let group = res.resource_name.as_str();
                    let entries = ctx
                        .broker
                        .shares
                        .settings(group)
                        .entries(group)
                        .into_iter()
                        .map(|e| {
                            (
                                e.name.to_string(),
                                e.value,
                                e.is_default,
                                e.config_type,
                                e.doc,
                            )
                        })
                        .collect();
                    (entries, false, SOURCE_GROUP)
                }
                RESOURCE_BROKER => {
                    let name = res.resource_name.as_str();
                    if !name.is_empty() && name != ctx.broker.config.node_id.to_string() {
                        out.error_code = ResponseError::InvalidRequest.code();
                        out.error_message =
                            Some(StrBytes::from_string(format!("unknown broker {name}")));
                        return out;
                    }
                    (broker_entries(ctx), true, SOURCE_STATIC_BROKER)
                }
                other => {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(StrBytes::from_string(format!(
                        "unsupported resource type {other}"
                    )));
                    return out;
                }
            };
            // Null or empty both mean every key, as in Kafka's ConfigHelper.
            let wanted = res.configuration_keys.as_ref().filter(|k| !k.is_empty());
            out.configs = entries
                .into_iter()
                .chain(match res.resource_type {
                    RESOURCE_GROUP => share_state_entries(ctx, res.resource_name.as_str()),
                    _ => Vec::new(),
                })
                .filter(|(name, ..)| wanted.is_none_or(|w| w.iter().any(|k| k.as_str() == name)))
                .map(|(name, value, is_default, config_type, doc)| {
                    let read_only = read_only || name.starts_with(SHARE_STATE_PREFIX);
                    let mut c = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_read_only(read_only)
                        .with_config_source(if is_default {
                            SOURCE_DEFAULT
                        } else {
                            override_source
                        });
                    if version >= 3 {
                        c.config_type = config_type;
                        if req.include_documentation {
                            c.documentation = Some(StrBytes::from_static_str(doc));
                        }
                    }
                    c
                })
                .collect();
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
