//! AlterConfigs (the legacy, non-incremental form): replaces a topic's whole set of overrides.
//! Keys left out return to their defaults, as in Kafka.

use std::sync::Arc;

use courier_broker::topic_config::TopicConfig;
use courier_broker::BrokerError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::listener::Context;

/// Handles one AlterConfigs request.
pub fn handle(ctx: &Arc<Context>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let outcome: Result<(), (i16, String)> = match res.resource_type {
                RESOURCE_TOPIC => (|| {
                    let name = res.resource_name.as_str();
                    ctx.broker
                        .topics
                        .get(name)
                        .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
                    let config = TopicConfig::from_pairs(
                        res.configs
                            .iter()
                            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                    )?;
                    if !req.validate_only {
                        ctx.broker.topics.set_config(name, config)?;
                        tracing::info!(topic = name, "replaced topic config");
                    }
                    Ok(())
                })()
                .map_err(|e: BrokerError| (error_codes::code(&e), e.to_string())),
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest.code(),
                    "broker configs are static: set them by flag, env var or config file".into(),
                )),
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("unsupported resource type {other}"),
                )),
            };
            if let Err((code, message)) = outcome {
                out.error_code = code;
                out.error_message = Some(StrBytes::from_string(message));
            }
            out
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
