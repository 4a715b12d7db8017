//! The producer-state snapshot format: every [`ProducerEntry`] of a partition as of a log
//! offset, so that opening the log does not have to replay it from the start.
//!
//! Version 2, all integers big-endian:
//!
//! ```text
//! version             u16   2
//! crc                 u32   CRC32C of every byte after this field
//! offset              u64   every batch below this log offset is in the state
//! producer_count      u32
//! producer_count entries, in producer id order:
//!   producer_id         i64   >= 0, strictly increasing
//!   epoch               i16
//!   last_timestamp_ms   i64
//!   current_txn_first   i64   first offset of the ongoing transaction (< offset), -1 if none
//!   batch_count         u8    0..=5
//!   batch_count batches, oldest first:
//!     first_seq  i32 | last_seq  i32 | first_offset u64 | last_offset u64 | max_timestamp i64
//! ```
//!
//! Decoding checks the version, the CRC, every length against the bytes present, the value
//! ranges above and that nothing trails; it never panics and never allocates more than the
//! input can describe.
//!
//! Version 1 (written before transactions, without `current_txn_first`) is refused like any
//! unknown version: the log then ignores the file and replays its batch headers, which
//! rebuilds the same state plus the ongoing transactions. That costs one replay, once, after
//! an upgrade, and keeps a single decoder.

use std::collections::VecDeque;

use crate::error::{Result, StorageError};

use super::{BatchMetadata, ProducerEntry, ProducerStateManager, MAX_CACHED_BATCHES};

/// The only snapshot version written and read.
const SNAPSHOT_VERSION: u16 = 2;
/// Bytes before the CRC'd part: version and CRC.
const PREFIX_LEN: usize = 2 + 4;
/// Bytes of a whole snapshot with no producers.
const HEADER_LEN: usize = PREFIX_LEN + 8 + 4;
/// Bytes of an entry without its batches.
const ENTRY_LEN: usize = 8 + 2 + 8 + 8 + 1;
/// Bytes of one cached batch.
const BATCH_LEN: usize = 4 + 4 + 8 + 8 + 8;

impl ProducerStateManager {
    /// Encodes the whole state as a version-2 snapshot covering every batch below `offset`.
    pub fn encode_snapshot(&self, offset: u64) -> Vec<u8> {
        let mut entries: Vec<(i64, &ProducerEntry)> = self.iter().collect();
        entries.sort_unstable_by_key(|(id, _)| *id);
        let batches: usize = entries.iter().map(|(_, e)| e.batches.len()).sum();
        let mut out =
            Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY_LEN + batches * BATCH_LEN);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&offset.to_be_bytes());
        // The count of a map in memory always fits: a u32 of entries is 80 GB of state.
        out.extend_from_slice(
            &u32::try_from(entries.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for (producer_id, entry) in entries {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            let txn_first = entry
                .current_txn_first_offset
                .and_then(|o| i64::try_from(o).ok())
                .unwrap_or(-1);
            out.extend_from_slice(&txn_first.to_be_bytes());
            let cached = entry.batches.len().min(MAX_CACHED_BATCHES);
            out.push(cached as u8);
            for batch in entry.batches.iter().skip(entry.batches.len() - cached) {
                out.extend_from_slice(&batch.first_seq.to_be_bytes());
                out.extend_from_slice(&batch.last_seq.to_be_bytes());
                out.extend_from_slice(&batch.first_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
                out.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[PREFIX_LEN..]);
        out[2..PREFIX_LEN].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot written by [`ProducerStateManager::encode_snapshot`]; returns the
    /// offset it covers and the state. Any damage is a
    /// [`StorageError::CorruptProducerSnapshot`].
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, ProducerStateManager)> {
        let mut r = Reader { bytes, pos: 0 };
        let version = u16::from_be_bytes(r.array()?);
        if version != SNAPSHOT_VERSION {
            return Err(corrupt(format!("unknown version {version}")));
        }
        let crc = u32::from_be_bytes(r.array()?);
        let actual = crc32c::crc32c(&bytes[PREFIX_LEN..]);
        if crc != actual {
            return Err(corrupt(format!(
                "CRC32C mismatch: stored {crc:#010x}, computed {actual:#010x}"
            )));
        }
        let offset = u64::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?) as usize;
        if count > r.remaining() / ENTRY_LEN {
            return Err(corrupt(format!(
                "{count} producers cannot fit in {} bytes",
                r.remaining()
            )));
        }
        let mut state = ProducerStateManager::new();
        state.producers.reserve(count);
        let mut previous_id = -1i64;
        for _ in 0..count {
            let producer_id = i64::from_be_bytes(r.array()?);
            if producer_id <= previous_id {
                return Err(corrupt(format!(
                    "producer id {producer_id} is not above the previous {previous_id}"
                )));
            }
            previous_id = producer_id;
            let epoch = i16::from_be_bytes(r.array()?);
            let last_timestamp_ms = i64::from_be_bytes(r.array()?);
            let txn_first = i64::from_be_bytes(r.array()?);
            let current_txn_first_offset = match txn_first {
                -1 => None,
                first if first >= 0 && (first as u64) < offset => Some(first as u64),
                first => {
                    return Err(corrupt(format!(
                    "producer {producer_id} transaction first offset {first} is not below {offset}"
                )))
                }
            };
            let [batch_count] = r.array()?;
            if usize::from(batch_count) > MAX_CACHED_BATCHES {
                return Err(corrupt(format!(
                    "producer {producer_id} has {batch_count} cached batches, at most {MAX_CACHED_BATCHES} allowed"
                )));
            }
            let mut batches = VecDeque::with_capacity(MAX_CACHED_BATCHES);
            for _ in 0..batch_count {
                let batch = BatchMetadata {
                    first_seq: i32::from_be_bytes(r.array()?),
                    last_seq: i32::from_be_bytes(r.array()?),
                    first_offset: u64::from_be_bytes(r.array()?),
                    last_offset: u64::from_be_bytes(r.array()?),
                    max_timestamp: i64::from_be_bytes(r.array()?),
                };
                if batch.first_offset > batch.last_offset || batch.last_offset >= offset {
                    return Err(corrupt(format!(
                        "producer {producer_id} batch offsets {}..={} do not fit below {offset}",
                        batch.first_offset, batch.last_offset
                    )));
                }
                batches.push_back(batch);
            }
            if let Some(first) = current_txn_first_offset {
                state.ongoing.insert((first, producer_id));
            }
            state.producers.insert(
                producer_id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp_ms,
                    current_txn_first_offset,
                },
            );
        }
        if r.remaining() != 0 {
            return Err(corrupt(format!(
                "{} bytes after the last producer",
                r.remaining()
            )));
        }
        Ok((offset, state))
    }
}

/// A [`StorageError::CorruptProducerSnapshot`].
fn corrupt(reason: String) -> StorageError {
    StorageError::CorruptProducerSnapshot(reason)
}

/// Reads fixed-size fields off the front of a byte slice, failing at its end.
struct Reader<'a> {
    /// The whole snapshot.
    bytes: &'a [u8],
    /// Bytes consumed so far.
    pos: usize,
}

impl Reader<'_> {
    /// The next `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.saturating_add(N);
        let field = self.bytes.get(self.pos..end).ok_or_else(|| {
            corrupt(format!(
                "truncated: {N} bytes needed at {}, {} present",
                self.pos,
                self.bytes.len()
            ))
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(field);
        self.pos = end;
        Ok(out)
    }

    /// Bytes not yet consumed.
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ProducerStateManager {
        let mut state = ProducerStateManager::new();
        for (id, epoch, n) in [(7i64, 0i16, 0usize), (3, 2, 5), (1_000_000, i16::MAX, 2)] {
            let entry = ProducerEntry {
                epoch,
                batches: (0..n)
                    .map(|i| BatchMetadata {
                        first_seq: i as i32 * 10,
                        last_seq: i as i32 * 10 + 9,
                        first_offset: 100 + i as u64 * 10,
                        last_offset: 109 + i as u64 * 10,
                        max_timestamp: 5_000 + i as i64,
                    })
                    .collect(),
                last_timestamp_ms: 42 + id,
                current_txn_first_offset: (id == 3).then_some(95),
            };
            if let Some(first) = entry.current_txn_first_offset {
                state.ongoing.insert((first, id));
            }
            state.producers.insert(id, entry);
        }
        state
    }

    #[test]
    fn round_trips() {
        let state = sample();
        let bytes = state.encode_snapshot(500);
        let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
        assert_eq!(offset, 500);
        assert_eq!(decoded, state);
        assert_eq!(bytes.len(), HEADER_LEN + 3 * ENTRY_LEN + 7 * BATCH_LEN);
    }

    #[test]
    fn empty_state_round_trips() {
        let bytes = ProducerStateManager::new().encode_snapshot(0);
        assert_eq!(bytes.len(), HEADER_LEN);
        let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
        assert_eq!((offset, decoded.len()), (0, 0));
    }

    #[test]
    fn encoding_is_deterministic() {
        assert_eq!(
            sample().encode_snapshot(9),
            sample().clone().encode_snapshot(9)
        );
    }

    fn assert_corrupt(bytes: &[u8], needle: &str) {
        match ProducerStateManager::decode_snapshot(bytes) {
            Err(StorageError::CorruptProducerSnapshot(reason)) => {
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
            }
            other => panic!("expected corrupt snapshot ({needle}), got {other:?}"),
        }
    }

    /// Rewrites the CRC after a deliberate change, so the check under test is the one hit.
    fn fix_crc(mut bytes: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&bytes[PREFIX_LEN..]);
        bytes[2..PREFIX_LEN].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample().encode_snapshot(500);
        for cut in 0..bytes.len() {
            assert!(
                ProducerStateManager::decode_snapshot(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
            assert!(
                ProducerStateManager::decode_snapshot(&fix_crc_if_long(&bytes[..cut])).is_err()
            );
        }
    }

    fn fix_crc_if_long(bytes: &[u8]) -> Vec<u8> {
        if bytes.len() >= PREFIX_LEN {
            fix_crc(bytes.to_vec())
        } else {
            bytes.to_vec()
        }
    }

    #[test]
    fn flipped_bit_fails_the_crc() {
        let mut bytes = sample().encode_snapshot(500);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_corrupt(&bytes, "CRC32C");
    }

    #[test]
    fn rejects_unknown_version() {
        let mut bytes = sample().encode_snapshot(500);
        bytes[1] = 9;
        assert_corrupt(&bytes, "version 9");
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = sample().encode_snapshot(500);
        bytes.push(0);
        assert_corrupt(&fix_crc(bytes), "after the last producer");
    }

    #[test]
    fn rejects_huge_counts_without_allocating() {
        let mut bytes = ProducerStateManager::new().encode_snapshot(1);
        bytes[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_corrupt(&fix_crc(bytes), "cannot fit");
    }

    #[test]
    fn rejects_too_many_cached_batches() {
        let mut state = ProducerStateManager::new();
        state.producers.insert(
            1,
            ProducerEntry {
                epoch: 0,
                batches: VecDeque::new(),
                last_timestamp_ms: 0,
                current_txn_first_offset: None,
            },
        );
        let mut bytes = state.encode_snapshot(1);
        let at = HEADER_LEN + ENTRY_LEN - 1;
        bytes[at] = 6;
        bytes.extend_from_slice(&[0; 6 * BATCH_LEN]);
        assert_corrupt(&fix_crc(bytes), "6 cached batches");
    }

    #[test]
    fn rejects_unordered_producer_ids_and_bad_offsets() {
        let bytes = sample().encode_snapshot(500);
        // The first entry's producer id (3) raised to the second's (7).
        let mut dup = bytes.clone();
        dup[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&7i64.to_be_bytes());
        assert_corrupt(&fix_crc(dup), "not above");
        // Batches at offsets the snapshot claims not to cover.
        assert_corrupt(&fix_crc(sample().encode_snapshot(100)), "do not fit below");
        // A transaction starting at an offset the snapshot claims not to cover.
        let mut state = ProducerStateManager::new();
        state.producers.insert(
            1,
            ProducerEntry {
                epoch: 0,
                batches: VecDeque::new(),
                last_timestamp_ms: 0,
                current_txn_first_offset: Some(10),
            },
        );
        assert_corrupt(&state.encode_snapshot(10), "transaction first offset 10");
    }

    #[test]
    fn ongoing_transactions_round_trip() {
        let (_, decoded) =
            ProducerStateManager::decode_snapshot(&sample().encode_snapshot(500)).expect("decode");
        assert_eq!(decoded.first_unstable_offset(), Some(95));
        assert_eq!(decoded.ongoing_transactions(), vec![(3, 2, 95)]);
    }

    #[test]
    fn version_1_snapshots_are_refused_so_the_log_replays() {
        // A version-1 snapshot of one producer (id 4, epoch 1, no batches) covering offset 8.
        let mut v1 = vec![0u8, 1, 0, 0, 0, 0];
        v1.extend_from_slice(&8u64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&4i64.to_be_bytes());
        v1.extend_from_slice(&1i16.to_be_bytes());
        v1.extend_from_slice(&0i64.to_be_bytes());
        v1.push(0);
        assert_corrupt(&fix_crc(v1), "unknown version 1");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ProducerStateManager::decode_snapshot(&bytes);
            // With a valid CRC, the field checks are reached too.
            let _ = ProducerStateManager::decode_snapshot(&fix_crc_if_long(&bytes));
        }

        #[test]
        fn encoded_states_round_trip(
            entries in proptest::collection::btree_map(
                0i64..i64::MAX,
                (any::<i16>(), any::<i64>(), proptest::option::of(0u64..1_000),
                    proptest::collection::vec(
                    (any::<i32>(), any::<i32>(), 0u64..1_000, 0u64..1_000, any::<i64>()), 0..=5)),
                0..20),
        ) {
            let mut state = ProducerStateManager::new();
            for (id, (epoch, ts, txn_first, batches)) in entries {
                let batches = batches
                    .into_iter()
                    .map(|(first_seq, last_seq, a, b, max_timestamp)| BatchMetadata {
                        first_seq, last_seq, first_offset: a.min(b), last_offset: a.max(b), max_timestamp,
                    })
                    .collect();
                if let Some(first) = txn_first {
                    state.ongoing.insert((first, id));
                }
                state.producers.insert(id, ProducerEntry {
                    epoch, batches, last_timestamp_ms: ts, current_txn_first_offset: txn_first,
                });
            }
            let bytes = state.encode_snapshot(1_000);
            let (offset, decoded) = ProducerStateManager::decode_snapshot(&bytes).expect("decode");
            prop_assert_eq!(offset, 1_000);
            prop_assert_eq!(decoded, state);
        }
    }
}
