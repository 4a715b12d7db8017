//! CreatePartitions: grow a topic's partition count.

use std::sync::Arc;

use courier_broker::BrokerError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// Handles one CreatePartitions request.
pub fn handle(ctx: &Arc<Context>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = ctx.broker.config.node_id;
    let max = ctx.broker.config.max_partitions_per_topic;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let outcome = (|| {
                if t.count > max {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "{} exceeds the limit of {max}",
                        t.count
                    )));
                }
                if let Some(assignments) = &t.assignments {
                    if assignments
                        .iter()
                        .flat_map(|a| a.broker_ids.iter())
                        .any(|b| b.0 != node)
                    {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "this cluster has only broker {node}"
                        )));
                    }
                }
                ctx.broker
                    .topics
                    .create_partitions(t.name.as_str(), t.count, req.validate_only)
            })();
            if let Err(e) = outcome {
                r.error_code = error_codes::code(&e);
                r.error_message = Some(StrBytes::from_string(e.to_string()));
            }
            r
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
