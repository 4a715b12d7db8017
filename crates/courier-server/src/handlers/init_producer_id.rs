//! InitProducerId for idempotent producers: a new producer id, or (KIP-360, v3+) the same id
//! with a bumped epoch so a producer can recover from a sequence error without losing its id.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error_codes;
use crate::listener::Context;

/// Handles one InitProducerId request.
pub fn handle(ctx: &Arc<Context>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        // Transactions are not served yet: refuse clearly rather than hand out an id that the
        // transaction APIs cannot back.
        tracing::warn!(transactional_id = ?req.transactional_id.as_deref().map(|t| t.as_str()), "transactional producers are not supported yet");
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // KIP-360: an existing idempotent producer asks for a new epoch of its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.broker.producer_ids.next() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(error_codes::code(&e))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
