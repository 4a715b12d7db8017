//! AlterConfigs (the legacy, non-incremental form): replaces a topic's whole set of overrides.
//! Keys left out return to their defaults, as in Kafka.

use std::sync::Arc;

use courier_broker::topic_config::TopicConfig;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::config_resource;
use crate::listener::Context;

/// Handles one AlterConfigs request.
pub fn handle(ctx: &Arc<Context>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let outcome = config_resource::alter(
                ctx,
                res.resource_type,
                res.resource_name.as_str(),
                req.validate_only,
                |_old| {
                    TopicConfig::from_pairs(
                        res.configs
                            .iter()
                            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                    )
                },
            );
            let (code, message) = outcome.err().unzip();
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code.unwrap_or(0))
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
