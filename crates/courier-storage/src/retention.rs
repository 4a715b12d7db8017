//! Moving the log start offset forward: `DeleteRecords` and retention by time and size.
//!
//! The new log start offset is checkpointed durably *before* segment files are removed, so a
//! crash in between leaves extra files (removed at the next open) but never exposes deleted
//! records again. The active segment is never deleted. Producer-state snapshots below the new
//! log start offset are deleted too (after one at the log end offset is written if none would
//! be left).

use crate::checkpoint::{sync_dir, write_log_start_offset};
use crate::error::{Result, StorageError};
use crate::log::Log;

impl Log {
    /// `DeleteRecords`: advances the log start offset to `offset` (which must be `<=` the log
    /// end offset, else `OffsetOutOfRange`), persists it, and deletes segments wholly below it.
    /// Never moves backwards. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: u64) -> Result<u64> {
        self.poison.check()?;
        if offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.advance_log_start_offset(offset)?;
        let wholly_below = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset <= offset)
            .count();
        self.delete_oldest(wholly_below)?;
        self.poison
            .guard(|| self.delete_snapshots_below_log_start())?;
        Ok(self.log_start_offset)
    }

    /// Deletes the oldest segments whose newest record is older than `now_ms - retention.ms`,
    /// then the oldest while the log without them is still at least `retention.bytes`. Never
    /// deletes the active segment. Returns how many segments were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.poison.check()?;
        let sealed = self.segments.len().saturating_sub(1);
        let mut doomed = 0;
        if self.config.retention_ms >= 0 {
            let cutoff = now_ms.saturating_sub(self.config.retention_ms);
            while doomed < sealed {
                let expired = match self.segment_indexes(doomed)?.max_timestamp {
                    Some((newest, _)) => newest < cutoff,
                    None => self.segments[doomed].size == 0,
                };
                if !expired {
                    break;
                }
                doomed += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let limit = self.config.retention_bytes as u64;
            let mut remaining =
                self.size_bytes - self.segments[..doomed].iter().map(|s| s.size).sum::<u64>();
            while doomed < sealed && remaining - self.segments[doomed].size >= limit {
                remaining -= self.segments[doomed].size;
                doomed += 1;
            }
        }
        if doomed == 0 {
            return Ok(0);
        }
        let new_start = self.segments[doomed].base_offset;
        if new_start > self.log_start_offset {
            self.advance_log_start_offset(new_start)?;
        }
        tracing::info!(
            dir = %self.dir.display(), segments = doomed, log_start_offset = self.log_start_offset,
            "retention deleting segments"
        );
        self.delete_oldest(doomed)?;
        self.poison
            .guard(|| self.delete_snapshots_below_log_start())?;
        Ok(doomed)
    }

    /// Durably records `offset` as the log start offset, then adopts it.
    fn advance_log_start_offset(&mut self, offset: u64) -> Result<()> {
        let dir = self.dir.clone();
        self.poison.guard(|| write_log_start_offset(&dir, offset))?;
        self.log_start_offset = offset;
        Ok(())
    }

    /// Removes the `count` oldest segments (never the active one).
    fn delete_oldest(&mut self, count: usize) -> Result<()> {
        let count = count.min(self.segments.len().saturating_sub(1));
        if count == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..count) {
            self.size_bytes -= segment.size;
            segment.delete_files()?;
        }
        sync_dir(&self.dir)
    }
}
