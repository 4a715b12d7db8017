//! Share groups (KIP-932, "queues for Kafka") as plain state machines: the members of a share
//! group consume the same partitions together, and the broker hands out records one at a time
//! under a lock instead of tracking one committed offset per partition.
//!
//! # The model, in KIP-932's words
//!
//! - A **share group** is joined with ShareGroupHeartbeat ([`membership`]). The simple assignor
//!   gives every member every partition of every topic it subscribes to: partitions are
//!   shared, so there is nothing to revoke and no reconciliation, only epochs that say when the
//!   assignment changed.
//! - A **share-partition** is one topic-partition as seen by one share group
//!   ([`partition::SharePartition`]). Its **share-partition start offset (SPSO)** is the
//!   first offset not yet settled; its **share-partition end offset (SPEO)** is where the
//!   **in-flight** window ends: every offset in `[SPSO, SPEO)` has a state, every offset at or
//!   above SPEO has not been handed out yet, every offset below SPSO is settled.
//! - ShareFetch **acquires** records for a member: each acquired offset is locked to that member
//!   until its **acquisition lock** deadline (`group.share.record.lock.duration.ms`) and its
//!   **delivery count** goes up by one.
//! - ShareAcknowledge (or the acknowledgements piggy-backed on ShareFetch) settles them: ACCEPT
//!   makes a record **acknowledged**, RELEASE makes it **available** again, REJECT
//!   **archives** it, RENEW (KIP-1222) extends its lock; a gap acknowledgement marks an offset
//!   that holds no record. A lock that runs out, or a member that leaves, makes its records
//!   available again; a record whose delivery count has reached
//!   `group.share.delivery.count.limit` is archived instead, and every record archived by a
//!   rejection or by that limit is reported as an [`delivery::ArchiveEvent`] so that the
//!   broker can copy it to a dead-letter topic.
//! - SPSO moves over the contiguous prefix of acknowledged and archived offsets; nothing is
//!   kept for offsets below it.
//! - What survives a restart is [`record::ShareRecord`]: a snapshot of each share-partition
//!   (SPSO and the in-flight batches with their delivery counts; acquired records are written
//!   as available, since locks do not survive) and a tombstone for a deleted group.
//!
//! # Who does what
//!
//! Nothing here does I/O, reads a clock or draws a random number: the time (`now_ms`), new
//! member ids, topic metadata and high watermarks are passed in. Calls that change a
//! share-partition's durable state return the [`record::ShareRecord`] to persist; the broker
//! appends and syncs it before answering the request that caused it, so an answer never
//! promises more than the disk holds.
//!
//! # Limits
//!
//! Every collection that grows with what clients send is bounded: groups
//! ([`DEFAULT_MAX_GROUPS`]), members per group ([`DEFAULT_MAX_SIZE`]), topics per
//! subscription ([`MAX_SUBSCRIBED_TOPICS`]), member id length ([`MAX_MEMBER_ID_BYTES`]),
//! in-flight offsets per share-partition ([`DEFAULT_PARTITION_MAX_RECORD_LOCKS`]).

pub mod delivery;
pub mod membership;
pub mod partition;
pub mod record;

#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod partition_invariants;
#[cfg(test)]
mod partition_tests;

pub use delivery::{
    AcknowledgeType, AcknowledgementBatch, AcquiredRecords, ArchiveEvent, ArchiveReason,
    ShareEffects, SharePartitionStats,
};
pub use membership::{
    ExpiredMember, ShareAssignment, ShareGroupConfig, ShareGroupState, ShareGroupView, ShareGroups,
    ShareHeartbeat, ShareHeartbeatResponse, ShareMemberView, TopicPartitionCounts,
};
pub use partition::{AutoOffsetReset, RecordState, SharePartition, SharePartitionConfig};
pub use record::{DeliveryState, ShareRecord, ShareSnapshot, StateBatch};

/// `group.share.session.timeout.ms`: a member that does not heartbeat for this long is removed.
pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 45_000;
/// `group.share.heartbeat.interval.ms`: how often members are told to heartbeat.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
/// `group.share.max.size`: members per share group.
pub const DEFAULT_MAX_SIZE: usize = 200;
/// `group.share.max.groups`: share groups on this broker, empty ones included (they still hold
/// share-partition state until DeleteShareGroups).
pub const DEFAULT_MAX_GROUPS: usize = 10;
/// `group.share.record.lock.duration.ms`: how long an acquired record stays locked to its member.
pub const DEFAULT_RECORD_LOCK_DURATION_MS: i64 = 30_000;
/// `group.share.delivery.count.limit`: deliveries after which a record that comes back is
/// archived instead of made available again.
pub const DEFAULT_DELIVERY_COUNT_LIMIT: u16 = 5;
/// `group.share.partition.max.record.locks`: the most offsets in flight (SPEO − SPSO) in one
/// share-partition; acquisition beyond SPEO stops at this bound until SPSO moves.
pub const DEFAULT_PARTITION_MAX_RECORD_LOCKS: usize = 2_000;
/// The most topics one member may subscribe to; more is INVALID_REQUEST.
pub const MAX_SUBSCRIBED_TOPICS: usize = 1_000;
/// The longest member id accepted, in bytes (KIP-1082 ids are 22-character UUIDs); longer is
/// INVALID_REQUEST.
pub const MAX_MEMBER_ID_BYTES: usize = 255;
