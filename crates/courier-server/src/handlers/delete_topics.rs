//! DeleteTopics: by name (v0-5) or by name or id (v6+).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes;
use crate::listener::Context;

/// Handles one DeleteTopics request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let mut r = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let resolved = match &name {
                Some(n) => Some(n.to_string()),
                None => ctx.broker.topics.get_by_id(id).map(|t| t.name.to_string()),
            };
            match resolved {
                None => r.error_code = ResponseError::UnknownTopicId.code(),
                Some(n) => match ctx.broker.topics.delete(&n) {
                    Ok(topic) => {
                        r.topic_id = topic.topic_id;
                        r.name = Some(TopicName(StrBytes::from_string(n)));
                    }
                    Err(e) => {
                        r.error_code = error_codes::code(&e);
                        r.error_message = Some(StrBytes::from_string(e.to_string()));
                    }
                },
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
