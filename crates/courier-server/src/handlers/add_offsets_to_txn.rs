//! AddOffsetsToTxn: the transaction will commit offsets for a consumer group.

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one AddOffsetsToTxn request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: AddOffsetsToTxnRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    Reply::later(async move {
        let code = match ctx
            .broker
            .txns
            .add(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                &[],
                &[req.group_id.to_string()],
            )
            .await
        {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => error_codes::txn(&e, version >= 2),
            Err(e) => error_codes::code(&e),
        };
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
    })
}
