//! The log's producer state on disk: `<20-digit offset>.snapshot` files in the partition
//! directory (Kafka's naming), and rebuilding the state when the log opens.
//!
//! A snapshot named `N` holds the state after every batch below offset `N`. One is written
//! (tmp file, fsync, rename, directory fsync) when a segment rolls (`N` = the new active
//! segment's base offset, so everything it covers was fsynced with the sealed segment), on a
//! clean close (`N` = the log end offset, after the fsync of the active segment), and when the
//! log start offset moves past every snapshot. Only the newest [`SNAPSHOTS_KEPT`] are kept.
//!
//! Opening: snapshots above the recovered log end offset describe a tail that was lost and are
//! deleted. The newest remaining one that decodes is loaded (a damaged one is logged and
//! skipped) and only the batch *headers* from its offset to the log end are replayed: nothing
//! after a clean close, the active segment after a crash. With no usable snapshot the headers
//! of every segment from the log start offset are replayed (logged), and a snapshot is written
//! so the next open is cheap again. Replayed batches count as appended at the time of opening,
//! so recovery never makes a producer expire sooner than it would have.
//!
//! The replay also rebuilds the ongoing transactions (markers are read for their type) and
//! the active segment's aborted-transaction entries at or after the snapshot's offset
//! (`transactions.rs`). Before a snapshot is written at an offset inside the active segment,
//! that segment's `.txnindex` is fsynced, so its entries below the offset can be trusted at
//! the next open.

use std::path::{Path, PathBuf};

use crate::checkpoint::{sync_dir, write_file_atomically};
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::producer_state::ProducerStateManager;
use crate::recovery::RecoveryReport;
use crate::segment::file_stem;
use crate::txn_index::AbortedTxn;

/// Snapshots kept on disk; older ones are deleted when a new one is written.
pub(crate) const SNAPSHOTS_KEPT: usize = 2;

/// Extension of snapshot files.
const SNAPSHOT_EXT: &str = "snapshot";

/// Path of the snapshot covering offsets below `offset`.
fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{}.{SNAPSHOT_EXT}", file_stem(offset)))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("read_dir", dir, e))?;
    let mut offsets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("read_dir", dir, e))?;
        let name = entry.file_name();
        let Some((stem, ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
            continue;
        };
        if ext == SNAPSHOT_EXT && stem.len() == 20 {
            if let Ok(offset) = stem.parse::<u64>() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Removes the snapshot at `offset` (the caller fsyncs the directory).
fn remove_snapshot(dir: &Path, offset: u64) -> Result<()> {
    let path = snapshot_path(dir, offset);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove snapshot", &path, e)),
    }
}

/// Durably writes `state` as the snapshot at `offset`, deletes all but the newest
/// [`SNAPSHOTS_KEPT`] snapshots, and fsyncs the directory.
pub(crate) fn write_snapshot(dir: &Path, state: &ProducerStateManager, offset: u64) -> Result<()> {
    write_file_atomically(&snapshot_path(dir, offset), &state.encode_snapshot(offset))?;
    let offsets = list_snapshots(dir)?;
    for old in &offsets[..offsets.len().saturating_sub(SNAPSHOTS_KEPT)] {
        remove_snapshot(dir, *old)?;
    }
    sync_dir(dir)
}

/// Reads and decodes the snapshot at `offset`; the inner error says why it is unusable.
fn read_snapshot(
    dir: &Path,
    offset: u64,
) -> Result<std::result::Result<ProducerStateManager, StorageError>> {
    let path = snapshot_path(dir, offset);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(StorageError::io("read snapshot", &path, e)))
        }
        Err(e) => return Err(StorageError::io("read snapshot", &path, e)),
    };
    Ok(match ProducerStateManager::decode_snapshot(&bytes) {
        Ok((found, state)) if found == offset => Ok(state),
        Ok((found, _)) => Err(StorageError::CorruptProducerSnapshot(format!(
            "file is named for offset {offset} but covers {found}"
        ))),
        Err(e) => Err(e),
    })
}

impl Log {
    /// Rebuilds the producer state when the log opens (see the module docs) and records what
    /// it did in `report`. `now_ms` is the time replayed batches count as appended.
    pub(crate) fn load_producer_state(
        &mut self,
        now_ms: i64,
        report: &mut RecoveryReport,
    ) -> Result<()> {
        let dir = self.dir.clone();
        let mut offsets = list_snapshots(&dir)?;
        let stale: Vec<u64> = offsets
            .iter()
            .copied()
            .filter(|&o| o > self.log_end_offset)
            .collect();
        if !stale.is_empty() {
            tracing::warn!(
                dir = %dir.display(), ?stale, log_end_offset = self.log_end_offset,
                "deleting producer snapshots past the recovered log end"
            );
            for offset in &stale {
                remove_snapshot(&dir, *offset)?;
            }
            sync_dir(&dir)?;
            offsets.retain(|o| *o <= self.log_end_offset);
        }
        let mut loaded = None;
        for offset in offsets.into_iter().rev() {
            match read_snapshot(&dir, offset)? {
                Ok(state) => {
                    loaded = Some((offset, state));
                    break;
                }
                Err(problem) => tracing::warn!(
                    dir = %dir.display(), offset, %problem,
                    "ignoring unusable producer snapshot"
                ),
            }
        }
        let full_replay = loaded.is_none();
        self.producers = ProducerStateManager::new();
        let from = match loaded {
            Some((offset, state)) => {
                self.producers = state;
                report.producer_snapshot_offset = Some(offset);
                offset
            }
            None if self.log_end_offset == self.log_start_offset => self.log_start_offset,
            None => {
                tracing::info!(
                    dir = %dir.display(), log_start_offset = self.log_start_offset,
                    log_end_offset = self.log_end_offset, segments = self.segments.len(),
                    "no usable producer snapshot; replaying batch headers of the whole log"
                );
                self.log_start_offset
            }
        };
        let (replayed, aborted) = self.replay_producer_state(from, now_ms)?;
        report.producer_batches_replayed = replayed;
        report.txn_index_rewritten = self.recover_active_txn_index(from, aborted)?;
        report.producers = self.producers.len();
        report.ongoing_transactions = self.producers.ongoing_transactions().len();
        if full_replay && report.producer_batches_replayed > 0 {
            self.snapshot_at_log_end()?;
        }
        Ok(())
    }

    /// Applies every batch ending at or after `from` to the producer state, as if appended at
    /// `now_ms` (one 61-byte header `pread` per batch, plus the control record of each
    /// marker). A segment whose data does not parse stops the replay of that segment
    /// (logged): its producers' state may then be older than the log, which costs at worst a
    /// rejected retry. Returns the batches replayed and the ABORTs found in the active
    /// segment.
    fn replay_producer_state(&mut self, from: u64, now_ms: i64) -> Result<(u64, Vec<AbortedTxn>)> {
        if from >= self.log_end_offset {
            return Ok((0, Vec::new()));
        }
        let mut state = std::mem::take(&mut self.producers);
        let active = self.segments.len().saturating_sub(1);
        let mut aborted = Vec::new();
        let replayed = self.replay_batches(&mut state, from, active, now_ms, &mut |i, txn| {
            if i == active && txn.aborted {
                aborted.push(AbortedTxn::from(txn));
            }
        });
        self.producers = state;
        Ok((replayed?, aborted))
    }

    /// Writes a snapshot of the producer state at the log end offset, after fsyncing the
    /// active segment's `.txnindex` (the snapshot vouches for its entries below that offset).
    /// Used when the log start offset passes every snapshot, so that a crash does not force a
    /// replay that has lost the deleted batches' producers, and after a full replay at open.
    fn snapshot_at_log_end(&self) -> Result<()> {
        self.sync_active_txn_index()?;
        write_snapshot(&self.dir, &self.producers, self.log_end_offset)
    }

    /// Deletes snapshots below the log start offset, after `DeleteRecords` or retention moved
    /// it. If none would be left, a snapshot at the log end offset is written first.
    pub(crate) fn delete_snapshots_below_log_start(&self) -> Result<()> {
        let offsets = list_snapshots(&self.dir)?;
        if offsets.iter().all(|&o| o < self.log_start_offset) {
            self.snapshot_at_log_end()?;
        }
        let mut removed = false;
        for offset in offsets.into_iter().filter(|&o| o < self.log_start_offset) {
            remove_snapshot(&self.dir, offset)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Forgets producers idle for `expiration_ms` or longer (`producer.id.expiration.ms`,
    /// default [`DEFAULT_PRODUCER_ID_EXPIRATION_MS`](crate::producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS))
    /// at `now_ms`; for the broker's periodic task. Returns how many were removed. In memory
    /// only: the next snapshot no longer holds them.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.expire(now_ms, expiration_ms)
    }

    /// Number of idempotent producers with state in this partition.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// The newest epoch this partition has seen for `producer_id`, if it has state.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(producer_id).map(|entry| entry.epoch)
    }

    /// The whole producer state, read-only.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }
}
