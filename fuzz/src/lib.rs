//! Helpers shared by the fuzz targets.

/// Rewrites the CRC32C of every batch that the v2 header walk can reach, so that mutated inputs
/// get past the CRC check and exercise the record validation behind it. Returns whether any byte
/// changed. The walk mirrors `validate_batches` only loosely (a short or bogus `batch_length`
/// just ends it); the validator still sees arbitrary bytes everywhere except the CRC fields.
pub fn fix_crcs(buf: &mut [u8]) -> bool {
    const HEADER: usize = 61;
    const OVERHEAD: usize = 12;
    let mut changed = false;
    let mut pos = 0usize;
    while buf.len() - pos >= HEADER {
        let len = i32::from_be_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
        let Ok(len) = usize::try_from(len) else { break };
        if len < HEADER - OVERHEAD {
            break;
        }
        let size = (len + OVERHEAD).min(buf.len() - pos);
        let crc = crc32c::crc32c(&buf[pos + 21..pos + size]).to_be_bytes();
        if buf[pos + 17..pos + 21] != crc {
            buf[pos + 17..pos + 21].copy_from_slice(&crc);
            changed = true;
        }
        pos += size;
    }
    changed
}
