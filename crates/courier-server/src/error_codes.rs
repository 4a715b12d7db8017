//! The one place where Courier's errors become Kafka error codes.

use courier_broker::BrokerError;
use courier_coordinator::CoordinatorError;
use courier_storage::StorageError;
use kafka_protocol::error::ResponseError;

/// The Kafka error a storage failure is reported as.
pub fn storage(e: &StorageError) -> ResponseError {
    match e {
        StorageError::CorruptMessage(_) => ResponseError::CorruptMessage,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
        StorageError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        _ => ResponseError::KafkaStorageError,
    }
}

/// The Kafka error a broker failure is reported as.
pub fn broker(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::Storage(s) => storage(s),
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::StorageOffline(_) => ResponseError::KafkaStorageError,
        BrokerError::DurabilityTimeout => ResponseError::RequestTimedOut,
        BrokerError::Metadata { .. } | BrokerError::CorruptMetadata { .. } => {
            ResponseError::KafkaStorageError
        }
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower,
    }
}

/// The Kafka error code for a coordinator refusal.
pub fn coordinator(e: &CoordinatorError) -> i16 {
    let err = match e {
        CoordinatorError::UnknownMemberId => ResponseError::UnknownMemberId,
        CoordinatorError::IllegalGeneration => ResponseError::IllegalGeneration,
        CoordinatorError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        CoordinatorError::MemberIdRequired => ResponseError::MemberIdRequired,
        CoordinatorError::FencedInstanceId => ResponseError::FencedInstanceId,
        CoordinatorError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        CoordinatorError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        CoordinatorError::InvalidGroupId => ResponseError::InvalidGroupId,
        CoordinatorError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        CoordinatorError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        CoordinatorError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        CoordinatorError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        CoordinatorError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        CoordinatorError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        CoordinatorError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        CoordinatorError::InvalidRequest => ResponseError::InvalidRequest,
        CoordinatorError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        CoordinatorError::InvalidRecordState => ResponseError::InvalidRecordState,
        // Only met while loading persisted state, never as a client's fault.
        CoordinatorError::CorruptShareState(_) => ResponseError::UnknownServerError,
    };
    err.code()
}

/// The Kafka error code for a transaction refusal. Fencing is PRODUCER_FENCED for request
/// versions that know it (`producer_fenced`) and INVALID_PRODUCER_EPOCH before, as in Kafka.
pub fn txn(e: &courier_coordinator::txn::TxnError, producer_fenced: bool) -> i16 {
    use courier_coordinator::txn::TxnError;
    let err = match e {
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::ProducerFenced if producer_fenced => ResponseError::ProducerFenced,
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
    };
    err.code()
}

/// The code a Produce gets when its transactional batch fails the check against its
/// transaction (KIP-890 verification). CONCURRENT_TRANSACTIONS (the transaction is ending)
/// becomes NOT_ENOUGH_REPLICAS as in Kafka: every producer retries that.
pub fn txn_produce(e: &courier_coordinator::txn::TxnError) -> i16 {
    use courier_coordinator::txn::TxnError;
    let err = match e {
        TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::ConcurrentTransactions => ResponseError::NotEnoughReplicas,
        TxnError::InvalidTxnState | TxnError::InvalidTransactionTimeout => {
            ResponseError::InvalidTxnState
        }
    };
    err.code()
}

/// The Kafka error code for a share-session refusal (the whole ShareFetch or ShareAcknowledge).
pub fn share_session(e: courier_broker::share_session::ShareSessionError) -> i16 {
    use courier_broker::share_session::ShareSessionError;
    let err = match e {
        ShareSessionError::NotFound => ResponseError::ShareSessionNotFound,
        ShareSessionError::InvalidEpoch => ResponseError::InvalidShareSessionEpoch,
        ShareSessionError::LimitReached => ResponseError::ShareSessionLimitReached,
        ShareSessionError::InvalidRequest => ResponseError::InvalidRequest,
    };
    err.code()
}

/// A coordinator outcome as a code: 0 for success.
pub fn coordinator_outcome(e: Option<&CoordinatorError>) -> i16 {
    e.map(coordinator).unwrap_or(0)
}

/// The numeric code for a broker failure, logging unexpected ones.
pub fn code(e: &BrokerError) -> i16 {
    let err = broker(e);
    if err == ResponseError::KafkaStorageError {
        tracing::error!(error = %e, "storage failure");
    } else {
        tracing::debug!(error = %e, code = err.code(), "request failed");
    }
    err.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_their_kafka_codes() {
        let cases: Vec<(BrokerError, i16)> = vec![
            (StorageError::CorruptMessage("crc".into()).into(), 2),
            (StorageError::InvalidRecord("count".into()).into(), 87),
            (BrokerError::UnknownTopic("t".into()), 3),
            (BrokerError::TopicExists("t".into()), 36),
            (
                BrokerError::InvalidTopicName {
                    name: "a b".into(),
                    reason: "x",
                },
                17,
            ),
            (BrokerError::InvalidPartitions("0".into()), 37),
            (BrokerError::InvalidReplicationFactor("4".into()), 38),
            (BrokerError::InvalidConfig("k".into()), 40),
            (BrokerError::DurabilityTimeout, 7),
            (
                StorageError::OutOfOrderSequence {
                    producer_id: 1,
                    expected: 2,
                    got: 5,
                }
                .into(),
                45,
            ),
            (
                StorageError::InvalidProducerEpoch {
                    producer_id: 1,
                    epoch: 0,
                    current_epoch: 1,
                }
                .into(),
                47,
            ),
            (
                StorageError::UnknownProducerId {
                    producer_id: 1,
                    base_sequence: 3,
                }
                .into(),
                59,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e}");
        }
    }

    #[test]
    fn share_session_errors_map_to_their_kafka_codes() {
        use courier_broker::share_session::ShareSessionError;
        assert_eq!(share_session(ShareSessionError::NotFound), 122);
        assert_eq!(share_session(ShareSessionError::InvalidEpoch), 123);
        assert_eq!(share_session(ShareSessionError::LimitReached), 133);
        assert_eq!(share_session(ShareSessionError::InvalidRequest), 42);
    }
}
