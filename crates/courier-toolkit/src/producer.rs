//! A producer with the safe defaults: every acknowledged record is durable and stored exactly
//! once, in send order per partition, and records with the same key go to the same partition
//! as they would from the Java client.
//!
//! | Setting | Value | Why |
//! |---|---|---|
//! | `acks` | `all` | answered only once the batch is durable (on Courier: fdatasynced) |
//! | `enable.idempotence` | `true` | a retried batch is recognised and stored once, in order |
//! | `retries` | `2147483647` | retry until `delivery.timeout.ms` (librdkafka: `message.timeout.ms`, 300 s by default) runs out |
//! | `max.in.flight.requests.per.connection` | `5` | the most that idempotence keeps in order |
//! | `partitioner` | `murmur2_random` | Java's default: murmur2 of the key, random for null keys |
//!
//! Any of them can be overridden ([`ProducerConfig::set`]); the override is the caller's
//! responsibility (`acks=1` gives up durability of the acknowledged tail on power loss,
//! turning idempotence off allows duplicates on retry).
//!
//! A record that is not acknowledged within the delivery timeout fails with
//! [`ToolkitError::Kafka`]; it may or may not have been written (an unknown outcome), and a
//! resend may duplicate it, since the idempotent producer deduplicates only within one session.

use std::future::Future;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::ToolkitError;

/// The settings a [`SafeProducer`] starts from, in order; overrides are applied after them.
pub const SAFE_DEFAULTS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("retries", "2147483647"),
    ("max.in.flight.requests.per.connection", "5"),
    ("partitioner", "murmur2_random"),
];

/// How long to wait before enqueueing again when librdkafka's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(50);

/// Where to connect and what to override.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Raw librdkafka settings applied after [`SAFE_DEFAULTS`].
    pub overrides: Vec<(String, String)>,
}

impl ProducerConfig {
    /// The safe defaults against `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            overrides: Vec::new(),
        }
    }

    /// Overrides one librdkafka setting.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.push((key.into(), value.into()));
        self
    }

    /// The librdkafka configuration: bootstrap, [`SAFE_DEFAULTS`], then the overrides.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in SAFE_DEFAULTS {
            c.set(*k, *v);
        }
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }
}

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key; also picks the partition unless [`partition`](Self::partition) is set.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// An explicit partition, bypassing the partitioner.
    pub partition: Option<i32>,
}

impl ProducerRecord {
    /// A record for `topic` with this key and value.
    pub fn new(
        topic: impl Into<String>,
        key: Option<impl Into<Vec<u8>>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            topic: topic.into(),
            key: key.map(Into::into),
            value: Some(value.into()),
            headers: Vec::new(),
            partition: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }
}

/// Where an acknowledged record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Its partition.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A producer with the safe defaults. Cheap to share by reference; sends may run concurrently.
pub struct SafeProducer {
    /// The librdkafka producer (with its own polling thread).
    inner: FutureProducer,
}

impl SafeProducer {
    /// Creates the producer (it connects lazily, on the first send).
    pub fn new(config: &ProducerConfig) -> Result<Self, ToolkitError> {
        Ok(Self {
            inner: config.client_config().create()?,
        })
    }

    /// Sends one record and waits until it is acknowledged.
    pub async fn send(&self, record: &ProducerRecord) -> Result<Delivery, ToolkitError> {
        enqueue(&self.inner, record).await?.await
    }

    /// Sends every record (all in flight at once, so one round trip per batch rather than per
    /// record) and waits for all; returns the deliveries in `records` order. Records for the
    /// same partition are stored in `records` order.
    pub async fn send_all(
        &self,
        records: &[ProducerRecord],
    ) -> Result<Vec<Delivery>, ToolkitError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            pending.push(enqueue(&self.inner, r).await?);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(p.await?);
        }
        Ok(out)
    }

    /// Waits up to `timeout` for every record sent so far to be acknowledged or to fail.
    pub fn flush(&self, timeout: Duration) -> Result<(), ToolkitError> {
        Ok(self.inner.flush(timeout)?)
    }

    /// The underlying librdkafka producer, for anything this helper does not cover.
    pub fn inner(&self) -> &FutureProducer {
        &self.inner
    }
}

/// Puts `record` on `producer`'s queue (waiting while the queue is full) and returns a future
/// that resolves when the broker has answered.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    record: &ProducerRecord,
) -> Result<impl Future<Output = Result<Delivery, ToolkitError>>, ToolkitError> {
    let future = loop {
        match producer.send_result(future_record(record)) {
            Ok(f) => break f,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            Err((e, _)) => return Err(e.into()),
        }
    };
    Ok(delivered(future))
}

async fn delivered(future: DeliveryFuture) -> Result<Delivery, ToolkitError> {
    match future.await {
        Ok(Ok(d)) => Ok(Delivery {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_canceled) => Err(KafkaError::Canceled.into()),
    }
}

fn future_record(r: &ProducerRecord) -> FutureRecord<'_, [u8], [u8]> {
    let mut f = FutureRecord::to(&r.topic);
    if let Some(k) = &r.key {
        f = f.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        f = f.payload(v.as_slice());
    }
    if let Some(p) = r.partition {
        f = f.partition(p);
    }
    if !r.headers.is_empty() {
        let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            h = h.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        f = f.headers(h);
    }
    f
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), over `data`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner (and librdkafka's `murmur2_random`) picks for a
/// non-null `key` among `partitions` partitions.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Java client's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        // murmur2("foobar") = -790332482; & 0x7fffffff = 1357151166.
        assert_eq!(partition_for_key(b"foobar", 7), 1_357_151_166 % 7);
        for p in 1..20 {
            assert!((0..p).contains(&partition_for_key(b"k", p)));
        }
    }

    #[test]
    fn overrides_come_after_the_safe_defaults() {
        let c = ProducerConfig::new("h:1").set("acks", "1").client_config();
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
    }
}
