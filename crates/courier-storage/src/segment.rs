//! One segment: a `.log` file of whole batches plus its `.index`, `.timeindex` and
//! `.txnindex` (aborted transactions, `txn_index.rs`).
//!
//! A segment's indexes are a [`OnceLock`]: the active segment's are built in memory as batches
//! are appended; a sealed segment's are loaded (and checked, and rebuilt from the `.log` if
//! they are missing or inconsistent) on first use, so opening a log costs nothing per old
//! segment beyond opening its file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::batch::{parse_header, BatchHeader, BATCH_HEADER_LEN};
use crate::checkpoint::write_file_atomically;
use crate::error::{Result, StorageError};
use crate::index::{read_index_file, OffsetIndex, TimeIndex};
use crate::recovery::scan_segment;
use crate::txn_index::{txn_index_path, AbortedTxn, TxnIndexFile};

/// Most iovecs a single `pwritev` accepts on Linux (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// The file name stem of a segment: its base offset as 20 zero-padded digits.
pub(crate) fn file_stem(base_offset: u64) -> String {
    format!("{base_offset:020}")
}

/// Both sparse indexes of a segment plus what is derived from them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentIndexes {
    /// Offset -> file position, one entry per `index.interval.bytes`.
    pub offset_index: OffsetIndex,
    /// Timestamp -> offset, one entry per `index.interval.bytes` when the maximum grows.
    pub time_index: TimeIndex,
    /// Largest batch `max_timestamp` in the segment and the base offset of its batch; drives
    /// time retention and `ListOffsets` with `MAX_TIMESTAMP`.
    pub max_timestamp: Option<(i64, u64)>,
    /// Log bytes appended since the last offset-index entry; decides when the next entry is due.
    pub bytes_since_last_entry: u64,
}

impl SegmentIndexes {
    /// Records a batch appended at `position` (Kafka's rule: index the batch if more than
    /// `interval` bytes were written since the last entry, before counting this batch).
    pub(crate) fn on_batch(
        &mut self,
        segment_base: u64,
        interval: u32,
        position: u64,
        header: &BatchHeader,
    ) {
        let batch_base = u64::try_from(header.base_offset).unwrap_or(segment_base);
        let relative = u32::try_from(batch_base.saturating_sub(segment_base)).unwrap_or(u32::MAX);
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| header.max_timestamp > ts)
        {
            self.max_timestamp = Some((header.max_timestamp, batch_base));
        }
        if self.bytes_since_last_entry > u64::from(interval) {
            if let Ok(position) = u32::try_from(position) {
                self.offset_index.append(relative, position);
            }
            if let Some((ts, offset)) = self.max_timestamp {
                let rel = u32::try_from(offset.saturating_sub(segment_base)).unwrap_or(u32::MAX);
                self.time_index.maybe_append(ts, rel);
            }
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += header.size() as u64;
    }

    /// Makes the time index's last entry the segment's largest timestamp (done when sealing,
    /// so retention and `MAX_TIMESTAMP` lookups can read it without scanning the log).
    pub(crate) fn seal(&mut self, segment_base: u64) {
        if let Some((ts, offset)) = self.max_timestamp {
            let rel = u32::try_from(offset.saturating_sub(segment_base)).unwrap_or(u32::MAX);
            self.time_index.maybe_append(ts, rel);
        }
    }
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch; also the file name.
    pub base_offset: u64,
    /// Path of the `.log` file.
    pub log_path: PathBuf,
    /// The open `.log` file, shared with the group-commit syncer through `SyncTarget`.
    pub file: Arc<File>,
    /// Bytes of whole batches in the file; appends go here.
    pub size: u64,
    /// Indexes, built on append for the active segment, loaded on first use for sealed ones.
    pub indexes: OnceLock<SegmentIndexes>,
    /// Aborted transactions whose marker is in this segment: kept up to date on append for
    /// the active segment, loaded (or rebuilt) on first use for sealed ones.
    pub aborted_txns: OnceLock<Vec<AbortedTxn>>,
    /// The open `.txnindex` of the active segment, where appends write new entries; `None`
    /// for sealed segments, whose file is only read.
    pub txn_file: Option<TxnIndexFile>,
}

impl Segment {
    /// Creates a new, empty segment: its `.log` and an empty `.txnindex` (the caller fsyncs
    /// the directory).
    pub(crate) fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = dir.join(format!("{}.log", file_stem(base_offset)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map_err(|e| StorageError::io("create segment", &log_path, e))?;
        let txn_file = TxnIndexFile::create(txn_index_path(&log_path))?;
        let indexes = OnceLock::new();
        let _ = indexes.set(SegmentIndexes::default());
        let aborted_txns = OnceLock::new();
        let _ = aborted_txns.set(Vec::new());
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            indexes,
            aborted_txns,
            txn_file: Some(txn_file),
        })
    }

    /// Opens an existing segment file without reading it.
    pub(crate) fn open(dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = dir.join(format!("{}.log", file_stem(base_offset)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| StorageError::io("open segment", &log_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", &log_path, e))?
            .len();
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            indexes: OnceLock::new(),
            aborted_txns: OnceLock::new(),
            txn_file: None,
        })
    }

    /// Path of the `.index` file.
    pub(crate) fn index_path(&self) -> PathBuf {
        self.log_path.with_extension("index")
    }

    /// Path of the `.timeindex` file.
    pub(crate) fn time_index_path(&self) -> PathBuf {
        self.log_path.with_extension("timeindex")
    }

    /// Path of the `.txnindex` file.
    pub(crate) fn txn_index_path(&self) -> PathBuf {
        txn_index_path(&self.log_path)
    }

    /// Records an aborted transaction whose marker was just appended to this (active)
    /// segment: in memory and, through `pwrite`, in the `.txnindex` (page cache only; the
    /// caller poisons the log on failure).
    pub(crate) fn append_aborted_txn(&mut self, entry: AbortedTxn) -> Result<()> {
        let path = self.txn_index_path();
        let (Some(file), Some(entries)) = (self.txn_file.as_ref(), self.aborted_txns.get_mut())
        else {
            return Err(StorageError::CorruptSegment {
                path,
                position: 0,
                reason: "aborted transaction for a segment that is not active".to_string(),
            });
        };
        file.write_entry(entries.len(), &entry)?;
        entries.push(entry);
        Ok(())
    }

    /// Reads exactly `len` bytes at `position`.
    pub(crate) fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| StorageError::io("pread", &self.log_path, e))?;
        Ok(buf)
    }

    /// Parses the batch header at `position`; `None` at the end of the segment.
    pub(crate) fn header_at(&self, position: u64) -> Result<Option<BatchHeader>> {
        if position >= self.size {
            return Ok(None);
        }
        let corrupt = |reason: String| StorageError::CorruptSegment {
            path: self.log_path.clone(),
            position,
            reason,
        };
        if self.size - position < BATCH_HEADER_LEN as u64 {
            return Err(corrupt("partial batch header at the end".to_string()));
        }
        let buf = self.read_at(position, BATCH_HEADER_LEN)?;
        let header = parse_header(&buf).map_err(|e| corrupt(e.to_string()))?;
        if position + header.size() as u64 > self.size {
            return Err(corrupt(
                "batch runs past the end of the segment".to_string(),
            ));
        }
        Ok(Some(header))
    }

    /// Finds the first batch whose last offset is `>= offset`, starting from the index.
    pub(crate) fn find_batch(
        &self,
        indexes: &SegmentIndexes,
        offset: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let relative = offset.saturating_sub(self.base_offset);
        let mut position = u64::from(indexes.offset_index.lookup(relative));
        while let Some(header) = self.header_at(position)? {
            if header.last_offset() >= 0 && header.last_offset() as u64 >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// The segment's indexes, loading them on first use. A missing or inconsistent index file
    /// is rebuilt from the `.log` and rewritten. `next_base` is the following segment's base
    /// offset, which bounds the offsets an index may name.
    pub(crate) fn indexes(&self, interval: u32, next_base: Option<u64>) -> Result<&SegmentIndexes> {
        if let Some(indexes) = self.indexes.get() {
            return Ok(indexes);
        }
        let loaded = match self.load_indexes(next_base)? {
            Ok(indexes) => indexes,
            Err(problem) => {
                tracing::warn!(
                    segment = %self.log_path.display(),
                    %problem,
                    "index files unusable, rebuilding them from the log"
                );
                let scan = scan_segment(self, interval)?;
                let mut indexes = scan.indexes;
                indexes.seal(self.base_offset);
                if let Err(e) = self.write_indexes(&indexes) {
                    tracing::warn!(segment = %self.log_path.display(), error = %e,
                        "could not persist rebuilt indexes; keeping them in memory");
                }
                indexes
            }
        };
        let _ = self.indexes.set(loaded);
        self.indexes
            .get()
            .ok_or_else(|| StorageError::CorruptSegment {
                path: self.log_path.clone(),
                position: 0,
                reason: "index cell empty after initialisation".to_string(),
            })
    }

    /// Reads and checks both index files. The outer error is I/O; the inner one says why the
    /// files cannot be trusted.
    pub(crate) fn load_indexes(
        &self,
        next_base: Option<u64>,
    ) -> Result<std::result::Result<SegmentIndexes, String>> {
        let Some(offset_bytes) = read_index_file(&self.index_path())? else {
            return Ok(Err("offset index missing".to_string()));
        };
        let Some(time_bytes) = read_index_file(&self.time_index_path())? else {
            return Ok(Err("time index missing".to_string()));
        };
        let offset_index = match OffsetIndex::from_bytes(&offset_bytes, self.size) {
            Ok(index) => index,
            Err(problem) => return Ok(Err(format!("offset index: {problem}"))),
        };
        let max_relative = next_base.map(|next| next.saturating_sub(self.base_offset));
        let time_index = match TimeIndex::from_bytes(&time_bytes, max_relative) {
            Ok(index) => index,
            Err(problem) => return Ok(Err(format!("time index: {problem}"))),
        };
        let max_timestamp = time_index
            .last()
            .map(|(ts, rel)| (ts, self.base_offset + u64::from(rel)));
        if self.size > 0 && max_timestamp.is_none() {
            return Ok(Err(
                "time index is empty for a non-empty segment".to_string()
            ));
        }
        let bytes_since_last_entry = self.size - u64::from(offset_index.last_position());
        Ok(Ok(SegmentIndexes {
            offset_index,
            time_index,
            max_timestamp,
            bytes_since_last_entry,
        }))
    }

    /// Writes both index files (tmp, fsync, rename). The caller fsyncs the directory.
    pub(crate) fn write_indexes(&self, indexes: &SegmentIndexes) -> Result<()> {
        write_file_atomically(&self.index_path(), &indexes.offset_index.to_bytes())?;
        write_file_atomically(&self.time_index_path(), &indexes.time_index.to_bytes())
    }

    /// Writes `parts` back to back at the end of the file with `pwritev`, and grows `size`.
    /// On failure the file is cut back to its previous size; if even that fails the caller
    /// must poison the log.
    pub(crate) fn append_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        if let Err(source) = pwritev_all(&self.file, self.size, parts) {
            let out_of_space = matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
            let err = if out_of_space {
                StorageError::OutOfSpace {
                    path: self.log_path.clone(),
                }
            } else {
                StorageError::io("pwritev", &self.log_path, source)
            };
            self.file
                .set_len(self.size)
                .map_err(|e| StorageError::io("ftruncate after failed write", &self.log_path, e))?;
            return Err(err);
        }
        self.size += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Cuts the file to `size` bytes and makes that durable.
    pub(crate) fn truncate_to(&mut self, size: u64) -> Result<()> {
        self.file
            .set_len(size)
            .map_err(|e| StorageError::io("ftruncate", &self.log_path, e))?;
        self.size = size;
        self.sync()
    }

    /// `fdatasync` of the `.log` file and, for the active segment, its `.txnindex`.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io("fdatasync", &self.log_path, e))?;
        match &self.txn_file {
            Some(txn_file) => txn_file.sync(),
            None => Ok(()),
        }
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for path in [
            self.index_path(),
            self.time_index_path(),
            self.txn_index_path(),
            self.log_path.clone(),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove segment file", &path, e)),
            }
        }
        Ok(())
    }
}

/// `pwritev` until every byte of `parts` is written at `position`, retrying short writes and
/// `EINTR`, in chunks of at most [`IOV_MAX`] buffers.
fn pwritev_all(file: &File, mut position: u64, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < slices.len() {
        let last = (first + IOV_MAX).min(slices.len());
        let iov: Vec<libc::iovec> = slices[first..last]
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
            .collect();
        let offset = libc::off_t::try_from(position)
            .map_err(|_| std::io::Error::other("file position overflows off_t"))?;
        // SAFETY: every iovec points into a slice borrowed for the whole call, with its exact
        // length; the kernel only reads from them. The count is at most IOV_MAX.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                offset,
            )
        };
        if written < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if written == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        let mut written = written as usize;
        position += written as u64;
        while written > 0 && first < slices.len() {
            let len = slices[first].len();
            if written >= len {
                written -= len;
                first += 1;
            } else {
                slices[first] = &slices[first][written..];
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwritev_writes_many_parts_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segment = Segment::create(dir.path(), 0).expect("create");
        let parts: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        segment.append_parts(&refs).expect("write");
        assert_eq!(segment.size, 12_000);
        let back = segment.read_at(0, 12_000).expect("read");
        assert_eq!(back, parts.concat());
        assert_eq!(
            segment.log_path.file_name().and_then(|n| n.to_str()),
            Some("00000000000000000000.log")
        );
    }

    #[test]
    fn header_at_reports_partial_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segment = Segment::create(dir.path(), 0).expect("create");
        segment.append_parts(&[&[0u8; 30]]).expect("write");
        assert!(matches!(
            segment.header_at(0),
            Err(StorageError::CorruptSegment { .. })
        ));
        assert!(matches!(segment.header_at(30), Ok(None)));
    }
}
