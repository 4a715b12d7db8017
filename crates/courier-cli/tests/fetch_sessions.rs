//! Fetch over the raw protocol: KIP-227 sessions (full, incremental, errors, close), long
//! polling that wakes when data arrives, and topic ids in Fetch v13+.

mod support;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use support::kafka::*;
use support::{batch, RawClient, TestBroker};

fn produce(c: &mut RawClient, topic: &str, partition: i32, value: &str) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(&[value])))])]);
    let resp = c.call(9, &req);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

fn fetch(
    session_id: i32,
    epoch: i32,
    topic: &str,
    parts: &[(i32, i64)],
    forget: &[i32],
    max_wait: i32,
) -> FetchRequest {
    let name = TopicName(StrBytes::from_string(topic.into()));
    let mut req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch);
    if !parts.is_empty() {
        req.topics = vec![FetchTopic::default()
            .with_topic(name.clone())
            .with_partitions(
                parts
                    .iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )];
    }
    if !forget.is_empty() {
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name)
            .with_partitions(forget.to_vec())];
    }
    req
}

fn values(resp: &FetchResponse) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            let mut records = p.records.clone().unwrap_or_default();
            while !records.is_empty() {
                let set = RecordBatchDecoder::decode(&mut records).expect("decode");
                for r in set.records {
                    out.push((
                        p.partition_index,
                        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                            .into_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn partitions_in(resp: &FetchResponse) -> Vec<i32> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_sessions_follow_kip_227() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "sess", 2).await;
    let mut c = RawClient::connect(&broker.addr);
    produce(&mut c, "sess", 0, "a");

    // Epoch 0 opens a session; the response lists every partition.
    let full = c.call(12, &fetch(0, 0, "sess", &[(0, 0), (1, 0)], &[], 0));
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert!(id > 0, "a session was created");
    assert_eq!(partitions_in(&full), vec![0, 1]);
    assert_eq!(values(&full), vec![(0, "a".to_string())]);

    // Incremental, position moved to 1 on partition 0: nothing new, nothing listed.
    let inc = c.call(12, &fetch(id, 1, "sess", &[(0, 1)], &[], 0));
    assert_eq!((inc.error_code, inc.session_id), (0, id));
    assert!(
        partitions_in(&inc).is_empty(),
        "unchanged partitions are left out: {inc:?}"
    );

    // New data on partition 1 (still at offset 0 in the session): only it is listed.
    produce(&mut c, "sess", 1, "b");
    let inc = c.call(12, &fetch(id, 2, "sess", &[], &[], 0));
    assert_eq!(partitions_in(&inc), vec![1]);
    assert_eq!(values(&inc), vec![(1, "b".to_string())]);

    // Forget partition 1; new data there is no longer reported.
    let inc = c.call(12, &fetch(id, 3, "sess", &[(1, 1)], &[1], 0));
    assert_eq!(inc.error_code, 0);
    produce(&mut c, "sess", 1, "c");
    let inc = c.call(12, &fetch(id, 4, "sess", &[], &[], 0));
    assert!(
        partitions_in(&inc).is_empty(),
        "forgotten partition not reported: {inc:?}"
    );

    // Errors: wrong epoch, unknown session.
    let bad = c.call(12, &fetch(id, 9, "sess", &[], &[], 0));
    assert_eq!(bad.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let bad = c.call(12, &fetch(id + 1000, 1, "sess", &[], &[], 0));
    assert_eq!(bad.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");

    // Close (epoch -1): a sessionless full fetch, and the session is gone.
    let closed = c.call(12, &fetch(id, -1, "sess", &[(1, 0)], &[], 0));
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(
        values(&closed),
        vec![(1, "b".to_string()), (1, "c".to_string())]
    );
    let gone = c.call(12, &fetch(id, 5, "sess", &[], &[], 0));
    assert_eq!(gone.error_code, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_when_data_arrives() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "wait", 1).await;
    let mut fetcher = RawClient::connect(&broker.addr);
    // Wait up to 15 s for data at offset 0, which does not exist yet.
    let correlation = fetcher.send(12, &fetch(0, -1, "wait", &[(0, 0)], &[], 15_000));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut producer = RawClient::connect(&broker.addr);
    produce(&mut producer, "wait", 0, "late");
    let mut frame = fetcher.read_frame().expect("response");
    use bytes::Buf;
    assert_eq!(frame.get_i32(), correlation);
    assert_eq!(
        frame.get_u8(),
        0,
        "flexible response header: no tagged fields"
    );
    let resp = <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 12)
        .expect("decode");
    assert_eq!(
        values(&resp),
        vec![(0, "late".to_string())],
        "the long poll returned the record that arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_v13_uses_topic_ids() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "ids", 1).await;
    let mut c = RawClient::connect(&broker.addr);
    produce(&mut c, "ids", 0, "by-id");
    let md = c.call(12, &MetadataRequest::default().with_topics(None));
    let id = md
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("ids"))
        .expect("topic")
        .topic_id;
    assert!(!id.is_nil());
    let mut req = fetch(0, -1, "", &[(0, 0)], &[], 0);
    req.topics[0].topic_id = id;
    let resp = c.call(13, &req);
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(values(&resp), vec![(0, "by-id".to_string())]);
    let mut req = fetch(0, -1, "", &[(0, 0)], &[], 0);
    req.topics[0].topic_id = uuid::Uuid::from_u128(0x42);
    let resp = c.call(13, &req);
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
}
