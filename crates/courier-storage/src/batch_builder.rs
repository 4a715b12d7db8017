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
    encode(codec, records, &Producer::NONE)
}

/// An uncompressed batch from an idempotent producer: `producer_id`, `producer_epoch` and
/// `base_sequence` in the header, as a producer with `enable.idempotence=true` sends it. The
/// records' sequences run on from `base_sequence` (the header stores only the first).
///
/// # Panics
/// As [`compressed_batch`].
pub fn idempotent_batch(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[NewRecord],
) -> Vec<u8> {
    let producer = Producer {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence,
        transactional: false,
        control: false,
    };
    encode(0, records, &producer)
}

/// An uncompressed batch from a transactional producer: as [`idempotent_batch`], with the
/// transactional attribute (bit 4) set. The first such batch of a producer with no ongoing
/// transaction starts one in the partition.
///
/// # Panics
/// As [`compressed_batch`].
pub fn transactional_batch(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[NewRecord],
) -> Vec<u8> {
    let producer = Producer {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence,
        transactional: true,
        control: false,
    };
    encode(0, records, &producer)
}

/// A transaction marker as the transaction coordinator writes it: a transactional control
/// batch of one control record (key: version 0, type 1 commit / 0 abort; value: version 0,
/// `coordinator_epoch` 0) with base sequence -1. Only [`AppendOrigin::Coordinator`]
/// appends accept it.
///
/// [`AppendOrigin::Coordinator`]: crate::AppendOrigin::Coordinator
///
/// # Panics
/// As [`compressed_batch`].
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    timestamp: i64,
    commit: bool,
) -> Vec<u8> {
    let producer = Producer {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence: -1,
        transactional: true,
        control: true,
    };
    let key = [0, 0, 0, u8::from(commit)];
    let value = [0u8; 6];
    encode(0, &[NewRecord::new(timestamp, &key, &value)], &producer)
}

/// The producer fields of a batch header.
struct Producer {
    /// Producer id, -1 for none.
    id: i64,
    /// Producer epoch, -1 for none.
    epoch: i16,
    /// Sequence of the first record, -1 for none.
    base_sequence: i32,
    /// Sets the transactional attribute.
    transactional: bool,
    /// Sets the control attribute.
    control: bool,
}

impl Producer {
    /// A plain, non-idempotent producer.
    const NONE: Producer = Producer {
        id: -1,
        epoch: -1,
        base_sequence: -1,
        transactional: false,
        control: false,
    };
}

/// Encodes `records` as one batch with `producer`'s header fields.
fn encode(codec: u8, records: &[NewRecord], producer: &Producer) -> Vec<u8> {
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
            transactional: producer.transactional,
            control: producer.control,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Constant offset - sequence keeps the encoder from splitting the batch; the
            // encoder takes the header's base sequence from the first record.
            sequence: producer.base_sequence.wrapping_add(i as i32),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_batches;

    #[test]
    fn plain_batches_have_no_producer() {
        let b = batch(&[NewRecord::new(1, b"k", b"v"), NewRecord::new(2, b"", b"w")]);
        let h = validate_batches(&b, 1 << 20).expect("valid")[0];
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        assert!(!h.is_transactional() && !h.is_control());
    }

    #[test]
    fn idempotent_batches_carry_the_producer_fields() {
        let records = [NewRecord::new(1, b"k", b"v"), NewRecord::new(2, b"", b"w")];
        for base_sequence in [0, 41, i32::MAX] {
            let b = idempotent_batch(9, 3, base_sequence, &records);
            let headers = validate_batches(&b, 1 << 20).expect("valid");
            assert_eq!(headers.len(), 1, "one batch even across the sequence wrap");
            let h = headers[0];
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (9, 3, base_sequence)
            );
            assert_eq!(h.records_count, 2);
        }
    }

    #[test]
    fn transactional_batches_set_only_the_transactional_bit() {
        let b = transactional_batch(9, 3, 4, &[NewRecord::new(1, b"k", b"v")]);
        let h = validate_batches(&b, 1 << 20).expect("valid")[0];
        assert!(h.is_transactional() && !h.is_control());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 3, 4)
        );
    }

    #[test]
    fn control_batches_are_transactional_markers() {
        let b = control_batch(9, 3, 77, true);
        let h = validate_batches(&b, 1 << 20).expect("valid")[0];
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 3, -1)
        );
    }
}
