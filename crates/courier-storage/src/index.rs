//! The sparse per-segment indexes, in Kafka's on-disk format.
//!
//! * [`OffsetIndex`] (`.index`): 8-byte entries, relative offset `u32` BE then file position
//!   `u32` BE. Each entry names the start of a batch by that batch's base offset, so a lookup
//!   returns a position at or before the batch holding any later offset.
//! * [`TimeIndex`] (`.timeindex`): 12-byte entries, timestamp `i64` BE then relative offset
//!   `u32` BE. An entry `(t, o)` says: the largest timestamp in the segment up to the batch at
//!   offset `o` is `t`, and it belongs to that batch. Timestamps strictly increase, so every
//!   record before `o`'s batch has a timestamp `<= t`. When a segment is sealed its largest
//!   timestamp is appended, so the last entry is the segment's maximum.
//!
//! One entry of each is added per `index.interval.bytes` of log. Both live in memory as plain
//! vectors (binary search); files are written whole when a segment rolls or the log closes,
//! and they are checked, not trusted, when loaded.

use std::path::Path;

use crate::error::{Result, StorageError};

/// Bytes per `.index` entry.
pub(crate) const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes per `.timeindex` entry.
pub(crate) const TIME_ENTRY_LEN: usize = 12;

/// Why an index file was rejected; the caller rebuilds the index from the log.
pub(crate) type IndexProblem = String;

/// The sparse offset index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    /// `(relative offset, file position)` pairs, both strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry for the batch starting at `position` whose base offset is `relative` above
    /// the segment's base offset. Entries that would not increase are ignored.
    pub(crate) fn append(&mut self, relative: u32, position: u32) {
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if relative <= last_rel || position <= last_pos {
                return;
            }
        }
        self.entries.push((relative, position));
    }

    /// File position of the last indexed batch whose base offset is `<= relative`, or 0.
    pub(crate) fn lookup(&self, relative: u64) -> u32 {
        let idx = self
            .entries
            .partition_point(|&(rel, _)| u64::from(rel) <= relative);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// Position of the last entry (0 if none).
    pub(crate) fn last_position(&self) -> u32 {
        self.entries.last().map_or(0, |e| e.1)
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The file contents.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }

    /// Parses file contents, rejecting anything inconsistent with a log of `log_size` bytes.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        log_size: u64,
    ) -> std::result::Result<Self, IndexProblem> {
        if bytes.len() % OFFSET_ENTRY_LEN != 0 {
            return Err(format!(
                "size {} is not a multiple of {OFFSET_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if u64::from(pos) >= log_size {
                return Err(format!("position {pos} is past the log end {log_size}"));
            }
            if let Some(&(last_rel, last_pos)) = index.entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Err(format!(
                        "entry ({rel}, {pos}) does not follow ({last_rel}, {last_pos})"
                    ));
                }
            }
            index.entries.push((rel, pos));
        }
        Ok(index)
    }
}

/// The sparse time index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    /// `(timestamp, relative offset)` pairs, timestamps strictly and offsets weakly increasing.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds `(timestamp, relative)` if `timestamp` is larger than every entry so far.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, relative: u32) {
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts || relative < last_rel {
                return;
            }
        }
        self.entries.push((timestamp, relative));
    }

    /// The relative offset of the last entry whose timestamp is strictly below `timestamp`:
    /// every record before that offset's batch is older than `timestamp`, so a search for the
    /// first record at or after `timestamp` can start at that batch.
    pub(crate) fn lookup_before(&self, timestamp: i64) -> Option<u32> {
        let idx = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        (idx > 0).then(|| self.entries[idx - 1].1)
    }

    /// The last entry, which for a sealed segment is its largest timestamp.
    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The file contents.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }

    /// Parses file contents; `max_relative` bounds the offsets (exclusive) when known.
    pub(crate) fn from_bytes(
        bytes: &[u8],
        max_relative: Option<u64>,
    ) -> std::result::Result<Self, IndexProblem> {
        if bytes.len() % TIME_ENTRY_LEN != 0 {
            return Err(format!(
                "size {} is not a multiple of {TIME_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(max) = max_relative {
                if u64::from(rel) >= max {
                    return Err(format!("offset {rel} is past the segment end {max}"));
                }
            }
            if let Some(&(last_ts, last_rel)) = index.entries.last() {
                if ts <= last_ts || rel < last_rel {
                    return Err(format!(
                        "entry ({ts}, {rel}) does not follow ({last_ts}, {last_rel})"
                    ));
                }
            }
            index.entries.push((ts, rel));
        }
        Ok(index)
    }
}

/// Reads an index file; `Ok(None)` if it does not exist.
pub(crate) fn read_index_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read index", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_last_entry_at_or_below() {
        let mut idx = OffsetIndex::default();
        idx.append(10, 4_100);
        idx.append(20, 8_300);
        idx.append(15, 9_000); // not increasing: ignored
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4_100);
        assert_eq!(idx.lookup(19), 4_100);
        assert_eq!(idx.lookup(1_000), 8_300);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_garbage() {
        let mut idx = OffsetIndex::default();
        idx.append(3, 100);
        idx.append(7, 200);
        let bytes = idx.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(OffsetIndex::from_bytes(&bytes, 300), Ok(idx));
        assert!(OffsetIndex::from_bytes(&bytes[..15], 300).is_err());
        assert!(
            OffsetIndex::from_bytes(&bytes, 200).is_err(),
            "position past end"
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert!(
            OffsetIndex::from_bytes(&swapped, 300).is_err(),
            "not increasing"
        );
    }

    #[test]
    fn time_lookup_is_strictly_before() {
        let mut idx = TimeIndex::default();
        idx.maybe_append(100, 0);
        idx.maybe_append(100, 5); // same timestamp: ignored
        idx.maybe_append(200, 9);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup_before(100), None);
        assert_eq!(idx.lookup_before(101), Some(0));
        assert_eq!(idx.lookup_before(200), Some(0));
        assert_eq!(idx.lookup_before(201), Some(9));
        assert_eq!(idx.last(), Some((200, 9)));
    }

    #[test]
    fn time_index_round_trips_and_rejects_garbage() {
        let mut idx = TimeIndex::default();
        idx.maybe_append(-1, 0);
        idx.maybe_append(50, 3);
        let bytes = idx.to_bytes();
        assert_eq!(TimeIndex::from_bytes(&bytes, Some(4)), Ok(idx));
        assert!(TimeIndex::from_bytes(&bytes, Some(3)).is_err());
        assert!(TimeIndex::from_bytes(&bytes[..13], None).is_err());
    }
}
