//! DescribeTransactions.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

/// Handles one DescribeTransactions request.
pub fn handle(
    ctx: &Arc<Context>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let found = ctx.broker.txns.read(|c| c.get(id.as_str()).cloned());
            match found {
                None => TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(t) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, p) in &t.partitions {
                        match topics.iter_mut().find(|x| x.topic.as_str() == topic) {
                            Some(x) => x.partitions.push(*p),
                            None => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    TransactionState::default()
                        .with_transactional_id(id)
                        .with_transaction_state(StrBytes::from_static_str(t.state.name()))
                        .with_transaction_timeout_ms(t.timeout_ms)
                        .with_transaction_start_time_ms(t.txn_start_ms)
                        .with_producer_id(ProducerId(t.producer_id))
                        .with_producer_epoch(t.producer_epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
