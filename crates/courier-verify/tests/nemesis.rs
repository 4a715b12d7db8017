//! The nemesis's faults are real: a `courier serve` process is killed, paused and restarted
//! and keeps its data; the proxy really loses an acknowledgement (a non-idempotent producer
//! then writes the record twice), cuts and refuses connections, delays frames, and never
//! leaves a client hanging on a dead broker; a torn segment tail is recovered; a tmpfs fills
//! up and frees again.
//!
//! The broker binary is `$COURIER_BIN`, else `courier` next to this test's target directory,
//! built with cargo on first use if missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use courier_verify::nemesis::{
    free_port, probe_api_versions, BrokerOptions, BrokerProcess, DiskLimit, FaultProxy,
};
use courier_verify::VerifyError;
use rand::SeedableRng;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

#[path = "../../../tests/support/courier_bin.rs"]
mod courier_bin;
use courier_bin::courier_bin;

/// A broker in a fresh temporary directory, advertising `advertised` (its own address if
/// `None`).
fn broker(tmp: &Path, port: u16, advertised: Option<SocketAddr>) -> BrokerProcess {
    let own = SocketAddr::from(([127, 0, 0, 1], port));
    let opts = BrokerOptions {
        bin: courier_bin(),
        data_dir: tmp.join("data"),
        listen_port: port,
        advertised: advertised.unwrap_or(own).to_string(),
        extra_args: vec![],
        log_path: tmp.join("broker.log"),
    };
    BrokerProcess::start(opts).expect("broker starts")
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "15000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Sends `values` one at a time (each acknowledged before the next); returns the offsets.
async fn produce(p: &FutureProducer, topic: &str, values: &[String]) -> Vec<i64> {
    let mut offsets = Vec::new();
    for v in values {
        let delivery = p
            .send(
                FutureRecord::<(), _>::to(topic).payload(v),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send {v}: {e}"));
        offsets.push(delivery.offset);
    }
    offsets
}

/// Every value of partition 0 of `topic`, in offset order.
fn read_values(bootstrap: &str, topic: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "nemesis-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (out.len() as i64) < high - low && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(out.len() as i64, high - low, "read all of {topic}");
    out
}

/// An ApiVersions v0 request frame.
fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&10i32.to_be_bytes());
    v.extend_from_slice(&18i16.to_be_bytes());
    v.extend_from_slice(&0i16.to_be_bytes());
    v.extend_from_slice(&correlation_id.to_be_bytes());
    v.extend_from_slice(&(-1i16).to_be_bytes());
    v
}

/// Sends an ApiVersions request on `s` and returns the response's correlation id.
fn round_trip(s: &mut TcpStream, correlation_id: i32) -> std::io::Result<i32> {
    s.write_all(&api_versions_request(correlation_id))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

/// Waits up to `within` for the peer to close `s`; returns how long it took.
fn wait_closed(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes from a connection that should be closed"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed within {within:?}: {e}"),
    }
    started.elapsed()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_broker_restarts_on_the_same_port_with_its_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let b = broker(tmp.path(), port, None);
    let bootstrap = b.listen_addr().to_string();
    let values: Vec<String> = (0..5).map(|i| format!("v{i}")).collect();
    let p = producer(&bootstrap, &[]);
    assert_eq!(produce(&p, "survives", &values).await, [0, 1, 2, 3, 4]);

    b.kill().expect("kill");
    assert!(!b.is_running());
    assert!(probe_api_versions(b.listen_addr(), Duration::from_millis(500)).is_err());
    b.restart().expect("restart");
    assert!(b.is_running());
    assert_eq!(b.listen_addr().port(), port);
    assert_eq!(
        read_values(&bootstrap, "survives"),
        values,
        "{}",
        b.log_tail()
    );
}

#[test]
fn paused_broker_answers_nothing_until_resumed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = broker(tmp.path(), free_port().expect("port"), None);
    b.pause().expect("pause");
    assert!(b.is_running() && b.is_paused());
    let err = probe_api_versions(b.listen_addr(), Duration::from_millis(500))
        .expect_err("a stopped broker cannot answer");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    b.resume().expect("resume");
    probe_api_versions(b.listen_addr(), Duration::from_secs(5)).expect("answers once resumed");

    b.pause().expect("pause again");
    b.stop().expect("stop resumes, then terminates");
    assert!(!b.is_running());
    assert!(matches!(b.pause(), Err(VerifyError::BrokerNotRunning(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_makes_a_retrying_producer_write_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().expect("addr"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .expect("proxy");
    let b = broker(tmp.path(), port, Some(proxy.local_addr()));
    let bootstrap = proxy.local_addr().to_string();
    let p = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "false"),
            ("retries", "10"),
            ("retry.backoff.ms", "100"),
            ("max.in.flight.requests.per.connection", "1"),
        ],
    );
    produce(&p, "acks", &["before".to_string()]).await;
    proxy.lose_acks(1);
    produce(&p, "acks", &["twice".to_string()]).await;
    assert_eq!(proxy.pending_lost_acks(), 0);
    assert_eq!(proxy.stats().acks_dropped, 1);

    let values = read_values(&bootstrap, "acks");
    assert_eq!(values, ["before", "twice", "twice"], "{}", b.log_tail());
    assert!(proxy.stats().bytes_to_client > 0 && proxy.stats().bytes_to_upstream > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_refuses_and_delays_connections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().expect("addr"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .expect("proxy");
    let _b = broker(tmp.path(), port, Some(proxy.local_addr()));
    let addr = proxy.local_addr();

    // Cut: both open connections close promptly.
    let mut a = connect(addr);
    let mut c = connect(addr);
    assert_eq!(round_trip(&mut a, 1).expect("a"), 1);
    assert_eq!(round_trip(&mut c, 2).expect("c"), 2);
    proxy.cut_connections();
    assert!(wait_closed(&mut a, Duration::from_secs(2)) < Duration::from_secs(2));
    assert!(wait_closed(&mut c, Duration::from_secs(2)) < Duration::from_secs(2));
    let stats = proxy.stats();
    assert_eq!((stats.cuts, stats.connections_cut), (1, 2), "{stats:?}");

    // Partition: new connections are closed at once; healing lets them through again.
    let mut open = connect(addr);
    assert_eq!(round_trip(&mut open, 3).expect("open"), 3);
    proxy.set_partitioned(true);
    wait_closed(&mut open, Duration::from_secs(2));
    let mut refused = connect(addr);
    assert!(round_trip(&mut refused, 4).is_err());
    assert!(proxy.stats().connections_refused >= 1);
    proxy.set_partitioned(false);
    let mut healed = connect(addr);
    assert_eq!(round_trip(&mut healed, 5).expect("healed"), 5);

    // Delay: a round trip is held once each way.
    proxy.set_delay(Some(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(round_trip(&mut healed, 6).expect("delayed"), 6);
    assert!(
        started.elapsed() >= Duration::from_millis(590),
        "{:?}",
        started.elapsed()
    );
    proxy.set_delay(None);
    let started = Instant::now();
    assert_eq!(round_trip(&mut healed, 7).expect("prompt"), 7);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_closes_clients_promptly_when_the_broker_is_dead() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port().expect("port");
    let proxy = FaultProxy::start(
        "127.0.0.1:0".parse().expect("addr"),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .expect("proxy");
    let b = broker(tmp.path(), port, Some(proxy.local_addr()));
    let mut open = connect(proxy.local_addr());
    assert_eq!(round_trip(&mut open, 1).expect("open"), 1);

    b.kill().expect("kill");
    assert!(wait_closed(&mut open, Duration::from_secs(2)) < Duration::from_secs(2));
    let mut fresh = connect(proxy.local_addr());
    fresh
        .write_all(&api_versions_request(2))
        .expect("the proxy accepts the bytes");
    assert!(wait_closed(&mut fresh, Duration::from_secs(2)) < Duration::from_secs(2));
    assert!(proxy.stats().upstream_failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_refused_while_running_and_recovered_after_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = broker(tmp.path(), free_port().expect("port"), None);
    let bootstrap = b.listen_addr().to_string();
    let p = producer(&bootstrap, &[]);
    let values: Vec<String> = (0..20).map(|i| format!("record-{i:03}")).collect();
    produce(&p, "torn", &values).await;
    drop(p);

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    assert!(matches!(
        b.truncate_tail(&mut rng),
        Err(VerifyError::BrokerRunning(_))
    ));
    b.kill().expect("kill");
    let info = b.truncate_tail(&mut rng).expect("truncate");
    assert!(info
        .path
        .starts_with(tmp.path().join("data").join("torn-0")));
    assert!(info.new_len < info.old_len && info.old_len - info.new_len <= 4096);
    assert_eq!(
        std::fs::metadata(&info.path).expect("stat").len(),
        info.new_len
    );

    b.restart().expect("restarts after a torn write");
    let survived = read_values(&bootstrap, "torn");
    assert!(
        survived.len() < values.len(),
        "the cut lost at least one batch"
    );
    assert_eq!(
        survived[..],
        values[..survived.len()],
        "what is left is a prefix"
    );
    let p = producer(&bootstrap, &[]);
    let next = produce(&p, "torn", &["after".to_string()]).await;
    assert_eq!(
        next,
        [survived.len() as i64],
        "the log continues where it was cut"
    );
}

#[test]
fn disk_limit_fills_and_frees_a_small_tmpfs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fs");
    let mounted = |dir: &Path| {
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(dir.to_str().expect("utf-8")))
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let err = DiskLimit::mount(&dir, 16).expect_err("mounting needs root");
        assert!(err.to_string().contains("CAP_SYS_ADMIN"), "{err}");
        eprintln!("skipping the disk-full checks: not root ({err})");
        return;
    }
    assert!(matches!(
        DiskLimit::mount(tmp.path().join("zero"), 0),
        Err(VerifyError::Mount { .. })
    ));
    std::fs::create_dir_all(tmp.path().join("busy")).expect("mkdir");
    std::fs::write(tmp.path().join("busy/file"), b"x").expect("write");
    assert!(matches!(
        DiskLimit::mount(tmp.path().join("busy"), 16),
        Err(VerifyError::DirNotEmpty(_))
    ));

    let disk = DiskLimit::mount(&dir, 16).expect("mount");
    assert!(mounted(&dir));
    std::fs::write(dir.join("before"), vec![1u8; 1 << 20]).expect("room before filling");
    let filled = disk.fill().expect("fill");
    assert!(
        (13 << 20..=16 << 20).contains(&filled),
        "filled {filled} bytes"
    );
    assert!(disk.is_filled());
    let err = std::fs::write(dir.join("full"), vec![1u8; 64 << 10]).expect_err("disk is full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

    disk.release().expect("release");
    assert!(!disk.is_filled());
    std::fs::write(dir.join("after"), vec![1u8; 1 << 20]).expect("room after releasing");
    drop(disk);
    assert!(!mounted(&dir), "unmounted on drop");
}
