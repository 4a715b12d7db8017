//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs, and SET and
//! DELETE on share-group settings (resource type GROUP).

use std::sync::Arc;

use courier_broker::topic_config::AlterOp;
use courier_broker::BrokerError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::handlers::config_resource;
use crate::handlers::describe_configs::{RESOURCE_GROUP, SHARE_STATE_PREFIX};
use crate::listener::Context;

fn operation(code: i8) -> Result<AlterOp, BrokerError> {
    match code {
        0 => Ok(AlterOp::Set),
        1 => Ok(AlterOp::Delete),
        2 => Ok(AlterOp::Append),
        3 => Ok(AlterOp::Subtract),
        other => Err(BrokerError::InvalidConfig(format!(
            "unknown operation {other}"
        ))),
    }
}

fn value(c: &AlterableConfig) -> Option<&str> {
    c.value.as_ref().map(|v| v.as_str())
}

/// A group's share settings: every edit applies, persisted, or none does.
async fn alter_group(
    ctx: &Context,
    res: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let group = res.resource_name.as_str();
    if let Some(c) = res
        .configs
        .iter()
        .find(|c| c.name.starts_with(SHARE_STATE_PREFIX))
    {
        return Err((
            ResponseError::InvalidConfig.code(),
            format!(
                "{} is read-only: it shows the share-partition's delivery state",
                c.name.as_str()
            ),
        ));
    }
    ctx.broker
        .shares
        .alter_settings(&ctx.broker.topics, group, validate_only, |mut settings| {
            for c in &res.configs {
                settings.alter(c.name.as_str(), value(c), operation(c.config_operation)?)?;
            }
            Ok(settings)
        })
        .await
        .map_err(|e| (error_codes::code(&e), e.to_string()))
}

/// Handles one IncrementalAlterConfigs request.
pub async fn handle(
    ctx: &Arc<Context>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = if res.resource_type == RESOURCE_GROUP {
            alter_group(ctx, &res, req.validate_only).await
        } else {
            config_resource::alter(
                ctx,
                res.resource_type,
                res.resource_name.as_str(),
                req.validate_only,
                |mut config| {
                    for c in &res.configs {
                        config.alter(c.name.as_str(), value(c), operation(c.config_operation)?)?;
                    }
                    Ok(config)
                },
            )
        };
        let (code, message) = outcome.err().unzip();
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code.unwrap_or(0))
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
