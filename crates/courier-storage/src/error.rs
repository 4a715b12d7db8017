//! The crate's single error type.
//!
//! The variants are split so the server can map each to exactly one Kafka error code:
//! problems with what a producer sent (`CorruptMessage`, `MessageTooLarge`, `InvalidRecord`),
//! a fetch or list request outside the log (`OffsetOutOfRange`), an idempotent producer whose
//! batch does not follow its state (`UnknownProducerId`, `InvalidProducerEpoch`,
//! `OutOfOrderSequence`), and problems with the disk (`Io`, `CorruptSegment`,
//! `CorruptCheckpoint`, `CorruptProducerSnapshot`, `Poisoned`), which all become
//! `KAFKA_STORAGE_ERROR`.

use std::path::PathBuf;

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch sent by a producer is damaged: bad CRC, bad magic, lengths that are truncated or
    /// inconsistent, or records that do not parse. Maps to `CORRUPT_MESSAGE`.
    #[error("corrupt message: {0}")]
    CorruptMessage(String),

    /// A batch is larger than `max.message.bytes`. Maps to `MESSAGE_TOO_LARGE`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// Size of the offending batch in bytes, header included.
        size: usize,
        /// The configured limit.
        max: u32,
    },

    /// A batch is well formed but not acceptable: no records, a record count that does not
    /// match the records, a control batch from a client. Maps to `INVALID_RECORD`.
    #[error("invalid record: {0}")]
    InvalidRecord(String),

    /// A read or list request names an offset outside `[log_start_offset, log_end_offset]`.
    /// Maps to `OFFSET_OUT_OF_RANGE`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: u64,
        /// The log start offset at the time of the request.
        log_start_offset: u64,
        /// The log end offset at the time of the request.
        log_end_offset: u64,
    },

    /// An idempotent producer this partition has no state for sent a batch whose base sequence
    /// is not 0 (its state expired, or its earlier batches were deleted). Maps to
    /// A non-transactional batch from a producer whose transaction is open (INVALID_TXN_STATE).
    #[error("producer {producer_id} has an open transaction; its batches must be transactional")]
    InvalidTxnState {
        /// The producer.
        producer_id: i64,
    },
    /// `UNKNOWN_PRODUCER_ID`; the client resets its sequence numbers (or bumps its epoch).
    #[error(
        "unknown producer id {producer_id}: first batch has base sequence {base_sequence}, not 0"
    )]
    UnknownProducerId {
        /// The producer id from the batch header.
        producer_id: i64,
        /// The batch's base sequence.
        base_sequence: i32,
    },

    /// A batch carries an older epoch than this partition has seen for its producer id: a
    /// zombie producer that has been fenced. Maps to `INVALID_PRODUCER_EPOCH` (fatal for it).
    #[error(
        "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        /// The producer id from the batch header.
        producer_id: i64,
        /// The epoch in the batch.
        epoch: i16,
        /// The newest epoch this partition has seen for the producer.
        current_epoch: i16,
    },

    /// A batch's base sequence is not the one expected after the producer's last batch (a gap,
    /// a retry older than the cached batches, or a new epoch not starting at 0). Maps to
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    #[error("producer {producer_id}: out of order sequence, expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The producer id from the batch header.
        producer_id: i64,
        /// The base sequence that would have been in order.
        expected: i32,
        /// The base sequence the batch carries.
        got: i32,
    },

    /// A system call failed. Maps to `KAFKA_STORAGE_ERROR`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"open"`, `"pwritev"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error reported by the OS.
        #[source]
        source: std::io::Error,
    },

    /// Data already in a segment file does not parse (seen when reading, after recovery).
    #[error("corrupt segment {path} at position {position}: {reason}")]
    CorruptSegment {
        /// The `.log` file.
        path: PathBuf,
        /// Byte position of the damaged batch in the file.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint file (the log start offset) exists but cannot be parsed. The log refuses to
    /// open rather than guess, since guessing could expose deleted records again.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A producer-state snapshot does not decode (bad version, CRC, lengths or values). Never
    /// fatal: the log logs it, ignores the file and rebuilds the state from the log instead.
    #[error("corrupt producer state snapshot: {0}")]
    CorruptProducerSnapshot(String),

    /// The file system is full (ENOSPC, EDQUOT): the append was not written — the segment was
    /// cut back to where it was — and the log stays writable, so appends succeed again once
    /// there is room.
    #[error("no space left for {path}: the append was rolled back")]
    OutOfSpace {
        /// The segment file.
        path: PathBuf,
    },

    /// An earlier fsync or write failed, so what is on disk is unknown; the log refuses every
    /// further append and sync until it is reopened (and recovered).
    #[error("log in {path} is poisoned by an earlier I/O failure and refuses writes")]
    Poisoned {
        /// The partition directory.
        path: PathBuf,
    },
}

impl StorageError {
    /// Builds an [`StorageError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand used throughout the crate.
pub(crate) type Result<T> = std::result::Result<T, StorageError>;
