//! Any bytes a client can send as one request frame (after the 4-byte length prefix, which the
//! server strips) must decode to a request or an error, never a panic, abort or huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match courier_protocol::decode_request(bytes::Bytes::copy_from_slice(data)) {
        Ok(req) => {
            // The server echoes these; make sure touching the decoded request is fine too.
            std::hint::black_box((req.api_key, req.header.correlation_id, &req.body));
        }
        Err(e) => {
            // The server logs the error and may send it back; formatting must not panic.
            std::hint::black_box(e.to_string());
        }
    }
});
