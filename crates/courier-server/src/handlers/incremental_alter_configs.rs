//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs.

use std::sync::Arc;

use courier_broker::topic_config::AlterOp;
use courier_broker::BrokerError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::listener::Context;

/// Handles one IncrementalAlterConfigs request. All edits of one resource apply together or not
/// at all.
pub fn handle(
    ctx: &Arc<Context>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
                    let topic = ctx
                        .broker
                        .topics
                        .get(name)
                        .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
                    let mut config = topic.config();
                    for c in &res.configs {
                        let op = match c.config_operation {
                            0 => AlterOp::Set,
                            1 => AlterOp::Delete,
                            2 => AlterOp::Append,
                            3 => AlterOp::Subtract,
                            other => {
                                return Err(BrokerError::InvalidConfig(format!(
                                    "unknown operation {other}"
                                )))
                            }
                        };
                        config.alter(c.name.as_str(), c.value.as_ref().map(|v| v.as_str()), op)?;
                    }
                    if !req.validate_only {
                        ctx.broker.topics.set_config(name, config)?;
                        tracing::info!(topic = name, "altered topic config");
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
