//! EndTxn: commit or abort. Answered once the decision is durable and its markers are
//! written (or, if writing them failed, left to the broker's retry).
//!
//! v5+ under transaction version 2 (KIP-890 part 2): the end bumps the producer's epoch, the
//! markers carry the bumped epoch and the answer tells the producer the id and epoch to
//! continue with.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId, ResponseKind};

use crate::error_codes;
use crate::listener::Context;
use crate::reply::Reply;

/// Handles one EndTxn request.
pub fn handle(ctx: &Arc<Context>, version: i16, req: EndTxnRequest) -> Reply {
    let ctx = Arc::clone(ctx);
    let tv2 = version >= 5 && ctx.broker.txns.transaction_version() >= 2;
    Reply::later(async move {
        let outcome = ctx
            .broker
            .txns
            .end(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
                tv2,
                &ctx.broker.producer_ids,
            )
            .await;
        let mut response = EndTxnResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let code = match outcome {
            Ok(Ok(outcome)) => {
                if version >= 5 {
                    response.producer_id = ProducerId(outcome.producer_id);
                    response.producer_epoch = outcome.producer_epoch;
                }
                let job = outcome.prepared.map(|(_, job)| job);
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
        ResponseKind::EndTxn(response.with_error_code(code))
    })
}
