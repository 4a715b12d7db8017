//! The broker's own logs (committed offsets, transaction state): partitions under
//! `<data>/meta/` that hold key/value records written by the coordinators, replayed on start.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use courier_storage::LogConfig;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::now_ms;
use crate::partition::Partition;

/// Opens the internal log `name` under `meta_dir`: small segments, kept forever (the owner
/// compacts it by rewriting), group-committed fsyncs like any partition.
pub fn open(
    meta_dir: &Path,
    name: &str,
    hw_changed: Arc<watch::Sender<u64>>,
) -> Result<Arc<Partition>, BrokerError> {
    let config = LogConfig {
        segment_bytes: 8 << 20,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    };
    Partition::open(
        Arc::from(name),
        0,
        &meta_dir.join(name),
        config,
        0,
        hw_changed,
    )
}

/// Appends key/value records as one batch; returns the offset to wait for with
/// [`Partition::wait_durable`].
pub fn append(log: &Partition, records: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, BrokerError> {
    let now = now_ms();
    let new: Vec<courier_storage::batch_builder::NewRecord> = records
        .iter()
        .map(|(k, v)| courier_storage::batch_builder::NewRecord::new(now, k, v))
        .collect();
    let info = log.append(
        &Bytes::from(courier_storage::batch_builder::batch(&new)),
        -1,
    )?;
    Ok(info.last_offset + 1)
}

/// Calls `each(offset, key, value)` for every record below the high watermark, in order.
pub fn replay(log: &Partition, mut each: impl FnMut(i64, &[u8], &[u8])) -> Result<(), BrokerError> {
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let data = log.read(offset, 1 << 20)?;
        if data.records.is_empty() {
            break;
        }
        let mut buf = data.records.clone();
        let sets =
            RecordBatchDecoder::decode_all(&mut buf).map_err(|e| BrokerError::CorruptMetadata {
                path: log.topic.to_string().into(),
                reason: e.to_string(),
            })?;
        let mut next = offset;
        for set in sets {
            for r in set.records {
                next = next.max(r.offset as u64 + 1);
                each(
                    r.offset,
                    r.key.as_deref().unwrap_or_default(),
                    r.value.as_deref().unwrap_or_default(),
                );
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
