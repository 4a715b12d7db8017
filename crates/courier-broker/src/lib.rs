//! The broker's state: topics, partitions and the machinery that makes appends durable.
//!
//! - [`broker::Broker`] is the root the server's handlers work on: the topic registry, the fetch
//!   session cache, the broker's configuration and the background tasks (retention).
//! - [`topics::TopicRegistry`] owns the topics, persists each topic's metadata (id, partition count,
//!   requested replication factor, config overrides) and creates, grows and deletes them.
//! - [`partition::Partition`] wraps one [`courier_storage::Log`] with the group-commit syncer:
//!   appends reach the OS at once, one fdatasync covers every append that arrived before it, and
//!   the high watermark is the offset up to which the log is fsynced.
//! - [`topic_config`] knows Kafka's topic config names, their defaults and their validation,
//!   and Courier's own `courier.ephemeral`.
//! - [`ephemeral::EphemeralStore`] owns the memory directory (tmpfs) where ephemeral topics'
//!   partitions live, and where they resume their offsets after a restart.
//! - [`fetch_session`] is the KIP-227 fetch session cache, a plain state machine.
//! - [`groups::GroupService`] runs the consumer-group coordinator (a state machine in
//!   `courier-coordinator`): it delivers its answers, drives its timers and keeps committed
//!   offsets in a durable internal log.
//! - [`shares::ShareService`] runs share groups (KIP-932, `courier_coordinator::share`): share
//!   sessions ([`share_session`]), per-group settings ([`share_config`]), the share-partitions'
//!   delivery state in the durable internal log `__share_group_state` ([`share_state_log`]),
//!   and dead letters ([`share_dlq`]).
//!
//! Nothing here touches sockets; the server crate turns Kafka requests into calls on these types.

pub mod broker;
pub mod config;
pub mod ephemeral;
pub mod error;
pub mod fetch_session;
pub mod groups;
pub mod internal_log;
pub mod partition;
pub mod producer_ids;
pub mod share_config;
pub mod share_dlq;
pub mod share_session;
pub mod share_state_log;
pub mod shares;
#[cfg(test)]
mod shares_tests;
pub mod topic_config;
pub mod topic_name;
pub mod topics;
pub mod transactions;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::BrokerError;
pub use partition::Partition;
pub use topics::Topic;

/// Milliseconds since the Unix epoch, the unit of every Kafka timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
