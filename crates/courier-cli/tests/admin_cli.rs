//! `courier topics ...` and `courier groups ...` against a running broker: what an operator
//! sees, and non-zero exits with a message when an operation is refused.

mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use support::cli::{courier, ok};
use support::kafka::*;
use support::TestBroker;

fn committed_line<'a>(out: &'a str, topic: &str, partition: i32) -> Vec<&'a str> {
    out.lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&topic) && f.get(1) == Some(&partition.to_string().as_str())
        })
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_groups_from_the_command_line() {
    let broker = TestBroker::start_with(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-min-session-timeout-ms",
        "1000",
    ]);
    let b = broker.bootstrap();
    let out = ok(
        &b,
        &[
            "topics",
            "create",
            "cli-t",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(out.contains("created topic cli-t"));
    let (success, _, err) = courier(&b, &["topics", "create", "cli-t"]);
    assert!(
        !success && err.contains("cli-t"),
        "creating it again fails with a message: {err}"
    );
    assert!(ok(&b, &["topics", "list"])
        .lines()
        .any(|l| l.starts_with("cli-t") && l.ends_with('2')));
    let p = producer(&b, &[("acks", "all")]);
    let records: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| ("same-key".to_string(), format!("v{i}").into_bytes()))
        .collect();
    let acked = produce_keyed(&p, "cli-t", &records).await;
    let partition = acked[0].0;
    let described = ok(&b, &["topics", "describe", "cli-t"]);
    assert!(
        described.contains("config retention.ms=3600000"),
        "{described}"
    );

    // An active member with a commit at 60.
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "cli-g")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&["cli-t"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.assignment().map(|a| a.count()).unwrap_or(0) < 2 && Instant::now() < deadline {
        let _ = c.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("cli-t", partition, Offset::Offset(60))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");

    assert!(ok(&b, &["groups", "list"])
        .lines()
        .any(|l| l.starts_with("cli-g") && l.contains("Stable")));
    let d = ok(&b, &["groups", "describe", "cli-g"]);
    assert_eq!(
        committed_line(&d, "cli-t", partition)[2..5],
        ["60", "100", "40"],
        "committed, log end, lag:\n{d}"
    );
    assert!(d.contains("member "), "{d}");

    let (success, _, err) = courier(
        &b,
        &[
            "groups",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-t",
            "--to-earliest",
        ],
    );
    assert!(
        !success && err.contains("active member"),
        "refused while the group has members: {err}"
    );
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&b, &["groups", "list"]).contains("Empty") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(
        &b,
        &[
            "groups",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-t",
            "--to-offset",
            "7",
        ],
    );
    let d = ok(&b, &["groups", "describe", "cli-g"]);
    assert_eq!(committed_line(&d, "cli-t", partition)[2], "7", "{d}");
    let dry = ok(
        &b,
        &[
            "groups",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-t",
            "--to-latest",
            "--dry-run",
        ],
    );
    assert!(dry.contains("dry run"));
    assert_eq!(
        committed_line(
            &ok(&b, &["groups", "describe", "cli-g"]),
            "cli-t",
            partition
        )[2],
        "7",
        "dry run changed nothing"
    );
    ok(
        &b,
        &[
            "groups",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-t",
            "--to-latest",
        ],
    );
    assert_eq!(
        committed_line(
            &ok(&b, &["groups", "describe", "cli-g"]),
            "cli-t",
            partition
        )[4],
        "0",
        "no lag at the end"
    );

    assert!(ok(&b, &["groups", "delete", "cli-g"]).contains("deleted group cli-g"));
    let (success, _, err) = courier(&b, &["groups", "delete", "cli-g"]);
    assert!(!success && err.contains("cli-g"), "{err}");
    assert!(ok(&b, &["topics", "delete", "cli-t"]).contains("deleted topic cli-t"));
}
