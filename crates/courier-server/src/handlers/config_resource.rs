//! The part of AlterConfigs and IncrementalAlterConfigs that is the same: find the resource,
//! apply the edit to a copy of its config, persist it unless `validate_only`, and report the
//! outcome as (error code, message).

use std::sync::Arc;

use courier_broker::topic_config::TopicConfig;
use courier_broker::BrokerError;
use kafka_protocol::error::ResponseError;

use crate::error_codes;
use crate::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::listener::Context;

/// Applies `edit` to the named resource's config. Only topics can be altered; broker settings
/// are static. All of one resource's edits apply together or not at all.
pub fn alter(
    ctx: &Arc<Context>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    edit: impl FnOnce(TopicConfig) -> Result<TopicConfig, BrokerError>,
) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => {
            let apply = || {
                let topic = ctx
                    .broker
                    .topics
                    .get(name)
                    .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
                let config = edit(topic.config())?;
                topic.config().check_change(&config)?;
                if !validate_only {
                    ctx.broker.topics.set_config(name, config)?;
                    tracing::info!(topic = name, "altered topic config");
                }
                Ok(())
            };
            apply().map_err(|e: BrokerError| (error_codes::code(&e), e.to_string()))
        }
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest.code(),
            "broker configs are static: set them by flag, env var or config file".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("unsupported resource type {other}"),
        )),
    }
}
