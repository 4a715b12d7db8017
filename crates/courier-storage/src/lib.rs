//! Courier's storage: the durable, per-partition log.
//!
//! A partition is a directory of segments. Each segment is a `<20-digit base offset>.log` of
//! Kafka v2 record batches stored exactly as the producer sent them (only the 8-byte
//! `base_offset` is rewritten; compressed batches are never recompressed), a sparse `.index`
//! (relative offset `u32` BE, file position `u32` BE) and a `.timeindex` (timestamp `i64` BE,
//! relative offset `u32` BE), one entry per `index.interval.bytes`, and a `.txnindex` of the
//! transactions aborted by markers in the segment (Kafka's 34-byte `AbortedTxn` entries; empty
//! when there are none). Nothing here touches a socket or reads a clock: the current time is
//! always passed in as `now_ms`.
//!
//! Modules, from the bytes up:
//! * [`batch`]: batch headers and validation of producer input (CRC32C, lengths, counts).
//! * `record`: records inside a batch, for timestamp lookups.
//! * `index`: the offset and time indexes; `segment`: one `.log` plus its indexes.
//! * [`Log`] (`log.rs`): the segments of a partition and the append path; `read.rs` the fetch
//!   path; `lookup.rs` `ListOffsets` by timestamp; `retention.rs` `DeleteRecords` and
//!   retention; `recovery.rs` opening after a crash; `checkpoint.rs` the small durable files.
//! * [`producer_state`]: the idempotent producers' sequence state and ongoing transactions, a
//!   plain state machine checked on every append; `producer_snapshot.rs` its snapshot files
//!   and rebuilding it at open.
//! * [`control`]: reading ABORT/COMMIT out of a transaction marker; `txn_index.rs` the
//!   `.txnindex` format; `transactions.rs` the last stable offset, the aborted transactions a
//!   fetch reports, and keeping the `.txnindex` files right across crashes.
//!
//! # Durability: what is on disk when
//!
//! * [`Log::append`] does **not** fsync. When it returns, the data is in the OS page cache and
//!   readable, and will be lost in a power failure unless synced. The group-commit syncer calls
//!   [`Log::sync_target`] and then [`SyncTarget::sync`] (`fdatasync` of the active segment);
//!   when that returns `Ok`, every offset below the target's `log_end_offset` is durable.
//!   An ABORT marker's `.txnindex` entry is written before its append returns, and the same
//!   `SyncTarget::sync` fdatasyncs the active `.txnindex` when it has new entries, so the
//!   entry is durable whenever the marker is.
//! * When a segment rolls, its `.log`, `.index`, `.timeindex` and `.txnindex` are fsynced
//!   before the next segment is created, and the directory is fsynced after every file
//!   creation, rename or deletion. So only the active (last) segment can have an unsynced
//!   tail.
//! * The active segment's indexes live in memory and are written when it rolls or on a clean
//!   [`Log::close`]. Sealed segments' indexes are loaded lazily on first use, so opening a log
//!   does not get slower as old segments accumulate.
//! * [`Log::open`] removes the clean-shutdown marker first. If it was there, files are trusted.
//!   Otherwise only the active segment is scanned: each batch's length, magic and CRC32C is
//!   checked, the file is truncated at the first invalid or incomplete batch (logged with the
//!   counts), and its indexes are rebuilt. Missing or inconsistent index files of sealed
//!   segments are rebuilt from their `.log` when first needed (also logged). The log end
//!   offset comes from the last valid batch.
//! * The log start offset is checkpointed (tmp file, fsync, rename, directory fsync) whenever
//!   `DeleteRecords` or retention advance it, before any segment file is removed.
//! * The producer state is snapshotted to `<20-digit offset>.snapshot` (tmp file, fsync,
//!   rename, directory fsync) when a segment rolls, on a clean close, and when the log start
//!   offset passes every snapshot; the newest two are kept. `open` loads the newest valid one
//!   at or below the log end offset and replays batch headers after it (none after a clean
//!   close, the active segment after a crash, the whole log if no snapshot is usable). The
//!   replay also reads each marker's control record, rebuilding the ongoing transactions and
//!   the active segment's `.txnindex` entries after the snapshot; the active `.txnindex` is
//!   fsynced before any snapshot inside that segment is written. A missing or damaged
//!   `.txnindex` of a sealed segment is rebuilt when first needed by replaying the log up to
//!   it (logged). Version-1 snapshots (before transactions) are ignored, forcing one replay.
//! * If a write or an fsync fails the log is poisoned: every later append, sync, retention pass
//!   and close returns [`StorageError::Poisoned`] instead of pretending. Reopening recovers.
//!   The exception is a data write refused for lack of space (ENOSPC, EDQUOT): the segment is
//!   cut back to its previous end, the append fails with [`StorageError::OutOfSpace`] and the
//!   log stays writable. A failed fsync always poisons (the kernel may have dropped the
//!   pages).

pub mod batch;
pub mod batch_builder;
pub mod checkpoint;
pub mod control;
mod decompress;
mod error;
mod index;
mod log;
mod lookup;
mod producer_snapshot;
pub mod producer_state;
mod read;
mod record;
mod recovery;
mod retention;
mod segment;
mod sync;
mod transactions;
mod txn_index;

pub use error::StorageError;
pub use log::{AppendOrigin, BatchInfo, Log, LogAppendInfo, LogConfig};
pub use read::FetchDataInfo;
pub use recovery::RecoveryReport;
pub use sync::SyncTarget;
