//! rdkafka helpers shared by the black-box tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// A record as read back: partition, offset, key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let r = admin(bootstrap)
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    assert!(r.iter().all(|r| r.is_ok()), "create {topic}: {r:?}");
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Sends keyed records and returns (partition, offset) per record, in send order.
pub async fn produce_keyed(
    p: &FutureProducer,
    topic: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<(i32, i64)> {
    let futures: Vec<_> = records
        .iter()
        .map(|(k, v)| {
            p.send_result(FutureRecord::to(topic).key(k).payload(v))
                .expect("enqueue")
        })
        .collect();
    let mut out = Vec::new();
    for f in futures {
        let delivery = f.await.expect("delivery future").expect("delivered");
        out.push((delivery.partition, delivery.offset));
    }
    out
}

pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "courier-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// Reads `partitions` of `topic` from the beginning until `want` records arrive or `timeout`.
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Vec<Read> {
    read_from(
        bootstrap,
        topic,
        partitions,
        Offset::Beginning,
        want,
        timeout,
        &[],
    )
}

pub fn read_from(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    from: Offset,
    want: usize,
    timeout: Duration,
    extra: &[(&str, &str)],
) -> Vec<Read> {
    let c = consumer(bootstrap, extra);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, from).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Groups reads by partition, in offset order as received.
pub fn by_partition(reads: &[Read]) -> BTreeMap<i32, Vec<&Read>> {
    let mut m: BTreeMap<i32, Vec<&Read>> = BTreeMap::new();
    for r in reads {
        m.entry(r.partition).or_default().push(r);
    }
    m
}
