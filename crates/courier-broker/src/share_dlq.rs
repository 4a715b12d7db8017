//! Dead letters of share groups: a copy of every record archived by a REJECT or by the
//! delivery limit, written to the group's dead-letter topic (see
//! [`crate::share_config::ShareGroupSettings::dead_letter_topic`]) before the share-partition
//! snapshot that archived it is persisted, so a crash can never leave a record archived
//! without its copy. A copy may be written twice (a crash after the copy and before the
//! snapshot, then the record is archived again): dead letters are at least once.
//!
//! The copy keeps the record's key, value, timestamp and headers and adds
//! `courier-dlq-topic`, `courier-dlq-partition`, `courier-dlq-offset`,
//! `courier-dlq-delivery-count` and `courier-dlq-reason` (`rejected` or `delivery-limit`). A
//! record no longer in the log (retention) is copied with those headers and no key or value.
//! The topic is created with one partition the first time it is needed.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use courier_coordinator::share::{ArchiveEvent, ArchiveReason};
use courier_storage::StorageError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::BrokerError;
use crate::now_ms;
use crate::topic_config::TopicConfig;
use crate::topics::{Topic, TopicRegistry};

/// How long a dead-letter write may wait for its fsync.
const DLQ_TIMEOUT: Duration = Duration::from_secs(30);
/// Records per dead-letter batch.
const RECORDS_PER_BATCH: usize = 500;
/// How much of the source log is read to find one record.
const READ_BYTES: u32 = 1 << 20;

/// Writes a copy of each archived record to its dead-letter topic (`events` pairs each event
/// with its group's topic; `None` means the group has none) and waits until the copies are
/// fsynced.
pub async fn write(
    topics: &TopicRegistry,
    events: &[(ArchiveEvent, Option<String>)],
) -> Result<(), BrokerError> {
    let mut by_topic: Vec<(&str, Vec<Record>)> = Vec::new();
    for (event, dlq) in events {
        let Some(dlq) = dlq.as_deref() else { continue };
        let record = copy_of(topics, event);
        match by_topic.iter_mut().find(|(t, _)| *t == dlq) {
            Some((_, records)) => records.push(record),
            None => by_topic.push((dlq, vec![record])),
        }
    }
    for (dlq, records) in by_topic {
        let partition = dead_letter_topic(topics, dlq)?
            .partition(0)
            .ok_or_else(|| BrokerError::UnknownPartition {
                topic: dlq.to_string(),
                partition: 0,
            })?;
        let mut end = 0;
        for chunk in records.chunks(RECORDS_PER_BATCH) {
            let info = partition.append(&encode(chunk)?, -1)?;
            end = info.last_offset + 1;
        }
        partition.wait_durable(end, DLQ_TIMEOUT).await?;
        tracing::info!(topic = dlq, records = records.len(), "wrote dead letters");
    }
    Ok(())
}

/// The dead-letter topic, created with one partition if it does not exist.
fn dead_letter_topic(
    topics: &TopicRegistry,
    name: &str,
) -> Result<std::sync::Arc<Topic>, BrokerError> {
    if let Some(t) = topics.get(name) {
        return Ok(t);
    }
    match topics.create(name, 1, 1, TopicConfig::default(), false) {
        Ok(Some(t)) => Ok(t),
        Ok(None) | Err(BrokerError::TopicExists(_)) => topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string())),
        Err(e) => Err(e),
    }
}

/// The source record at the event's offset, with the dead-letter headers added.
fn copy_of(topics: &TopicRegistry, event: &ArchiveEvent) -> Record {
    let source = find(topics, event).unwrap_or_else(|| {
        tracing::warn!(topic = %event.topic, partition = event.partition, offset = event.offset,
            "archived record could not be read; its dead letter has headers only");
        None
    });
    let (timestamp, key, value, mut headers) = match source {
        Some(r) => (r.timestamp, r.key, r.value, r.headers),
        None => (now_ms(), None, None, IndexMap::new()),
    };
    let reason = match event.reason {
        ArchiveReason::Rejected => "rejected",
        ArchiveReason::DeliveryLimit => "delivery-limit",
    };
    for (name, v) in [
        ("courier-dlq-topic", event.topic.clone()),
        ("courier-dlq-partition", event.partition.to_string()),
        ("courier-dlq-offset", event.offset.to_string()),
        (
            "courier-dlq-delivery-count",
            event.delivery_count.to_string(),
        ),
        ("courier-dlq-reason", reason.to_string()),
    ] {
        headers.insert(StrBytes::from_static_str(name), Some(Bytes::from(v)));
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value,
        headers,
    }
}

/// Reads the record at the event's offset: `Some(None)` when it is gone from the log, `None`
/// when it could not be read (logged by the caller's fallback).
fn find(topics: &TopicRegistry, event: &ArchiveEvent) -> Option<Option<Record>> {
    let partition = topics.get(&event.topic)?.partition(event.partition)?;
    let offset = u64::try_from(event.offset).ok()?;
    let data = match partition.read(offset, READ_BYTES) {
        Ok(d) => d,
        Err(BrokerError::Storage(StorageError::OffsetOutOfRange { .. })) => return Some(None),
        Err(e) => {
            tracing::warn!(partition = %partition.name(), offset, error = %e, "reading an archived record failed");
            return None;
        }
    };
    let mut buf = data.records;
    let sets = RecordBatchDecoder::decode_all(&mut buf).ok()?;
    Some(
        sets.into_iter()
            .flat_map(|s| s.records)
            .find(|r| r.offset == event.offset && !r.control),
    )
}

/// One uncompressed batch of the copies, offsets 0.. (the log assigns the real ones).
fn encode(records: &[Record]) -> Result<Bytes, BrokerError> {
    let numbered: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            ..r.clone()
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        numbered.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StorageError::InvalidRecord(format!("dead letter does not encode: {e}")))?;
    Ok(buf.freeze())
}
