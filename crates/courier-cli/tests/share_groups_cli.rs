//! `courier share-groups list|describe|redrive` against a real broker, with a share group
//! driven over the raw protocol (join, fetch, accept, reject) so that records are in flight,
//! archived and dead-lettered; and DescribeShareGroupOffsets and the read-only
//! `courier.share.state.*` entries of DescribeConfigs, which the CLI is built on.

mod support;

use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    share_acknowledge_request, ApiVersionsRequest, DescribeConfigsRequest,
    DescribeShareGroupOffsetsRequest, GroupId, ShareAcknowledgeRequest, ShareFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::cli::{courier, ok};
use support::kafka::{create_topic, producer, read_all};
use support::{RawClient, TestBroker};

const GROUP: &str = "cli-share";
const TOPIC: &str = "cli-sq";
const MEMBER: &str = "member-1";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The whitespace-separated fields of the first line starting with `first`.
fn row<'a>(out: &'a str, first: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
}

/// DescribeShareGroupOffsets of `GROUP` (`topics` None: all its share-partitions).
fn share_offsets(
    c: &mut RawClient,
    group: &str,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> kafka_protocol::messages::describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup{
    let topics = topics.map(|ts| {
        ts.into_iter()
            .map(|(t, ps)| {
                DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(t)))
                    .with_partitions(ps)
            })
            .collect()
    });
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topics),
    ]);
    c.call(0, &req).groups.remove(0)
}

#[test]
fn describe_shows_members_in_flight_archived_and_lag() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    let mut c = RawClient::connect(&broker.addr);

    let versions = c.call(3, &ApiVersionsRequest::default());
    let v = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == 90)
        .expect("DescribeShareGroupOffsets advertised");
    assert_eq!((v.min_version, v.max_version), (0, 0));

    let topic_id = c.produce_to_new_topic(TOPIC, &["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        c.set_share_group_config(GROUP, "share.auto.offset.reset", "earliest"),
        0
    );
    let join = c.join_share_group(GROUP, MEMBER, TOPIC);
    assert_eq!(join.error_code, 0, "{join:?}");

    // Acquire 0..3, then accept 0 and reject 1: 2..3 stay in flight, 1 is archived and
    // dead-lettered, the start offset moves to 2.
    let fetch = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(s(GROUP))))
        .with_member_id(Some(s(MEMBER)))
        .with_share_session_epoch(0)
        .with_max_wait_ms(100)
        .with_max_bytes(1 << 20)
        .with_max_records(4)
        .with_batch_size(4)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![
                FetchPartition::default().with_partition_index(0)
            ])]);
    let r = c.call(1, &fetch);
    let acquired: Vec<(i64, i64)> = r.responses[0].partitions[0]
        .acquired_records
        .iter()
        .map(|a| (a.first_offset, a.last_offset))
        .collect();
    assert_eq!((r.error_code, acquired), (0, vec![(0, 3)]));
    let ack = |first, last, t| {
        share_acknowledge_request::AcknowledgementBatch::default()
            .with_first_offset(first)
            .with_last_offset(last)
            .with_acknowledge_types(vec![t])
    };
    let a = c.call(
        1,
        &ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(GROUP))))
            .with_member_id(Some(s(MEMBER)))
            .with_share_session_epoch(1)
            .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    share_acknowledge_request::AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![ack(0, 0, 1), ack(1, 1, 3)]),
                ])]),
    );
    assert_eq!(
        (a.error_code, a.responses[0].partitions[0].error_code),
        (0, 0),
        "{a:?}"
    );

    // DescribeShareGroupOffsets: all share-partitions, named ones, unknown ones and groups.
    let g = share_offsets(&mut c, GROUP, None);
    assert_eq!(g.error_code, 0);
    assert_eq!(g.topics.len(), 1);
    assert_eq!(
        (g.topics[0].topic_name.as_str(), g.topics[0].topic_id),
        (TOPIC, topic_id)
    );
    let p = &g.topics[0].partitions[0];
    assert_eq!(
        (
            p.partition_index,
            p.start_offset,
            p.leader_epoch,
            p.error_code
        ),
        (0, 2, -1, 0)
    );
    let g = share_offsets(
        &mut c,
        GROUP,
        Some(vec![(TOPIC, vec![0, 7]), ("no-such", vec![0])]),
    );
    let codes: Vec<(i32, i64, i16)> = g
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.start_offset, p.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![(0, 2, 0), (7, -1, 3), (0, -1, 3)],
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        share_offsets(&mut c, "nobody", None).error_code,
        69,
        "GROUP_ID_NOT_FOUND"
    );

    // The state entry is read-only, and cannot be set.
    let name = format!("courier.share.state.{TOPIC}.0");
    let described = c.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s(GROUP))
            .with_configuration_keys(Some(vec![s(&name)]))]),
    );
    let entry = &described.results[0].configs[0];
    assert_eq!(entry.name.as_str(), name);
    assert_eq!(
        entry.value.as_deref(),
        Some("start=2 end=4 acquired=2 available=0 archived=1 acknowledged=1")
    );
    assert!(entry.read_only);
    assert_eq!(
        c.set_share_group_config(GROUP, &name, "start=0"),
        40,
        "INVALID_CONFIG"
    );

    // The CLI: members, settings, and the partition row.
    let out = ok(&b, &["share-groups", "describe", GROUP]);
    let member = row(&out, "member");
    assert_eq!(member[1], MEMBER, "{out}");
    assert!(
        out.contains("client raw-test") && out.contains(&format!("partitions {TOPIC}-0")),
        "{out}"
    );
    assert!(
        out.contains("setting share.auto.offset.reset = earliest\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "setting errors.deadletterqueue.topic.name = {GROUP}.dlq  (default)"
        )),
        "{out}"
    );
    // TOPIC PARTITION START LOG-END LAG IN-FLIGHT AVAILABLE ARCHIVED ACKNOWLEDGED
    assert_eq!(
        row(&out, TOPIC),
        vec![TOPIC, "0", "2", "6", "4", "2", "0", "1", "1"],
        "{out}"
    );

    // The rejected record is in the dead-letter topic, with where it came from.
    let letters = read_all(&b, &format!("{GROUP}.dlq"), 1, 1, Duration::from_secs(10));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value.as_deref(), Some(&b"b"[..]));
    let header = |n: &str| {
        letters[0]
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("courier-dlq-topic").as_deref(), Some(TOPIC));
    assert_eq!(header("courier-dlq-offset").as_deref(), Some("1"));
    assert_eq!(header("courier-dlq-reason").as_deref(), Some("rejected"));

    // Redrive puts the real dead letter back as a new record at the end of the source
    // partition, which the group then delivers as a first delivery.
    let out = ok(&b, &["share-groups", "redrive", GROUP]);
    assert!(
        out.contains(&format!("redriven 1, skipped 0 from {GROUP}.dlq")),
        "{out}"
    );
    let copy = read_all(&b, TOPIC, 1, 7, Duration::from_secs(10));
    assert_eq!(copy.len(), 7);
    assert_eq!(
        (copy[6].offset, copy[6].value.as_deref()),
        (6, Some(&b"b"[..]))
    );
    assert_eq!(
        copy[6].headers,
        vec![(
            "courier-redriven-from".to_string(),
            format!("{GROUP}.dlq/0/0").into_bytes()
        )]
    );
    let r = c.call(
        1,
        &fetch
            .clone()
            .with_share_session_epoch(2)
            .with_max_records(3),
    );
    let acquired: Vec<(i64, i64, i16)> = r.responses[0].partitions[0]
        .acquired_records
        .iter()
        .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
        .collect();
    assert_eq!(acquired, vec![(4, 6, 1)], "{r:?}");
    let out = ok(&b, &["share-groups", "describe", GROUP]);
    assert_eq!(
        row(&out, TOPIC),
        vec![TOPIC, "0", "2", "7", "5", "5", "0", "1", "1"],
        "{out}"
    );

    let out = ok(&b, &["share-groups", "list"]);
    assert_eq!(row(&out, GROUP), vec![GROUP, "Stable", "1"], "{out}");

    let (success, out, err) = courier(&b, &["share-groups", "describe", "nobody"]);
    assert!(!success, "{out}");
    assert!(err.contains("no share group nobody"), "{err}");
    let (success, _, err) = courier("127.0.0.1:1", &["share-groups", "list"]);
    assert!(
        !success && err.contains("connecting to 127.0.0.1:1"),
        "{err}"
    );
}

/// (partition, key, value, headers) of a record read back.
type ReadBack<'a> = (i32, &'a [u8], &'a [u8], Vec<(String, String)>);

/// A dead letter as the broker writes it, plus a header of the original record.
fn dead_letter(topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("t-1"),
        })
        .insert(Header {
            key: "courier-dlq-topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "courier-dlq-partition",
            value: Some(&partition.to_string()),
        })
        .insert(Header {
            key: "courier-dlq-offset",
            value: Some(&offset.to_string()),
        })
        .insert(Header {
            key: "courier-dlq-delivery-count",
            value: Some("3"),
        })
        .insert(Header {
            key: "courier-dlq-reason",
            value: Some("rejected"),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_sends_each_dead_letter_back_once() {
    let broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "rd-src", 2).await;
    create_topic(&b, "rd.dlq", 1).await;
    let p = producer(&b, &[("acks", "all")]);
    let letters: Vec<(Option<OwnedHeaders>, &str, &str)> = vec![
        (Some(dead_letter("rd-src", 1, 10)), "k1", "v1"),
        (None, "k-bare", "no headers"),
        (Some(dead_letter("rd-src", 1, 11)), "k2", "v2"),
    ];
    for (headers, key, value) in &letters {
        let mut r = FutureRecord::to("rd.dlq").key(*key).payload(*value);
        if let Some(h) = headers {
            r = r.headers(h.clone());
        }
        p.send(r, Duration::from_secs(10))
            .await
            .expect("dead letter produced");
    }

    let src_count = || read_all(&b, "rd-src", 2, 100, Duration::from_secs(2)).len();
    let (success, out, err) = courier(&b, &["share-groups", "redrive", "rd", "--dry-run"]);
    assert!(success, "{out}\n{err}");
    assert!(
        out.contains("would redrive rd.dlq/0/0 -> rd-src-1")
            && out.contains("would redrive rd.dlq/0/2 -> rd-src-1"),
        "{out}"
    );
    assert!(
        out.contains("redriven 2, skipped 1 from rd.dlq (dry run"),
        "{out}"
    );
    assert!(err.contains("skipped dead letter rd.dlq/0/1"), "{err}");
    assert_eq!(src_count(), 0, "a dry run sends nothing");

    let (success, out, err) = courier(&b, &["share-groups", "redrive", "rd"]);
    assert!(success, "{out}\n{err}");
    assert!(out.contains("redriven 2, skipped 1 from rd.dlq\n"), "{out}");
    assert_eq!(row(&out, "rd-src"), vec!["rd-src", "2"], "{out}");
    assert!(
        err.contains("skipped dead letter rd.dlq/0/1: no valid courier-dlq-topic"),
        "{err}"
    );
    let copies = read_all(&b, "rd-src", 2, 2, Duration::from_secs(10));
    let got: Vec<ReadBack<'_>> = copies
        .iter()
        .map(|r| {
            (
                r.partition,
                r.key.as_deref().unwrap_or_default(),
                r.value.as_deref().unwrap_or_default(),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            )
        })
        .collect();
    let headers = |from: &str| {
        vec![
            ("trace".to_string(), "t-1".to_string()),
            ("courier-redriven-from".to_string(), from.to_string()),
        ]
    };
    assert_eq!(
        got,
        vec![
            (1, &b"k1"[..], &b"v1"[..], headers("rd.dlq/0/0")),
            (1, &b"k2"[..], &b"v2"[..], headers("rd.dlq/0/2")),
        ]
    );

    // The progress is committed: a second run sends nothing more.
    let out = ok(&b, &["share-groups", "redrive", "rd"]);
    assert!(out.contains("redriven 0, skipped 0 from rd.dlq"), "{out}");
    assert_eq!(src_count(), 2);

    // A letter added later is the only one a third run sends; --max bounds a run.
    p.send(
        FutureRecord::to("rd.dlq")
            .key("k3")
            .payload("v3")
            .headers(dead_letter("rd-src", 0, 12)),
        Duration::from_secs(10),
    )
    .await
    .expect("dead letter produced");
    let out = ok(&b, &["share-groups", "redrive", "rd", "--max", "1"]);
    assert!(out.contains("redriven 1, skipped 0 from rd.dlq"), "{out}");
    assert_eq!(src_count(), 3);

    let (success, _, err) = courier(&b, &["share-groups", "redrive", "rd", "--max", "x"]);
    assert!(!success && err.contains("--max"), "{err}");
}
