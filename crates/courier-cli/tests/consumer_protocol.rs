//! The KIP-848 consumer protocol with librdkafka (group.protocol=consumer): server-side
//! assignment spreads partitions, every message is consumed once in a clean run, a leaving
//! member's partitions move to the rest, commits carry the member epoch, and a new member
//! resumes from the committed offsets.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use support::kafka::*;
use support::TestBroker;

const FLAGS: &[&str] = &[
    "--group-consumer-heartbeat-interval-ms",
    "300",
    "--group-consumer-session-timeout-ms",
    "6000",
];

fn member(bootstrap: &str, group: &str) -> BaseConsumer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn assigned(c: &BaseConsumer) -> usize {
    c.assignment().map(|a| a.count()).unwrap_or(0)
}

fn settle(consumers: &[&BaseConsumer], want: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let now: Vec<usize> = consumers.iter().map(|c| assigned(c)).collect();
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "assignments never reached {want:?}: {now:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_assignment_rebalances_and_commits_with_member_epochs() {
    let broker = TestBroker::start_with(FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "k848", 4).await;
    let a = member(&b, "new-protocol");
    a.subscribe(&["k848"]).expect("subscribe");
    settle(&[&a], &[4]);
    let c = member(&b, "new-protocol");
    c.subscribe(&["k848"]).expect("subscribe");
    settle(&[&a, &c], &[2, 2]);
    // The group really runs the new protocol: the broker describes it as a consumer group.
    let mut raw = support::RawClient::connect(&broker.addr);
    let described = raw.call(
        0,
        &kafka_protocol::messages::ConsumerGroupDescribeRequest::default().with_group_ids(vec![
            kafka_protocol::messages::GroupId(kafka_protocol::protocol::StrBytes::from_static_str(
                "new-protocol",
            )),
        ]),
    );
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.members.len()), (0, 2), "{g:?}");
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert!(g.members.iter().all(|m| m
        .assignment
        .topic_partitions
        .iter()
        .map(|t| t.partitions.len())
        .sum::<usize>()
        == 2));

    let p = producer(&b, &[("acks", "all")]);
    let sent: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (format!("k{}", i % 17), format!("v{i}").into_bytes()))
        .collect();
    produce_keyed(&p, "k848", &sent).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut owners: HashMap<i32, HashSet<usize>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.values().sum::<usize>() < sent.len() && Instant::now() < deadline {
        for (i, consumer) in [&a, &c].iter().enumerate() {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                *seen
                    .entry(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
                    .or_default() += 1;
                owners.entry(m.partition()).or_default().insert(i);
            }
        }
    }
    assert_eq!(seen.len(), sent.len(), "every message consumed");
    assert!(seen.values().all(|n| *n == 1), "and exactly once");
    assert!(
        owners.values().all(|o| o.len() == 1),
        "one owner per partition: {owners:?}"
    );
    a.commit_consumer_state(CommitMode::Sync)
        .expect("a commits with its member epoch");
    c.commit_consumer_state(CommitMode::Sync)
        .expect("c commits with its member epoch");

    drop(c);
    settle(&[&a], &[4]);
    let more: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("k{i}"), format!("w{i}").into_bytes()))
        .collect();
    produce_keyed(&p, "k848", &more).await;
    let mut got = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < more.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = a.poll(Duration::from_millis(50)) {
            got.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(
        got.len(),
        more.len(),
        "the survivor took over and skipped nothing"
    );
    assert!(
        got.iter().all(|v| v.starts_with('w')),
        "committed records were not redelivered"
    );
    a.commit_consumer_state(CommitMode::Sync).expect("commit");
    drop(a);

    // A later member resumes after everything committed.
    let late = member(&b, "new-protocol");
    late.subscribe(&["k848"]).expect("subscribe");
    settle(&[&late], &[4]);
    let extra = late.poll(Duration::from_secs(2));
    assert!(
        extra.is_none(),
        "nothing left to consume: {:?}",
        extra.map(|m| m.map(|m| m.offset()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_range_assignor_gives_contiguous_ranges() {
    let broker = TestBroker::start_with(FLAGS);
    let b = broker.bootstrap();
    create_topic(&b, "ranged", 5).await;
    let make = || -> BaseConsumer {
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", "ranges")
            .set("group.protocol", "consumer")
            .set("group.remote.assignor", "range")
            .create()
            .expect("consumer")
    };
    let (a, c) = (make(), make());
    a.subscribe(&["ranged"]).expect("subscribe");
    c.subscribe(&["ranged"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while assigned(&a) + assigned(&c) != 5 || assigned(&a).min(assigned(&c)) == 0 {
        let _ = a.poll(Duration::from_millis(50));
        let _ = c.poll(Duration::from_millis(50));
        assert!(
            Instant::now() < deadline,
            "never assigned: {} + {}",
            assigned(&a),
            assigned(&c)
        );
    }
    let parts = |x: &BaseConsumer| -> Vec<i32> {
        let mut v: Vec<i32> = x
            .assignment()
            .expect("assignment")
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        v.sort();
        v
    };
    let mut both = [parts(&a), parts(&c)];
    both.sort();
    assert_eq!(
        both,
        [vec![0, 1, 2], vec![3, 4]],
        "range splits the topic into contiguous ranges"
    );
    let mut raw = support::RawClient::connect(&broker.addr);
    let described = raw.call(
        0,
        &kafka_protocol::messages::ConsumerGroupDescribeRequest::default().with_group_ids(vec![
            kafka_protocol::messages::GroupId(kafka_protocol::protocol::StrBytes::from_static_str(
                "ranges",
            )),
        ]),
    );
    assert_eq!(described.groups[0].assignor_name.as_str(), "range");
}
