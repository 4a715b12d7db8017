//! Bad input gets a clear answer (the right Kafka error code) or a closed connection plus a log
//! line, never a panic, a hang or a corrupted log; and the server keeps serving real clients.

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rand::{Rng, SeedableRng};
use support::kafka::*;
use support::{batch, RawClient, TestBroker};

fn produce(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn produce_error(client: &mut RawClient, req: &ProduceRequest) -> i16 {
    let resp = client.call(9, req);
    resp.responses[0].partition_responses[0].error_code
}

/// The broker still serves a real client: create, produce, consume.
async fn still_serves(broker: &TestBroker, topic: &str) {
    create_topic(&broker.bootstrap(), topic, 1).await;
    let p = producer(&broker.bootstrap(), &[("acks", "all")]);
    produce_keyed(&p, topic, &[("k".into(), b"alive".to_vec())]).await;
    let reads = read_all(&broker.bootstrap(), topic, 1, 1, Duration::from_secs(20));
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].value.as_deref(), Some(&b"alive"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_negative_and_unknown_frames_close_the_connection() {
    let broker = TestBroker::start_with(&["--max-frame-bytes", "65536"]);
    let mut c = RawClient::connect(&broker.addr);
    c.send_bytes(&(1_000_000i32).to_be_bytes()).expect("send");
    assert!(c.is_closed(), "oversized frame closes the connection");
    let mut c = RawClient::connect(&broker.addr);
    c.send_bytes(&(-5i32).to_be_bytes()).expect("send");
    assert!(c.is_closed(), "negative length closes the connection");
    let mut c = RawClient::connect(&broker.addr);
    let mut frame = vec![0, 0, 0, 10];
    frame.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0]); // API key 999
    c.send_bytes(&frame).expect("send");
    assert!(c.is_closed(), "unknown API key closes the connection");
    let mut c = RawClient::connect(&broker.addr);
    c.send_bytes(&[0, 0, 0, 3, 0, 18, 0]).expect("send");
    assert!(
        c.is_closed(),
        "frame shorter than a header closes the connection"
    );
    let log = broker.log();
    assert!(log.contains("frame size out of bounds"), "{log}");
    assert!(log.contains("bad request"), "{log}");
    still_serves(&broker, "after-bad-frames").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_api_versions_version_is_answered_with_v0() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(&broker.addr);
    // An ApiVersions v3 request relabelled as v99, as a client newer than the broker sends it.
    let mut req = vec![0, 18, 0, 99, 0, 0, 0, 42, 0, 1, b'x', 0];
    req.extend_from_slice(&[0, 0, 0]);
    let mut framed = (req.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    c.send_bytes(&framed).expect("send");
    let mut frame = c.read_frame().expect("response");
    use bytes::Buf;
    assert_eq!(frame.get_i32(), 42, "correlation id echoed");
    let error = frame.get_i16();
    assert_eq!(error, 35, "UNSUPPORTED_VERSION");
    let count = frame.get_i32();
    assert!(count >= 10, "lists the served APIs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_errors_carry_the_right_codes_and_leave_the_log_intact() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "good", 2).await;
    let mut c = RawClient::connect(&broker.addr);
    assert_eq!(
        produce_error(&mut c, &produce("good", 0, 2, batch(&["a"]))),
        21,
        "INVALID_REQUIRED_ACKS"
    );
    assert_eq!(
        produce_error(&mut c, &produce("bad name!", 0, 1, batch(&["a"]))),
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        produce_error(&mut c, &produce("good", 7, 1, batch(&["a"]))),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce_error(&mut c, &produce("good", -1, 1, batch(&["a"]))),
        3,
        "negative partition"
    );
    assert_eq!(
        produce_error(&mut c, &produce("missing", 0, 1, batch(&["a"]))),
        3,
        "unknown topic"
    );

    let ok = produce_error(&mut c, &produce("good", 0, -1, batch(&["one", "two"])));
    assert_eq!(ok, 0);
    let mut corrupt = BytesMut::from(&batch(&["three"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // breaks the CRC
    assert_eq!(
        produce_error(&mut c, &produce("good", 0, -1, corrupt.freeze())),
        2,
        "CORRUPT_MESSAGE"
    );
    let mut bad_magic = BytesMut::from(&batch(&["four"])[..]);
    bad_magic[16] = 1;
    assert_eq!(
        produce_error(&mut c, &produce("good", 0, -1, bad_magic.freeze())),
        2,
        "bad magic is CORRUPT_MESSAGE"
    );
    let truncated = batch(&["five", "six"]).slice(..40);
    assert_eq!(
        produce_error(&mut c, &produce("good", 0, -1, truncated)),
        2,
        "truncated batch"
    );
    let resp = c.call(9, &produce("good", 0, -1, batch(&["seven"])));
    let r = &resp.responses[0].partition_responses[0];
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 2),
        "rejected batches took no offsets"
    );

    let reads = read_all(&broker.bootstrap(), "good", 1, 3, Duration::from_secs(20));
    let values: Vec<_> = reads
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(values, ["one", "two", "seven"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_too_large_is_refused() {
    let broker = TestBroker::start_with(&["--max-message-bytes", "2000"]);
    create_topic(&broker.bootstrap(), "small", 1).await;
    let mut c = RawClient::connect(&broker.addr);
    let big = "x".repeat(5000);
    assert_eq!(
        produce_error(&mut c, &produce("small", 0, 1, batch(&[&big]))),
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce_error(&mut c, &produce("small", 0, 1, batch(&["fits"]))),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "pipe", 1).await;
    let mut c = RawClient::connect(&broker.addr);
    let mut sent = Vec::new();
    for i in 0..60 {
        let id = match i % 3 {
            0 => c.send(3, &ApiVersionsRequest::default()),
            1 => c.send(9, &produce("pipe", 0, -1, batch(&[&format!("p{i}")]))),
            _ => c.send(12, &MetadataRequest::default()),
        };
        sent.push(id);
    }
    for id in sent {
        let mut frame = c.read_frame().expect("response");
        use bytes::Buf;
        assert_eq!(frame.get_i32(), id, "responses come back in request order");
    }
    let reads = read_all(&broker.bootstrap(), "pipe", 1, 20, Duration::from_secs(20));
    let values: Vec<_> = reads
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (0..60)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("p{i}"))
        .collect();
    assert_eq!(
        values, expected,
        "appends kept the order requests arrived in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_and_a_failed_one_closes_the_connection() {
    let broker = TestBroker::start();
    create_topic(&broker.bootstrap(), "quiet", 1).await;
    let mut c = RawClient::connect(&broker.addr);
    c.send(9, &produce("quiet", 0, 0, batch(&["fire", "forget"])));
    let next = c.send(3, &ApiVersionsRequest::default());
    let mut frame = c.read_frame().expect("response");
    use bytes::Buf;
    assert_eq!(
        frame.get_i32(),
        next,
        "the first response is the ApiVersions one: acks=0 got none"
    );
    c.send(9, &produce("quiet", 5, 0, batch(&["nowhere"])));
    assert!(
        c.is_closed(),
        "a failed acks=0 produce closes the connection, as Kafka does"
    );
    let reads = read_all(&broker.bootstrap(), "quiet", 1, 2, Duration::from_secs(20));
    assert_eq!(reads.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_truncated_frames_never_take_the_server_down() {
    let broker = TestBroker::start_with(&["--max-frame-bytes", "1048576"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    let valid = {
        let mut b = BytesMut::new();
        use kafka_protocol::protocol::Encodable;
        kafka_protocol::messages::RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(9)
            .with_correlation_id(1)
            .encode(&mut b, 2)
            .expect("header");
        produce("fuzz", 0, 1, batch(&["a", "b"]))
            .encode(&mut b, 9)
            .expect("body");
        b.freeze()
    };
    for i in 0..300 {
        let mut c = RawClient::connect(&broker.addr);
        let body: Vec<u8> = match i % 4 {
            // Pure noise.
            0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
            // A valid request with random bytes flipped.
            1 => {
                let mut v = valid.to_vec();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..v.len());
                    v[at] = rng.gen();
                }
                v
            }
            // A valid request cut short.
            2 => valid[..rng.gen_range(0..valid.len())].to_vec(),
            // Valid header, random body.
            _ => {
                let mut v = valid[..12].to_vec();
                v.extend((0..rng.gen_range(0..100)).map(|_| rng.gen::<u8>()));
                v
            }
        };
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        if i % 7 == 0 {
            // Length says more than is sent, then the client goes away.
            frame[3] = frame[3].wrapping_add(50);
        }
        let _ = c.send_bytes(&frame);
    }
    still_serves(&broker, "after-fuzz").await;
    assert!(
        !broker.log().contains("panicked"),
        "no panics:\n{}",
        broker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let broker = TestBroker::start_with(&["--max-connections", "2"]);
    let mut a = RawClient::connect(&broker.addr);
    let mut b = RawClient::connect(&broker.addr);
    a.call(3, &ApiVersionsRequest::default());
    b.call(3, &ApiVersionsRequest::default());
    // The third connection is queued by the kernel but not served while two are open.
    let mut c = RawClient::connect(&broker.addr);
    c.set_read_timeout(Duration::from_millis(500));
    c.send(3, &ApiVersionsRequest::default());
    assert!(
        c.read_frame().is_err(),
        "no answer while the limit is reached"
    );
    drop(a);
    c.set_read_timeout(Duration::from_secs(20));
    let frame = c.read_frame().expect("served once a slot frees up");
    assert!(frame.len() > 8);
}
