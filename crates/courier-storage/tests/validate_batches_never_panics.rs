//! `validate_batches` is fed straight from the network: it must return an error, never panic,
//! on arbitrary bytes and on damaged versions of valid batches.

use courier_storage::batch::{parse_header, validate_batches};
use courier_storage::batch_builder::{batch, compressed_batch, NewRecord};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), max in any::<u32>()) {
        let _ = validate_batches(&bytes, max);
        let _ = parse_header(&bytes);
    }

    #[test]
    fn damaged_valid_batches(
        codec in 0u8..=4,
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        fix_crc in any::<bool>(),
    ) {
        let records: Vec<NewRecord> =
            values.iter().enumerate().map(|(i, v)| NewRecord::new(i as i64, b"k", v)).collect();
        let mut bytes = compressed_batch(codec, &records);
        prop_assert!(validate_batches(&bytes, u32::MAX).is_ok());
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if fix_crc && bytes.len() > 21 {
            // Damage that passes the CRC reaches the record walker.
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = validate_batches(&bytes, u32::MAX);
        let end = cut.index(bytes.len() + 1);
        prop_assert!(validate_batches(&bytes[..end], u32::MAX).is_err() || end == bytes.len());
    }
}

#[test]
fn uncompressed_record_damage_behind_a_good_crc_is_rejected() {
    let mut bytes = batch(&[NewRecord::new(1, b"key", b"value")]);
    // The first record's length varint sits right after the header; make it claim more.
    bytes[61] = 0x7e;
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(validate_batches(&bytes, u32::MAX).is_err());
}
