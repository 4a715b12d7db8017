//! Records inside a v2 batch: varint decoding, a walker over uncompressed records, and the
//! per-record `(offset, timestamp)` view that timestamp lookups need.
//!
//! Appends never look inside records beyond validation; only `ListOffsets` by timestamp does,
//! for at most a couple of batches, decompressing them with a bound ([`crate::decompress`]).

use bytes::Bytes;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::decompress::{decompress, MAX_DECOMPRESSED_BYTES};

/// What the walker learns about one record without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Added to the batch's `base_timestamp` to give the record's timestamp.
    pub timestamp_delta: i64,
    /// Added to the batch's `base_offset` to give the record's offset.
    pub offset_delta: i32,
    /// Where the record's key lies in the records section the walker was given, as
    /// `(start, end)` byte positions; `None` for a null key. Control records keep their
    /// marker type here.
    pub key_span: Option<(usize, usize)>,
}

/// Reads a zigzag varint of at most 5 bytes (Kafka `varint`).
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, &'static str> {
    let raw = read_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| "varint overflows 32 bits")?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varint of at most 10 bytes (Kafka `varlong`).
fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, &'static str> {
    let raw = read_unsigned(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, &'static str> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *buf.get(*pos).ok_or("varint runs past the end")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint is too long")
}

/// Skips a length-prefixed field; `-1` (null) is allowed only if `nullable`. Returns the
/// field's `(start, end)` within `buf`, `None` for null.
fn skip_bytes(
    buf: &[u8],
    pos: &mut usize,
    nullable: bool,
) -> Result<Option<(usize, usize)>, &'static str> {
    let len = read_varint(buf, pos)?;
    if len == -1 && nullable {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "negative field length")?;
    let start = *pos;
    let end = pos.checked_add(len).ok_or("field length overflows")?;
    if end > buf.len() {
        return Err("field runs past the end of the record");
    }
    *pos = end;
    Ok(Some((start, end)))
}

/// Parses the body of one record (everything after its length prefix); spans are relative
/// to `body`.
fn parse_body(body: &[u8]) -> Result<RecordMeta, &'static str> {
    let mut pos = 1; // attributes (unused, must exist)
    if body.is_empty() {
        return Err("empty record");
    }
    let timestamp_delta = read_varlong(body, &mut pos)?;
    let offset_delta = read_varint(body, &mut pos)?;
    let key_span = skip_bytes(body, &mut pos, true)?;
    skip_bytes(body, &mut pos, true)?; // value
    let headers = read_varint(body, &mut pos)?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        skip_bytes(body, &mut pos, false)?; // header key
        skip_bytes(body, &mut pos, true)?; // header value
    }
    if pos != body.len() {
        return Err("record length does not match its fields");
    }
    Ok(RecordMeta {
        timestamp_delta,
        offset_delta,
        key_span,
    })
}

/// Walks the uncompressed records section of a batch, one record per item. Yields an error
/// (and then stops) at the first record that does not parse or runs past the end.
pub(crate) struct RecordIter<'a> {
    /// The records section (the batch after its 61-byte header).
    buf: &'a [u8],
    /// Where the next record's length prefix starts.
    pos: usize,
    /// Set after an error so the iterator ends.
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Starts at the first record of `records`.
    pub(crate) fn new(records: &'a [u8]) -> Self {
        RecordIter {
            buf: records,
            pos: 0,
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<RecordMeta, &'static str> {
        let len = read_varint(self.buf, &mut self.pos)?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let end = self.pos.checked_add(len).ok_or("record length overflows")?;
        let body = self
            .buf
            .get(self.pos..end)
            .ok_or("record runs past the end of the batch")?;
        let body_start = self.pos;
        self.pos = end;
        let mut meta = parse_body(body)?;
        meta.key_span = meta
            .key_span
            .map(|(start, end)| (body_start + start, body_start + end));
        Ok(meta)
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<RecordMeta, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_record();
        self.failed = item.is_err();
        Some(item)
    }
}

/// `(offset, timestamp)` of every record in one whole batch, in order. Under `LogAppendTime`
/// every record carries the batch's `max_timestamp`. Compressed batches are decompressed up to
/// [`MAX_DECOMPRESSED_BYTES`]; a batch that cannot be (a bomb, or data the producer corrupted
/// before computing the CRC) answers at batch granularity: its base offset with its
/// `max_timestamp`, and a warning in the log.
pub(crate) fn record_timestamps(
    batch: &Bytes,
    header: &BatchHeader,
) -> Result<Vec<(u64, i64)>, String> {
    let base = u64::try_from(header.base_offset).map_err(|_| "negative base offset")?;
    let section = batch
        .get(BATCH_HEADER_LEN..)
        .ok_or("batch shorter than its header")?;
    let decompressed;
    let records = if header.compression() == 0 {
        section
    } else {
        match decompress(header.compression(), section, MAX_DECOMPRESSED_BYTES) {
            Ok(bytes) => {
                decompressed = bytes;
                &decompressed[..]
            }
            Err(reason) => {
                tracing::warn!(base_offset = base, %reason, "cannot look inside a compressed batch; answering at batch granularity");
                return Ok(vec![(base, header.max_timestamp)]);
            }
        }
    };
    let mut out = Vec::new();
    for record in RecordIter::new(records) {
        let record = record.map_err(str::to_string)?;
        let delta = u64::try_from(record.offset_delta).map_err(|_| "negative offset delta")?;
        let ts = header.base_timestamp.wrapping_add(record.timestamp_delta);
        out.push((base.saturating_add(delta), ts));
    }
    if header.is_log_append_time() {
        for entry in &mut out {
            entry.1 = header.max_timestamp;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::parse_header;
    use crate::batch_builder::{batch, compressed_batch, NewRecord};

    #[test]
    fn varints_round_trip_kafka_examples() {
        // zigzag: 0 -> 0, -1 -> 1, 1 -> 2, 300 -> 600 = [0xd8, 0x04]
        let mut pos = 0;
        assert_eq!(read_varint(&[0x00], &mut pos), Ok(0));
        pos = 0;
        assert_eq!(read_varint(&[0x01], &mut pos), Ok(-1));
        pos = 0;
        assert_eq!(read_varint(&[0xd8, 0x04], &mut pos), Ok(300));
        assert_eq!(pos, 2);
        pos = 0;
        assert!(read_varint(&[0xff; 6], &mut pos).is_err());
        pos = 0;
        assert!(read_varlong(&[0x80], &mut pos).is_err());
    }

    #[test]
    fn walks_uncompressed_records() {
        let b = batch(&[
            NewRecord::new(100, b"a", b"1"),
            NewRecord::new(90, b"", b""),
            NewRecord::new(130, b"c", b"333"),
        ]);
        let metas: Vec<_> = RecordIter::new(&b[BATCH_HEADER_LEN..])
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(metas.len(), 3);
        assert_eq!(metas[2].offset_delta, 2);
        let section = &b[BATCH_HEADER_LEN..];
        let key = |m: &RecordMeta| m.key_span.map(|(s, e)| &section[s..e]);
        assert_eq!(key(&metas[0]), Some(&b"a"[..]));
        assert_eq!(key(&metas[1]), None, "an empty key is encoded as null");
        assert_eq!(key(&metas[2]), Some(&b"c"[..]));
        let h = parse_header(&b).expect("header");
        let ts = record_timestamps(&Bytes::from(b), &h).expect("timestamps");
        assert_eq!(ts, vec![(0, 100), (1, 90), (2, 130)]);
    }

    #[test]
    fn decodes_compressed_records() {
        for codec in 1..=4 {
            let b = compressed_batch(
                codec,
                &[NewRecord::new(5, b"a", b"x"), NewRecord::new(9, b"b", b"y")],
            );
            let h = parse_header(&b).expect("header");
            let ts = record_timestamps(&Bytes::from(b), &h).expect("timestamps");
            assert_eq!(ts, vec![(0, 5), (1, 9)], "codec {codec}");
        }
    }

    #[test]
    fn truncated_records_fail_without_panicking() {
        let b = batch(&[NewRecord::new(1, b"key", b"value")]);
        let records = &b[BATCH_HEADER_LEN..];
        for cut in 0..records.len() {
            let all: Vec<_> = RecordIter::new(&records[..cut]).collect();
            assert!(all.iter().all(|r| r.is_err()) || cut == 0);
        }
    }
}
