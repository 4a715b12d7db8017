//! The idempotent producer (librdkafka, enable.idempotence=true) against lost acknowledgements
//! and broker crashes: the log holds every message once, in send order per partition.
//!
//! A proxy between the client and the broker forwards Produce requests and drops some of their
//! responses, cutting the connection: the broker appended the batch, the producer never learned
//! it, and retries it. Without producer-state deduplication those retries would be stored twice.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use support::kafka::*;
use support::proxy::LossyProxy;
use support::TestBroker;

/// Starts a broker that advertises the proxy, and the proxy in front of it.
fn broker_behind_proxy(extra: &[&str]) -> (TestBroker, LossyProxy) {
    let (proxy, listener) = LossyProxy::bind();
    let mut flags = vec!["--advertised-listener", proxy.addr.as_str()];
    flags.extend_from_slice(extra);
    let broker = TestBroker::start_with(&flags);
    proxy.start(listener, &broker.addr);
    (broker, proxy)
}

/// Checks that every value appears exactly once and per key in send order.
fn exactly_once_in_order(reads: &[Read], sent: &[(String, String)]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in reads {
        *count
            .entry(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .or_default() += 1;
    }
    let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates in the log: {dups:?}");
    for (_, v) in sent {
        assert_eq!(count.get(v), Some(&1), "{v} is in the log once");
    }
    let mut last: HashMap<String, u64> = HashMap::new();
    for r in reads {
        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        let n: u64 = v
            .rsplit('-')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("numbered");
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        if let Some(prev) = last.insert(key.clone(), n) {
            assert!(prev < n, "key {key}: {prev} then {n}: send order kept");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_do_not_duplicate() {
    let (broker, proxy) = broker_behind_proxy(&[]);
    let b = proxy.addr.clone();
    create_topic(&b, "idem", 3).await;
    let p = producer(
        &b,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
            ("retry.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "200"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let mut sent = Vec::new();
    let mut i = 0u64;
    for _round in 0..6 {
        // The next Produce response is lost; the producer retries what the broker already has.
        proxy.drop_produce_responses(1);
        let mut futures = Vec::new();
        for _ in 0..500 {
            let key = format!("k{}", i % 7);
            let value = format!("{key}-{i}");
            futures.push(
                p.send_result(FutureRecord::to("idem").key(&key).payload(&value))
                    .expect("enqueue"),
            );
            sent.push((key, value));
            i += 1;
        }
        for f in futures {
            f.await
                .expect("future")
                .expect("delivered despite lost acks");
        }
    }
    assert_eq!(proxy.dropped(), 6, "acknowledgements were really lost");
    let reads = read_all(
        &broker.bootstrap(),
        "idem",
        3,
        sent.len() + 10,
        Duration::from_secs(15),
    );
    assert_eq!(reads.len(), sent.len(), "exactly one copy of each message");
    exactly_once_in_order(&reads, &sent);
    // DescribeProducers shows the producer and its last sequence in each partition.
    let mut raw = support::RawClient::connect(&broker.addr);
    let req = kafka_protocol::messages::DescribeProducersRequest::default().with_topics(vec![
        kafka_protocol::messages::describe_producers_request::TopicRequest::default()
            .with_name(kafka_protocol::messages::TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str("idem"),
            ))
            .with_partition_indexes(vec![0, 1, 2]),
    ]);
    let described = raw.call(0, &req);
    let mut last_sequences = 0;
    for p in &described.topics[0].partitions {
        assert_eq!(p.error_code, 0);
        assert_eq!(
            p.active_producers.len(),
            1,
            "one idempotent producer per partition"
        );
        last_sequences += p.active_producers[0].last_sequence + 1;
    }
    assert_eq!(
        last_sequences as usize,
        sent.len(),
        "sequences account for every message once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sigkill_during_sends_does_not_duplicate() {
    let mut broker = TestBroker::start();
    let b = broker.bootstrap();
    create_topic(&b, "idem-crash", 2).await;
    let p = producer(
        &b,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "120000"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut pending = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{}", i % 5);
                let value = format!("{key}-{i}");
                pending.push((
                    (key.clone(), value.clone()),
                    p.send_result(FutureRecord::to("idem-crash").key(&key).payload(&value))
                        .expect("enqueue"),
                ));
                i += 1;
                if pending.len() >= 100 {
                    for (kv, f) in pending.drain(..) {
                        if let Ok(Ok(_)) = f.await {
                            acked.lock().expect("lock").push(kv);
                        }
                    }
                }
            }
            for (kv, f) in pending.drain(..) {
                if let Ok(Ok(_)) = f.await {
                    acked.lock().expect("lock").push(kv);
                }
            }
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        broker.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        broker.restart();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.expect("sender");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 500, "progress: {}", acked.len());
    let c = consumer(&broker.bootstrap(), &[]);
    let mut total = 0usize;
    for part in 0..2 {
        total += rdkafka::consumer::Consumer::fetch_watermarks(
            &c,
            "idem-crash",
            part,
            Duration::from_secs(10),
        )
        .expect("wm")
        .1 as usize;
    }
    let reads = read_all(
        &broker.bootstrap(),
        "idem-crash",
        2,
        total,
        Duration::from_secs(30),
    );
    assert_eq!(reads.len(), total);
    // Every acknowledged message once; nothing at all twice (unacknowledged ones may be absent).
    exactly_once_in_order(&reads, &acked);
}
