//! An idempotent producer's batches go through `Log::append` exactly once: retries of any of
//! its last five batches get the original offsets back and write nothing, and out-of-order
//! sequences, unknown producers and fenced epochs are refused with Kafka's errors.

use std::path::Path;

use bytes::Bytes;
use courier_storage::batch_builder::{batch, control_batch, idempotent_batch, NewRecord};
use courier_storage::producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS;
use courier_storage::{AppendOrigin, Log, LogAppendInfo, LogConfig, StorageError};

const PID: i64 = 4_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        ..LogConfig::default()
    }
}

/// `n` records from `pid` at `epoch` starting at sequence `seq`.
fn from(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord::new(10_000 + i as i64, b"k", &[seq as u8; 40]))
        .collect();
    Bytes::from(idempotent_batch(pid, epoch, seq, &records))
}

/// `n` records from `PID` at `epoch` starting at sequence `seq`.
fn idem(epoch: i16, seq: i32, n: usize) -> Bytes {
    from(PID, epoch, seq, n)
}

/// Every `.log` file's bytes, in name order: what "nothing was written" is checked against.
fn log_bytes(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect()
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), 0).expect("open").0
}

fn offsets(info: &LogAppendInfo) -> (u64, u64, bool) {
    (info.base_offset, info.last_offset, info.duplicate)
}

#[test]
fn a_new_producer_starts_at_sequence_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    let err = log.append(&idem(0, 5, 1), 0).expect_err("seq 5 first");
    assert!(matches!(
        err,
        StorageError::UnknownProducerId {
            producer_id: PID,
            base_sequence: 5
        }
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.producer_count(), 0);

    let info = log.append(&idem(0, 0, 2), 0).expect("seq 0");
    assert_eq!(offsets(&info), (0, 1, false));
    assert_eq!(info.batches[0].producer_id, PID);
    assert_eq!(log.producer_count(), 1);
    assert_eq!(log.producer_epoch(PID), Some(0));
    assert_eq!(log.producer_epoch(PID + 1), None);
}

#[test]
fn in_order_batches_from_several_producers_interleave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    let mut seqs = [0i32; 3];
    let mut next = 0u64;
    for round in 0..6 {
        for (p, seq) in seqs.iter_mut().enumerate() {
            let n = 1 + (round + p) % 3;
            let info = log
                .append(&from(PID + p as i64, 0, *seq, n), 0)
                .expect("in order");
            assert_eq!(offsets(&info), (next, next + n as u64 - 1, false));
            next += n as u64;
            *seq += n as i32;
        }
    }
    assert_eq!(log.producer_count(), 3);
    assert!(log.segment_count() > 1, "the test crosses segment rolls");
}

#[test]
fn retries_of_the_last_five_batches_return_the_original_offsets_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    let mut originals = Vec::new();
    for i in 0..8 {
        let info = log.append(&idem(0, i * 2, 2), 0).expect("append");
        originals.push((info.base_offset, info.last_offset));
        // Interleave a plain producer so that offsets are not just 2 * i.
        log.append(&Bytes::from(batch(&[NewRecord::new(1, b"", b"x")])), 0)
            .expect("plain");
    }
    let end = log.log_end_offset();
    let size = log.size_bytes();
    let bytes = log_bytes(dir.path());
    for i in 3..8 {
        let info = log.append(&idem(0, i * 2, 2), 0).expect("retry");
        let (base, last) = originals[i as usize];
        assert_eq!(offsets(&info), (base, last, true), "retry of batch {i}");
        assert_eq!(info.record_count, 2);
        assert_eq!(info.max_timestamp, 10_001);
        assert!(info.batches.is_empty());
    }
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(
        log_bytes(dir.path()),
        bytes,
        "no byte written for a duplicate"
    );

    // Batch 2 is older than the five cached ones.
    let err = log.append(&idem(0, 4, 2), 0).expect_err("too old");
    assert!(matches!(
        err,
        StorageError::OutOfOrderSequence {
            producer_id: PID,
            expected: 16,
            got: 4
        }
    ));
    assert_eq!(log_bytes(dir.path()), bytes);
    // The producer carries on where it was.
    let info = log.append(&idem(0, 16, 1), 0).expect("next");
    assert_eq!(offsets(&info), (end, end, false));
}

#[test]
fn a_sequence_gap_is_out_of_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    log.append(&idem(0, 0, 3), 0).expect("append");
    let err = log.append(&idem(0, 4, 1), 0).expect_err("gap");
    assert!(matches!(
        err,
        StorageError::OutOfOrderSequence {
            expected: 3,
            got: 4,
            ..
        }
    ));
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn epochs_fence_older_producers_and_restart_sequences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    log.append(&idem(1, 0, 3), 0).expect("epoch 1");
    let err = log.append(&idem(0, 3, 1), 0).expect_err("old epoch");
    assert!(matches!(
        err,
        StorageError::InvalidProducerEpoch {
            producer_id: PID,
            epoch: 0,
            current_epoch: 1
        }
    ));
    let err = log.append(&idem(2, 3, 1), 0).expect_err("new epoch, seq 3");
    assert!(matches!(
        err,
        StorageError::OutOfOrderSequence {
            expected: 0,
            got: 3,
            ..
        }
    ));
    assert_eq!(log.producer_epoch(PID), Some(1));
    let info = log.append(&idem(2, 0, 1), 0).expect("new epoch, seq 0");
    assert_eq!(offsets(&info), (3, 3, false));
    assert_eq!(log.producer_epoch(PID), Some(2));
    // The old epoch's batch is no longer a duplicate: that epoch is fenced.
    assert!(matches!(
        log.append(&idem(1, 0, 3), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn an_idempotent_append_holds_exactly_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    let mut two = idem(0, 0, 1).to_vec();
    two.extend_from_slice(&idem(0, 1, 1));
    let mut mixed = batch(&[NewRecord::new(1, b"", b"x")]);
    mixed.extend_from_slice(&idem(0, 0, 1));
    for input in [two, mixed] {
        let err = log.append(&Bytes::from(input), 0).expect_err("two batches");
        assert!(
            matches!(&err, StorageError::InvalidRecord(m) if m == "an idempotent producer sends one batch per partition"),
            "{err}"
        );
    }
    assert_eq!((log.log_end_offset(), log.producer_count()), (0, 0));
    // Plain producers may still send several batches.
    let mut plain = batch(&[NewRecord::new(1, b"", b"x")]);
    plain.extend_from_slice(&batch(&[NewRecord::new(2, b"", b"y")]));
    assert_eq!(
        log.append(&Bytes::from(plain), 0)
            .expect("plain")
            .batches
            .len(),
        2
    );
}

#[test]
fn coordinator_markers_carry_producer_ids_without_sequences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    log.append(&idem(0, 0, 2), 0).expect("data");
    let marker = Bytes::from(control_batch(PID, 0, 5, true));
    assert!(matches!(
        log.append(&marker, 0),
        Err(StorageError::InvalidRecord(m)) if m.contains("control")
    ));
    let info = log
        .append_from(&marker, AppendOrigin::Coordinator, 0)
        .expect("marker");
    assert_eq!(offsets(&info), (2, 2, false));
    assert!(info.batches[0].is_control);
    // Several markers in one append (different producers, one newer epoch) are fine.
    let mut markers = control_batch(PID, 3, 5, false);
    markers.extend_from_slice(&control_batch(PID + 1, 0, 5, true));
    log.append_from(&Bytes::from(markers), AppendOrigin::Coordinator, 0)
        .expect("markers");
    assert_eq!(log.producer_epoch(PID), Some(3));
    assert_eq!(log.producer_epoch(PID + 1), Some(0));
    assert!(matches!(
        log.append(&idem(0, 2, 1), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    log.append(&idem(3, 0, 1), 0)
        .expect("new epoch after the marker");
}

#[test]
fn duplicates_under_log_append_time_report_the_original_append_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        log_append_time: true,
        ..config()
    };
    let (mut log, _) = Log::open(dir.path(), config, 0).expect("open");
    let first = log.append(&idem(0, 0, 2), 7_000).expect("append");
    assert_eq!(first.log_append_time_ms, 7_000);
    let retry = log.append(&idem(0, 0, 2), 9_000).expect("retry");
    assert_eq!(offsets(&retry), (0, 1, true));
    assert_eq!(retry.log_append_time_ms, 7_000);
    assert_eq!(retry.max_timestamp, 7_000);
}

#[test]
fn idle_producers_expire_and_must_start_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path());
    log.append(&idem(0, 0, 1), 1_000).expect("append");
    log.append(&from(PID + 1, 0, 0, 1), 50_000).expect("append");
    assert_eq!(
        log.expire_producers(
            1_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS - 1,
            DEFAULT_PRODUCER_ID_EXPIRATION_MS
        ),
        0
    );
    assert_eq!(
        log.expire_producers(
            1_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            DEFAULT_PRODUCER_ID_EXPIRATION_MS
        ),
        1
    );
    assert_eq!(log.producer_count(), 1);
    assert_eq!(log.producer_epoch(PID), None);
    assert!(matches!(
        log.append(&idem(0, 1, 1), 0),
        Err(StorageError::UnknownProducerId { .. })
    ));
    log.append(&idem(0, 0, 1), 0)
        .expect("a forgotten producer may start over");
}
