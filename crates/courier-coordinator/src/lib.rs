//! Coordinators as plain state machines: requests and the current time in, responses and the
//! records to persist out. No sockets, no disks, no clocks, no randomness; the broker crate
//! runs them, persists what they ask for and delivers what they answer.
//!
//! - [`group`]: the classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//!   LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//!   OffsetDelete), with generations, session and rebalance timeouts, static membership and
//!   protocol selection.
//! - [`consumer`]: the KIP-848 consumer protocol (ConsumerGroupHeartbeat) with server-side
//!   `uniform` and `range` assignors and revoke-before-assign reconciliation.
//! - [`txn`]: the transaction coordinator (InitProducerId with a transactional id,
//!   AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, timeouts, zombie fencing) and its log records.
//! - [`share`]: KIP-932 share groups: ShareGroupHeartbeat membership with the simple assignor,
//!   the share-partition state machine (acquisition locks, delivery counts, acknowledgements,
//!   SPSO/SPEO) and its durable snapshots.
//! - [`offset_record`]: the records the group coordinator asks to persist (committed offsets and
//!   their tombstones), and their byte encoding in the internal offsets log.

pub mod consumer;
pub mod error;
pub mod group;
pub mod offset_record;
pub mod share;
pub mod txn;

pub use error::CoordinatorError;
