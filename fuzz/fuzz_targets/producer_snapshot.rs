//! Producer-state snapshots are read back from disk after a crash: decoding any bytes must
//! never panic or allocate without bound, and whatever decodes must encode back to the same
//! bytes (the format has one encoding).
#![no_main]

use courier_storage::producer_state::ProducerStateManager;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((offset, state)) = ProducerStateManager::decode_snapshot(data) {
        assert_eq!(state.encode_snapshot(offset), data, "a decoded snapshot re-encodes to its bytes");
    }
});
