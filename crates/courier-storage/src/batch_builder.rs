//! Builds producer-style v2 record batches through `kafka_protocol`'s encoder, so the bytes are
//! exactly what a client library sends. Tests, benchmarks, fuzz seeds and tools that need to
//! write records use this one builder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One record to put in a batch.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The record's (create) timestamp.
    pub timestamp: i64,
    /// Its key; empty means null.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

impl NewRecord {
    /// A record with the given timestamp, key and value.
    pub fn new(timestamp: i64, key: &[u8], value: &[u8]) -> Self {
        NewRecord {
            timestamp,
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }
}

/// An uncompressed batch holding `records`, base offset 0, as a producer sends it.
pub fn batch(records: &[NewRecord]) -> Vec<u8> {
    compressed_batch(0, records)
}

/// A batch compressed with `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
///
/// # Panics
/// If the encoder refuses the records, which it does only for sizes no batch can have
/// (over 2 GiB); callers build these batches themselves, no client input reaches here.
pub fn compressed_batch(codec: u8, records: &[NewRecord]) -> Vec<u8> {
    let compression = match codec {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Constant offset - sequence keeps the encoder from splitting the batch.
            sequence: i as i32 - 1,
            timestamp: r.timestamp,
            key: (!r.key.is_empty()).then(|| Bytes::from(r.key.clone())),
            value: Some(Bytes::from(r.value.clone())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("records fit a batch");
    buf.to_vec()
}
