//! EndTxn: commit or abort. Answered once the decision is durable; the markers follow.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one EndTxn request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: EndTxnRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    Reply::later(async move {
        let outcome = ctx
            .broker
            .txns
            .end(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
            )
            .await;
        let code = match outcome {
            Ok(Ok(job)) => {
                if let Some(job) = job {
                    ctx.broker.spawn_completion(job);
                }
                0
            }
            Ok(Err(e)) => error_codes::txn(&e, version >= 2),
            Err(e) => error_codes::code(&e),
        };
        ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
    })
}
