//! Opening a partition directory and recovering it after a crash.
//!
//! Only the active (last) segment can have an unsynced tail, because a segment is fsynced
//! (log and indexes) before the next one is created. So:
//!
//! * After a clean shutdown (the marker exists) the files are trusted: the active segment's
//!   index files, written at close, are loaded and checked, and the log end offset is found by
//!   walking the few batches after the last index entry.
//! * Otherwise the active segment is scanned from its start, checking each batch's length,
//!   magic, CRC32C and offsets. At the first invalid or incomplete batch the file is truncated
//!   (and fsynced), and its indexes are rebuilt from what remains.
//!
//! Sealed segments are only opened, never read here; their indexes are checked (and rebuilt
//! if needed) on first use. The marker is removed before anything else so that a crash after
//! this open is never mistaken for a clean shutdown.

use std::path::Path;

use crate::batch::{crc_matches, parse_header, BATCH_HEADER_LEN};
use crate::checkpoint::{
    read_log_start_offset, sync_dir, take_clean_shutdown_marker, CLEAN_SHUTDOWN_MARKER, TMP_SUFFIX,
};
use crate::error::{Result, StorageError};
use crate::segment::{Segment, SegmentIndexes};

/// Bytes read per `pread` while scanning a segment.
const SCAN_CHUNK: usize = 1 << 20;

/// What opening a log found and did; returned by `Log::open` for logging and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The clean-shutdown marker was present, so the tail scan was skipped.
    pub clean_shutdown: bool,
    /// Bytes of the active segment read and checked by the tail scan (0 after a clean shutdown).
    pub scanned_bytes: u64,
    /// Valid batches found by the tail scan.
    pub valid_batches: u64,
    /// Bytes cut from the end of the active segment because they were not whole valid batches.
    pub truncated_bytes: u64,
    /// The active segment's indexes were rebuilt from its log rather than loaded.
    pub indexes_rebuilt: bool,
    /// Number of segments after recovery.
    pub segments: usize,
    /// Log start offset after recovery.
    pub log_start_offset: u64,
    /// Log end offset after recovery.
    pub log_end_offset: u64,
    /// Offset of the producer-state snapshot loaded, if a usable one was found.
    pub producer_snapshot_offset: Option<u64>,
    /// Batch headers read to bring the producer state up to the log end offset (0 after a
    /// clean shutdown; the active segment's batches after a crash; every batch from the log
    /// start offset without a usable snapshot).
    pub producer_batches_replayed: u64,
    /// Idempotent producers with state after recovery.
    pub producers: usize,
    /// Transactions still ongoing after recovery (their markers are not in the log yet).
    pub ongoing_transactions: usize,
    /// The active segment's `.txnindex` was rewritten: it was missing or damaged, or replay
    /// after the producer snapshot found ABORT markers it did not hold (after a crash).
    pub txn_index_rewritten: bool,
}

/// The result of reading a segment from its start.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Bytes of whole valid batches from the start of the file.
    pub valid_bytes: u64,
    /// Number of those batches.
    pub valid_batches: u64,
    /// Indexes over the valid batches.
    pub indexes: SegmentIndexes,
    /// One past the last offset of the last valid batch.
    pub next_offset: Option<u64>,
    /// `max_timestamp` of the first batch; the reference for time-based rolling.
    pub first_max_timestamp: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub stop_reason: Option<String>,
}

/// Reads a segment file through large `pread`s, handing out windows of it.
struct ChunkReader<'a> {
    /// The segment being read.
    segment: &'a Segment,
    /// Bytes cached from the file.
    chunk: Vec<u8>,
    /// File position of `chunk[0]`.
    chunk_start: u64,
}

impl ChunkReader<'_> {
    /// `len` bytes at `position`, or `None` if the file ends first.
    fn window(&mut self, position: u64, len: usize) -> Result<Option<&[u8]>> {
        let end = position.saturating_add(len as u64);
        if end > self.segment.size {
            return Ok(None);
        }
        let cached_end = self.chunk_start + self.chunk.len() as u64;
        if position < self.chunk_start || end > cached_end {
            let want = (self.segment.size - position).min(len.max(SCAN_CHUNK) as u64);
            self.chunk = self.segment.read_at(position, want as usize)?;
            self.chunk_start = position;
        }
        let from = (position - self.chunk_start) as usize;
        Ok(Some(&self.chunk[from..from + len]))
    }
}

/// Reads every batch of `segment` from the start, checking length, magic, CRC and that
/// offsets increase, and builds its indexes. Stops at the first batch that fails.
pub(crate) fn scan_segment(segment: &Segment, interval: u32) -> Result<ScanOutcome> {
    let mut reader = ChunkReader {
        segment,
        chunk: Vec::new(),
        chunk_start: 0,
    };
    let mut out = ScanOutcome::default();
    let mut position = 0u64;
    let mut expected_base = segment.base_offset;
    while position < segment.size {
        let Some(header_bytes) = reader.window(position, BATCH_HEADER_LEN)? else {
            out.stop_reason = Some("incomplete batch header".to_string());
            break;
        };
        let header = match parse_header(header_bytes) {
            Ok(header) => header,
            Err(e) => {
                out.stop_reason = Some(e.to_string());
                break;
            }
        };
        let Some(batch) = reader.window(position, header.size())? else {
            out.stop_reason = Some("incomplete batch".to_string());
            break;
        };
        if !crc_matches(batch, &header) {
            out.stop_reason = Some("CRC32C mismatch".to_string());
            break;
        }
        let base = u64::try_from(header.base_offset).unwrap_or(0);
        if header.base_offset < 0 || base < expected_base || header.last_offset_delta < 0 {
            out.stop_reason = Some(format!(
                "batch base offset {} does not follow {expected_base}",
                header.base_offset
            ));
            break;
        }
        out.indexes
            .on_batch(segment.base_offset, interval, position, &header);
        out.first_max_timestamp.get_or_insert(header.max_timestamp);
        expected_base = header.last_offset() as u64 + 1;
        out.next_offset = Some(expected_base);
        out.valid_batches += 1;
        position += header.size() as u64;
    }
    out.valid_bytes = position;
    Ok(out)
}

/// Everything `Log::open` needs to build a `Log`.
pub(crate) struct OpenedLog {
    /// Segments in base-offset order; the last is active and has its indexes in memory.
    pub segments: Vec<Segment>,
    /// First readable offset.
    pub log_start_offset: u64,
    /// Next offset to assign.
    pub log_end_offset: u64,
    /// Reference time for `segment.ms` of the active segment, if it holds data.
    pub rolling_base_ms: Option<i64>,
    /// What recovery found.
    pub report: RecoveryReport,
}

/// Lists the segment base offsets in `dir`, removing leftovers (`*.tmp`, indexes without a log).
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("read_dir", dir, e))?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("read_dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            tracing::info!(file = name, "removing leftover temporary file");
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<u64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" | "txnindex" => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            tracing::info!(file = %path.display(), "removing index without a segment");
            std::fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

/// Finds the log end offset of a cleanly closed active segment by walking from its last index
/// entry; `None` if anything looks wrong (the caller then scans).
fn clean_tail(segment: &Segment, indexes: &SegmentIndexes) -> Result<Option<u64>> {
    let mut position = u64::from(indexes.offset_index.last_position());
    let mut next = None;
    while position < segment.size {
        match segment.header_at(position) {
            Ok(Some(header)) if header.base_offset >= 0 && header.last_offset_delta >= 0 => {
                next = Some(header.last_offset() as u64 + 1);
                position += header.size() as u64;
            }
            Ok(_) | Err(StorageError::CorruptSegment { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(next.unwrap_or(segment.base_offset)))
}

/// Opens (creating if absent) the partition directory and recovers it.
pub(crate) fn open_dir(dir: &Path, interval: u32, now_ms: i64) -> Result<OpenedLog> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let clean_shutdown = take_clean_shutdown_marker(dir)?;
    let checkpoint = read_log_start_offset(dir)?;
    let bases = list_segments(dir)?;
    let mut report = RecoveryReport {
        clean_shutdown,
        ..RecoveryReport::default()
    };

    let mut segments = Vec::with_capacity(bases.len().max(1));
    for base in &bases {
        segments.push(Segment::open(dir, *base)?);
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, checkpoint.unwrap_or(0))?);
        sync_dir(dir)?;
    }
    let mut log_start_offset = checkpoint.unwrap_or(0).max(segments[0].base_offset);

    let (log_end_offset, rolling_base_ms) = recover_active(&mut segments, interval, &mut report)?;
    let mut log_end_offset = log_end_offset;
    let mut rolling_base_ms =
        rolling_base_ms.map(|ts| if ts < 0 { now_ms } else { ts.min(now_ms) });

    if log_start_offset > log_end_offset {
        tracing::warn!(
            dir = %dir.display(), log_start_offset, log_end_offset,
            "log start offset is past the recovered end; starting an empty segment there"
        );
        for segment in segments.drain(..) {
            segment.delete_files()?;
        }
        segments.push(Segment::create(dir, log_start_offset)?);
        sync_dir(dir)?;
        log_end_offset = log_start_offset;
        rolling_base_ms = None;
    }
    // Segments wholly below the log start offset (a crash during deletion) go now.
    let below = segments
        .windows(2)
        .take_while(|pair| pair[1].base_offset <= log_start_offset)
        .count();
    for segment in segments.drain(..below) {
        tracing::info!(segment = %segment.log_path.display(), "removing segment below log start offset");
        segment.delete_files()?;
    }
    log_start_offset = log_start_offset.max(segments[0].base_offset);

    report.segments = segments.len();
    report.log_start_offset = log_start_offset;
    report.log_end_offset = log_end_offset;
    debug_assert!(!dir.join(CLEAN_SHUTDOWN_MARKER).exists());
    Ok(OpenedLog {
        segments,
        log_start_offset,
        log_end_offset,
        rolling_base_ms,
        report,
    })
}

/// Loads or rebuilds the active segment's indexes; returns the log end offset and the first
/// batch's `max_timestamp`.
fn recover_active(
    segments: &mut [Segment],
    interval: u32,
    report: &mut RecoveryReport,
) -> Result<(u64, Option<i64>)> {
    let Some(active) = segments.last_mut() else {
        return Ok((0, None));
    };
    if report.clean_shutdown {
        if let Ok(indexes) = active.load_indexes(None)? {
            if let Some(next) = clean_tail(active, &indexes)? {
                let first = if active.size > 0 {
                    active.header_at(0).ok().flatten().map(|h| h.max_timestamp)
                } else {
                    None
                };
                let _ = active.indexes.set(indexes);
                return Ok((next, first));
            }
        }
        tracing::warn!(
            segment = %active.log_path.display(),
            "active segment's indexes are unusable after a clean shutdown; scanning it"
        );
    }
    let scan = scan_segment(active, interval)?;
    report.scanned_bytes = active.size;
    report.valid_batches = scan.valid_batches;
    report.indexes_rebuilt = true;
    if scan.valid_bytes < active.size {
        report.truncated_bytes = active.size - scan.valid_bytes;
        tracing::warn!(
            segment = %active.log_path.display(),
            valid_batches = scan.valid_batches,
            truncated_bytes = report.truncated_bytes,
            reason = scan.stop_reason.as_deref().unwrap_or("unknown"),
            "truncating invalid tail of the active segment"
        );
        active.truncate_to(scan.valid_bytes)?;
    }
    let next = scan.next_offset.unwrap_or(active.base_offset);
    active.indexes = std::sync::OnceLock::new();
    let _ = active.indexes.set(scan.indexes);
    Ok((next, scan.first_max_timestamp))
}
