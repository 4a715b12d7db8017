//! A minimal blocking Kafka client for admin requests librdkafka's Rust binding does not
//! expose (ListTransactions, DescribeTransactions): one connection, one request at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{BufMut, Bytes, BytesMut};
use courier_protocol::kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use courier_protocol::kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// One connection to a broker.
pub struct WireClient {
    stream: TcpStream,
    correlation: i32,
}

impl WireClient {
    /// Connects to `bootstrap` (HOST:PORT).
    pub fn connect(bootstrap: &str) -> anyhow::Result<Self> {
        let stream =
            TcpStream::connect(bootstrap).with_context(|| format!("connecting to {bootstrap}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            stream,
            correlation: 0,
        })
    }

    /// Sends `req` at `version` and decodes the response.
    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> anyhow::Result<R::Response> {
        self.correlation += 1;
        let key =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("courier-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .context("sending the request")?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("reading the response (did the broker close the connection?)")?;
        let len = i32::from_be_bytes(len);
        if !(0..=100 << 20).contains(&len) {
            bail!("response length {len} out of bounds");
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf)?;
        let mut buf = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut buf, key.response_header_version(version))?;
        if h.correlation_id != self.correlation {
            bail!(
                "response for request {} while waiting for {}",
                h.correlation_id,
                self.correlation
            );
        }
        R::Response::decode(&mut buf, version)
    }
}
