//! `validate_batches` takes a producer's record bytes as they come off the wire. It must never
//! panic, and whatever it accepts must be exactly a sequence of whole batches: the sizes of the
//! returned headers add up to the input length. The input is tried as-is and again with every
//! reachable batch CRC corrected, so the record walker behind the CRC check gets fuzzed too.
#![no_main]

use courier_fuzz::fix_crcs;
use courier_storage::batch::validate_batches;
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok(headers) = validate_batches(data, u32::MAX) {
        assert!(!headers.is_empty(), "accepted input with no batches");
        let total: usize = headers.iter().map(|h| h.size()).sum();
        assert_eq!(total, data.len(), "batch sizes do not cover the input");
        for h in &headers {
            assert!(h.records_count > 0);
            assert_eq!(i64::from(h.last_offset_delta), i64::from(h.records_count) - 1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    if fix_crcs(&mut fixed) {
        check(&fixed);
    }
});
