//! Kafka v2 record batches: header parsing and producer-input validation.
//!
//! A batch is stored exactly as the producer sent it; the only bytes the broker changes are the
//! 8-byte `base_offset` (and, under `LogAppendTime`, the attributes, `max_timestamp` and CRC).
//! Validation therefore has to be thorough here, once, on the way in: after it, readers trust
//! lengths and counts. Every function in this module takes arbitrary bytes and never panics.

use crate::error::{Result, StorageError};
use crate::record::RecordIter;

/// Length of the fixed v2 batch header, from `base_offset` through `records_count`.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before the part of the batch counted by `batch_length` (`base_offset` + `batch_length`).
pub const LOG_OVERHEAD: usize = 12;

/// The only batch format this broker accepts.
pub const MAGIC_V2: i8 = 2;

/// Position of `base_offset` within the header.
pub(crate) const BASE_OFFSET_POS: usize = 0;
/// Position of `attributes`; the CRC covers everything from here to the end of the batch.
pub(crate) const ATTRIBUTES_POS: usize = 21;
/// Position of the CRC32C field.
pub(crate) const CRC_POS: usize = 17;
/// Position of `max_timestamp`.
pub(crate) const MAX_TIMESTAMP_POS: usize = 35;

/// Attribute bits 0-2: compression codec.
const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are `LogAppendTime`.
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Attribute bit 4: part of a transaction.
const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attribute bit 5: holds a control record (transaction marker).
const CONTROL_BIT: i16 = 1 << 5;

/// Every field of a v2 record batch header, as found in the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; producers send 0, the broker overwrites it.
    pub base_offset: i64,
    /// Bytes following this field, i.e. the batch size minus [`LOG_OVERHEAD`].
    pub batch_length: i32,
    /// Leader epoch stamped by the leader; kept as sent.
    pub partition_leader_epoch: i32,
    /// Format version, always [`MAGIC_V2`] once validated.
    pub magic: i8,
    /// CRC32C over the batch from `attributes` to its end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record; record timestamps are deltas from it.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch (the append time under `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Total size of the batch in bytes, header included.
    pub fn size(&self) -> usize {
        // batch_length is checked to be at least BATCH_HEADER_LEN - LOG_OVERHEAD by parse_header.
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// Whether record timestamps are the broker's append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds a control record.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses the 61-byte header at the start of `buf` and checks the fields that make the batch
/// walkable: `magic == 2` and a `batch_length` large enough to hold the header.
/// It does not check the CRC or that `buf` holds the whole batch.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(StorageError::CorruptMessage(format!(
            "batch header needs {BATCH_HEADER_LEN} bytes, only {} available",
            buf.len()
        )));
    }
    let header = BatchHeader {
        base_offset: be_i64(buf, BASE_OFFSET_POS),
        batch_length: be_i32(buf, 8),
        partition_leader_epoch: be_i32(buf, 12),
        magic: buf[16] as i8,
        crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
        attributes: be_i16(buf, ATTRIBUTES_POS),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, MAX_TIMESTAMP_POS),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        records_count: be_i32(buf, 57),
    };
    let min_length = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
    if header.batch_length < min_length {
        return Err(StorageError::CorruptMessage(format!(
            "batch_length {} is smaller than the header ({min_length})",
            header.batch_length
        )));
    }
    if header.magic != MAGIC_V2 {
        return Err(StorageError::CorruptMessage(format!(
            "unsupported magic {} (only v2 record batches are accepted)",
            header.magic
        )));
    }
    Ok(header)
}

/// Whether the CRC stored in `batch` (one whole batch) matches its contents.
pub(crate) fn crc_matches(batch: &[u8], header: &BatchHeader) -> bool {
    batch.len() >= BATCH_HEADER_LEN && crc32c::crc32c(&batch[ATTRIBUTES_POS..]) == header.crc
}

/// Validates a concatenation of v2 batches as sent by a producer and returns their headers.
///
/// Per batch: header sanity, length within the buffer, size within `max_message_bytes`, CRC32C,
/// `records_count > 0`, `last_offset_delta == records_count - 1`, and, for uncompressed batches,
/// that the records parse, carry offset deltas 0, 1, 2, ... and exactly fill the batch.
/// Compressed batches are trusted after the CRC. An empty input is an `InvalidRecord`.
pub fn validate_batches(records: &[u8], max_message_bytes: u32) -> Result<Vec<BatchHeader>> {
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let header = parse_header(rest)?;
        let size = header.size();
        if size > rest.len() {
            return Err(StorageError::CorruptMessage(format!(
                "batch at byte {pos} declares {size} bytes but only {} remain",
                rest.len()
            )));
        }
        if size > max_message_bytes as usize {
            return Err(StorageError::MessageTooLarge {
                size,
                max: max_message_bytes,
            });
        }
        validate_batch(&rest[..size], &header)?;
        headers.push(header);
        pos += size;
    }
    if headers.is_empty() {
        return Err(StorageError::InvalidRecord(
            "produce request holds no record batches".to_string(),
        ));
    }
    Ok(headers)
}

/// Checks one whole batch whose header has already been parsed.
fn validate_batch(batch: &[u8], header: &BatchHeader) -> Result<()> {
    if !crc_matches(batch, header) {
        return Err(StorageError::CorruptMessage(format!(
            "CRC32C mismatch: header says {:#010x}, data gives {:#010x}",
            header.crc,
            crc32c::crc32c(batch.get(ATTRIBUTES_POS..).unwrap_or_default())
        )));
    }
    if header.compression() > 4 {
        return Err(StorageError::CorruptMessage(format!(
            "unknown compression codec {}",
            header.compression()
        )));
    }
    if header.records_count <= 0 {
        return Err(StorageError::InvalidRecord(format!(
            "records_count is {}",
            header.records_count
        )));
    }
    if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
        return Err(StorageError::InvalidRecord(format!(
            "last_offset_delta {} does not match records_count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.compression() != 0 {
        return Ok(());
    }
    let mut count: i64 = 0;
    for record in RecordIter::new(&batch[BATCH_HEADER_LEN..]) {
        let record = record.map_err(|e| {
            StorageError::CorruptMessage(format!("record {count} does not parse: {e}"))
        })?;
        if i64::from(record.offset_delta) != count {
            return Err(StorageError::InvalidRecord(format!(
                "record {count} has offset delta {}",
                record.offset_delta
            )));
        }
        count += 1;
        if count > i64::from(header.records_count) {
            break;
        }
    }
    if count != i64::from(header.records_count) {
        return Err(StorageError::InvalidRecord(format!(
            "header says {} records, batch holds {}{}",
            header.records_count,
            count,
            if count > i64::from(header.records_count) {
                " or more"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// The first 61 bytes of a batch as they are written to the log: the broker-assigned
/// `base_offset`, and under `LogAppendTime` the timestamp-type bit, `max_timestamp = append_time`
/// and the recomputed CRC. The CRC is computed over the new header tail chained with the
/// unchanged records, so the batch body is never copied.
pub(crate) fn header_for_append(
    batch: &[u8],
    base_offset: u64,
    log_append_time: Option<i64>,
) -> [u8; BATCH_HEADER_LEN] {
    let mut out = [0u8; BATCH_HEADER_LEN];
    out.copy_from_slice(&batch[..BATCH_HEADER_LEN]);
    out[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
    if let Some(now_ms) = log_append_time {
        let attributes = be_i16(&out, ATTRIBUTES_POS) | TIMESTAMP_TYPE_BIT;
        out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&out[ATTRIBUTES_POS..]),
            &batch[BATCH_HEADER_LEN..],
        );
        out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_builder::{batch, compressed_batch, NewRecord};

    fn one() -> Vec<u8> {
        batch(&[
            NewRecord::new(1_000, b"k", b"v"),
            NewRecord::new(1_005, b"", b"w"),
        ])
    }

    #[test]
    fn accepts_well_formed_batches() {
        let mut two = one();
        two.extend_from_slice(&one());
        let headers = validate_batches(&two, 1 << 20).expect("valid");
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].records_count, 2);
        assert_eq!(headers[0].max_timestamp, 1_005);
        assert_eq!(headers[1].size(), one().len());
    }

    #[test]
    fn accepts_compressed_batches() {
        for codec in 1..=4 {
            let b = compressed_batch(codec, &[NewRecord::new(7, b"a", b"b")]);
            let headers = validate_batches(&b, 1 << 20).expect("valid");
            assert_eq!(headers[0].compression(), codec);
        }
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = one();
        b[16] = 1;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(m)) if m.contains("magic")
        ));
    }

    #[test]
    fn rejects_bad_crc() {
        let mut b = one();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(m)) if m.contains("CRC")
        ));
    }

    #[test]
    fn rejects_short_buffers() {
        let b = one();
        for cut in [1, 12, 60, b.len() - 1] {
            assert!(
                matches!(
                    validate_batches(&b[..cut], 1 << 20),
                    Err(StorageError::CorruptMessage(_))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rejects_negative_length() {
        let mut b = one();
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(m)) if m.contains("batch_length")
        ));
    }

    #[test]
    fn rejects_oversized() {
        let b = one();
        assert!(matches!(
            validate_batches(&b, (b.len() - 1) as u32),
            Err(StorageError::MessageTooLarge { size, .. }) if size == b.len()
        ));
        assert!(validate_batches(&b, b.len() as u32).is_ok());
    }

    fn with_header_field(mut b: Vec<u8>, at: usize, value: i32) -> Vec<u8> {
        b[at..at + 4].copy_from_slice(&value.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn rejects_count_mismatch() {
        // Header claims 3 records (and a consistent last_offset_delta) but holds 2.
        let b = with_header_field(with_header_field(one(), 57, 3), 23, 2);
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::InvalidRecord(m)) if m.contains("holds 2")
        ));
        // Header claims 1 record but holds 2.
        let b = with_header_field(with_header_field(one(), 57, 1), 23, 0);
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_inconsistent_last_offset_delta() {
        let b = with_header_field(one(), 23, 5);
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::InvalidRecord(m)) if m.contains("last_offset_delta")
        ));
    }

    #[test]
    fn rejects_zero_records() {
        let b = with_header_field(with_header_field(one(), 57, 0), 23, -1);
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::InvalidRecord(m)) if m.contains("records_count")
        ));
    }

    #[test]
    fn rejects_records_that_do_not_fill_the_batch() {
        // Grow the batch by one trailing byte and fix up the length and CRC.
        let mut b = one();
        b.push(0);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        let b = with_header_field(b, 8, len);
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
    }

    #[test]
    fn rejects_empty_input() {
        assert!(matches!(
            validate_batches(&[], 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn header_for_append_sets_offset_and_log_append_time() {
        let b = one();
        let plain = header_for_append(&b, 42, None);
        let h = parse_header(&plain).expect("header");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.crc, parse_header(&b).expect("header").crc);

        let rewritten = header_for_append(&b, 42, Some(9_999));
        let mut whole = rewritten.to_vec();
        whole.extend_from_slice(&b[BATCH_HEADER_LEN..]);
        let h = validate_batches(&whole, 1 << 20).expect("still valid");
        assert_eq!(h[0].max_timestamp, 9_999);
        assert!(h[0].is_log_append_time());
    }
}
