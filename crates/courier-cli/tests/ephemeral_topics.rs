//! Ephemeral topics (`courier.ephemeral=true`): broadcast to every listening subscriber, data
//! kept in memory only (never under the data dir), a topic that survives restarts empty, with
//! offsets that do not go back, retention that bounds memory, and bad values refused.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig,
};
use kafka_protocol::messages::{AlterConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use support::kafka::*;
use support::{RawClient, TestBroker};

const EPHEMERAL: &str = "courier.ephemeral";

/// A broker whose memory directory is removed when the test ends, however it ends (a killed
/// broker leaves it behind in /dev/shm until its next start).
struct Broker(TestBroker);

impl Drop for Broker {
    fn drop(&mut self) {
        self.0.kill();
        if let Some(dir) = memory_dir(self.0.data_dir()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl std::ops::Deref for Broker {
    type Target = TestBroker;
    fn deref(&self) -> &TestBroker {
        &self.0
    }
}

impl std::ops::DerefMut for Broker {
    fn deref_mut(&mut self) -> &mut TestBroker {
        &mut self.0
    }
}

/// The broker's memory directory, as its `meta/ephemeral-dir` record names it.
fn memory_dir(data_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(data_dir.join("meta").join("ephemeral-dir")).ok()?;
    Some(PathBuf::from(text.trim()))
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn create(bootstrap: &str, topic: NewTopic<'_>) -> Result<String, RDKafkaErrorCode> {
    let r = admin(bootstrap)
        .create_topics(&[topic], &opts())
        .await
        .expect("create_topics");
    r.into_iter()
        .next()
        .expect("one result")
        .map_err(|(_, code)| code)
}

fn ephemeral(name: &str, partitions: i32) -> NewTopic<'_> {
    NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set(EPHEMERAL, "true")
}

/// Every config of a topic as DescribeConfigs reports it: name to (value, is_default).
async fn describe(bootstrap: &str, topic: &str) -> BTreeMap<String, (String, bool)> {
    let described = admin(bootstrap)
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts())
        .await
        .expect("describe_configs");
    let resource = described.into_iter().next().expect("one").expect("ok");
    resource
        .entries
        .into_iter()
        .map(|e| (e.name, (e.value.unwrap_or_default(), e.is_default)))
        .collect()
}

/// `(value, is_default)` as a test writes it.
fn described(value: &str, is_default: bool) -> Option<(String, bool)> {
    Some((value.to_string(), is_default))
}

/// (low, high) watermarks: ListOffsets earliest and latest.
fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(bootstrap, &[])
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Bytes of `.log` segment files directly in `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn keyed(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("k{i}"), format!("{prefix}-{i}").into_bytes()))
        .collect()
}

/// Creates an ephemeral and a durable topic with `partitions` each and sends `records` to
/// both with acks=all; returns the durable topic's acknowledged (partition, offset)s.
async fn publish_to_both(
    bootstrap: &str,
    (ephemeral_topic, durable_topic): (&str, &str),
    partitions: i32,
    records: &[(String, Vec<u8>)],
) -> Vec<(i32, i64)> {
    create(bootstrap, ephemeral(ephemeral_topic, partitions))
        .await
        .expect("create the ephemeral topic");
    create_topic(bootstrap, durable_topic, partitions).await;
    let p = producer(bootstrap, &[("acks", "all")]);
    produce_keyed(&p, ephemeral_topic, records).await;
    produce_keyed(&p, durable_topic, records).await
}

/// What a subscriber received: (partition, offset, key, value).
type Received = (i32, i64, Vec<u8>, Vec<u8>);

/// Per partition, (offset, key, value) in the order received or acknowledged.
type ByPartition = BTreeMap<i32, Vec<(i64, Vec<u8>, Vec<u8>)>>;

/// A pub/sub subscriber: its own consumer on its own thread, in no shared group, assigned to every
/// partition at the end of the log (`latest`), recording everything it receives.
struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    fn start(bootstrap: &str, topic: &str, partitions: i32, name: &str) -> Self {
        // librdkafka wants a group id even for assign(); each subscriber has its own and
        // neither joins nor commits.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", name)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "latest")
            // Long polls: delivery relies on the broker waking fetches on appends.
            .set("fetch.wait.max.ms", "5000")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::End)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let received = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, errors, stop) = (received.clone(), errors.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match consumer.poll(Duration::from_millis(50)) {
                        Some(Ok(m)) => received.lock().expect("lock").push((
                            m.partition(),
                            m.offset(),
                            m.key().unwrap_or_default().to_vec(),
                            m.payload().unwrap_or_default().to_vec(),
                        )),
                        Some(Err(e)) => errors.lock().expect("lock").push(e.to_string()),
                        None => {}
                    }
                }
            })
        };
        Subscriber {
            received,
            errors,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Stops the consumer and returns what it received and the errors it saw.
    fn finish(mut self) -> (Vec<Received>, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("subscriber thread");
        }
        let errors = self.errors.lock().expect("lock").clone();
        (self.received(), errors)
    }
}

/// Sends a warm-up record to every partition until every subscriber has received one on each:
/// from then on, each of them is fetching at the end of every partition.
async fn wait_until_listening(bootstrap: &str, topic: &str, partitions: i32, subs: &[Subscriber]) {
    let p = producer(bootstrap, &[("acks", "all")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for partition in 0..partitions {
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key("warm-up")
                .payload("warm-up");
            p.send(record, Duration::from_secs(10))
                .await
                .expect("warm-up delivered");
        }
        let round_end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < round_end {
            let listening = subs.iter().all(|s| {
                let got = s.received();
                (0..partitions).all(|p| got.iter().any(|r| r.0 == p && r.2 == b"warm-up"))
            });
            if listening {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers never started listening"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listening_subscriber_receives_every_message_once_in_partition_order() {
    let broker = Broker(TestBroker::start());
    let b = broker.bootstrap();
    create(&b, ephemeral("ticks-1", 1))
        .await
        .expect("create ticks-1");
    // Through the command line, as an operator would.
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["topics", "create", "ticks-3", "--partitions", "3"])
        .args(["--config", "courier.ephemeral=true"])
        .env("COURIER_BOOTSTRAP", &b)
        .output()
        .expect("run courier");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        describe(&b, "ticks-3").await.get(EPHEMERAL).cloned(),
        described("true", false)
    );

    for (topic, partitions) in [("ticks-1", 1), ("ticks-3", 3)] {
        let subs: Vec<Subscriber> = (0..3)
            .map(|i| Subscriber::start(&b, topic, partitions, &format!("{topic}-sub-{i}")))
            .collect();
        wait_until_listening(&b, topic, partitions, &subs).await;

        let records = keyed(topic, 300);
        let p = producer(&b, &[("acks", "all")]);
        let acked = produce_keyed(&p, topic, &records).await;
        let mut expected = ByPartition::new();
        for ((key, value), (partition, offset)) in records.iter().zip(&acked) {
            expected.entry(*partition).or_default().push((
                *offset,
                key.clone().into_bytes(),
                value.clone(),
            ));
        }
        for list in expected.values_mut() {
            list.sort();
        }
        if partitions == 3 {
            assert_eq!(expected.len(), 3, "keys spread over every partition");
        }

        let deadline = Instant::now() + Duration::from_secs(30);
        let messages = |s: &Subscriber| {
            let got = s.received();
            got.iter().filter(|r| r.2 != b"warm-up").count()
        };
        while subs.iter().any(|s| messages(s) < records.len()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (i, s) in subs.into_iter().enumerate() {
            let (got, errors) = s.finish();
            assert!(errors.is_empty(), "{topic} subscriber {i}: {errors:?}");
            let mut by_partition = ByPartition::new();
            for (partition, offset, key, value) in got {
                if key != b"warm-up" {
                    by_partition
                        .entry(partition)
                        .or_default()
                        .push((offset, key, value));
                }
            }
            assert_eq!(
                by_partition, expected,
                "{topic} subscriber {i}: every message once, in each partition's order"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_data_never_reaches_the_data_dir_and_a_clean_restart_keeps_offsets() {
    let mut broker = Broker(TestBroker::start());
    let b = broker.bootstrap();
    publish_to_both(&b, ("gauges", "ledger"), 2, &keyed("l", 200)).await;
    let reads = read_all(&b, "gauges", 2, 200, Duration::from_secs(20));
    assert_eq!(reads.len(), 200, "ephemeral records are readable");

    let data = broker.data_dir().to_path_buf();
    let gauges_files: Vec<PathBuf> = files_under(&data)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("gauges"))
        .collect();
    assert_eq!(
        gauges_files,
        vec![data.join("meta").join("topics").join("gauges.toml")],
        "only the topic's metadata is under the data dir"
    );
    for partition in 0..2 {
        assert!(segment_bytes(&data.join(format!("ledger-{partition}"))) > 0);
    }
    let memory = memory_dir(&data).expect("the broker recorded its memory directory");
    assert!(!memory.starts_with(&data));
    let in_memory: u64 = (0..2)
        .map(|p| segment_bytes(&memory.join(format!("gauges-{p}"))))
        .sum();
    assert!(in_memory > 0, "the segments are in {}", memory.display());
    let ends: Vec<(i64, i64)> = (0..2).map(|p| watermarks(&b, "gauges", p)).collect();
    assert_eq!(ends.iter().map(|(_, high)| high).sum::<i64>(), 200);

    let status = broker.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        !memory.exists(),
        "a clean shutdown removes the memory directory"
    );
    assert!(memory_dir(&data).is_none());

    broker.restart();
    let b = broker.bootstrap();
    for (partition, (_, high)) in ends.iter().enumerate() {
        assert_eq!(
            watermarks(&b, "gauges", partition as i32),
            (*high, *high),
            "partition {partition}: empty, starting where it ended"
        );
    }
    assert_eq!(
        read_all(&b, "ledger", 2, 200, Duration::from_secs(20)).len(),
        200
    );
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_topic_exists_with_its_config_and_holds_nothing_from_before() {
    let mut broker = Broker(TestBroker::start());
    let b = broker.bootstrap();
    let orders = keyed("order", 100);
    let acked = publish_to_both(&b, ("pulse", "orders"), 1, &orders).await;
    let (_, end) = watermarks(&b, "pulse", 0);
    assert_eq!(end, 100);
    let killed_memory = memory_dir(broker.data_dir()).expect("memory dir");

    broker.kill();
    broker.restart();
    let b = broker.bootstrap();
    assert!(
        !killed_memory.exists(),
        "the left-behind memory was removed"
    );
    let configs = describe(&b, "pulse").await;
    assert_eq!(configs.get(EPHEMERAL).cloned(), described("true", false));
    // The ephemeral defaults: short retention, so memory stays bounded.
    assert_eq!(
        configs.get("retention.ms").cloned(),
        described("60000", true)
    );
    assert_eq!(
        configs.get("retention.bytes").cloned(),
        described("67108864", true)
    );
    assert_eq!(
        watermarks(&b, "pulse", 0),
        (end, end),
        "empty, and offsets do not go back"
    );
    let p = producer(&b, &[("acks", "all")]);
    let after = produce_keyed(&p, "pulse", &[("k".into(), b"after".to_vec())]).await;
    assert_eq!(after, vec![(0, end)]);
    let reads = read_all(&b, "pulse", 1, 1, Duration::from_secs(20));
    assert_eq!(reads.len(), 1);
    assert_eq!(
        (reads[0].offset, reads[0].value.as_deref()),
        (end, Some(&b"after"[..])),
        "nothing from before the crash is read"
    );

    let durable = read_all(&b, "orders", 1, 100, Duration::from_secs(20));
    let got: Vec<(i64, Vec<u8>)> = durable
        .iter()
        .map(|r| (r.offset, r.value.clone().unwrap_or_default()))
        .collect();
    let want: Vec<(i64, Vec<u8>)> = acked
        .iter()
        .zip(&orders)
        .map(|((_, offset), (_, value))| (*offset, value.clone()))
        .collect();
    assert_eq!(
        got, want,
        "the durable topic holds every acknowledged record"
    );
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_moves_the_log_start_offset_of_an_ephemeral_topic() {
    let mut broker = Broker(TestBroker::start_with(&[
        "--retention-check-interval-ms",
        "200",
    ]));
    let b = broker.bootstrap();
    let topic = ephemeral("blips", 1)
        .set("retention.ms", "1000")
        .set("segment.bytes", "1024");
    create(&b, topic).await.expect("blips");
    assert_eq!(
        describe(&b, "blips").await.get("retention.ms").cloned(),
        described("1000", false)
    );
    let p = producer(&b, &[("acks", "all")]);
    for round in 0..20 {
        let records: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| (format!("k{round}-{i}"), vec![b'x'; 200]))
            .collect();
        produce_keyed(&p, "blips", &records).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (low, high) = loop {
        let wm = watermarks(&b, "blips", 0);
        if wm.0 > 0 || Instant::now() > deadline {
            break wm;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(high, 200);
    assert!(
        low > 0,
        "retention deleted old segments: log start offset {low}"
    );
    let reads = read_all(&b, "blips", 1, 1, Duration::from_secs(20));
    assert!(
        reads.first().is_some_and(|r| r.offset >= low),
        "reading from the beginning starts at the new log start offset {low}: {:?}",
        reads.first().map(|r| r.offset)
    );
    assert!(broker.log().contains("retention deleted segments"));
    broker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_is_refused_and_the_setting_cannot_change_later() {
    let mut broker = Broker(TestBroker::start());
    let b = broker.bootstrap();
    let bad = NewTopic::new("maybe", 1, TopicReplication::Fixed(1)).set(EPHEMERAL, "maybe");
    assert_eq!(create(&b, bad).await, Err(RDKafkaErrorCode::InvalidConfig));
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args([
            "topics",
            "create",
            "maybe-cli",
            "--config",
            "courier.ephemeral=maybe",
        ])
        .env("COURIER_BOOTSTRAP", &b)
        .output()
        .expect("run courier");
    assert!(
        !out.status.success(),
        "the CLI reports the refusal: {out:?}"
    );
    let md = admin(&b)
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert!(
        !names.contains(&"maybe") && !names.contains(&"maybe-cli"),
        "nothing was created: {names:?}"
    );
    assert!(
        memory_dir(broker.data_dir()).is_none(),
        "no memory directory either"
    );

    create_topic(&b, "plain", 1).await;
    create(&b, ephemeral("fleeting", 1))
        .await
        .expect("fleeting");
    // (rust-rdkafka 0.39's alter_configs reports Ok for a resource-level error: raw protocol.)
    let mut raw = RawClient::connect(&broker.addr);
    let resource = |name: &'static str, key: &'static str, value: &'static str| {
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str(name))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(key))
                .with_value(Some(StrBytes::from_static_str(value)))])
    };
    // Legacy AlterConfigs replaces every override: leaving courier.ephemeral out would change it.
    let legacy = AlterConfigsRequest::default().with_resources(vec![
        resource("plain", EPHEMERAL, "true"),
        resource("fleeting", "retention.ms", "5000"),
    ]);
    let resp = raw.call(1, &legacy);
    let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![40, 40],
        "INVALID_CONFIG: courier.ephemeral is fixed at creation"
    );
    let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![
        IncrementalResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("fleeting"))
            .with_configs(vec![IncrementalConfig::default()
                .with_name(StrBytes::from_static_str(EPHEMERAL))
                .with_config_operation(1)]),
    ]);
    let resp = raw.call(1, &incremental);
    assert_eq!(
        resp.responses[0].error_code, 40,
        "DELETE of the setting refused"
    );
    let keep = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("fleeting"))
        .with_configs(vec![
            AlterableConfig::default()
                .with_name(StrBytes::from_static_str(EPHEMERAL))
                .with_value(Some(StrBytes::from_static_str("true"))),
            AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("5000"))),
        ])]);
    assert_eq!(
        raw.call(1, &keep).responses[0].error_code,
        0,
        "other keys can change"
    );
    assert_eq!(
        describe(&b, "fleeting").await.get("retention.ms").cloned(),
        described("5000", false)
    );
    assert_eq!(
        describe(&b, "plain").await.get(EPHEMERAL).cloned(),
        described("false", true)
    );
    assert_eq!(
        describe(&b, "fleeting").await.get(EPHEMERAL).cloned(),
        described("true", false)
    );
    broker.terminate();
}

/// `--ephemeral-dir` puts ephemeral partitions under the given directory instead of /dev/shm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ephemeral_dir_setting_chooses_where_the_memory_lives() {
    let base = tempfile::tempdir().expect("tempdir");
    let base_arg = base.path().to_str().expect("utf-8").to_string();
    let broker = Broker(TestBroker::start_with(&["--ephemeral-dir", &base_arg]));
    let b = broker.bootstrap();
    publish_to_both(&b, ("pulse", "audit"), 1, &keyed("p", 20)).await;
    let memory = memory_dir(broker.data_dir()).expect("memory dir recorded");
    assert!(
        memory.starts_with(base.path()),
        "{} is under {}",
        memory.display(),
        base.path().display()
    );
    assert!(
        segment_bytes(&memory.join("pulse-0")) > 0,
        "the segment is there"
    );
}
