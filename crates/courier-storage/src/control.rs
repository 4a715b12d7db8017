//! Transaction markers: reading the type out of a control batch.
//!
//! A control batch (attribute bit 5) written by the transaction coordinator holds one control
//! record whose **key** is `version: i16 | type: i16` (big-endian) and whose value is
//! `version: i16 | coordinator_epoch: i32`. Type 0 ends the producer's transaction with an
//! ABORT, type 1 with a COMMIT (Kafka's `ControlRecordType`). Control batches are never
//! compressed. Every function here takes arbitrary bytes and never panics.

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::record::RecordIter;

/// How a transaction marker ends its producer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// Type 0: the transaction's records are to be skipped by `read_committed` consumers.
    Abort,
    /// Type 1: the transaction's records become visible to `read_committed` consumers.
    Commit,
}

impl ControlRecordType {
    /// The type id written in the control record key.
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        }
    }
}

/// Parses a control record key: `version: i16` (any non-negative version; only the first
/// four bytes are read, as Kafka does for versions it does not know) then `type: i16`.
/// Types other than ABORT and COMMIT (Kafka's KRaft-only types) are refused: they never
/// belong in a partition log.
pub fn parse_control_key(key: &[u8]) -> Result<ControlRecordType, String> {
    let (Some(version), Some(kind)) = (key.get(0..2), key.get(2..4)) else {
        return Err(format!(
            "control record key has {} bytes, at least 4 needed",
            key.len()
        ));
    };
    let version = i16::from_be_bytes([version[0], version[1]]);
    if version < 0 {
        return Err(format!("control record key version {version} is negative"));
    }
    match i16::from_be_bytes([kind[0], kind[1]]) {
        0 => Ok(ControlRecordType::Abort),
        1 => Ok(ControlRecordType::Commit),
        other => Err(format!(
            "control record type {other} is not a transaction marker"
        )),
    }
}

/// The marker type of one whole control batch (`batch` starts at its header). The batch
/// must be uncompressed and its first record must parse and carry a valid key; further
/// records are ignored here (the append path insists on exactly one).
pub fn control_record_type(
    batch: &[u8],
    header: &BatchHeader,
) -> Result<ControlRecordType, String> {
    if !header.is_control() {
        return Err("not a control batch".to_string());
    }
    if header.compression() != 0 {
        return Err(format!(
            "control batch is compressed (codec {})",
            header.compression()
        ));
    }
    let section = batch
        .get(BATCH_HEADER_LEN..)
        .ok_or("control batch shorter than its header")?;
    let first = RecordIter::new(section)
        .next()
        .ok_or("control batch holds no record")?
        .map_err(|e| format!("control record does not parse: {e}"))?;
    let (start, end) = first.key_span.ok_or("control record has a null key")?;
    let key = section
        .get(start..end)
        .ok_or("control record key out of bounds")?;
    parse_control_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::parse_header;
    use crate::batch_builder::{batch, control_batch, NewRecord};
    use proptest::prelude::*;

    #[test]
    fn parses_kafka_keys() {
        assert_eq!(
            parse_control_key(&[0, 0, 0, 0]),
            Ok(ControlRecordType::Abort)
        );
        assert_eq!(
            parse_control_key(&[0, 0, 0, 1]),
            Ok(ControlRecordType::Commit)
        );
        assert_eq!(
            parse_control_key(&[0, 3, 0, 1, 9, 9]),
            Ok(ControlRecordType::Commit),
            "a newer key version is read by its first four bytes"
        );
        assert!(parse_control_key(&[0, 0, 0]).is_err());
        assert!(parse_control_key(&[0xff, 0xff, 0, 0]).is_err());
        assert!(parse_control_key(&[0, 0, 0, 2]).is_err());
        assert_eq!(ControlRecordType::Commit.id(), 1);
        assert_eq!(ControlRecordType::Abort.id(), 0);
    }

    #[test]
    fn reads_the_marker_of_a_control_batch() {
        for commit in [true, false] {
            let b = control_batch(5, 1, 10, commit);
            let h = parse_header(&b).expect("header");
            let expected = if commit {
                ControlRecordType::Commit
            } else {
                ControlRecordType::Abort
            };
            assert_eq!(control_record_type(&b, &h), Ok(expected));
        }
    }

    #[test]
    fn refuses_data_batches_and_bad_keys() {
        let data = batch(&[NewRecord::new(1, b"k", b"v")]);
        let h = parse_header(&data).expect("header");
        assert!(control_record_type(&data, &h).is_err());
        // The control bit on a record whose key is not a marker key.
        let forged = BatchHeader {
            attributes: 1 << 5,
            ..h
        };
        assert!(control_record_type(&data, &forged).is_err_and(|e| e.contains("at least 4")));
        let compressed = BatchHeader {
            attributes: 1 << 5 | 1,
            ..h
        };
        assert!(control_record_type(&data, &compressed).is_err_and(|e| e.contains("compressed")));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_control_key(&bytes);
            let mut whole = control_batch(1, 0, 0, true)[..BATCH_HEADER_LEN].to_vec();
            whole.extend_from_slice(&bytes);
            if let Ok(h) = parse_header(&whole) {
                let _ = control_record_type(&whole, &h);
            }
        }
    }
}
