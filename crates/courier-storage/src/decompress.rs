//! Bounded decompression of a batch's records section, for the one place the broker looks
//! inside compressed batches (ListOffsets by timestamp).
//!
//! Producers choose what they compress, so the output is capped before it is allocated: a
//! snappy block's declared length is checked before its buffer exists, and the streaming codecs
//! (gzip, lz4, zstd) are read through a limit, so a decompression bomb costs at most the limit.

use std::io::Read;

/// Most bytes one batch may decompress to here. Appends never decompress; only timestamp
/// lookups do, one batch at a time.
pub(crate) const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// zstd window log limit (2^25 = 32 MiB): a frame asking for a larger window is refused instead
/// of making the decoder allocate it.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// The xerial-snappy stream header that Java clients (and librdkafka) put before snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// Header length: the magic, then a 4-byte version and a 4-byte minimum compatible version.
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `data` compressed with Kafka codec `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd),
/// refusing to produce more than `limit` bytes.
pub(crate) fn decompress(codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    match codec {
        1 => read_bounded(flate2::read::GzDecoder::new(data), limit),
        2 => snappy(data, limit),
        3 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| format!("lz4: {e}"))?;
            read_bounded(decoder, limit)
        }
        4 => {
            let mut decoder =
                zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder, limit)
        }
        other => Err(format!("unknown compression codec {other}")),
    }
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("decompressing: {e}"))?;
    if out.len() > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    if !data.starts_with(XERIAL_MAGIC) {
        return snappy_block(data, limit, Vec::new());
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or("snappy: truncated xerial header")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("snappy: truncated block length")?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = rest
            .get(4..4 + len)
            .ok_or("snappy: block runs past the end")?;
        out = snappy_block(block, limit, out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length first.
fn snappy_block(block: &[u8], limit: usize, mut out: Vec<u8>) -> Result<Vec<u8>, String> {
    let declared = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if out.len().saturating_add(declared) > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    let start = out.len();
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    out.truncate(start + written);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_header, BATCH_HEADER_LEN};
    use crate::batch_builder::{compressed_batch, NewRecord};

    #[test]
    fn every_codec_round_trips_what_clients_send() {
        let records: Vec<NewRecord> = (0..50)
            .map(|i| NewRecord::new(i, b"k", format!("value-{i}").as_bytes()))
            .collect();
        let plain = compressed_batch(0, &records);
        for codec in 1..=4u8 {
            let b = compressed_batch(codec, &records);
            let h = parse_header(&b).expect("header");
            assert_eq!(h.compression(), codec);
            let out = decompress(codec, &b[BATCH_HEADER_LEN..], 1 << 20).expect("decompresses");
            assert_eq!(out, &plain[BATCH_HEADER_LEN..], "codec {codec}");
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert!(gz.len() < 64 << 10);
        assert!(decompress(1, &gz, 1 << 20).is_err(), "gzip bomb refused");
        assert_eq!(decompress(1, &gz, 8 << 20).expect("fits").len(), 8 << 20);

        let zst = zstd::encode_all(&zeros[..], 3).expect("zstd");
        assert!(decompress(4, &zst, 1 << 20).is_err(), "zstd bomb refused");

        // A raw snappy block that claims 4 GiB: refused before anything is allocated.
        let mut claim = Vec::new();
        let mut n: u64 = 4 << 30;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                claim.push(byte);
                break;
            }
            claim.push(byte | 0x80);
        }
        claim.extend_from_slice(&[0u8; 40]);
        let err = decompress(2, &claim, MAX_DECOMPRESSED_BYTES).expect_err("refused");
        assert!(err.contains("more than") || err.contains("snappy"), "{err}");
    }
}
