//! CreateTopics: validate everything, then create partition directories and metadata.

use std::sync::Arc;

use courier_broker::topic_config::TopicConfig;
use courier_broker::BrokerError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// Config source code for DescribeConfigs/CreateTopics: a topic override.
pub const SOURCE_TOPIC: i8 = 1;
/// Config source code: the broker's static default.
pub const SOURCE_DEFAULT: i8 = 5;

/// Handles one CreateTopics request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &ctx.broker;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let mut result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let outcome = (|| -> Result<Option<Arc<courier_broker::Topic>>, BrokerError> {
                let (partitions, rf) = shape(
                    ctx,
                    t.num_partitions,
                    t.replication_factor,
                    t.assignments.len(),
                )?;
                for a in &t.assignments {
                    if a.broker_ids.iter().any(|b| b.0 != broker.config.node_id) {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "partition {} names brokers {:?}; this cluster has only broker {}",
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
                            broker.config.node_id
                        )));
                    }
                }
                let config = TopicConfig::from_pairs(
                    t.configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                )?;
                broker
                    .topics
                    .create(&name, partitions, rf, config, req.validate_only)
            })();
            match outcome {
                Ok(created) => {
                    if let Some(topic) = created.or_else(|| broker.topics.get(&name)) {
                        result.topic_id = topic.topic_id;
                        result.num_partitions = topic.partition_count();
                        // One copy exists, whatever was asked for: report the truth.
                        result.replication_factor = 1;
                        if version >= 5 {
                            result.configs = Some(
                                topic
                                    .config()
                                    .entries(broker.topics.defaults())
                                    .into_iter()
                                    .map(|e| {
                                        CreatableTopicConfigs::default()
                                            .with_name(StrBytes::from_string(e.name))
                                            .with_value(Some(StrBytes::from_string(e.value)))
                                            .with_config_source(if e.is_default {
                                                SOURCE_DEFAULT
                                            } else {
                                                SOURCE_TOPIC
                                            })
                                    })
                                    .collect(),
                            );
                        }
                    } else if req.validate_only {
                        if let Ok((p, _)) = shape(
                            ctx,
                            t.num_partitions,
                            t.replication_factor,
                            t.assignments.len(),
                        ) {
                            result.num_partitions = p;
                            result.replication_factor = 1;
                        }
                    }
                }
                Err(e) => {
                    result.error_code = error_codes::code(&e);
                    result.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// The partition count and replication factor to create, from the request's (-1 = default).
fn shape(
    ctx: &Context,
    partitions: i32,
    rf: i16,
    assignments: usize,
) -> Result<(i32, i16), BrokerError> {
    let cfg = &ctx.broker.config;
    let partitions = match (partitions, assignments) {
        (-1, 0) => cfg.default_partitions,
        (-1, n) => n as i32,
        (p, _) => p,
    };
    if partitions <= 0 || partitions > cfg.max_partitions_per_topic {
        return Err(BrokerError::InvalidPartitions(format!(
            "partition count {partitions} must be between 1 and {}",
            cfg.max_partitions_per_topic
        )));
    }
    let rf = if rf == -1 { 1 } else { rf };
    if rf < 1 || rf > cfg.max_replication_factor {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor {rf} must be between 1 and {} (Courier is one node and keeps one copy)",
            cfg.max_replication_factor
        )));
    }
    Ok((partitions, rf))
}
