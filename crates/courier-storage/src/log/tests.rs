//! Unit tests of the append path, rolling, config and poisoning.

use bytes::Bytes;

use super::*;
use crate::batch::{validate_batches, CRC_POS};
use crate::batch_builder::{batch, control_batch, NewRecord};

fn records(n: usize, ts: i64, value_len: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord::new(ts + i as i64, b"key", &vec![b'v'; value_len]))
        .collect()
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, 1_000).expect("open").0
}

#[test]
fn append_assigns_consecutive_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let mut input = batch(&records(3, 100, 10));
    input.extend_from_slice(&batch(&records(2, 200, 10)));
    let info = log.append(&Bytes::from(input), 5_000).expect("append");
    assert_eq!(info.base_offset, 0);
    assert_eq!(info.last_offset, 4);
    assert_eq!(info.record_count, 5);
    assert_eq!(info.max_timestamp, 201);
    assert_eq!(info.log_append_time_ms, -1);
    assert_eq!(info.batches.len(), 2);
    assert_eq!(
        (info.batches[1].base_offset, info.batches[1].last_offset),
        (3, 4)
    );
    assert_eq!(info.batches[0].producer_id, -1);
    assert_eq!(log.log_end_offset(), 5);

    let again = log
        .append(&Bytes::from(batch(&records(1, 300, 1))), 5_000)
        .expect("append");
    assert_eq!(again.base_offset, 5);
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn stored_batches_differ_only_in_base_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&Bytes::from(batch(&records(2, 1, 1))), 0)
        .expect("append");
    let original = batch(&records(4, 10, 7));
    log.append(&Bytes::from(original.clone()), 0)
        .expect("append");
    let fetched = log.read(2, 1 << 20, u64::MAX).expect("read");
    assert_eq!(fetched.records.len(), original.len());
    assert_eq!(&fetched.records[..8], &2u64.to_be_bytes());
    assert_eq!(&fetched.records[8..], &original[8..]);
}

#[test]
fn log_append_time_rewrites_header_and_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        log_append_time: true,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let original = batch(&records(3, 10, 5));
    let info = log
        .append(&Bytes::from(original.clone()), 77_000)
        .expect("append");
    assert_eq!(info.log_append_time_ms, 77_000);
    assert_eq!(info.max_timestamp, 77_000);
    let fetched = log.read(0, 1 << 20, u64::MAX).expect("read");
    let headers = validate_batches(&fetched.records, u32::MAX).expect("CRC still valid");
    assert!(headers[0].is_log_append_time());
    assert_eq!(headers[0].max_timestamp, 77_000);
    assert_ne!(
        fetched.records[CRC_POS..CRC_POS + 4],
        original[CRC_POS..CRC_POS + 4]
    );
    assert_eq!(&fetched.records[61..], &original[61..], "records untouched");
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some((0, 77_000))
    );
}

#[test]
fn invalid_input_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let mut input = batch(&records(2, 1, 1));
    let mut bad = batch(&records(2, 1, 1));
    let last = bad.len() - 1;
    bad[last] ^= 1;
    input.extend_from_slice(&bad);
    assert!(matches!(
        log.append(&Bytes::from(input), 0),
        Err(StorageError::CorruptMessage(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn control_batches_only_from_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let mut control = batch(&records(1, 1, 1));
    control[22] |= 1 << 5; // attributes low byte: control bit
    let crc = crc32c::crc32c(&control[21..]);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    let control = Bytes::from(control);
    assert!(matches!(
        log.append(&control, 0),
        Err(StorageError::InvalidRecord(m)) if m.contains("control")
    ));
    // The control bit on a record whose key is not a marker key: refused even from the
    // coordinator, and so is a marker without a producer id.
    assert!(matches!(
        log.append_from(&control, AppendOrigin::Coordinator, 0),
        Err(StorageError::InvalidRecord(m)) if m.contains("control")
    ));
    assert!(matches!(
        log.append_from(&Bytes::from(control_batch(-1, -1, 0, true)), AppendOrigin::Coordinator, 0),
        Err(StorageError::InvalidRecord(m)) if m.contains("producer id")
    ));
    let marker = Bytes::from(control_batch(4, 0, 0, true));
    assert!(matches!(
        log.append(&marker, 0),
        Err(StorageError::InvalidRecord(m)) if m.contains("control")
    ));
    let info = log
        .append_from(&marker, AppendOrigin::Coordinator, 0)
        .expect("coordinator may write markers");
    assert!(info.batches[0].is_control);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn message_too_large_uses_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let big = Bytes::from(batch(&records(1, 1, 2_000)));
    log.set_config(LogConfig {
        max_message_bytes: 1_000,
        ..LogConfig::default()
    });
    assert_eq!(log.config().max_message_bytes, 1_000);
    assert!(matches!(
        log.append(&big, 0),
        Err(StorageError::MessageTooLarge { max: 1_000, .. })
    ));
}

#[test]
fn rolls_by_size_and_keeps_offsets_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = batch(&records(2, 1, 100));
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..10 {
        log.append(&Bytes::from(one.clone()), 0).expect("append");
    }
    assert_eq!(log.segment_count(), 4, "3 batches per segment");
    assert_eq!(log.size_bytes(), (one.len() * 10) as u64);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(
        names.contains(&"00000000000000000006.log".to_string()),
        "{names:?}"
    );
    // Sealed segments got their index files.
    assert!(dir.path().join("00000000000000000000.timeindex").exists());
    for offset in 0..20 {
        let got = log.read(offset, 1, u64::MAX).expect("read");
        assert_eq!(got.first_offset, Some(offset - offset % 2));
    }
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let one = Bytes::from(batch(&records(1, 1, 1)));
    log.append(&one, 10_000).expect("append");
    log.append(&one, 11_000)
        .expect("append, exactly segment.ms: no roll");
    assert_eq!(log.segment_count(), 1);
    log.append(&one, 11_001).expect("append");
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.segments[1].base_offset, 2);
}

#[test]
fn poisoned_log_refuses_writes_and_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let one = Bytes::from(batch(&records(1, 1, 1)));
    log.append(&one, 0).expect("append");
    let target = log.sync_target();
    assert_eq!(target.log_end_offset, 1);
    target.sync().expect("sync");
    log.poison.set();
    assert!(matches!(
        log.append(&one, 0),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(target.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(
        log.enforce_retention(0),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(log.close(), Err(StorageError::Poisoned { .. })));
    // No clean-shutdown marker: the next open scans.
    let (_, report) = Log::open(dir.path(), LogConfig::default(), 0).expect("reopen");
    assert!(!report.clean_shutdown);
    assert_eq!(report.valid_batches, 1);
}

#[test]
fn delete_removes_the_directory() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("topic-0");
    let mut log = open(&dir, LogConfig::default());
    log.append(&Bytes::from(batch(&records(1, 1, 1))), 0)
        .expect("append");
    log.delete().expect("delete");
    assert!(!dir.exists());
}

#[test]
fn create_at_starts_an_empty_log_at_the_given_offset() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("topic-0");
    let mut log = Log::create_at(&dir, LogConfig::default(), 42, 0).expect("create");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (42, 42));
    let info = log
        .append(&Bytes::from(batch(&records(2, 1, 1))), 0)
        .expect("append");
    assert_eq!((info.base_offset, info.last_offset), (42, 43));
    let read = log.read(42, 1 << 20, 44).expect("read");
    assert_eq!(read.first_offset, Some(42));
    assert_eq!(read.last_offset, Some(43));
    drop(log);
    assert!(
        Log::create_at(&dir, LogConfig::default(), 0, 0).is_err(),
        "an existing directory is never reused"
    );
    let fresh = parent.path().join("topic-1");
    let log = Log::create_at(&fresh, LogConfig::default(), 0, 0).expect("create");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
}

#[test]
fn log_and_sync_target_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<SyncTarget>();
}

#[test]
fn the_sync_target_fsyncs_the_txnindex_after_an_abort() {
    use crate::batch_builder::transactional_batch;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    let data = transactional_batch(3, 0, 0, &records(1, 1, 1));
    log.append(&Bytes::from(data), 0).expect("data");
    let clean = log.sync_target();
    let txn_index = clean.txn_index.clone().expect("active txnindex");
    assert!(
        !txn_index.dirty.load(Ordering::Acquire),
        "a commit-free log"
    );
    let abort = Bytes::from(control_batch(3, 0, 0, false));
    log.append_from(&abort, AppendOrigin::Coordinator, 0)
        .expect("abort");
    assert!(
        txn_index.dirty.load(Ordering::Acquire),
        "the entry is written before the append returns"
    );
    let target = log.sync_target();
    assert_eq!(target.log_end_offset, 2);
    target.sync().expect("sync");
    assert!(
        !txn_index.dirty.load(Ordering::Acquire),
        "synced with the .log"
    );
    let on_disk = std::fs::read(dir.path().join("00000000000000000000.txnindex")).expect("read");
    assert_eq!(on_disk.len(), 34);
}
