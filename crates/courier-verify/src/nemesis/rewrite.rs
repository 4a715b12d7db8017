//! Rewrites the broker addresses in Metadata and FindCoordinator responses so that clients
//! keep talking through the fault proxy.
//!
//! A broker this tool starts advertises the proxy itself. A broker given with `--bootstrap`
//! advertises its own address, and clients would connect to it directly after their first
//! Metadata request, bypassing every network fault; so the proxy replaces the address of the
//! broker it stands in front of (the upstream) with its own in those two responses. Brokers
//! other than the upstream (a multi-node cluster) are left alone: their traffic is not
//! faulted.

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FindCoordinatorResponse, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Metadata's API key.
pub const METADATA: i16 = 3;
/// FindCoordinator's API key.
pub const FIND_COORDINATOR: i16 = 10;
/// Responses larger than this are forwarded unchanged.
pub const MAX_REWRITE: usize = 16 << 20;

/// What to rewrite: the upstream broker's address, and the proxy's.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The broker behind the proxy.
    pub upstream: SocketAddr,
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: i32,
}

impl Rewrite {
    /// True if `host:port`, as a broker advertises it, is the upstream.
    fn is_upstream(&self, host: &str, port: i32) -> bool {
        if port != i32::from(self.upstream.port()) {
            return false;
        }
        (host, port as u16)
            .to_socket_addrs()
            .map(|mut addrs| addrs.any(|a| a.ip() == self.upstream.ip()))
            .unwrap_or(false)
    }

    /// The response `body` (the frame without its length) with the upstream's address
    /// replaced; `None` when nothing changed or it does not decode (then forward it as is).
    pub fn response(&self, api_key: i16, api_version: i16, body: &[u8]) -> Option<Vec<u8>> {
        let key = ApiKey::try_from(api_key).ok()?;
        let header_version = key.response_header_version(api_version);
        let mut buf = Bytes::copy_from_slice(body);
        let header = ResponseHeader::decode(&mut buf, header_version).ok()?;
        let mut out = BytesMut::new();
        header.encode(&mut out, header_version).ok()?;
        let changed = match api_key {
            METADATA => {
                let mut r = MetadataResponse::decode(&mut buf, api_version).ok()?;
                let mut changed = false;
                for b in r.brokers.iter_mut() {
                    if self.is_upstream(b.host.as_str(), b.port) {
                        b.host = StrBytes::from_string(self.host.clone());
                        b.port = self.port;
                        changed = true;
                    }
                }
                r.encode(&mut out, api_version).ok()?;
                changed
            }
            FIND_COORDINATOR => {
                let mut r = FindCoordinatorResponse::decode(&mut buf, api_version).ok()?;
                let mut changed = false;
                if self.is_upstream(r.host.as_str(), r.port) {
                    r.host = StrBytes::from_string(self.host.clone());
                    r.port = self.port;
                    changed = true;
                }
                for c in r.coordinators.iter_mut() {
                    if self.is_upstream(c.host.as_str(), c.port) {
                        c.host = StrBytes::from_string(self.host.clone());
                        c.port = self.port;
                        changed = true;
                    }
                }
                r.encode(&mut out, api_version).ok()?;
                changed
            }
            _ => false,
        };
        changed.then(|| out.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::BrokerId;

    fn rewrite() -> Rewrite {
        Rewrite {
            upstream: "127.0.0.1:9092".parse().expect("addr"),
            host: "127.0.0.1".into(),
            port: 40000,
        }
    }

    fn metadata(version: i16, brokers: &[(&str, i32)]) -> Vec<u8> {
        let header_version = ApiKey::Metadata.response_header_version(version);
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut out, header_version)
            .expect("header");
        MetadataResponse::default()
            .with_brokers(
                brokers
                    .iter()
                    .enumerate()
                    .map(|(i, (h, p))| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(i as i32))
                            .with_host(StrBytes::from_string(h.to_string()))
                            .with_port(*p)
                    })
                    .collect(),
            )
            .encode(&mut out, version)
            .expect("body");
        out.to_vec()
    }

    fn brokers(version: i16, body: &[u8]) -> Vec<(String, i32)> {
        let mut buf = Bytes::copy_from_slice(body);
        let hv = ApiKey::Metadata.response_header_version(version);
        let h = ResponseHeader::decode(&mut buf, hv).expect("header");
        assert_eq!(h.correlation_id, 7);
        MetadataResponse::decode(&mut buf, version)
            .expect("body")
            .brokers
            .iter()
            .map(|b| (b.host.to_string(), b.port))
            .collect()
    }

    #[test]
    fn the_upstream_broker_is_replaced_by_the_proxy_in_every_version() {
        for version in [1, 9, 12] {
            let body = metadata(version, &[("127.0.0.1", 9092), ("10.9.9.9", 9092)]);
            let out = rewrite()
                .response(METADATA, version, &body)
                .expect("rewritten");
            assert_eq!(
                brokers(version, &out),
                [
                    ("127.0.0.1".to_string(), 40000),
                    ("10.9.9.9".to_string(), 9092)
                ],
                "v{version}: only the upstream changes"
            );
        }
    }

    #[test]
    fn other_brokers_and_garbage_are_left_alone() {
        let body = metadata(9, &[("127.0.0.1", 9093)]);
        assert_eq!(rewrite().response(METADATA, 9, &body), None);
        assert_eq!(rewrite().response(METADATA, 9, b"\x00\x01"), None);
        assert_eq!(rewrite().response(METADATA, 9, &[]), None);
    }
}
