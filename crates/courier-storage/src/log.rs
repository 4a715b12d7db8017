//! [`Log`]: one partition's durable log, a sequence of segments, and its append path.
//!
//! Reads live in `read.rs`, timestamp lookups in `lookup.rs`, retention and `DeleteRecords`
//! in `retention.rs`, opening and crash recovery in `recovery.rs`, transactions (LSO, aborted
//! transactions, their index at open) in `transactions.rs`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{
    header_for_append, parse_header, validate_batches, BatchHeader, BATCH_HEADER_LEN,
};
use crate::checkpoint::{sync_dir, write_clean_shutdown_marker, write_log_start_offset};
use crate::control::{control_record_type, ControlRecordType};
use crate::error::{Result, StorageError};
use crate::producer_snapshot::write_snapshot;
use crate::producer_state::{ProducerCheck, ProducerStateManager};
use crate::recovery::{open_dir, RecoveryReport};
use crate::segment::Segment;
use crate::sync::{Poison, SyncTarget};
use crate::txn_index::AbortedTxn;

/// Per-topic settings that shape the log. Field docs name the Kafka topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment before one would grow past this (default 1 GiB;
    /// capped at `i32::MAX` so file positions fit the index's `u32`).
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty segment once its first append is this old (default 7 days).
    pub segment_ms: i64,
    /// `index.interval.bytes`: log bytes between index entries (default 4096).
    pub index_interval_bytes: u32,
    /// `retention.bytes`: delete old segments while the log stays at least this big; -1 = no limit.
    pub retention_bytes: i64,
    /// `retention.ms`: delete segments whose newest record is older than this; -1 = no limit.
    pub retention_ms: i64,
    /// `max.message.bytes`: largest accepted batch, header included (default 1048588).
    pub max_message_bytes: u32,
    /// `message.timestamp.type=LogAppendTime`: stamp batches with the broker's append time.
    pub log_append_time: bool,
}

/// Seven days in milliseconds, Kafka's default for `segment.ms` and `retention.ms`.
const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            index_interval_bytes: 4096,
            retention_bytes: -1,
            retention_ms: SEVEN_DAYS_MS,
            max_message_bytes: 1_048_588,
            log_append_time: false,
        }
    }
}

/// Who is appending; only the broker's own coordinators may write control batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's `Produce` request: control batches are rejected.
    Client,
    /// The broker itself (transaction markers, coordinator state): control batches allowed.
    Coordinator,
}

/// What one appended batch turned into; the producer-state manager needs these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset assigned to the first record.
    pub base_offset: u64,
    /// Offset assigned to the last record.
    pub last_offset: u64,
    /// Producer id from the batch header (-1 for non-idempotent producers).
    pub producer_id: i64,
    /// Producer epoch from the batch header.
    pub producer_epoch: i16,
    /// First sequence number from the batch header.
    pub base_sequence: i32,
    /// Whether the batch belongs to a transaction.
    pub is_transactional: bool,
    /// Whether the batch is a control batch.
    pub is_control: bool,
    /// Records in the batch.
    pub record_count: u64,
}

/// The outcome of [`Log::append`], for the Produce response and producer state.
///
/// For a duplicate (`duplicate == true`) nothing was written: the offsets, count and
/// timestamps are those of the original batch, and `batches` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first appended record.
    pub base_offset: u64,
    /// Offset of the last appended record.
    pub last_offset: u64,
    /// Records appended.
    pub record_count: u64,
    /// Largest batch timestamp appended (the append time under `LogAppendTime`).
    pub max_timestamp: i64,
    /// The append time written into the batches, or -1 unless `LogAppendTime`.
    pub log_append_time_ms: i64,
    /// One entry per appended batch, in order.
    pub batches: Vec<BatchInfo>,
    /// The batch was an idempotent producer's retry of one already in the log, so the
    /// original's offsets are returned and nothing was written. The Produce response treats
    /// it as a success.
    pub duplicate: bool,
}

/// One partition's log: segments on disk, the active one last.
///
/// Durability: [`Log::append`] returns once data is in the OS page cache, **not** on disk;
/// call [`Log::sync_target`] and [`SyncTarget::sync`] to make it durable. Segments are fsynced
/// (log and indexes) before the next one is created, so only the active segment can lose a tail
/// in a crash; `open` truncates that tail to the last whole valid batch.
#[derive(Debug)]
pub struct Log {
    /// The partition directory.
    pub(crate) dir: PathBuf,
    /// Current topic settings.
    pub(crate) config: LogConfig,
    /// Segments in base-offset order; never empty; the last is the active segment.
    pub(crate) segments: Vec<Segment>,
    /// First offset that may be read (DeleteRecords and retention advance it).
    pub(crate) log_start_offset: u64,
    /// Next offset to assign.
    pub(crate) log_end_offset: u64,
    /// Sum of all segment sizes.
    pub(crate) size_bytes: u64,
    /// Time the active segment got its first batch (reference for `segment.ms`).
    pub(crate) rolling_base_ms: Option<i64>,
    /// Set by any failed write or fsync; then all appends and syncs are refused.
    pub(crate) poison: Poison,
    /// Idempotent producers' sequence state, checked and updated by every append.
    pub(crate) producers: ProducerStateManager,
}

impl Log {
    /// Opens (creating if absent) the partition log in `dir`. Recovery happens here: see
    /// [`RecoveryReport`] and the crate docs.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Log, RecoveryReport)> {
        let opened = open_dir(dir, config.index_interval_bytes, now_ms)?;
        let size_bytes = opened.segments.iter().map(|s| s.size).sum();
        let mut report = opened.report;
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments: opened.segments,
            log_start_offset: opened.log_start_offset,
            log_end_offset: opened.log_end_offset,
            size_bytes,
            rolling_base_ms: opened.rolling_base_ms,
            poison: Poison::new(dir.to_path_buf()),
            producers: ProducerStateManager::new(),
        };
        log.load_producer_state(now_ms, &mut report)?;
        tracing::debug!(dir = %dir.display(), ?report, "log opened");
        Ok((log, report))
    }

    /// Creates an empty log in `dir`, which must not exist yet, whose first offset is
    /// `start_offset`: a partition that starts empty but must not hand out offsets an earlier
    /// incarnation already used (an ephemeral topic's partition after a restart).
    pub fn create_at(dir: &Path, config: LogConfig, start_offset: u64, now_ms: i64) -> Result<Log> {
        std::fs::create_dir(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
        if start_offset > 0 {
            write_log_start_offset(dir, start_offset)?;
        }
        let (log, _) = Log::open(dir, config, now_ms)?;
        Ok(log)
    }

    /// Appends a producer's batches. See [`Log::append_from`].
    pub fn append(&mut self, records: &Bytes, now_ms: i64) -> Result<LogAppendInfo> {
        self.append_from(records, AppendOrigin::Client, now_ms)
    }

    /// Validates every batch in `records` (v2 batches back to back) first; if any is invalid
    /// nothing is written. Then assigns offsets from the log end offset and writes the whole
    /// request with `pwritev`, two buffers per batch: the new 8-byte base offset (or, under
    /// `LogAppendTime`, the rewritten 61-byte header) and the untouched rest of the producer's
    /// bytes, so the batch is never copied. The segment rolls first if it would pass
    /// `segment.bytes` or is older than `segment.ms`. Data reaches the page cache, **not** the
    /// disk. A failed write poisons the log.
    ///
    /// Batches with a producer id (idempotent producers) are checked against the producer
    /// state first: such an append must hold exactly one data batch (`InvalidRecord`
    /// otherwise); a retry of one of the producer's last five batches returns the original
    /// offsets with `duplicate: true` and writes nothing; an out-of-order sequence, an unknown
    /// producer not starting at 0 or a fenced epoch is refused with
    /// `OutOfOrderSequence`, `UnknownProducerId` or `InvalidProducerEpoch`. Transactional
    /// batches take the same checks, and the first one of a producer with no ongoing
    /// transaction starts one at its base offset.
    ///
    /// Control batches (coordinator only) are transaction markers: each must carry a producer
    /// id, be uncompressed and hold exactly one control record whose key parses as ABORT or
    /// COMMIT (`InvalidRecord` otherwise). They are not sequence-checked, but one with an epoch
    /// older than the producer's is fenced (`InvalidProducerEpoch`). A marker ends its
    /// producer's transaction; an ABORT's entry is written to the active segment's
    /// `.txnindex` before this returns (page cache, synced by [`SyncTarget::sync`]).
    pub fn append_from(
        &mut self,
        records: &Bytes,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<LogAppendInfo> {
        self.poison.check()?;
        let headers = validate_batches(records, self.config.max_message_bytes)?;
        if origin == AppendOrigin::Client && headers.iter().any(|h| h.is_control()) {
            return Err(StorageError::InvalidRecord(
                "clients may not write control batches".to_string(),
            ));
        }
        let markers = parse_markers(records, &headers)?;
        if let Some(duplicate) = self.check_producers(&headers)? {
            return Ok(duplicate);
        }
        let record_count: u64 = headers
            .iter()
            .map(|h| u64::from(h.last_offset_delta.unsigned_abs()) + 1)
            .sum();
        let base_offset = self.log_end_offset;
        let last_offset = base_offset + record_count - 1;
        self.maybe_roll(records.len() as u64, last_offset, now_ms)?;

        let append_time = self.config.log_append_time.then_some(now_ms);
        let mut new_headers = Vec::with_capacity(headers.len());
        let mut next = base_offset;
        let mut position = 0usize;
        for header in &headers {
            let batch = &records[position..position + header.size()];
            new_headers.push(header_for_append(batch, next, append_time));
            next += u64::from(header.last_offset_delta.unsigned_abs()) + 1;
            position += header.size();
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(headers.len() * 2);
        position = 0;
        for (header, new_header) in headers.iter().zip(&new_headers) {
            let batch = &records[position..position + header.size()];
            let keep = if append_time.is_some() {
                BATCH_HEADER_LEN
            } else {
                8
            };
            parts.push(&new_header[..keep]);
            parts.push(&batch[keep..]);
            position += header.size();
        }

        let poison = self.poison.clone();
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut()?;
        let start_position = active.size;
        match active.append_parts(&parts) {
            Ok(()) => {}
            // Nothing was written (the segment was cut back): the log is as it was and stays
            // writable; the producer retries once there is room.
            Err(e @ StorageError::OutOfSpace { .. }) => return Err(e),
            Err(e) => {
                poison.set();
                return Err(e);
            }
        }

        let mut batches = Vec::with_capacity(headers.len());
        let mut written_headers = Vec::with_capacity(headers.len());
        let mut max_timestamp = i64::MIN;
        let mut batch_position = start_position;
        let segment_base = active.base_offset;
        let mut indexes = active.indexes.get_mut();
        for new_header in &new_headers {
            let written = parse_header(new_header)?;
            if let Some(indexes) = indexes.as_mut() {
                indexes.on_batch(segment_base, interval, batch_position, &written);
            }
            batch_position += written.size() as u64;
            max_timestamp = max_timestamp.max(written.max_timestamp);
            batches.push(BatchInfo {
                base_offset: written.base_offset as u64,
                last_offset: written.last_offset() as u64,
                producer_id: written.producer_id,
                producer_epoch: written.producer_epoch,
                base_sequence: written.base_sequence,
                is_transactional: written.is_transactional(),
                is_control: written.is_control(),
                record_count: u64::from(written.last_offset_delta.unsigned_abs()) + 1,
            });
            written_headers.push(written);
        }
        let mut aborted = Vec::new();
        for ((written, info), marker) in written_headers.iter().zip(&batches).zip(&markers) {
            let Some(marker) = marker else {
                self.producers
                    .update(written, info.base_offset, info.last_offset, now_ms);
                continue;
            };
            let completed =
                self.producers
                    .end_transaction(written, info.base_offset, *marker, now_ms);
            if let Some(txn) = completed.filter(|txn| txn.aborted) {
                aborted.push(AbortedTxn::from(txn));
            }
        }
        self.log_end_offset = last_offset + 1;
        self.size_bytes += records.len() as u64;
        self.rolling_base_ms.get_or_insert(now_ms);
        if !aborted.is_empty() {
            let poison = self.poison.clone();
            let active = self.active_mut()?;
            poison.guard(|| {
                aborted
                    .into_iter()
                    .try_for_each(|entry| active.append_aborted_txn(entry))
            })?;
        }
        Ok(LogAppendInfo {
            base_offset,
            last_offset,
            record_count,
            max_timestamp,
            log_append_time_ms: append_time.unwrap_or(-1),
            batches,
            duplicate: false,
        })
    }

    /// Runs the producer-state check on validated `headers`. `Some` is the answer to a retry
    /// of a batch already in the log; `None` means append.
    fn check_producers(&self, headers: &[BatchHeader]) -> Result<Option<LogAppendInfo>> {
        let idempotent = headers
            .iter()
            .any(|h| h.producer_id >= 0 && !h.is_control());
        if idempotent && headers.len() > 1 {
            return Err(StorageError::InvalidRecord(
                "an idempotent producer sends one batch per partition".to_string(),
            ));
        }
        for header in headers {
            if let ProducerCheck::Duplicate {
                base_offset,
                last_offset,
                max_timestamp,
            } = self.producers.check(header)?
            {
                tracing::debug!(
                    dir = %self.dir.display(), producer_id = header.producer_id,
                    base_sequence = header.base_sequence, base_offset,
                    "duplicate batch from an idempotent producer; not appended"
                );
                return Ok(Some(LogAppendInfo {
                    base_offset,
                    last_offset,
                    record_count: last_offset.saturating_sub(base_offset) + 1,
                    max_timestamp,
                    log_append_time_ms: if self.config.log_append_time {
                        max_timestamp
                    } else {
                        -1
                    },
                    batches: Vec::new(),
                    duplicate: true,
                }));
            }
        }
        Ok(None)
    }

    /// Rolls the active segment if appending `bytes` ending at `last_offset` at `now_ms` should
    /// go to a fresh one.
    fn maybe_roll(&mut self, bytes: u64, last_offset: u64, now_ms: i64) -> Result<()> {
        let active = self.active()?;
        if active.size == 0 {
            return Ok(());
        }
        let max_size = self.config.segment_bytes.min(i32::MAX as u64);
        let too_big = active.size + bytes > max_size;
        let too_old = self
            .rolling_base_ms
            .is_some_and(|base| now_ms.saturating_sub(base) > self.config.segment_ms);
        let offsets_overflow = last_offset - active.base_offset > u64::from(u32::MAX);
        if too_big || too_old || offsets_overflow {
            tracing::debug!(
                dir = %self.dir.display(), too_big, too_old, offsets_overflow,
                new_base_offset = self.log_end_offset, "rolling segment"
            );
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment (final time-index entry, index files written, `.log` and
    /// indexes fsynced), creates a new active segment at the log end offset and fsyncs the
    /// directory, then snapshots the producer state at that offset. Any failure poisons the
    /// log.
    pub(crate) fn roll(&mut self) -> Result<()> {
        let poison = self.poison.clone();
        let dir = self.dir.clone();
        let base = self.log_end_offset;
        poison.guard(|| {
            let active = self.active_mut()?;
            seal_and_persist(active)?;
            active.txn_file = None;
            let segment = Segment::create(&dir, base)?;
            sync_dir(&dir)?;
            self.segments.push(segment);
            self.rolling_base_ms = None;
            write_snapshot(&dir, &self.producers, base)
        })
    }

    /// The active segment.
    pub(crate) fn active(&self) -> Result<&Segment> {
        self.segments.last().ok_or_else(|| self.no_segments())
    }

    /// The active segment, mutably.
    pub(crate) fn active_mut(&mut self) -> Result<&mut Segment> {
        let dir = self.dir.clone();
        self.segments
            .last_mut()
            .ok_or_else(|| StorageError::CorruptSegment {
                path: dir,
                position: 0,
                reason: "log has no segments".to_string(),
            })
    }

    fn no_segments(&self) -> StorageError {
        StorageError::CorruptSegment {
            path: self.dir.clone(),
            position: 0,
            reason: "log has no segments".to_string(),
        }
    }

    /// First offset that can be read.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset
    }

    /// Total bytes of all segment `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Number of segments (at least one).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The active segment's file and the log end offset at this instant; `fdatasync` of that
    /// file makes every offset below the returned log end offset durable.
    pub fn sync_target(&self) -> SyncTarget {
        let (file, path, txn_index) = match self.segments.last() {
            Some(active) => (
                active.file.clone(),
                active.log_path.clone(),
                active.txn_file.clone(),
            ),
            // Unreachable: a log always has an active segment. Syncing the first is harmless.
            None => unreachable_segments(),
        };
        SyncTarget {
            file,
            log_end_offset: self.log_end_offset,
            poison: self.poison.clone(),
            path,
            txn_index,
        }
    }

    /// Replaces the topic settings; they apply to the next append, roll or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Current topic settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Clean close: seal the active segment's indexes to disk, fsync everything, snapshot the
    /// producer state at the log end offset, and write the clean-shutdown marker so the next
    /// open skips the tail scan and the producer-state replay. A poisoned log refuses (no
    /// marker is written, so the next open recovers).
    pub fn close(mut self) -> Result<()> {
        self.poison.check()?;
        let dir = self.dir.clone();
        let active = self.active_mut()?;
        seal_and_persist(active)?;
        sync_dir(&dir)?;
        write_snapshot(&dir, &self.producers, self.log_end_offset)?;
        write_clean_shutdown_marker(&dir)
    }

    /// Deletes the whole partition directory (DeleteTopics).
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| StorageError::io("remove partition dir", &self.dir, e))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// The marker type of each batch in `records` (`None` for data batches), checking that every
/// control batch is a well-formed transaction marker; `InvalidRecord` if one is not.
fn parse_markers(
    records: &[u8],
    headers: &[BatchHeader],
) -> Result<Vec<Option<ControlRecordType>>> {
    let mut position = 0usize;
    let mut out = Vec::with_capacity(headers.len());
    for header in headers {
        let batch = &records[position..position + header.size()];
        position += header.size();
        if !header.is_control() {
            out.push(None);
            continue;
        }
        let invalid = |reason: String| {
            StorageError::InvalidRecord(format!(
                "control batch of producer {}: {reason}",
                header.producer_id
            ))
        };
        if header.producer_id < 0 {
            return Err(invalid(
                "a transaction marker needs a producer id".to_string(),
            ));
        }
        if header.records_count != 1 {
            return Err(invalid(format!(
                "holds {} records, a marker holds one",
                header.records_count
            )));
        }
        out.push(Some(control_record_type(batch, header).map_err(invalid)?));
    }
    Ok(out)
}

/// Writes the final time-index entry and both index files, then fsyncs the `.log` (and the
/// active segment's `.txnindex`).
fn seal_and_persist(segment: &mut Segment) -> Result<()> {
    let base = segment.base_offset;
    if let Some(indexes) = segment.indexes.get_mut() {
        indexes.seal(base);
    }
    if let Some(indexes) = segment.indexes.get() {
        segment.write_indexes(indexes)?;
    }
    segment.sync()
}

/// A log always holds at least one segment; `open`, `roll` and retention keep it that way.
#[cold]
fn unreachable_segments() -> ! {
    unreachable!("a log always has an active segment")
}

#[cfg(test)]
mod tests;
