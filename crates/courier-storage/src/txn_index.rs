//! The aborted transaction index: `<20-digit base offset>.txnindex` next to each segment,
//! Kafka's `TransactionIndex`.
//!
//! One entry per ABORT marker in the segment, in marker-offset order, each 34 bytes, all
//! big-endian (Kafka's `AbortedTxn` layout, byte for byte):
//!
//! ```text
//! version             i16   0
//! producer_id         i64
//! first_offset        i64   the aborted transaction's first offset (may lie in an older segment)
//! last_offset         i64   the ABORT marker's offset (in this segment)
//! last_stable_offset  i64   the partition's LSO right after the marker was applied
//! ```
//!
//! Every segment has the file, empty when the segment holds no ABORT marker, so a missing file
//! always means a lost one. Durability: an entry is written (page cache) before the append of
//! its marker returns; [`SyncTarget::sync`](crate::SyncTarget::sync) fdatasyncs the active
//! segment's file when it has unsynced entries, and a segment's file is fsynced when the
//! segment rolls and on a clean close. Crash recovery does not depend on it anyway: the active
//! segment's entries after the producer snapshot are regenerated from the log.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Result, StorageError};

/// Bytes of one entry.
pub(crate) const ENTRY_LEN: usize = 2 + 8 + 8 + 8 + 8;

/// The only entry version written and read.
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction, as recorded when its ABORT marker was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first batch.
    pub first_offset: u64,
    /// Offset of the ABORT marker.
    pub last_offset: u64,
    /// The partition's last stable offset right after the marker: a search for aborted
    /// transactions below this can stop here (Kafka's `collectAbortedTransactions`).
    pub last_stable_offset: u64,
}

impl AbortedTxn {
    /// The 34-byte on-disk entry.
    pub(crate) fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }
}

/// Encodes `entries` back to back.
pub(crate) fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(AbortedTxn::encode).collect()
}

/// Decodes a whole index file of the segment `[segment_base, next_base)` (`next_base` `None`
/// for the active segment). Checks the length, each version, `first_offset <= last_offset`,
/// that markers lie in the segment, strictly increase and are below their LSO bound
/// (`last_stable_offset <= last_offset + 1`). The error says why the file cannot be trusted.
pub(crate) fn decode_entries(
    bytes: &[u8],
    segment_base: u64,
    next_base: Option<u64>,
) -> std::result::Result<Vec<AbortedTxn>, String> {
    if bytes.len() % ENTRY_LEN != 0 {
        return Err(format!(
            "{} bytes is not a whole number of {ENTRY_LEN}-byte entries",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    let mut previous: Option<u64> = None;
    for (i, entry) in bytes.chunks_exact(ENTRY_LEN).enumerate() {
        let field = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&entry[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let version = i16::from_be_bytes([entry[0], entry[1]]);
        if version != ENTRY_VERSION {
            return Err(format!("entry {i} has unknown version {version}"));
        }
        let (Ok(first_offset), Ok(last_offset), Ok(last_stable_offset)) = (
            u64::try_from(field(10)),
            u64::try_from(field(18)),
            u64::try_from(field(26)),
        ) else {
            return Err(format!("entry {i} has a negative offset"));
        };
        let in_segment =
            last_offset >= segment_base && next_base.is_none_or(|next| last_offset < next);
        if first_offset > last_offset
            || !in_segment
            || previous.is_some_and(|p| last_offset <= p)
            || last_stable_offset > last_offset.saturating_add(1)
        {
            return Err(format!(
                "entry {i} (first {first_offset}, last {last_offset}, lso {last_stable_offset}) \
                 does not fit the segment at {segment_base} after marker {previous:?}"
            ));
        }
        previous = Some(last_offset);
        out.push(AbortedTxn {
            producer_id: field(2),
            first_offset,
            last_offset,
            last_stable_offset,
        });
    }
    Ok(out)
}

/// Path of the index of the segment whose `.log` is `log_path`.
pub(crate) fn txn_index_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("txnindex")
}

/// Reads the index file at `path`; `None` if it does not exist.
pub(crate) fn read_txn_index_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read txnindex", path, e)),
    }
}

/// The active segment's open index file, shared with [`SyncTarget`](crate::SyncTarget) so
/// the group-commit syncer can fdatasync it.
#[derive(Debug, Clone)]
pub(crate) struct TxnIndexFile {
    /// The open file.
    pub file: Arc<File>,
    /// The file's path, for errors.
    pub path: PathBuf,
    /// Set after an entry is written, cleared by the sync that covers it.
    pub dirty: Arc<AtomicBool>,
}

impl TxnIndexFile {
    /// Creates an empty index file (the caller fsyncs the directory).
    pub(crate) fn create(path: PathBuf) -> Result<TxnIndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io("create txnindex", &path, e))?;
        Ok(TxnIndexFile {
            file: Arc::new(file),
            path,
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens an existing index file for appending entries.
    pub(crate) fn open(path: PathBuf) -> Result<TxnIndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("open txnindex", &path, e))?;
        Ok(TxnIndexFile {
            file: Arc::new(file),
            path,
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Writes `entry` as entry number `index` (page cache only) and marks the file dirty.
    pub(crate) fn write_entry(&self, index: usize, entry: &AbortedTxn) -> Result<()> {
        let position = (index as u64).saturating_mul(ENTRY_LEN as u64);
        self.file
            .write_all_at(&entry.encode(), position)
            .map_err(|e| StorageError::io("pwrite txnindex", &self.path, e))?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// `fdatasync` if an entry was written since the last sync. The flag is cleared before
    /// the sync, so an entry written meanwhile marks the file dirty again; on failure it is
    /// set again.
    pub(crate) fn sync_if_dirty(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            StorageError::io("fdatasync txnindex", &self.path, e)
        })
    }

    /// `fdatasync`, whether or not anything is known to be dirty.
    pub(crate) fn sync(&self) -> Result<()> {
        self.dirty.store(false, Ordering::Release);
        self.file.sync_data().map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            StorageError::io("fdatasync txnindex", &self.path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(pid: i64, first: u64, last: u64, lso: u64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_use_kafkas_34_byte_layout() {
        let bytes = entry(7, 3, 10, 11).encode();
        let mut expected = vec![0u8, 0];
        for v in [7i64, 3, 10, 11] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(bytes.to_vec(), expected);
    }

    #[test]
    fn round_trips() {
        let entries = vec![entry(1, 0, 5, 3), entry(2, 3, 9, 10), entry(1, 10, 12, 13)];
        let bytes = encode_entries(&entries);
        assert_eq!(bytes.len(), 3 * ENTRY_LEN);
        assert_eq!(decode_entries(&bytes, 5, Some(13)), Ok(entries.clone()));
        assert_eq!(decode_entries(&[], 5, None), Ok(vec![]));
    }

    #[test]
    fn rejects_damage() {
        let good = encode_entries(&[entry(1, 0, 5, 6), entry(2, 3, 9, 10)]);
        assert!(decode_entries(&good[..ENTRY_LEN + 1], 0, None).is_err());
        let mut version = good.clone();
        version[1] = 1;
        assert!(decode_entries(&version, 0, None).is_err_and(|e| e.contains("version")));
        assert!(
            decode_entries(&good, 6, None).is_err(),
            "marker below the segment"
        );
        assert!(
            decode_entries(&good, 0, Some(9)).is_err(),
            "marker past the segment"
        );
        let unordered = encode_entries(&[entry(2, 3, 9, 10), entry(1, 0, 5, 6)]);
        assert!(decode_entries(&unordered, 0, None).is_err());
        let backwards = encode_entries(&[entry(2, 10, 9, 10)]);
        assert!(decode_entries(&backwards, 0, None).is_err());
        let negative = encode_entries(&[entry(2, u64::MAX, 9, 10)]);
        assert!(decode_entries(&negative, 0, None).is_err_and(|e| e.contains("negative")));
    }

    #[test]
    fn file_entries_are_written_in_place_and_synced_when_dirty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.txnindex");
        let file = TxnIndexFile::create(path.clone()).expect("create");
        file.write_entry(0, &entry(1, 0, 5, 6)).expect("write");
        file.write_entry(1, &entry(2, 3, 9, 10)).expect("write");
        assert!(file.dirty.load(Ordering::Acquire));
        file.sync_if_dirty().expect("sync");
        assert!(!file.dirty.load(Ordering::Acquire));
        file.sync_if_dirty().expect("nothing to sync");
        let bytes = read_txn_index_file(&path).expect("read").expect("exists");
        assert_eq!(decode_entries(&bytes, 0, None).expect("decode").len(), 2);
        assert_eq!(
            read_txn_index_file(&dir.path().join("x")).expect("read"),
            None
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_entries(&bytes, 0, None);
            let _ = decode_entries(&bytes, u64::MAX, Some(u64::MAX));
        }
    }
}
