//! EndTxn: commit or abort. Answered once the decision is durable and its markers are
//! written (or, if writing them failed, left to the broker's retry).

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
                // The decision is durable. Finish the markers before answering, so the
                // producer's next transaction does not meet CONCURRENT_TRANSACTIONS (and the
                // client's retry backoff) while they are written; a failure is retried by the
                // broker's timer and does not change the answer: the outcome is decided.
                if let Some(job) = job {
                    if ctx.broker.config.crash_after_txn_prepare {
                        tracing::error!(transactional_id = %job.transactional_id, "fault injection: exiting between the decision and the markers");
                        // Exit at once: no clean shutdown, no core dump, like a SIGKILL.
                        std::process::exit(137);
                    }
                    let id = job.transactional_id.clone();
                    if let Err(e) = ctx.broker.complete_transaction(job).await {
                        tracing::warn!(transactional_id = %id, error = %e, "writing markers failed; the timer will retry");
                    }
                }
                0
            }
            Ok(Err(e)) => error_codes::txn(&e, version >= 2),
            Err(e) => error_codes::code(&e),
        };
        ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
    })
}
