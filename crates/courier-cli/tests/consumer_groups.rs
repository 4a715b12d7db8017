//! Consumer groups with librdkafka's classic protocol (subscribe, JoinGroup/SyncGroup,
//! committed offsets): fan-out across groups, one owner per partition within a group,
//! resuming from committed offsets (the at-least-once window is exactly what was processed but
//! not committed), rebalancing when a member leaves, and committed offsets surviving a broker
//! SIGKILL.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use support::kafka::*;
use support::TestBroker;

/// (group index, member index, partition, value) of one delivered record.
type Seen = (usize, usize, i32, String);

const BROKER_FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-min-session-timeout-ms",
    "1000",
];

fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut settings = vec![
        ("group.id", group),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("enable.auto.commit", "false"),
    ];
    settings.extend_from_slice(extra);
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("fetch.wait.max.ms", "100");
    for (k, v) in settings {
        c.set(k, v);
    }
    c.create().expect("consumer")
}

/// Polls until `done` says so or the deadline passes; returns (partition, offset, value).
fn poll_until(
    c: &BaseConsumer,
    deadline: Instant,
    mut done: impl FnMut(usize) -> bool,
) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    while Instant::now() < deadline && !done(out.len()) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((m.partition(), m.offset(), value));
        }
    }
    out
}

fn wait_for_assignment(consumers: &[&BaseConsumer], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let assigned: usize = consumers
            .iter()
            .map(|c| c.assignment().map(|a| a.count()).unwrap_or(0))
            .sum();
        if assigned == partitions {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group never assigned all {partitions} partitions (got {assigned})"
        );
    }
}

async fn produce_values(
    bootstrap: &str,
    topic: &str,
    n: usize,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let p = producer(bootstrap, &[("acks", "all")]);
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("user-{}", i % 13),
                format!("{prefix}{i}").into_bytes(),
            )
        })
        .collect();
    produce_keyed(&p, topic, &records).await;
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_message_once_and_partitions_have_one_owner() {
    let broker = TestBroker::start_with(BROKER_FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "fan", 4).await;
    let groups = ["billing", "shipping", "analytics"];
    let bootstrap = b.as_str();
    let members: Vec<(usize, BaseConsumer)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, name)| (0..2).map(move |_| (g, group_consumer(bootstrap, name, &[]))))
        .collect();
    for (_, c) in &members {
        c.subscribe(&["fan"]).expect("subscribe");
    }
    for g in 0..groups.len() {
        let mine: Vec<&BaseConsumer> = members
            .iter()
            .filter(|(x, _)| *x == g)
            .map(|(_, c)| c)
            .collect();
        wait_for_assignment(&mine, 4);
    }
    let sent = produce_values(&b, "fan", 1200, "m").await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    std::thread::scope(|s| {
        for (i, (g, c)) in members.iter().enumerate() {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                        let v =
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                        seen.lock().expect("lock").push((*g, i, m.partition(), v));
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().expect("lock").len() < 3 * sent.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500)); // Anything extra would be a duplicate.
        stop.store(true, Ordering::Relaxed);
    });
    let seen = seen.lock().expect("lock").clone();
    let expected: HashSet<String> = sent
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    for (g, name) in groups.iter().enumerate() {
        let values: Vec<&String> = seen.iter().filter(|s| s.0 == g).map(|s| &s.3).collect();
        assert_eq!(
            values.len(),
            sent.len(),
            "group {name} got every message exactly once (no duplicates in a clean run)"
        );
        let unique: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
        assert_eq!(unique, expected, "group {name} got every message");
        let mut owners: HashMap<i32, HashSet<usize>> = HashMap::new();
        for s in seen.iter().filter(|s| s.0 == g) {
            owners.entry(s.2).or_default().insert(s.1);
        }
        assert!(
            owners.values().all(|o| o.len() == 1),
            "group {name}: one owner per partition: {owners:?}"
        );
        let used: HashSet<usize> = owners.values().flatten().copied().collect();
        assert_eq!(used.len(), 2, "group {name}: both members got partitions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_resumes_from_the_committed_offset() {
    let broker = TestBroker::start_with(BROKER_FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "work", 1).await;
    produce_values(&b, "work", 1000, "w").await;
    // The first consumer processes 700 records but commits only after the first 500.
    let first = group_consumer(&b, "workers", &[]);
    first.subscribe(&["work"]).expect("subscribe");
    let got = poll_until(&first, Instant::now() + Duration::from_secs(30), |n| {
        n >= 700
    });
    assert!(got.len() >= 700);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("work", 0, Offset::Offset(500))
        .expect("tpl");
    first.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(first); // Gone without committing 500..700: the at-least-once window.
    let second = group_consumer(&b, "workers", &[]);
    second.subscribe(&["work"]).expect("subscribe");
    let resumed = poll_until(&second, Instant::now() + Duration::from_secs(30), |n| {
        n >= 500
    });
    assert_eq!(
        resumed.first().map(|r| r.1),
        Some(500),
        "resumes at the committed offset"
    );
    let offsets: Vec<i64> = resumed.iter().map(|r| r.1).collect();
    assert_eq!(
        offsets,
        (500..1000).collect::<Vec<_>>(),
        "nothing skipped, nothing out of order"
    );
    let redelivered = got.iter().filter(|r| r.1 >= 500).count();
    assert_eq!(
        redelivered, 200,
        "the duplicates are exactly the processed-but-uncommitted window"
    );
    // The committed position is what the group reports.
    let committed = second
        .committed(Duration::from_secs(10))
        .expect("committed");
    assert_eq!(
        committed.find_partition("work", 0).map(|p| p.offset()),
        Some(Offset::Offset(500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_hands_its_partitions_to_the_rest() {
    let broker = TestBroker::start_with(BROKER_FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "moves", 4).await;
    let a = group_consumer(
        &b,
        "movers",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
        ],
    );
    let c = group_consumer(
        &b,
        "movers",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
        ],
    );
    a.subscribe(&["moves"]).expect("subscribe");
    c.subscribe(&["moves"]).expect("subscribe");
    wait_for_assignment(&[&a, &c], 4);
    assert_eq!(a.assignment().expect("a").count(), 2);
    let sent = produce_values(&b, "moves", 400, "x").await;
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 400 && Instant::now() < deadline {
        for consumer in [&a, &c] {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
        }
    }
    assert_eq!(seen.len(), 400);
    // Let auto-commit record the positions, then c leaves cleanly.
    std::thread::sleep(Duration::from_millis(500));
    let _ = c.poll(Duration::from_millis(10));
    match c.commit_consumer_state(CommitMode::Sync) {
        // NoOffset: auto-commit already stored every position.
        Ok(())
        | Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(e) => panic!("commit: {e}"),
    }
    drop(c);
    let more = produce_values(&b, "moves", 400, "y").await;
    let rest = poll_until(&a, Instant::now() + Duration::from_secs(30), |n| n >= 400);
    let rest_values: HashSet<String> = rest.iter().map(|r| r.2.clone()).collect();
    let want: HashSet<String> = more
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        want.is_subset(&rest_values),
        "a took over every partition and skipped nothing"
    );
    assert_eq!(a.assignment().expect("a").count(), 4);
    let old: HashSet<String> = sent
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        rest_values.is_disjoint(&old),
        "committed records were not delivered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_sigkill() {
    let mut broker = TestBroker::start_with(BROKER_FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "kept", 3).await;
    produce_values(&b, "kept", 300, "k").await;
    let c = group_consumer(&b, "durable", &[]);
    c.subscribe(&["kept"]).expect("subscribe");
    let got = poll_until(&c, Instant::now() + Duration::from_secs(30), |n| n >= 300);
    assert_eq!(got.len(), 300);
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o, _) in &got {
        let e = positions.entry(*p).or_insert(0);
        *e = (*e).max(o + 1 - 10); // Commit 10 short of the end of each partition.
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &positions {
        tpl.add_partition_offset("kept", *p, Offset::Offset(*o))
            .expect("tpl");
    }
    c.commit(&tpl, CommitMode::Sync)
        .expect("commit answered only once durable");
    drop(c);
    broker.kill();
    broker.restart();
    let b = broker.bootstrap();
    let c = group_consumer(&b, "durable", &[]);
    c.subscribe(&["kept"]).expect("subscribe");
    let again = poll_until(&c, Instant::now() + Duration::from_secs(30), |n| n >= 30);
    assert_eq!(
        again.len(),
        30,
        "exactly the 10 uncommitted records per partition come back"
    );
    for (p, o, _) in &again {
        assert!(
            *o >= positions[p],
            "partition {p}: offset {o} is at or after the committed {}",
            positions[p]
        );
    }
}
