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
//! producer id and epoch but sequence -1: they are not sequence-checked; they only move the
//! producer to a newer epoch and refresh its timestamp.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
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

/// The producer state of one partition: producer id to [`ProducerEntry`].
///
/// Grows by one entry per idempotent producer that writes to the partition; entries go when
/// [`ProducerStateManager::expire`] finds them idle past `producer.id.expiration.ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    /// Every producer id with state, whatever its age; expiry removes them.
    producers: HashMap<i64, ProducerEntry>,
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
            return Ok(ProducerCheck::Append);
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
        Ok(ProducerCheck::Append)
    }

    /// Records that the batch `header` was appended at `base_offset..=last_offset` at
    /// `now_ms`. A newer epoch replaces the producer's epoch and forgets its cached batches;
    /// a data batch joins the cache (the oldest of more than [`MAX_CACHED_BATCHES`] leaves);
    /// a control batch only moves the epoch and the timestamp. A batch with an older epoch
    /// than the entry's (possible only when replaying an inconsistent log) changes nothing,
    /// and a non-idempotent batch is ignored.
    pub fn update(
        &mut self,
        header: &BatchHeader,
        base_offset: u64,
        last_offset: u64,
        now_ms: i64,
    ) {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(MAX_CACHED_BATCHES),
                last_timestamp_ms: now_ms,
            });
        if header.producer_epoch < entry.epoch {
            return;
        }
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(now_ms);
        if header.is_control() {
            return;
        }
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

    /// Forgets every producer that has not appended for `expiration_ms` or longer at `now_ms`
    /// (`producer.id.expiration.ms`, as Kafka: `now - last >= expiration`). Returns how many
    /// were removed. A negative `expiration_ms` expires nothing.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if expiration_ms < 0 {
            return 0;
        }
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms);
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
