//! The broker crate's one error type. The server maps each variant to a Kafka error code.

use courier_storage::StorageError;
use thiserror::Error;

/// What can go wrong in the broker's state.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The storage layer refused or failed (corrupt batch, too large, I/O...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No topic of that name (or id).
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The topic exists but not that partition.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// The partition index asked for.
        partition: i32,
    },
    /// CreateTopics for a name that is taken.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// A name Kafka would not accept.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A partition count that is zero, negative, too large, or not larger than the current one.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// A replication factor outside 1..=max.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment naming brokers that do not exist.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// An unknown config name or a value that does not parse or is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// An fsync failed earlier; the partition refuses writes rather than pretend.
    #[error("partition {0} is offline after a storage failure")]
    StorageOffline(String),
    /// A produce request with acks=all waited longer than its timeout for the fsync.
    #[error("timed out waiting for the append to become durable")]
    DurabilityTimeout,
    /// A metadata file could not be written or read.
    #[error("metadata {op} {path}: {source}")]
    Metadata {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A metadata file exists but does not parse.
    #[error("metadata file {path} is corrupt: {reason}")]
    CorruptMetadata {
        /// The file involved.
        path: std::path::PathBuf,
        /// Why it does not parse.
        reason: String,
    },
    /// The broker is shutting down.
    #[error("broker is shutting down")]
    ShuttingDown,
}
