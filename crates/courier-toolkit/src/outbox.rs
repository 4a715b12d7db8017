//! The transactional outbox: publish records if and only if a business change commits.
//!
//! A service that changes its database and must tell Kafka about it cannot do both
//! atomically. Instead it writes the record to the `courier_outbox` table with
//! [`outbox_insert`], **in the same database transaction** as the business change (a
//! [`Tx`] from [`ProcessedStore::transaction`] or from an effect in
//! [`ProcessedStore::process`]): the record exists exactly when the change committed. An
//! [`OutboxPublisher`] then reads unpublished rows in insertion order, sends them with an
//! idempotent producer (`acks=all`), and marks a row published only after the broker
//! acknowledged it.
//!
//! **At least once.** A crash between the acknowledgement and the mark sends the row again
//! after restart, so a record can be in the topic twice. Every record carries the header
//! [`IDEMPOTENCY_KEY_HEADER`] set to its row id (with an optional prefix), so a consumer
//! that dedupes by that key (the toolkit's exactly-once-into-a-database runner does) applies
//! it once.
//!
//! **Order.** Rows are sent in id order and the record key picks the partition, so records
//! with one key keep their row order. A row is marked only when it and every row before it
//! in the pass were acknowledged; after a failure the rest are sent again. The producer runs
//! with `enable.gapless.guarantee`, so a failure that would leave a gap in a partition stops
//! it (fatal error; the publisher makes a new producer) instead of letting later records of
//! that partition through; librdkafka does not extend that to a delivery timeout
//! (`message.timeout.ms`), after which a later record can precede a re-sent earlier one. On
//! PostgreSQL, ids come from a sequence in insert order, not commit order: a change that
//! must follow another for the same entity should lock the entity's row before inserting its
//! outbox row. Run one publisher per database: two would both send the same rows (more
//! duplicates, and their interleaving can reorder records).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::store::{now_ms, schema, ProcessedStore, SqlValue, Tx};
use crate::ToolkitError;

/// The header that carries a record's idempotency key: the one the toolkit's runners read
/// by default.
pub const IDEMPOTENCY_KEY_HEADER: &str = crate::keys::DEFAULT_HEADER;

/// Rows read and sent per pass of [`OutboxPublisher::publish_pending`], by default.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Adds a record to the outbox inside `tx`; it is published only if `tx` commits. Returns
/// the row id (the record's idempotency key, after the publisher's prefix).
pub async fn outbox_insert(
    tx: &Tx,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> Result<i64, ToolkitError> {
    let params = [
        topic.into(),
        key.into(),
        value.into(),
        encode_headers(headers)?.into(),
        now_ms(SystemTime::now()).into(),
    ];
    let rows = tx.query(schema::OUTBOX_INSERT, &params).await?;
    rows.first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .ok_or_else(|| ToolkitError::Database("outbox insert returned no id".into()))
}

/// Deletes outbox rows published before `before`; returns how many.
pub async fn outbox_delete_published(
    store: &ProcessedStore,
    before: SystemTime,
) -> Result<u64, ToolkitError> {
    let cutoff = now_ms(before);
    store
        .transaction(|tx| async move {
            tx.execute(schema::OUTBOX_DELETE_PUBLISHED, &[cutoff.into()])
                .await
        })
        .await
}

/// Publishes the outbox of one database to Kafka, at least once, in order.
pub struct OutboxPublisher {
    /// Where the outbox rows are.
    store: ProcessedStore,
    /// The producer's settings, to make a new one after a fatal error.
    config: ClientConfig,
    /// The producer; replaced after a fatal error (a gap the guarantee refused).
    producer: Mutex<FutureProducer>,
    /// Rows per pass.
    batch_size: usize,
    /// Put before the row id in the idempotency-key header (e.g. the service's name, when
    /// consumers read the outboxes of several databases).
    key_prefix: String,
}

/// One unpublished row.
struct PendingRow {
    id: i64,
    topic: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

impl OutboxPublisher {
    /// A publisher to the brokers at `bootstrap_servers`.
    pub fn new(store: ProcessedStore, bootstrap_servers: &str) -> Result<Self, ToolkitError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap_servers);
        Self::with_config(store, config)
    }

    /// A publisher with the producer settings in `config`; `acks=all`,
    /// `enable.idempotence=true` and `enable.gapless.guarantee=true` are forced.
    pub fn with_config(
        store: ProcessedStore,
        mut config: ClientConfig,
    ) -> Result<Self, ToolkitError> {
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true");
        let producer = config.create()?;
        Ok(Self {
            store,
            config,
            producer: Mutex::new(producer),
            batch_size: DEFAULT_BATCH_SIZE,
            key_prefix: String::new(),
        })
    }

    /// Reads and sends up to `n` rows per pass (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Puts `prefix` before the row id in each record's idempotency key.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// One pass: sends the oldest unpublished rows (up to the batch size) in order, waits for
    /// their acknowledgements, and marks published the acknowledged prefix. Returns how many
    /// rows were marked; fails (after marking that prefix) if a row could not be sent.
    pub async fn publish_pending(&self) -> Result<usize, ToolkitError> {
        let limit = i64::try_from(self.batch_size).unwrap_or(i64::MAX);
        let rows = self
            .store
            .transaction(
                |tx| async move { tx.query(schema::OUTBOX_PENDING, &[limit.into()]).await },
            )
            .await?;
        let pending = rows
            .iter()
            .map(|r| PendingRow::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        if pending.is_empty() {
            return Ok(0);
        }
        let producer = self.producer();
        let mut failure: Option<KafkaError> = None;
        let mut deliveries = Vec::with_capacity(pending.len());
        for row in &pending {
            let idempotency_key = format!("{}{}", self.key_prefix, row.id);
            let mut headers = OwnedHeaders::new_with_capacity(row.headers.len() + 1);
            for (name, value) in &row.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_slice()),
                });
            }
            headers = headers.insert(Header {
                key: IDEMPOTENCY_KEY_HEADER,
                value: Some(idempotency_key.as_bytes()),
            });
            let mut record = FutureRecord::<[u8], [u8]>::to(&row.topic).headers(headers);
            if let Some(key) = &row.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &row.value {
                record = record.payload(value.as_slice());
            }
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut acknowledged = Vec::with_capacity(deliveries.len());
        for (row, delivery) in pending.iter().zip(deliveries) {
            match delivery.await {
                Ok(Ok(_)) => acknowledged.push(row.id),
                Ok(Err((e, _))) => {
                    failure = Some(e);
                    break;
                }
                Err(_) => {
                    failure = Some(KafkaError::Canceled);
                    break;
                }
            }
        }
        self.mark_published(&acknowledged).await?;
        tracing::debug!(published = acknowledged.len(), "outbox pass");
        match failure {
            None => Ok(acknowledged.len()),
            Some(e) => {
                if let Some((code, reason)) = producer.client().fatal_error() {
                    tracing::warn!(
                        ?code,
                        reason,
                        "outbox producer failed fatally; replacing it"
                    );
                    *self.producer.lock().unwrap_or_else(|p| p.into_inner()) =
                        self.config.create()?;
                }
                Err(e.into())
            }
        }
    }

    /// Publishes until `shutdown` completes: passes back to back while rows are waiting,
    /// else one every `idle_wait`. A failed pass is logged and retried after `idle_wait`.
    pub async fn run(
        &self,
        idle_wait: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ToolkitError> {
        tokio::pin!(shutdown);
        loop {
            let wait = match self.publish_pending().await {
                Ok(n) if n >= self.batch_size => Duration::ZERO,
                Ok(_) => idle_wait,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox pass failed; retrying");
                    idle_wait
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The current producer.
    fn producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks rows published, in one transaction.
    async fn mark_published(&self, ids: &[i64]) -> Result<(), ToolkitError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms(SystemTime::now());
        self.store
            .transaction(|tx| async move {
                for &id in ids {
                    tx.execute(schema::OUTBOX_MARK, &[now.into(), id.into()])
                        .await?;
                }
                Ok(())
            })
            .await
    }
}

impl PendingRow {
    /// `id, topic, record_key, record_value, headers`.
    fn parse(r: &[SqlValue]) -> Result<Self, ToolkitError> {
        let bad = || ToolkitError::Database(format!("malformed outbox row: {r:?}"));
        let [id, topic, key, value, headers] = r else {
            return Err(bad());
        };
        Ok(Self {
            id: id.as_i64().ok_or_else(bad)?,
            topic: topic.as_str().ok_or_else(bad)?.to_owned(),
            key: key.as_bytes().map(<[u8]>::to_vec),
            value: value.as_bytes().map(<[u8]>::to_vec),
            headers: decode_headers(headers.as_bytes().ok_or_else(bad)?)?,
        })
    }
}

/// Headers as stored: a big-endian `u32` count, then per header a `u32` name length, the
/// UTF-8 name, a `u32` value length and the value.
fn encode_headers(headers: &[(&str, &[u8])]) -> Result<Vec<u8>, ToolkitError> {
    let len = |n: usize| {
        u32::try_from(n).map_err(|_| ToolkitError::Config("outbox header too large".into()))
    };
    let mut out = Vec::new();
    out.extend_from_slice(&len(headers.len())?.to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&len(name.len())?.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&len(value.len())?.to_be_bytes());
        out.extend_from_slice(value);
    }
    Ok(out)
}

/// Reads [`encode_headers`]'s format; an error for anything truncated, trailing or not UTF-8.
fn decode_headers(mut bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ToolkitError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], ToolkitError> {
        if bytes.len() < n {
            return Err(ToolkitError::Database("truncated outbox headers".into()));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn take_len(bytes: &mut &[u8]) -> Result<usize, ToolkitError> {
        let b = take(bytes, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = take_len(&mut bytes)?;
    let mut out = Vec::with_capacity(count.min(bytes.len() / 8));
    for _ in 0..count {
        let n = take_len(&mut bytes)?;
        let name = std::str::from_utf8(take(&mut bytes, n)?)
            .map_err(|_| ToolkitError::Database("outbox header name is not UTF-8".into()))?;
        let n = take_len(&mut bytes)?;
        out.push((name.to_owned(), take(&mut bytes, n)?.to_vec()));
    }
    if !bytes.is_empty() {
        return Err(ToolkitError::Database(
            "trailing bytes in outbox headers".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let headers: &[(&str, &[u8])] = &[("trace", b"abc"), ("empty", b""), ("é", &[0, 255])];
        let bytes = encode_headers(headers).expect("encode");
        let back = decode_headers(&bytes).expect("decode");
        let want: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        assert_eq!(back, want);
        assert_eq!(
            decode_headers(&encode_headers(&[]).expect("encode")).expect("decode"),
            []
        );
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let bytes = encode_headers(&[("name", b"value")]).expect("encode");
        for cut in 0..bytes.len() {
            assert!(decode_headers(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_headers(&trailing).is_err());
        // A count far beyond the bytes present must fail, not allocate.
        assert!(decode_headers(&u32::MAX.to_be_bytes()).is_err());
        let mut not_utf8 = encode_headers(&[("ab", b"")]).expect("encode");
        not_utf8[8] = 0xff;
        assert!(decode_headers(&not_utf8).is_err());
    }
}
