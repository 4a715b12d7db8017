//! The fetch path: [`Log::read`] plans and performs a read of whole batches.
//!
//! Cost per call: a binary search in the segment list and in the segment's in-memory offset
//! index, a few 61-byte header `pread`s to walk from the indexed batch to the one holding the
//! requested offset (at most `index.interval.bytes` apart), and one `pread` of up to
//! `max_bytes` that is then trimmed to whole batches. Like Kafka, a fetch reads from one
//! segment only.

use bytes::Bytes;

use crate::batch::{parse_header, BATCH_HEADER_LEN};
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::segment::{Segment, SegmentIndexes};

/// The result of [`Log::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Whole batches, exactly as stored; empty when nothing is readable.
    pub records: Bytes,
    /// Base offset of the first returned batch; it may be below the requested offset, since
    /// batches are returned whole and the client skips the records it did not ask for.
    pub first_offset: Option<u64>,
    /// Last offset of the last returned batch.
    pub last_offset: Option<u64>,
}

impl Log {
    /// Reads whole batches starting with the batch containing `offset`, stopping before any
    /// batch whose base offset is `>= max_offset` (the high watermark, exclusive), returning at
    /// most `max_bytes` of batches but always at least one whole batch if any is available
    /// (KIP-74). `OffsetOutOfRange` if `offset` is below the log start offset or above the log
    /// end offset; `offset == log_end_offset` or `offset >= max_offset` gives an empty result.
    pub fn read(&self, offset: u64, max_bytes: u32, max_offset: u64) -> Result<FetchDataInfo> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        if offset == self.log_end_offset || offset >= max_offset {
            return Ok(FetchDataInfo::default());
        }
        let first = self.segment_for(offset);
        for i in first..self.segments.len() {
            let segment = &self.segments[i];
            let indexes = self.segment_indexes(i)?;
            let Some((position, header)) = segment.find_batch(indexes, offset)? else {
                continue;
            };
            if header.base_offset as u64 >= max_offset {
                return Ok(FetchDataInfo::default());
            }
            return read_batches(segment, position, header.size(), max_bytes, max_offset);
        }
        Ok(FetchDataInfo::default())
    }

    /// Index of the segment whose range holds `offset` (the last with `base_offset <= offset`).
    pub(crate) fn segment_for(&self, offset: u64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Indexes of segment `i`, loading them if needed.
    pub(crate) fn segment_indexes(&self, i: usize) -> Result<&SegmentIndexes> {
        let next_base = self.segments.get(i + 1).map(|s| s.base_offset);
        self.segments[i].indexes(self.config.index_interval_bytes, next_base)
    }
}

/// One `pread` of up to `max_bytes` (but at least the first batch) at `position`, trimmed to
/// whole batches below `max_offset`.
fn read_batches(
    segment: &Segment,
    position: u64,
    first_size: usize,
    max_bytes: u32,
    max_offset: u64,
) -> Result<FetchDataInfo> {
    let available = segment.size - position;
    let want = u64::from(max_bytes).min(available).max(first_size as u64);
    let mut buf = segment.read_at(position, want as usize)?;
    let mut end = 0usize;
    let mut first_offset = None;
    let mut last_offset = None;
    while buf.len() - end >= BATCH_HEADER_LEN {
        let header = parse_header(&buf[end..]).map_err(|e| StorageError::CorruptSegment {
            path: segment.log_path.clone(),
            position: position + end as u64,
            reason: e.to_string(),
        })?;
        if end + header.size() > buf.len() || (end > 0 && header.base_offset as u64 >= max_offset) {
            break;
        }
        first_offset.get_or_insert(header.base_offset as u64);
        last_offset = Some(header.last_offset() as u64);
        end += header.size();
    }
    buf.truncate(end);
    if buf.capacity() > 2 * end + 4096 {
        buf.shrink_to_fit();
    }
    Ok(FetchDataInfo {
        records: Bytes::from(buf),
        first_offset,
        last_offset,
    })
}
