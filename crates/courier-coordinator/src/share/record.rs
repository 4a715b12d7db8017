//! The durable form of share-group state, and its bytes in the share-group state log.
//!
//! What must survive a broker SIGKILL is, for each share-partition, where it starts (SPSO) and
//! the delivery state and delivery count of every in-flight offset: a [`ShareSnapshot`]. An
//! acquisition lock is not durable: an acquired record is written as available with the
//! delivery count it already has, so after a restart it is delivered again and its count says
//! so. A deleted group is a [`ShareRecord::DeleteGroup`] tombstone; replaying the log in order,
//! it removes every snapshot of the group written before it.
//!
//! Each record is a (key, value) pair:
//! - key: a kind byte (0 snapshot, 1 group tombstone), then the group, and for a snapshot the
//!   topic and the partition (i32). Strings are a u16 length and UTF-8.
//! - value of a snapshot: a version byte (0), state epoch (i32), start offset (i64), batch
//!   count (u32), then per batch first offset (i64), last offset (i64), delivery state (u8,
//!   Kafka's codes: 0 available, 2 acknowledged, 4 archived) and delivery count (u16). The
//!   value of a tombstone is empty.
//!
//! All integers are big-endian. Decoding never panics: truncated, trailing, out-of-order or
//! unknown bytes are [`CoordinatorError::CorruptShareState`].

use crate::error::CoordinatorError;

const KIND_SNAPSHOT: u8 = 0;
const KIND_DELETE_GROUP: u8 = 1;
const SNAPSHOT_VERSION: u8 = 0;
/// Bytes of one encoded batch: two offsets, a state and a count.
const BATCH_BYTES: usize = 8 + 8 + 1 + 2;

/// The durable delivery state of an in-flight offset (Kafka's `RecordState` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// May be acquired; also how an acquired record is persisted.
    Available,
    /// Accepted by a consumer: settled.
    Acknowledged,
    /// Rejected, past the delivery limit, or not a record (a gap): settled, never delivered.
    Archived,
}

impl DeliveryState {
    /// Kafka's code for the state.
    pub fn code(self) -> u8 {
        match self {
            DeliveryState::Available => 0,
            DeliveryState::Acknowledged => 2,
            DeliveryState::Archived => 4,
        }
    }

    /// The state with that code; acquired (1) is never persisted, so it is not one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DeliveryState::Available),
            2 => Some(DeliveryState::Acknowledged),
            4 => Some(DeliveryState::Archived),
            _ => None,
        }
    }
}

/// A run of in-flight offsets with one durable state and delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBatch {
    /// First offset of the run.
    pub first_offset: i64,
    /// Last offset of the run (inclusive).
    pub last_offset: i64,
    /// Its durable state.
    pub delivery_state: DeliveryState,
    /// How many times its offsets have been delivered.
    pub delivery_count: u16,
}

/// The whole durable state of one share-partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSnapshot {
    /// The share group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Moves when the share-partition's start is set anew (AlterShareGroupOffsets), so that a
    /// reader can tell a reset from progress.
    pub state_epoch: i32,
    /// SPSO: every offset below it is settled.
    pub start_offset: i64,
    /// The in-flight offsets from SPSO up, in order, not overlapping. Offsets between batches
    /// are available with delivery count 0; SPEO is the last batch's last offset + 1.
    pub batches: Vec<StateBatch>,
}

impl ShareSnapshot {
    /// SPEO: the offset after the last in-flight one, or SPSO when nothing is in flight.
    pub fn end_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start_offset, |b| b.last_offset + 1)
    }

    /// Checks what decoding and rebuilding rely on: a non-negative SPSO and batches at or above
    /// it, each non-empty, in order and not overlapping.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        if self.start_offset < 0 {
            return Err(CoordinatorError::CorruptShareState("negative start offset"));
        }
        let mut next = self.start_offset;
        for b in &self.batches {
            if b.first_offset < next {
                return Err(CoordinatorError::CorruptShareState(
                    "batch below the start offset or overlapping the previous one",
                ));
            }
            if b.last_offset < b.first_offset || b.last_offset == i64::MAX {
                return Err(CoordinatorError::CorruptShareState(
                    "batch offsets out of range",
                ));
            }
            next = b.last_offset + 1;
        }
        Ok(())
    }
}

/// A change to the share-group state log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareRecord {
    /// The share-partition's whole state now; the newest one for its key wins.
    Snapshot(ShareSnapshot),
    /// The group was deleted: forget every share-partition of it written before this record.
    DeleteGroup {
        /// The group.
        group: String,
    },
}

/// Appends a string as a u16 length and its bytes, cut at a character boundary if it is
/// longer than a u16 can say (group ids and topic names are far shorter in practice).
fn write_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Reads fields from the front of a byte slice, failing instead of panicking when short.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CoordinatorError> {
        if self.rest.len() < n {
            return Err(CoordinatorError::CorruptShareState(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CoordinatorError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CoordinatorError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CoordinatorError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, CoordinatorError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CoordinatorError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, CoordinatorError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, CoordinatorError> {
        let len = usize::from(self.u16(what)?);
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CoordinatorError::CorruptShareState(what))
    }

    fn finish(&self) -> Result<(), CoordinatorError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CoordinatorError::CorruptShareState("trailing bytes"))
        }
    }
}

impl ShareRecord {
    /// (key, value) bytes.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut key = Vec::new();
        match self {
            ShareRecord::Snapshot(s) => {
                key.push(KIND_SNAPSHOT);
                write_str(&mut key, &s.group);
                write_str(&mut key, &s.topic);
                key.extend_from_slice(&s.partition.to_be_bytes());
                let mut value = Vec::with_capacity(1 + 4 + 8 + 4 + s.batches.len() * BATCH_BYTES);
                value.push(SNAPSHOT_VERSION);
                value.extend_from_slice(&s.state_epoch.to_be_bytes());
                value.extend_from_slice(&s.start_offset.to_be_bytes());
                value.extend_from_slice(&(s.batches.len() as u32).to_be_bytes());
                for b in &s.batches {
                    value.extend_from_slice(&b.first_offset.to_be_bytes());
                    value.extend_from_slice(&b.last_offset.to_be_bytes());
                    value.push(b.delivery_state.code());
                    value.extend_from_slice(&b.delivery_count.to_be_bytes());
                }
                (key, value)
            }
            ShareRecord::DeleteGroup { group } => {
                key.push(KIND_DELETE_GROUP);
                write_str(&mut key, group);
                (key, Vec::new())
            }
        }
    }

    /// Parses what [`ShareRecord::encode`] wrote; anything else is an error, never a panic.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, CoordinatorError> {
        let mut k = Reader { rest: key };
        match k.u8("empty key")? {
            KIND_SNAPSHOT => {
                let group = k.string("group")?;
                let topic = k.string("topic")?;
                let partition = k.i32("partition")?;
                k.finish()?;
                let mut v = Reader { rest: value };
                if v.u8("empty snapshot value")? != SNAPSHOT_VERSION {
                    return Err(CoordinatorError::CorruptShareState(
                        "unknown snapshot version",
                    ));
                }
                let state_epoch = v.i32("state epoch")?;
                let start_offset = v.i64("start offset")?;
                let count = v.u32("batch count")? as usize;
                if count > v.rest.len() / BATCH_BYTES {
                    return Err(CoordinatorError::CorruptShareState(
                        "batch count exceeds the record",
                    ));
                }
                let mut batches = Vec::with_capacity(count);
                for _ in 0..count {
                    let first_offset = v.i64("batch first offset")?;
                    let last_offset = v.i64("batch last offset")?;
                    let delivery_state = DeliveryState::from_code(v.u8("delivery state")?).ok_or(
                        CoordinatorError::CorruptShareState("unknown delivery state"),
                    )?;
                    let delivery_count = v.u16("delivery count")?;
                    batches.push(StateBatch {
                        first_offset,
                        last_offset,
                        delivery_state,
                        delivery_count,
                    });
                }
                v.finish()?;
                let snapshot = ShareSnapshot {
                    group,
                    topic,
                    partition,
                    state_epoch,
                    start_offset,
                    batches,
                };
                snapshot.validate()?;
                Ok(ShareRecord::Snapshot(snapshot))
            }
            KIND_DELETE_GROUP => {
                let group = k.string("group")?;
                k.finish()?;
                if !value.is_empty() {
                    return Err(CoordinatorError::CorruptShareState(
                        "group tombstone with a value",
                    ));
                }
                Ok(ShareRecord::DeleteGroup { group })
            }
            _ => Err(CoordinatorError::CorruptShareState("unknown record kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = DeliveryState> {
        prop_oneof![
            Just(DeliveryState::Available),
            Just(DeliveryState::Acknowledged),
            Just(DeliveryState::Archived),
        ]
    }

    /// Valid snapshots: batches built from (gap, length) steps above a start offset.
    fn snapshot() -> impl Strategy<Value = ShareSnapshot> {
        (
            ".{0,30}",
            "[a-z._-]{1,40}",
            any::<i32>(),
            any::<i32>(),
            0i64..1 << 50,
            proptest::collection::vec((0i64..5, 1i64..1000, state(), any::<u16>()), 0..20),
        )
            .prop_map(
                |(group, topic, partition, state_epoch, start_offset, steps)| {
                    let mut s = ShareSnapshot {
                        group,
                        topic,
                        partition,
                        state_epoch,
                        start_offset,
                        batches: Vec::new(),
                    };
                    for (gap, len, delivery_state, delivery_count) in steps {
                        let first_offset = s.end_offset() + gap;
                        s.batches.push(StateBatch {
                            first_offset,
                            last_offset: first_offset + len - 1,
                            delivery_state,
                            delivery_count,
                        });
                    }
                    s
                },
            )
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(s in snapshot()) {
            let r = ShareRecord::Snapshot(s);
            let (k, v) = r.encode();
            prop_assert_eq!(ShareRecord::decode(&k, &v), Ok(r));
        }

        #[test]
        fn tombstones_round_trip(group in ".{0,60}") {
            let r = ShareRecord::DeleteGroup { group };
            let (k, v) = r.encode();
            prop_assert_eq!(ShareRecord::decode(&k, &v), Ok(r));
        }

        #[test]
        fn garbage_never_panics(k in proptest::collection::vec(any::<u8>(), 0..64),
                                v in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ShareRecord::decode(&k, &v);
        }

        #[test]
        fn every_truncation_is_an_error(s in snapshot(), cut in any::<prop::sample::Index>()) {
            let (k, v) = ShareRecord::Snapshot(s).encode();
            let at = cut.index(v.len());
            prop_assert!(ShareRecord::decode(&k, &v[..at]).is_err());
            let at = cut.index(k.len());
            prop_assert!(ShareRecord::decode(&k[..at], &v).is_err());
        }
    }

    fn one_batch(first_offset: i64, last_offset: i64) -> ShareSnapshot {
        ShareSnapshot {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            state_epoch: 0,
            start_offset: 10,
            batches: vec![StateBatch {
                first_offset,
                last_offset,
                delivery_state: DeliveryState::Available,
                delivery_count: 1,
            }],
        }
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        for (first, last, why) in [
            (
                5,
                12,
                "batch below the start offset or overlapping the previous one",
            ),
            (12, 11, "batch offsets out of range"),
            (12, i64::MAX, "batch offsets out of range"),
        ] {
            let (k, v) = ShareRecord::Snapshot(one_batch(first, last)).encode();
            assert_eq!(
                ShareRecord::decode(&k, &v),
                Err(CoordinatorError::CorruptShareState(why))
            );
        }
    }

    #[test]
    fn unknown_versions_states_and_trailing_bytes_are_refused() {
        let (k, v) = ShareRecord::Snapshot(one_batch(10, 12)).encode();
        let mut newer = v.clone();
        newer[0] = 1;
        assert_eq!(
            ShareRecord::decode(&k, &newer),
            Err(CoordinatorError::CorruptShareState(
                "unknown snapshot version"
            ))
        );
        let mut acquired = v.clone();
        let state_at = 1 + 4 + 8 + 4 + 16;
        acquired[state_at] = 1;
        assert_eq!(
            ShareRecord::decode(&k, &acquired),
            Err(CoordinatorError::CorruptShareState(
                "unknown delivery state"
            ))
        );
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(
            ShareRecord::decode(&k, &longer),
            Err(CoordinatorError::CorruptShareState("trailing bytes"))
        );
        let mut huge_count = v;
        huge_count[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            ShareRecord::decode(&k, &huge_count),
            Err(CoordinatorError::CorruptShareState(
                "batch count exceeds the record"
            ))
        );
        let (tk, _) = ShareRecord::DeleteGroup { group: "g".into() }.encode();
        assert_eq!(
            ShareRecord::decode(&tk, &[0]),
            Err(CoordinatorError::CorruptShareState(
                "group tombstone with a value"
            ))
        );
        assert_eq!(
            ShareRecord::decode(&[9], &[]),
            Err(CoordinatorError::CorruptShareState("unknown record kind"))
        );
    }

    #[test]
    fn encoding_is_pinned() {
        let (k, v) = ShareRecord::Snapshot(one_batch(10, 12)).encode();
        assert_eq!(k, [0, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0]);
        assert_eq!(
            v,
            [
                0, // version
                0, 0, 0, 0, // state epoch
                0, 0, 0, 0, 0, 0, 0, 10, // start offset
                0, 0, 0, 1, // one batch
                0, 0, 0, 0, 0, 0, 0, 10, // first offset
                0, 0, 0, 0, 0, 0, 0, 12, // last offset
                0,  // available
                0, 1, // delivery count
            ]
        );
    }
}
