//! `ListOffsets` by timestamp: [`Log::offset_for_timestamp`] and [`Log::max_timestamp_offset`].
//!
//! Both narrow down with per-segment maxima and the time index, walk batch headers (whose
//! `max_timestamp` says whether a batch can hold a match), and only then open one batch to find
//! the exact record, decompressing it if needed.

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::log::Log;
use crate::record::record_timestamps;
use crate::segment::Segment;

impl Log {
    /// The earliest offset (at or above the log start offset) whose record timestamp is
    /// `>= timestamp`, with that record's timestamp; `None` if there is none.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        let first = self.segment_for(self.log_start_offset);
        for i in first..self.segments.len() {
            let segment = &self.segments[i];
            let indexes = self.segment_indexes(i)?;
            match indexes.max_timestamp {
                Some((max, _)) if max >= timestamp => {}
                _ => continue,
            }
            let from = indexes
                .time_index
                .lookup_before(timestamp)
                .map_or(segment.base_offset, |rel| {
                    segment.base_offset + u64::from(rel)
                })
                .max(self.log_start_offset);
            let Some((mut position, _)) = segment.find_batch(indexes, from)? else {
                continue;
            };
            while let Some(header) = segment.header_at(position)? {
                let last = header.last_offset();
                if header.max_timestamp >= timestamp
                    && last >= 0
                    && last as u64 >= self.log_start_offset
                {
                    let records = batch_timestamps(segment, position, &header)?;
                    let found = records
                        .into_iter()
                        .find(|&(offset, ts)| offset >= self.log_start_offset && ts >= timestamp);
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += header.size() as u64;
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp (`ListOffsets` with
    /// `MAX_TIMESTAMP`, -3); the earliest such record on ties; `None` when the log is empty.
    /// Segments are compared by their recorded maxima, so records below the log start offset in
    /// the first segment still count.
    pub fn max_timestamp_offset(&self) -> Result<Option<(u64, i64)>> {
        let mut best: Option<(i64, usize, u64)> = None;
        let first = self.segment_for(self.log_start_offset);
        for i in first..self.segments.len() {
            if let Some((ts, batch_base)) = self.segment_indexes(i)?.max_timestamp {
                if best.is_none_or(|(best_ts, _, _)| ts > best_ts) {
                    best = Some((ts, i, batch_base));
                }
            }
        }
        let Some((max_ts, i, batch_base)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[i];
        let indexes = self.segment_indexes(i)?;
        let Some((position, header)) = segment.find_batch(indexes, batch_base)? else {
            return Ok(Some((batch_base, max_ts)));
        };
        let records = batch_timestamps(segment, position, &header)?;
        let exact = records.into_iter().find(|&(_, ts)| ts == max_ts);
        Ok(Some(exact.unwrap_or((batch_base, max_ts))))
    }
}

/// `(offset, timestamp)` of every record in the batch at `position`.
fn batch_timestamps(
    segment: &Segment,
    position: u64,
    header: &BatchHeader,
) -> Result<Vec<(u64, i64)>> {
    let batch = Bytes::from(segment.read_at(position, header.size())?);
    record_timestamps(&batch, header).map_err(|reason| StorageError::CorruptSegment {
        path: segment.log_path.clone(),
        position,
        reason,
    })
}
