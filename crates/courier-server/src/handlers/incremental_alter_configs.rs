//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs.

use std::sync::Arc;

use courier_broker::topic_config::AlterOp;
use courier_broker::BrokerError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::config_resource;
use crate::listener::Context;

/// Handles one IncrementalAlterConfigs request.
pub fn handle(
    ctx: &Arc<Context>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let outcome = config_resource::alter(
                ctx,
                res.resource_type,
                res.resource_name.as_str(),
                req.validate_only,
                |mut config| {
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
                    Ok(config)
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
