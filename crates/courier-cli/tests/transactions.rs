//! Transactions with librdkafka's transactional producer: committed records are visible to
//! read_committed consumers and aborted ones are not (read_uncommitted sees both); a second
//! producer with the same transactional.id fences the first; a transaction left open past its
//! timeout is aborted; consumed offsets committed inside a transaction take effect with it; a
//! broker SIGKILL right after a commit loses nothing of it.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use support::kafka::*;
use support::TestBroker;

fn txn_producer(
    bootstrap: &str,
    id: &str,
    extra: &[(&str, &str)],
) -> ThreadedProducer<DefaultProducerContext> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("linger.ms", "1");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("transactional producer")
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{}", i % 3);
        p.send(BaseRecord::to(topic).key(&key).payload(v))
            .expect("enqueue");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

fn values(reads: &[Read]) -> HashSet<String> {
    reads
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn batch_of(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_is_visible_to_read_committed_and_aborted_is_not() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "tx", 2).await;
    let p = txn_producer(&b, "tx-1", &[]);
    p.init_transactions(Duration::from_secs(20)).expect("init");
    p.begin_transaction().expect("begin");
    send(&p, "tx", &batch_of("c1", 10));
    p.commit_transaction(Duration::from_secs(20))
        .expect("commit");
    p.begin_transaction().expect("begin");
    send(&p, "tx", &batch_of("a1", 10));
    p.abort_transaction(Duration::from_secs(20)).expect("abort");
    p.begin_transaction().expect("begin");
    send(&p, "tx", &batch_of("c2", 10));
    p.commit_transaction(Duration::from_secs(20))
        .expect("commit");

    let committed = read_from(
        &b,
        "tx",
        2,
        rdkafka::Offset::Beginning,
        20,
        Duration::from_secs(20),
        &[("isolation.level", "read_committed")],
    );
    let want: HashSet<String> = batch_of("c1", 10)
        .into_iter()
        .chain(batch_of("c2", 10))
        .collect();
    assert_eq!(
        values(&committed),
        want,
        "read_committed sees exactly the committed records"
    );
    assert_eq!(committed.len(), 20);
    let all = read_from(
        &b,
        "tx",
        2,
        rdkafka::Offset::Beginning,
        30,
        Duration::from_secs(20),
        &[("isolation.level", "read_uncommitted")],
    );
    assert_eq!(
        all.len(),
        30,
        "read_uncommitted sees the aborted records too"
    );
    assert!(values(&all).contains("a1-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "fence", 1).await;
    let old = txn_producer(&b, "shared-id", &[]);
    old.init_transactions(Duration::from_secs(20))
        .expect("init old");
    old.begin_transaction().expect("begin");
    send(&old, "fence", &batch_of("zombie", 5));
    let new = txn_producer(&b, "shared-id", &[]);
    new.init_transactions(Duration::from_secs(30))
        .expect("init new fences the old");
    let err = old
        .commit_transaction(Duration::from_secs(20))
        .expect_err("the zombie cannot commit");
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("fenc") || text.contains("epoch"),
        "fenced: {err}"
    );
    new.begin_transaction().expect("begin");
    send(&new, "fence", &batch_of("live", 5));
    new.commit_transaction(Duration::from_secs(20))
        .expect("commit");
    let seen = read_from(
        &b,
        "fence",
        1,
        rdkafka::Offset::Beginning,
        5,
        Duration::from_secs(20),
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(
        values(&seen),
        batch_of("live", 5).into_iter().collect::<HashSet<_>>(),
        "the zombie's records were aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_past_its_timeout_is_aborted() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "hung", 1).await;
    let hung = txn_producer(&b, "hung-id", &[("transaction.timeout.ms", "2000")]);
    hung.init_transactions(Duration::from_secs(20))
        .expect("init");
    hung.begin_transaction().expect("begin");
    send(&hung, "hung", &batch_of("never", 5));
    // The producer hangs (never commits); a later committed transaction is behind it.
    let later = txn_producer(&b, "later-id", &[]);
    later
        .init_transactions(Duration::from_secs(20))
        .expect("init");
    later.begin_transaction().expect("begin");
    send(&later, "hung", &batch_of("after", 5));
    later
        .commit_transaction(Duration::from_secs(20))
        .expect("commit");
    let seen = read_from(
        &b,
        "hung",
        1,
        rdkafka::Offset::Beginning,
        5,
        Duration::from_secs(20),
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(
        values(&seen),
        batch_of("after", 5).into_iter().collect::<HashSet<_>>(),
        "readable once the hung one is aborted"
    );
    std::mem::forget(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_committed_in_a_transaction_take_effect_with_it() {
    let broker = TestBroker::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let b = broker.bootstrap();
    create_topic(&b, "in", 1).await;
    create_topic(&b, "out", 1).await;
    let p = producer(&b, &[("acks", "all")]);
    produce_keyed(
        &p,
        "in",
        &(0..20)
            .map(|i| ("k".to_string(), format!("in-{i}").into_bytes()))
            .collect::<Vec<_>>(),
    )
    .await;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "copier")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    c.subscribe(&["in"]).expect("subscribe");
    let tp = txn_producer(&b, "copier-1", &[]);
    tp.init_transactions(Duration::from_secs(20)).expect("init");
    let mut copied = 0;
    let mut aborted_once = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while copied < 20 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).replace("in-", "out-");
            tp.begin_transaction().expect("begin");
            tp.send(BaseRecord::to("out").key("k").payload(&v))
                .expect("enqueue");
            let mut offsets = rdkafka::TopicPartitionList::new();
            offsets
                .add_partition_offset("in", 0, rdkafka::Offset::Offset(m.offset() + 1))
                .expect("tpl");
            let meta = c.group_metadata().expect("group metadata");
            tp.send_offsets_to_transaction(&offsets, &meta, Duration::from_secs(20))
                .expect("send offsets");
            if copied == 10 && !aborted_once {
                // One transaction aborted: its output and its offset must not stick.
                aborted_once = true;
                tp.abort_transaction(Duration::from_secs(20))
                    .expect("abort");
                c.seek(
                    "in",
                    0,
                    rdkafka::Offset::Offset(m.offset()),
                    Duration::from_secs(5),
                )
                .expect("rewind");
                continue;
            }
            tp.commit_transaction(Duration::from_secs(20))
                .expect("commit");
            copied += 1;
        }
    }
    assert_eq!(copied, 20);
    let out = read_from(
        &b,
        "out",
        1,
        rdkafka::Offset::Beginning,
        20,
        Duration::from_secs(20),
        &[("isolation.level", "read_committed")],
    );
    let want: HashSet<String> = (0..20).map(|i| format!("out-{i}")).collect();
    assert_eq!(values(&out), want, "output equals input");
    assert_eq!(out.len(), 20, "no duplicates");
    let committed = c.committed(Duration::from_secs(10)).expect("committed");
    assert_eq!(
        committed.find_partition("in", 0).map(|e| e.offset()),
        Some(rdkafka::Offset::Offset(20))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sigkill_right_after_commit_loses_none_of_it() {
    let mut broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "durable-tx", 2).await;
    let mut want = HashSet::new();
    for round in 0..3 {
        let p = txn_producer(&b, &format!("durable-{round}"), &[]);
        p.init_transactions(Duration::from_secs(30)).expect("init");
        p.begin_transaction().expect("begin");
        let vals = batch_of(&format!("r{round}"), 20);
        send(&p, "durable-tx", &vals);
        p.commit_transaction(Duration::from_secs(30))
            .expect("commit");
        want.extend(vals);
        drop(p);
        broker.kill();
        broker.restart();
    }
    let seen = read_from(
        &b,
        "durable-tx",
        2,
        rdkafka::Offset::Beginning,
        want.len(),
        Duration::from_secs(30),
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(
        values(&seen),
        want,
        "every committed transaction is visible after the crashes"
    );
    assert_eq!(seen.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_stable_offset_fetch_waits_for_the_transaction() {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let broker = TestBroker::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let b = broker.bootstrap();
    create_topic(&b, "src", 1).await;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "stable")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["src"]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.assignment().map(|a| a.count()).unwrap_or(0) == 0
        && std::time::Instant::now() < deadline
    {
        let _ = c.poll(Duration::from_millis(100));
    }
    let tp = txn_producer(&b, "stable-tx", &[]);
    tp.init_transactions(Duration::from_secs(20)).expect("init");
    tp.begin_transaction().expect("begin");
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("src", 0, rdkafka::Offset::Offset(42))
        .expect("tpl");
    tp.send_offsets_to_transaction(
        &offsets,
        &c.group_metadata().expect("meta"),
        Duration::from_secs(20),
    )
    .expect("send offsets");
    let fetch = |raw: &mut support::RawClient| {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("stable")))
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("src")))
                .with_partition_indexes(vec![0])]));
        let r = raw.call(7, &req);
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].committed_offset,
        )
    };
    let mut raw = support::RawClient::connect(&broker.addr);
    assert_eq!(
        fetch(&mut raw).0,
        88,
        "UNSTABLE_OFFSET_COMMIT while the transaction is open"
    );
    tp.commit_transaction(Duration::from_secs(20))
        .expect("commit");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut now = fetch(&mut raw);
    while now != (0, 42) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now = fetch(&mut raw);
    }
    assert_eq!(
        now,
        (0, 42),
        "stable and visible once the markers are written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_above_the_broker_maximum_is_refused() {
    let broker = TestBroker::start_with(&["--transaction-max-timeout-ms", "5000"]);
    let p = txn_producer(
        &broker.bootstrap(),
        "too-long",
        &[("transaction.timeout.ms", "10000")],
    );
    let err = p
        .init_transactions(Duration::from_secs(20))
        .expect_err("refused");
    assert!(
        err.to_string().to_lowercase().contains("timeout"),
        "INVALID_TRANSACTION_TIMEOUT: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_describes_transactions() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "cli-tx", 2).await;
    let p = txn_producer(&b, "cli-tx-id", &[]);
    p.init_transactions(Duration::from_secs(20)).expect("init");
    p.begin_transaction().expect("begin");
    send(&p, "cli-tx", &batch_of("open", 4));
    let courier = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
            .args(args)
            .env("COURIER_BOOTSTRAP", &b)
            .output()
            .expect("run courier");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = courier(&["transactions", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("cli-tx-id") && l.contains("Ongoing")),
        "{out}"
    );
    let (ok, out, _) = courier(&["transactions", "describe", "cli-tx-id"]);
    assert!(ok);
    assert!(
        out.contains("state Ongoing") && out.contains("cli-tx"),
        "{out}"
    );
    p.commit_transaction(Duration::from_secs(20))
        .expect("commit");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = courier(&["transactions", "list", "--state", "CompleteCommit"]);
        if out.contains("cli-tx-id") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never CompleteCommit: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, _, err) = courier(&["transactions", "describe", "no-such-id"]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_commit_decision_and_the_markers_completes_on_restart() {
    // The broker aborts right after the PrepareCommit record is fsynced, before any marker.
    let mut broker = TestBroker::start_with(&["--fault-crash-after-txn-prepare"]);
    let b = broker.bootstrap();
    create_topic(&b, "half", 2).await;
    let p = txn_producer(&b, "half-id", &[]);
    p.init_transactions(Duration::from_secs(20)).expect("init");
    p.begin_transaction().expect("begin");
    let vals = batch_of("decided", 10);
    send(&p, "half", &vals);
    let _ = p.commit_transaction(Duration::from_secs(5)); // The broker dies mid-commit.
    drop(p);
    let died = std::time::Instant::now() + Duration::from_secs(10);
    while broker.log().matches("fault injection").count() == 0 && std::time::Instant::now() < died {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        broker.log().contains("fault injection"),
        "the broker crashed in the window"
    );
    // Restart without the fault: recovery finds the transaction prepared and commits it.
    broker.restart_with(&[]);
    let seen = read_from(
        &b,
        "half",
        2,
        rdkafka::Offset::Beginning,
        10,
        Duration::from_secs(30),
        &[("isolation.level", "read_committed")],
    );
    assert_eq!(
        values(&seen),
        vals.into_iter().collect::<HashSet<_>>(),
        "the decided commit completed on recovery"
    );
    assert!(broker
        .log()
        .contains("completing a transaction left prepared by a crash"));
}
