//! Retention by time and size and `DeleteRecords` move the log start offset forward, delete
//! only whole non-active segments, and survive a restart (the start offset is checkpointed).

use bytes::Bytes;
use courier_storage::batch_builder::{batch, NewRecord};
use courier_storage::{Log, LogConfig, StorageError};

const BATCH_TS: i64 = 1_000_000;

/// Config whose segments hold exactly two batches of `one_batch`.
fn config() -> LogConfig {
    let size = one_batch(0).len() as u64;
    LogConfig {
        segment_bytes: 2 * size,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

/// Batch `i` holds one record with timestamp `BATCH_TS + 1000 * i`.
fn one_batch(i: i64) -> Vec<u8> {
    batch(&[NewRecord::new(BATCH_TS + 1_000 * i, b"k", &[7u8; 64])])
}

fn filled(dir: &std::path::Path, config: LogConfig, n: i64) -> Log {
    let (mut log, _) = Log::open(dir, config, 0).expect("open");
    for i in 0..n {
        log.append(&Bytes::from(one_batch(i)), 0).expect("append");
    }
    log
}

#[test]
fn time_retention_deletes_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = filled(dir.path(), config(), 9); // segments: [0,1] [2,3] [4,5] [6,7] [8]
    assert_eq!(log.segment_count(), 5);
    log.set_config(LogConfig {
        retention_ms: 10_000,
        ..config()
    });
    // Newest record of segment [2,3] is BATCH_TS + 3000; it expires once now > that + 10_000.
    assert_eq!(
        log.enforce_retention(BATCH_TS + 13_000).expect("retention"),
        1
    );
    assert_eq!(log.log_start_offset(), 2);
    assert_eq!(
        log.enforce_retention(BATCH_TS + 13_001).expect("retention"),
        1
    );
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.enforce_retention(i64::MAX).expect("retention"), 2);
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(
        log.read(8, 100, u64::MAX).expect("read").first_offset,
        Some(8)
    );
    assert!(matches!(
        log.read(7, 100, u64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));

    drop(log);
    let (log, _) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.log_end_offset(), 9);
}

#[test]
fn size_retention_keeps_at_least_retention_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = one_batch(0).len() as u64;
    let mut log = filled(dir.path(), config(), 9);
    assert_eq!(log.size_bytes(), 9 * size);
    log.set_config(LogConfig {
        retention_bytes: (5 * size) as i64,
        ..config()
    });
    // Deleting [0,1] leaves 7 batches, [2,3] leaves 5 (still >= 5), [4,5] would leave 3.
    assert_eq!(log.enforce_retention(0).expect("retention"), 2);
    assert_eq!(log.size_bytes(), 5 * size);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.enforce_retention(0).expect("retention"), 0);

    log.set_config(LogConfig {
        retention_bytes: 0,
        ..config()
    });
    assert_eq!(log.enforce_retention(0).expect("retention"), 2);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), size);
    let logs = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "log"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(logs, 1, "segment files are removed from disk");
}

#[test]
fn unlimited_retention_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = filled(dir.path(), config(), 9);
    assert_eq!(log.enforce_retention(i64::MAX).expect("retention"), 0);
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn delete_records_advances_persists_and_never_moves_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = filled(dir.path(), config(), 9);
    assert!(matches!(
        log.delete_records_before(10),
        Err(StorageError::OffsetOutOfRange {
            offset: 10,
            log_end_offset: 9,
            ..
        })
    ));
    assert_eq!(log.delete_records_before(5).expect("delete"), 5);
    assert_eq!(
        log.segment_count(),
        3,
        "[0,1] and [2,3] were wholly below 5"
    );
    // Offset 4 is in the remaining segment [4,5] but below the start offset.
    assert!(matches!(
        log.read(4, 100, u64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let got = log.read(5, 100, u64::MAX).expect("read");
    assert_eq!(got.first_offset, Some(5));
    assert_eq!(
        log.delete_records_before(3).expect("no-op"),
        5,
        "never backwards"
    );
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some((5, BATCH_TS + 5_000)),
        "timestamp lookups skip deleted records"
    );

    log.close().expect("close");
    let (mut log, _) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.delete_records_before(9).expect("delete to the end"), 9);
    assert!(log.read(9, 100, u64::MAX).expect("read").records.is_empty());
    drop(log);
    let (log, _) = Log::open(dir.path(), config(), 0).expect("reopen after crash");
    assert_eq!(log.log_start_offset(), 9);
    assert_eq!(log.log_end_offset(), 9);
}
