//! [`ProducerStateManager`]: what a partition remembers about each idempotent producer, so
//! that a retried batch is recognised and not appended twice (Kafka's `ProducerStateManager`).
//!
//! A plain state machine: no I/O, and the clock is passed in. [`Log`](crate::Log) calls
//! [`ProducerStateManager::check`] on every idempotent batch before writing it and
//! [`ProducerStateManager::update`] after; the snapshot codec is in `producer_state/snapshot.rs`
//! and the snapshot files and log replay in `producer_snapshot.rs`.
//!
//! Kafka's rules, per producer id, for a data batch:
//! * an unknown producer must start at sequence 0 (else `UnknownProducerId`);
//! * an epoch older than the producer's is fenced (`InvalidProducerEpoch`);
//! * a newer epoch starts over at sequence 0 (else `OutOfOrderSequence`) and forgets the
//!   cached batches;
//! * in the same epoch, a batch whose first and last sequence equal one of the last
//!   [`MAX_CACHED_BATCHES`] batches is a duplicate: the original offsets are returned and
//!   nothing is written; any other batch must start right after the last one's last sequence
//!   (wrapping from `i32::MAX` to 0), else `OutOfOrderSequence`.
//!
//! Control batches (transaction markers, written only by the broker's coordinators) carry a
//! producer id and epoch but sequence -1: they are not sequence-checked, but a marker with an
//! epoch older than the producer's is fenced (`InvalidProducerEpoch`): it comes from a zombie
//! coordinator request. A marker moves the producer to a newer epoch and refreshes its
//! timestamp.
//!
//! Transactions (KIP-98): a transactional data batch of a producer with no ongoing transaction
//! starts one at the batch's base offset ([`ProducerEntry::current_txn_first_offset`]); the
//! producer's next marker ([`ProducerStateManager::end_transaction`]) ends it. The ongoing
//! transactions are also kept ordered by first offset, so the first unstable offset (and with
//! it the last stable offset) is an `O(log n)` lookup. A producer with an ongoing transaction
//! never expires.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::control::ControlRecordType;
use crate::error::{Result, StorageError};

mod snapshot;

/// Batches remembered per producer for duplicate detection: a producer has at most this many
/// requests in flight per connection (`max.in.flight.requests.per.connection` <= 5 with
/// idempotence), so a retry is always of one of these.
pub const MAX_CACHED_BATCHES: usize = 5;

/// Kafka's default `producer.id.expiration.ms`: a producer idle this long is forgotten.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// One appended batch of an idempotent producer, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the batch's first record.
    pub first_seq: i32,
    /// Sequence number of its last record (`first_seq + last_offset_delta`, wrapping to 0).
    pub last_seq: i32,
    /// Offset the log assigned to its first record.
    pub first_offset: u64,
    /// Offset the log assigned to its last record.
    pub last_offset: u64,
    /// The batch's `max_timestamp`.
    pub max_timestamp: i64,
}

/// What a partition knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The newest epoch seen; batches with an older one are fenced.
    pub epoch: i16,
    /// The last [`MAX_CACHED_BATCHES`] data batches of this epoch, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// When the producer last appended (the broker's clock at append, or at recovery for
    /// batches replayed from the log); drives expiry.
    pub last_timestamp_ms: i64,
    /// Offset of the first batch of the producer's ongoing transaction; `None` when it has
    /// none. Set by a transactional data batch, cleared by a marker.
    pub current_txn_first_offset: Option<u64>,
}

impl ProducerEntry {
    /// The sequence the next data batch of this epoch must start with.
    pub fn next_sequence(&self) -> i32 {
        self.batches
            .back()
            .map_or(0, |batch| increment_sequence(batch.last_seq, 1))
    }
}

/// The verdict of [`ProducerStateManager::check`] on a batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// `producer_id < 0`: not an idempotent producer, nothing to check or record.
    NotIdempotent,
    /// In order (or a control batch): append it, then call [`ProducerStateManager::update`].
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate {
        /// Offset the original batch's first record got.
        base_offset: u64,
        /// Offset the original batch's last record got.
        last_offset: u64,
        /// The original batch's `max_timestamp`.
        max_timestamp: i64,
    },
}

/// A transaction ended by a marker, as [`ProducerStateManager::end_transaction`] reports it
/// (Kafka's `CompletedTxn`, plus the LSO right after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    /// The producer whose transaction ended.
    pub producer_id: i64,
    /// Its first offset; the marker's own offset if the producer had no ongoing transaction
    /// (as Kafka does, e.g. for an abort of a transaction that wrote nothing here).
    pub first_offset: u64,
    /// The marker's offset.
    pub last_offset: u64,
    /// Whether the marker was an ABORT.
    pub aborted: bool,
    /// The first offset of the earliest transaction still ongoing after this one ended, or
    /// `last_offset + 1` if none is: the last stable offset right after the marker.
    pub last_stable_offset: u64,
}

/// The producer state of one partition: producer id to [`ProducerEntry`].
///
/// Grows by one entry per idempotent producer that writes to the partition; entries go when
/// [`ProducerStateManager::expire`] finds them idle past `producer.id.expiration.ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    /// Every producer id with state, whatever its age; expiry removes them.
    producers: HashMap<i64, ProducerEntry>,
    /// `(first_offset, producer_id)` of every ongoing transaction: the same facts as the
    /// entries' `current_txn_first_offset`, ordered so the earliest is found in `O(log n)`.
    ongoing: BTreeSet<(u64, i64)>,
}

/// `sequence + increment` with Kafka's wrap-around: past `i32::MAX` the sequence continues at
/// 0 (`DefaultRecordBatch.incrementSequence`). Meant for a non-negative `increment`; any other
/// input gives some value rather than a panic.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    let max = i64::from(i32::MAX);
    if sum > max {
        (sum - max - 1) as i32
    } else {
        sum as i32
    }
}

/// The last sequence of a data batch: `base_sequence + last_offset_delta`, wrapping.
fn last_sequence(header: &BatchHeader) -> i32 {
    increment_sequence(header.base_sequence, header.last_offset_delta.max(0))
}

impl ProducerStateManager {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides whether the batch `header` may be appended, following Kafka's rules (see the
    /// module docs). Does not change anything; call [`ProducerStateManager::update`] once the
    /// batch is written.
    pub fn check(&self, header: &BatchHeader) -> Result<ProducerCheck> {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return Ok(ProducerCheck::NotIdempotent);
        }
        if header.is_control() {
            return match self.producers.get(&producer_id) {
                Some(entry) if header.producer_epoch < entry.epoch => {
                    Err(StorageError::InvalidProducerEpoch {
                        producer_id,
                        epoch: header.producer_epoch,
                        current_epoch: entry.epoch,
                    })
                }
                _ => Ok(ProducerCheck::Append),
            };
        }
        let first_seq = header.base_sequence;
        let Some(entry) = self.producers.get(&producer_id) else {
            if first_seq != 0 {
                return Err(StorageError::UnknownProducerId {
                    producer_id,
                    base_sequence: first_seq,
                });
            }
            return Ok(ProducerCheck::Append);
        };
        let out_of_order = |expected: i32| StorageError::OutOfOrderSequence {
            producer_id,
            expected,
            got: first_seq,
        };
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(ProducerCheck::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        let last_seq = last_sequence(header);
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(ProducerCheck::Duplicate {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                max_timestamp: original.max_timestamp,
            });
        }
        let expected = entry.next_sequence();
        if first_seq != expected {
            return Err(out_of_order(expected));
        }
        if entry.current_txn_first_offset.is_some() && !header.is_transactional() {
            // Kafka's rule: a producer inside a transaction writes only transactional batches.
            return Err(StorageError::InvalidTxnState { producer_id });
        }
        Ok(ProducerCheck::Append)
    }

    /// Records that the data batch `header` was appended at `base_offset..=last_offset` at
    /// `now_ms`. A newer epoch replaces the producer's epoch and forgets its cached batches;
    /// the batch joins the cache (the oldest of more than [`MAX_CACHED_BATCHES`] leaves); a
    /// transactional batch of a producer with no ongoing transaction starts one at
    /// `base_offset`. A batch with an older epoch than the entry's (possible only when
    /// replaying an inconsistent log) changes nothing, and a non-idempotent batch is ignored.
    /// Control batches are not handled here (they are ignored): their type is in the record,
    /// see [`ProducerStateManager::end_transaction`].
    pub fn update(
        &mut self,
        header: &BatchHeader,
        base_offset: u64,
        last_offset: u64,
        now_ms: i64,
    ) {
        if header.is_control() {
            return;
        }
        let Some(entry) = self.entry_for_append(header, now_ms) else {
            return;
        };
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(base_offset);
            self.ongoing.insert((base_offset, header.producer_id));
        }
        let Some(entry) = self.producers.get_mut(&header.producer_id) else {
            return;
        };
        if entry.batches.len() >= MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            first_offset: base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
        });
    }

    /// Records that the marker `header` of type `marker` was appended at `offset` at
    /// `now_ms`: moves the producer to the marker's epoch if newer, refreshes its timestamp
    /// and ends its ongoing transaction. Returns the completed transaction, or `None` if the
    /// marker changes nothing (no producer id, or an epoch older than the producer's, which
    /// [`ProducerStateManager::check`] fences and only an inconsistent log can replay).
    pub fn end_transaction(
        &mut self,
        header: &BatchHeader,
        offset: u64,
        marker: ControlRecordType,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let producer_id = header.producer_id;
        let entry = self.entry_for_append(header, now_ms)?;
        let first_offset = entry.current_txn_first_offset.take();
        if let Some(first) = first_offset {
            self.ongoing.remove(&(first, producer_id));
        }
        Some(CompletedTxn {
            producer_id,
            first_offset: first_offset.unwrap_or(offset),
            last_offset: offset,
            aborted: marker == ControlRecordType::Abort,
            last_stable_offset: self
                .first_unstable_offset()
                .unwrap_or(offset.saturating_add(1)),
        })
    }

    /// The entry a batch of `header` appended at `now_ms` updates: created if new, moved to a
    /// newer epoch (forgetting its cached batches), its timestamp refreshed. `None` for no
    /// producer id or an older epoch.
    fn entry_for_append(
        &mut self,
        header: &BatchHeader,
        now_ms: i64,
    ) -> Option<&mut ProducerEntry> {
        if header.producer_id < 0 {
            return None;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(MAX_CACHED_BATCHES),
                last_timestamp_ms: now_ms,
                current_txn_first_offset: None,
            });
        if header.producer_epoch < entry.epoch {
            return None;
        }
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(now_ms);
        Some(entry)
    }

    /// The first offset of the earliest ongoing transaction, if any (Kafka's
    /// `firstUnstableOffset`). `O(log n)`.
    pub fn first_unstable_offset(&self) -> Option<u64> {
        self.ongoing.first().map(|(offset, _)| *offset)
    }

    /// `(producer_id, epoch, first_offset)` of every ongoing transaction, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i16, u64)> {
        self.ongoing
            .iter()
            .map(|&(first, producer_id)| {
                let epoch = self.producers.get(&producer_id).map_or(-1, |e| e.epoch);
                (producer_id, epoch, first)
            })
            .collect()
    }

    /// Forgets every producer that has not appended for `expiration_ms` or longer at `now_ms`
    /// (`producer.id.expiration.ms`, as Kafka: `now - last >= expiration`) and has no ongoing
    /// transaction. Returns how many were removed. A negative `expiration_ms` expires nothing.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if expiration_ms < 0 {
            return 0;
        }
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The state of `producer_id`, if any.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Number of producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer has state.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every producer id and its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }
}

#[cfg(test)]
mod tests;
