//! Shared harness for black-box tests: a real `courier serve` process on an ephemeral port,
//! and a raw wire client for requests the Kafka clients cannot send.
#![allow(dead_code)]

pub mod cli;
pub mod kafka;
pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// An uncompressed producer batch with these values (no keys), as a client would send it.
pub fn batch(values: &[&str]) -> Bytes {
    let records: Vec<courier_storage::batch_builder::NewRecord> = values
        .iter()
        .map(|v| {
            courier_storage::batch_builder::NewRecord::new(1_700_000_000_000, b"", v.as_bytes())
        })
        .collect();
    Bytes::from(courier_storage::batch_builder::batch(&records))
}

/// A `courier serve` child process.
pub struct TestBroker {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    pub stderr_log: PathBuf,
}

impl TestBroker {
    /// Starts a broker in a fresh temporary data dir.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra `courier serve` flags.
    pub fn start_with(extra: &[&str]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("courier-test-")
            .tempdir()
            .expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut b = TestBroker {
            child: None,
            addr: String::new(),
            stderr_log: tmp.path().join("broker.log"),
            data_dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        b.spawn("127.0.0.1:0");
        b
    }

    fn spawn(&mut self, listen: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("COURIER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn courier");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("courier printed nothing; see its log")
            .expect("read stdout");
        let addr = line
            .strip_prefix("courier listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.addr = addr;
        self.child = Some(child);
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.clone()
    }

    /// SIGKILLs the broker: no clean shutdown, page cache intact.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs the broker and waits for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data dir and port, with other extra flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra_args = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Starts the broker again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.addr.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger briefly; retry until it binds.
            let probe = std::net::TcpListener::bind(&listen);
            if probe.is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn(&listen);
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- broker log (last 60 lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A minimal blocking Kafka wire client: encodes typed requests with `kafka-protocol`.
pub struct RawClient {
    stream: TcpStream,
    next_correlation: i32,
}

impl RawClient {
    pub fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        RawClient {
            stream,
            next_correlation: 1,
        }
    }

    /// Changes how long reads wait.
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("timeout");
    }

    /// Sends raw bytes as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Frames and sends a request; returns its correlation id.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("write");
        correlation
    }

    /// Reads one response frame (without the length).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Sends a request and decodes its response.
    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let correlation = self.send(version, req);
        let mut frame = self.read_frame().expect("response");
        let api_key = ApiKey::try_from(R::KEY).expect("key");
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, correlation);
        let resp = R::Response::decode(&mut frame, version).expect("response body");
        assert_eq!(frame.remaining(), 0, "response fully consumed");
        resp
    }

    /// Creates `topic` with one partition (Metadata auto-creation), produces `values` to it
    /// (acks=all) and returns its topic id.
    pub fn produce_to_new_topic(&mut self, topic: &str, values: &[&str]) -> uuid::Uuid {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
        let name = || TopicName(StrBytes::from_string(topic.to_string()));
        let md = self.call(
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name()))
                ]))
                .with_allow_auto_topic_creation(true),
        );
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(values)))])]);
        let r = self.call(9, &produce);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{r:?}");
        md.topics[0].topic_id
    }

    /// ShareGroupHeartbeat (v1) joining `member` to `group`, subscribed to `topic`.
    pub fn join_share_group(
        &mut self,
        group: &str,
        member: &str,
        topic: &str,
    ) -> kafka_protocol::messages::ShareGroupHeartbeatResponse {
        use kafka_protocol::messages::{GroupId, ShareGroupHeartbeatRequest, TopicName};
        let s = |v: &str| StrBytes::from_string(v.to_string());
        self.call(
            1,
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(member))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![TopicName(s(topic))])),
        )
    }

    /// IncrementalAlterConfigs SET of one setting of a share group; returns the error code.
    pub fn set_share_group_config(&mut self, group: &str, name: &str, value: &str) -> i16 {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let s = |v: &str| StrBytes::from_string(v.to_string());
        let req = kafka_protocol::messages::IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s(group))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))])]);
        self.call(0, &req).responses[0].error_code
    }

    /// True when the server has closed the connection (read returns EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}
