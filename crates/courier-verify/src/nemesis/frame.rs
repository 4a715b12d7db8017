//! Just enough of the Kafka framing for the fault proxy to know what it forwards.
//!
//! A frame is an `i32` big-endian length and that many bytes. A request starts with its
//! header (`api_key: i16, api_version: i16, correlation_id: i32, client_id: nullable string`,
//! then tagged fields in flexible versions); a response starts with the correlation id. The
//! proxy reads only a bounded prefix of each frame ([`REQUEST_PREFIX_MAX`] bytes) and streams
//! the rest, so every parser here works on a prefix and answers `None` when the prefix is too
//! short or malformed: the proxy then forwards the frame as opaque bytes.

/// Frames longer than this close the connection (a corrupt length, not a real request).
pub const MAX_FRAME: usize = 256 << 20;
/// How much of a request the proxy looks at: its header and Produce's `acks` fit unless the
/// client id or transactional id is unusually long.
pub const REQUEST_PREFIX_MAX: usize = 1024;
/// How much of a response the proxy looks at: the correlation id.
pub const RESPONSE_PREFIX: usize = 4;
/// Produce's API key.
pub const PRODUCE: i16 = 0;
/// First Produce version with a flexible (tagged-field) header and compact strings.
const PRODUCE_FIRST_FLEXIBLE: i16 = 9;
/// First Produce version with a transactional id before `acks`.
const PRODUCE_FIRST_TRANSACTIONAL: i16 = 3;

/// The fixed part of a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// The request header at the start of `prefix`.
pub fn request_head(prefix: &[u8]) -> Option<RequestHead> {
    let mut c = Cursor(prefix);
    Some(RequestHead {
        api_key: c.i16()?,
        api_version: c.i16()?,
        correlation_id: c.i32()?,
    })
}

/// The correlation id at the start of a response.
pub fn response_correlation_id(prefix: &[u8]) -> Option<i32> {
    Cursor(prefix).i32()
}

/// Produce's `acks`, read from the start of a Produce request (header included); `None` if
/// the prefix is too short or not a well-formed Produce request.
pub fn produce_acks(prefix: &[u8]) -> Option<i16> {
    let mut c = Cursor(prefix);
    let head = RequestHead {
        api_key: c.i16()?,
        api_version: c.i16()?,
        correlation_id: c.i32()?,
    };
    if head.api_key != PRODUCE || head.api_version < 0 {
        return None;
    }
    c.nullable_string()?; // client_id: a classic nullable string in every header version
    let flexible = head.api_version >= PRODUCE_FIRST_FLEXIBLE;
    if flexible {
        c.tagged_fields()?;
    }
    if head.api_version >= PRODUCE_FIRST_TRANSACTIONAL {
        if flexible {
            c.compact_nullable_string()?;
        } else {
            c.nullable_string()?;
        }
    }
    c.i16()
}

/// Reads big-endian fields off the front of a slice; every read is checked.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint of at most 5 bytes (a u32).
    fn uvarint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// An `i16` length (-1 for null) and that many bytes.
    fn nullable_string(&mut self) -> Option<()> {
        let len = self.i16()?;
        if len >= 0 {
            self.take(usize::try_from(len).ok()?)?;
        } else if len != -1 {
            return None;
        }
        Some(())
    }

    /// A varint of length + 1 (0 for null) and that many bytes.
    fn compact_nullable_string(&mut self) -> Option<()> {
        let n = self.uvarint()?;
        if n > 0 {
            self.take(usize::try_from(n - 1).ok()?)?;
        }
        Some(())
    }

    /// A count of tagged fields, each a tag, a size and that many bytes.
    fn tagged_fields(&mut self) -> Option<()> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size).ok()?)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(api_key: i16, version: i16, corr: i32, client: Option<&str>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&api_key.to_be_bytes());
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&corr.to_be_bytes());
        match client {
            Some(c) => {
                v.extend_from_slice(&(c.len() as i16).to_be_bytes());
                v.extend_from_slice(c.as_bytes());
            }
            None => v.extend_from_slice(&(-1i16).to_be_bytes()),
        }
        v
    }

    #[test]
    fn acks_in_classic_versions() {
        let mut v0 = header(0, 2, 7, Some("rdkafka"));
        v0.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(produce_acks(&v0), Some(-1));
        let mut v3 = header(0, 3, 7, None);
        v3.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
        v3.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(produce_acks(&v3), Some(0));
        let mut v8 = header(0, 8, 7, Some("c"));
        v8.extend_from_slice(&3i16.to_be_bytes());
        v8.extend_from_slice(b"txn");
        v8.extend_from_slice(&1i16.to_be_bytes());
        assert_eq!(produce_acks(&v8), Some(1));
    }

    #[test]
    fn acks_in_flexible_versions() {
        let mut v9 = header(0, 9, 7, Some("c"));
        v9.extend_from_slice(&[1, 5, 2, 0xAA, 0xBB]); // one tagged field: tag 5, 2 bytes
        v9.extend_from_slice(&[4]); // compact transactional id of 3 bytes
        v9.extend_from_slice(b"txn");
        v9.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(produce_acks(&v9), Some(-1));
        let mut null_txn = header(0, 11, 7, None);
        null_txn.extend_from_slice(&[0, 0]); // no tags, null transactional id
        null_txn.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(produce_acks(&null_txn), Some(0));
    }

    #[test]
    fn short_or_foreign_prefixes_are_none() {
        let full = {
            let mut v = header(0, 9, 7, Some("client"));
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&1i16.to_be_bytes());
            v
        };
        for n in 0..full.len() {
            assert_eq!(produce_acks(&full[..n]), None, "prefix of {n} bytes");
        }
        assert_eq!(produce_acks(&full), Some(1));
        let fetch = header(1, 4, 7, None);
        assert_eq!(produce_acks(&fetch), None);
        assert_eq!(
            request_head(&fetch),
            Some(RequestHead {
                api_key: 1,
                api_version: 4,
                correlation_id: 7
            })
        );
        assert_eq!(request_head(&fetch[..7]), None);
        assert_eq!(response_correlation_id(&[0, 0, 1, 2]), Some(258));
        assert_eq!(response_correlation_id(&[0, 0, 1]), None);
        // An overlong varint never reads past five bytes.
        let mut bad = header(0, 9, 7, None);
        bad.extend_from_slice(&[0xff; 8]);
        assert_eq!(produce_acks(&bad), None);
    }
}
