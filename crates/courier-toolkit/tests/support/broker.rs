//! A real `courier serve` process for the toolkit's black-box tests, the plain rdkafka
//! calls the tests use to set up topics and read back what happened, and runners on their
//! own tasks.
//!
//! The broker binary is `$COURIER_BIN`, else `courier` next to this test's target directory,
//! built with cargo on first use if missing (as `courier-verify`'s nemesis tests do).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use courier_toolkit::runner::{DbHandler, Handler, InDatabase, RunStats, Runner};
use courier_toolkit::ToolkitError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `courier serve` flags that make groups form quickly.
const FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "0",
    "--group-min-session-timeout-ms",
    "1000",
];

#[path = "../../../../tests/support/courier_bin.rs"]
mod courier_bin;
pub use courier_bin::courier_bin;

/// A `courier serve` child on a fixed port of 127.0.0.1, in its own temporary directory.
/// Dropping it SIGKILLs the broker.
pub struct Broker {
    /// The running child; `None` between [`Broker::kill`] and [`Broker::restart`].
    child: Option<Child>,
    /// The port it listens on, kept across restarts so clients find it again.
    port: u16,
    /// Data directory and log; removed on drop.
    tmp: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and waits until it answers.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("courier-toolkit-")
            .tempdir()
            .expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut b = Self {
            child: None,
            port,
            tmp,
        };
        b.spawn();
        b
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the broker: no clean shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The end of the broker's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read(self.tmp.path().join("broker.log")).unwrap_or_default();
        String::from_utf8_lossy(&log[log.len().saturating_sub(4096)..]).into_owned()
    }

    fn spawn(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("broker.log"))
            .expect("log file");
        let mut child = Command::new(courier_bin())
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(self.tmp.path().join("data"))
            .args(FLAGS)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn courier");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("courier exited with {status}:\n{}", self.log_tail());
            }
            if probe(addr) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "courier not ready:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if an ApiVersions v0 request to `addr` is answered.
fn probe(addr: SocketAddr) -> bool {
    let answered = || -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        // Size, api key 18, version 0, correlation id 7, null client id.
        let mut req = 10i32.to_be_bytes().to_vec();
        req.extend_from_slice(&18i16.to_be_bytes());
        req.extend_from_slice(&0i16.to_be_bytes());
        req.extend_from_slice(&7i32.to_be_bytes());
        req.extend_from_slice(&(-1i16).to_be_bytes());
        s.write_all(&req)?;
        let mut head = [0u8; 8];
        s.read_exact(&mut head)?;
        Ok(())
    };
    answered().is_ok()
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let r = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    assert!(r.iter().all(|r| r.is_ok()), "create {topic}: {r:?}");
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Read {
    /// The value as a string.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }

    /// The first header named `name`, as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Every record of every partition of `topic` (read_committed), in offset order per
/// partition, partitions in order. Blocking: call from `spawn_blocking` or a sync test.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Read> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "toolkit-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = meta.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out: Vec<Read> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = |c: &BaseConsumer| {
        let pos = c.position().expect("position");
        ends.iter().all(|(p, end)| {
            *end == 0
                || pos
                    .find_partition(topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|o| o >= *end)
        })
    };
    while !done(&c) {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The committed offset of `group` on each of `topic`'s first `partitions` partitions
/// (`None`: nothing committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            got.find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
        })
        .collect()
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `within`.
pub async fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The future a spawned runner stops on.
type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A runner on its own task: stopped cleanly ([`RunnerTask::stop`]) or killed
/// ([`RunnerTask::kill`]: its future is dropped, a crash as far as its guarantee goes).
///
/// Dropping it (a failed assertion unwinding) kills the runner and waits for its consumer to
/// leave the group, so bind it after the [`Broker`]: a consumer closing against a broker
/// that is already gone can block for minutes.
pub struct RunnerTask {
    /// Resolves the runner's shutdown future.
    stop: Option<oneshot::Sender<()>>,
    /// The task; `None` once joined.
    task: Option<JoinHandle<Result<RunStats, ToolkitError>>>,
}

impl RunnerTask {
    /// Spawns `runner.run_until(<stop>)`.
    pub fn spawn<H: Handler>(runner: Runner<H>) -> Self {
        Self::spawn_with(|stop| async move { runner.run_until(stop).await })
    }

    /// Spawns an exactly-once-into-a-database `runner.run_until(<stop>)`.
    pub fn spawn_db<D: DbHandler>(runner: Runner<InDatabase<D>>) -> Self {
        Self::spawn_with(|stop| async move { runner.run_until(stop).await })
    }

    /// Spawns `run(<stop>)`, where `<stop>` resolves when the task is stopped.
    fn spawn_with<F>(run: impl FnOnce(StopSignal) -> F) -> Self
    where
        F: std::future::Future<Output = Result<RunStats, ToolkitError>> + Send + 'static,
    {
        let (stop, rx) = oneshot::channel::<()>();
        let signal: StopSignal = Box::pin(async move {
            let _ = rx.await;
        });
        Self {
            stop: Some(stop),
            task: Some(tokio::spawn(run(signal))),
        }
    }

    /// Stops the runner cleanly and returns its counters.
    pub async fn stop(mut self) -> RunStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await.expect("runner")
    }

    /// Drops the runner's future mid-flight.
    pub async fn kill(mut self) {
        let task = self.task.take().expect("running");
        task.abort();
        assert!(task.await.expect_err("killed").is_cancelled());
    }

    /// True once the runner returned by itself.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the runner to return.
    pub async fn join(mut self) -> Result<RunStats, ToolkitError> {
        self.task
            .take()
            .expect("running")
            .await
            .expect("runner task")
    }
}

impl Drop for RunnerTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let _ = task.await;
                })
            });
        }
    }
}
