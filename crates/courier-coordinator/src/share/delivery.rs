//! What ShareFetch and ShareAcknowledge exchange with a share-partition: the acknowledgement
//! types and batches that come in, the acquired ranges, archive events and records to persist
//! that go out, and the counters describe shows.

use super::record::ShareRecord;

/// A ShareAcknowledge acknowledgement type (KIP-932, RENEW from KIP-1222).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcknowledgeType {
    /// 0: the offset holds no record (compacted away, a control record).
    Gap,
    /// 1: processed.
    Accept,
    /// 2: give it back for another delivery.
    Release,
    /// 3: unprocessable; never deliver it again.
    Reject,
    /// 4: still working on it; extend the lock.
    Renew,
}

impl AcknowledgeType {
    /// The type with that wire code.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(AcknowledgeType::Gap),
            1 => Some(AcknowledgeType::Accept),
            2 => Some(AcknowledgeType::Release),
            3 => Some(AcknowledgeType::Reject),
            4 => Some(AcknowledgeType::Renew),
            _ => None,
        }
    }

    /// Its wire code.
    pub fn code(self) -> i8 {
        match self {
            AcknowledgeType::Gap => 0,
            AcknowledgeType::Accept => 1,
            AcknowledgeType::Release => 2,
            AcknowledgeType::Reject => 3,
            AcknowledgeType::Renew => 4,
        }
    }
}

/// One AcknowledgementBatch as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgementBatch {
    /// First offset acknowledged.
    pub first_offset: i64,
    /// Last offset acknowledged (inclusive).
    pub last_offset: i64,
    /// One type for the whole range, or one per offset.
    pub acknowledge_types: Vec<AcknowledgeType>,
}

/// Offsets a member acquired, as ShareFetch's AcquiredRecords reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredRecords {
    /// First offset.
    pub first_offset: i64,
    /// Last offset (inclusive).
    pub last_offset: i64,
    /// This delivery's count: 1 the first time.
    pub delivery_count: u16,
}

/// Why a record was archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReason {
    /// A consumer rejected it.
    Rejected,
    /// It came back (released, lock ended, member gone) after its last allowed delivery.
    DeliveryLimit,
}

/// A record archived by a rejection or the delivery limit: the broker may copy it to a
/// dead-letter topic. Gaps are not records and produce none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEvent {
    /// The share group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// How many times it was delivered.
    pub delivery_count: u16,
    /// Why it was archived.
    pub reason: ArchiveReason,
}

/// What a call did besides changing the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareEffects {
    /// Offsets acquired by this call (only
    /// [`SharePartition::acquire`](super::partition::SharePartition::acquire) acquires).
    pub acquired: Vec<AcquiredRecords>,
    /// Records archived by a rejection or the delivery limit, one per offset.
    pub archived: Vec<ArchiveEvent>,
    /// Records to persist and sync before answering; empty when nothing durable changed.
    pub records: Vec<ShareRecord>,
}

/// Counters for describe and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharePartitionStats {
    /// SPSO.
    pub start_offset: i64,
    /// SPEO.
    pub end_offset: i64,
    /// Offsets locked to a member now.
    pub acquired: i64,
    /// Offsets in the window waiting for (re)delivery.
    pub available: i64,
    /// Records accepted since this share-partition was loaded.
    pub acknowledged_total: u64,
    /// Records archived (rejected or past the delivery limit) since it was loaded.
    pub archived_total: u64,
    /// High watermark − SPSO: offsets not yet settled, in flight or not yet fetched.
    pub lag: i64,
}
