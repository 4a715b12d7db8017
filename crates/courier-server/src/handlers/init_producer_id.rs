//! InitProducerId: for idempotent producers a new producer id, or (KIP-360, v3+) the same id
//! with a bumped epoch; for transactional producers the transaction coordinator's id and epoch,
//! fencing any older instance with the same transactional.id.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one InitProducerId request.
pub fn handle(ctx: &Arc<Context>, req: InitProducerIdRequest) -> Reply {
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.is_empty()) {
        let id = id.to_string();
        let ctx = Arc::clone(ctx);
        return Reply::later(async move {
            let broker = &ctx.broker;
            let resp = match broker
                .txns
                .init(&id, req.transaction_timeout_ms, &broker.producer_ids)
                .await
            {
                Ok(Ok((record, None))) => InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(record.producer_id))
                    .with_producer_epoch(record.producer_epoch),
                Ok(Ok((_, Some(job)))) => {
                    // The old instance's transaction is being aborted; retry once it is.
                    broker.spawn_completion(job);
                    failed(ResponseError::ConcurrentTransactions.code())
                }
                Ok(Err(e)) => failed(error_codes::txn(&e, true)),
                Err(e) => failed(error_codes::code(&e)),
            };
            ResponseKind::InitProducerId(resp)
        });
    }
    // KIP-360: an existing idempotent producer asks for a new epoch of its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return Reply::now(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1),
        ));
    }
    let resp = match ctx.broker.producer_ids.next() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => failed(error_codes::code(&e)),
    };
    Reply::now(ResponseKind::InitProducerId(resp))
}

fn failed(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
