//! Metadata: the one broker, and each topic's partitions led by it.

use std::sync::Arc;

use courier_broker::{BrokerError, Topic};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// The leader epoch of every partition: one node, never re-elected.
pub const LEADER_EPOCH: i32 = 0;

/// Describes the topics asked for (all when `topics` is null), auto-creating unknown ones when
/// both the request and the broker allow it.
pub fn handle(ctx: &Arc<Context>, version: i16, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let node = broker.config.node_id;
    let topics = match req.topics {
        None => broker
            .topics
            .list()
            .iter()
            .map(|t| describe(t, node))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|t| {
                // Before v4 there was no flag: Kafka auto-created whenever the broker allowed it.
                let allow = version < 4 || req.allow_auto_topic_creation;
                let found = match (&t.name, t.topic_id.is_nil()) {
                    (Some(name), _) => broker.topic_or_create(name.as_str(), allow),
                    (None, false) => broker
                        .topics
                        .get_by_id(t.topic_id)
                        .ok_or_else(|| BrokerError::UnknownTopic(t.topic_id.to_string())),
                    (None, true) => Err(BrokerError::UnknownTopic(String::new())),
                };
                match found {
                    Ok(topic) => describe(&topic, node),
                    Err(e) => {
                        let code = if t.name.is_none() {
                            ResponseError::UnknownTopicId.code()
                        } else {
                            error_codes::code(&e)
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(code)
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                    }
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(broker.config.advertised_host.clone()))
            .with_port(broker.config.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN)
}

fn describe(topic: &Topic, node: i32) -> MetadataResponseTopic {
    let partitions = (0..topic.partition_count())
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(node))
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![BrokerId(node)])
                .with_isr_nodes(vec![BrokerId(node)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name.to_string(),
        ))))
        .with_topic_id(topic.topic_id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
