//! Frames to requests and responses to frames.
//!
//! A Kafka frame is a 4-byte big-endian length followed by that many bytes. The server strips the
//! length and hands the rest here as one [`Bytes`]; decoded byte fields (record batches, strings)
//! are slices of that buffer, so a produce request's batches are never copied on the way in.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ProtocolError;
use crate::versions::supported_versions;

/// The fixed leading fields of every request header, readable before anything is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// `request_api_key`.
    pub api_key: i16,
    /// `request_api_version`.
    pub api_version: i16,
    /// `correlation_id`, echoed in the response so the client can match it.
    pub correlation_id: i32,
}

/// A request decoded at the version its header names.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The API, known and served.
    pub api_key: ApiKey,
    /// The full request header (client id included).
    pub header: RequestHeader,
    /// The typed request body.
    pub body: RequestKind,
}

/// Reads the first 8 bytes of a request frame (without its length prefix).
pub fn peek_header(frame: &[u8]) -> Result<RawHeader, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame { len: frame.len() });
    }
    Ok(RawHeader {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes one request frame (without its length prefix).
///
/// Unknown API keys and versions outside the served range are reported before the body is
/// touched, so the server can answer ApiVersions with UNSUPPORTED_VERSION as Kafka does.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, ProtocolError> {
    let raw = peek_header(&frame)?;
    let api_key = ApiKey::try_from(raw.api_key).map_err(|_| ProtocolError::UnknownApiKey {
        api_key: raw.api_key,
    })?;
    let range = supported_versions(api_key).ok_or(ProtocolError::UnknownApiKey {
        api_key: raw.api_key,
    })?;
    if raw.api_version < range.min || raw.api_version > range.max {
        return Err(ProtocolError::UnsupportedVersion {
            api_key: raw.api_key,
            version: raw.api_version,
        });
    }
    let malformed = |reason: String| ProtocolError::Malformed {
        api_key: raw.api_key,
        version: raw.api_version,
        reason,
    };
    let mut buf = frame;
    let header_version = api_key.request_header_version(raw.api_version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = RequestKind::decode(api_key, &mut buf, raw.api_version)
        .map_err(|e| malformed(format!("body: {e:#}")))?;
    Ok(DecodedRequest {
        api_key,
        header,
        body,
    })
}

/// Encodes a response frame, length prefix included, with the header version Kafka uses for
/// this API and version (ApiVersions always answers with header v0).
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let encode_err = |e: String| ProtocolError::Encode {
        api_key: api_key as i16,
        version: api_version,
        reason: e,
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(api_version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| encode_err("response over 2 GiB".into()))?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")))
            .encode(&mut buf, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn decodes_a_request_at_every_served_version() {
        let r = supported_versions(ApiKey::Metadata).expect("served");
        for v in r.min..=r.max {
            let decoded = decode_request(frame(ApiKey::Metadata, v, &MetadataRequest::default()))
                .expect("decodes");
            assert_eq!(decoded.header.correlation_id, 7);
            assert!(matches!(decoded.body, RequestKind::Metadata(_)));
        }
    }

    #[test]
    fn rejects_unknown_key_short_frame_and_future_version() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(ProtocolError::ShortFrame { len: 2 })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])),
            Err(ProtocolError::UnknownApiKey { api_key: 0x7f00 })
        ));
        let f = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut bytes = BytesMut::from(&f[..]);
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(bytes.freeze()),
            Err(ProtocolError::UnsupportedVersion {
                api_key: 18,
                version: 99
            })
        ));
    }

    #[test]
    fn truncated_body_is_malformed_not_a_panic() {
        let f = frame(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("librdkafka")),
        );
        for cut in 8..f.len() {
            let r = decode_request(f.slice(..cut));
            assert!(
                matches!(
                    r,
                    Err(ProtocolError::Malformed {
                        api_key: 18,
                        version: 3,
                        ..
                    })
                ),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn api_versions_response_uses_header_v0() {
        let body = ResponseKind::ApiVersions(Default::default());
        let v3 = encode_response(ApiKey::ApiVersions, 3, 9, &body).expect("encodes");
        // length, correlation id, then straight into the body: no tagged-field byte in the header.
        assert_eq!(&v3[4..8], &9i32.to_be_bytes());
        assert_eq!(
            &v3[8..10],
            &0i16.to_be_bytes(),
            "error_code follows the correlation id"
        );
        let len = i32::from_be_bytes([v3[0], v3[1], v3[2], v3[3]]) as usize;
        assert_eq!(len, v3.len() - 4);
    }
}
