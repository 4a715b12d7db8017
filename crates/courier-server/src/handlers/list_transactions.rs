//! ListTransactions, with state and producer-id filters.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

const STATES: [&str; 6] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
];

/// Handles one ListTransactions request.
pub fn handle(ctx: &Arc<Context>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown: Vec<StrBytes> = req
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = courier_broker::now_ms();
    let states = ctx.broker.txns.read(|c| {
        c.all()
            .filter(|t| {
                req.state_filters.is_empty()
                    || req
                        .state_filters
                        .iter()
                        .any(|s| s.as_str() == t.state.name())
            })
            .filter(|t| {
                req.producer_id_filters.is_empty()
                    || req.producer_id_filters.iter().any(|p| p.0 == t.producer_id)
            })
            .filter(|t| {
                req.duration_filter < 0
                    || (t.txn_start_ms >= 0 && now - t.txn_start_ms >= req.duration_filter)
            })
            .map(|t| {
                TransactionState::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(
                        t.transactional_id.clone(),
                    )))
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_transaction_state(StrBytes::from_static_str(t.state.name()))
            })
            .collect()
    });
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
