//! Transaction markers drive the last stable offset and the aborted transaction index: an
//! ongoing transaction holds the LSO at its first offset, a COMMIT or ABORT releases it, an
//! ABORT is recorded in the segment's `.txnindex` in Kafka's 34-byte layout and reported to
//! fetches whose range it overlaps, and a zombie's old-epoch marker is fenced.

use bytes::Bytes;
use courier_storage::batch_builder::{
    batch, control_batch, idempotent_batch, transactional_batch, NewRecord,
};
use courier_storage::{AppendOrigin, Log, LogConfig, StorageError};

fn open(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0).expect("open").0
}

/// A one-record transactional batch of `pid` with sequence `seq`.
fn txn_data(pid: i64, epoch: i16, seq: i32) -> Bytes {
    Bytes::from(transactional_batch(
        pid,
        epoch,
        seq,
        &[NewRecord::new(1_000, b"k", b"v")],
    ))
}

/// Appends a marker of `pid` as the transaction coordinator; returns its offset.
fn end_txn(log: &mut Log, pid: i64, epoch: i16, commit: bool) -> u64 {
    let marker = Bytes::from(control_batch(pid, epoch, 1_000, commit));
    log.append_from(&marker, AppendOrigin::Coordinator, 0)
        .expect("marker")
        .base_offset
}

fn append(log: &mut Log, bytes: &Bytes) -> u64 {
    log.append(bytes, 0).expect("append").base_offset
}

#[test]
fn an_ongoing_transaction_holds_the_lso_and_a_commit_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(
        &mut log,
        &Bytes::from(batch(&[NewRecord::new(1, b"", b"x")])),
    );
    assert_eq!(log.last_stable_offset(1), 1, "no transaction: LSO = HW");
    assert_eq!(append(&mut log, &txn_data(7, 0, 0)), 1);
    assert_eq!(append(&mut log, &txn_data(7, 0, 1)), 2);
    assert_eq!(
        log.last_stable_offset(3),
        1,
        "held at the transaction's first offset"
    );
    assert_eq!(
        log.last_stable_offset(0),
        0,
        "never above the high watermark"
    );
    assert_eq!(log.ongoing_transactions(), vec![(7, 0, 1)]);
    let entry = log.producer_state().get(7).expect("producer");
    assert_eq!(entry.current_txn_first_offset, Some(1));

    assert_eq!(end_txn(&mut log, 7, 0, true), 3);
    assert_eq!(log.last_stable_offset(4), 4);
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(log.aborted_transactions(0, 4).expect("aborted"), vec![]);
    // The next transactional batch starts a new transaction, with the sequence carried on.
    assert_eq!(append(&mut log, &txn_data(7, 0, 2)), 4);
    assert_eq!(log.last_stable_offset(5), 4);
}

#[test]
fn an_abort_is_indexed_and_reported_for_overlapping_ranges_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(
        &mut log,
        &Bytes::from(batch(&[NewRecord::new(1, b"", b"x")])),
    ); // 0
    append(&mut log, &txn_data(7, 2, 0)); // 1
    append(&mut log, &txn_data(7, 2, 1)); // 2
    assert_eq!(end_txn(&mut log, 7, 2, false), 3);
    append(
        &mut log,
        &Bytes::from(batch(&[NewRecord::new(1, b"", b"y")])),
    ); // 4
    assert_eq!(log.last_stable_offset(5), 5);

    // Kafka's entry: version 0, producer id, first offset, last offset, LSO after the marker.
    let bytes = std::fs::read(dir.path().join("00000000000000000000.txnindex")).expect("file");
    let mut expected = 0i16.to_be_bytes().to_vec();
    for field in [7i64, 1, 3, 4] {
        expected.extend_from_slice(&field.to_be_bytes());
    }
    assert_eq!(bytes, expected);

    let aborted = |start, upper| log.aborted_transactions(start, upper).expect("aborted");
    assert_eq!(aborted(0, 5), vec![(7, 1)]);
    assert_eq!(
        aborted(0, 2),
        vec![(7, 1)],
        "the range reaches the first offset"
    );
    assert_eq!(
        aborted(0, 1),
        vec![],
        "the range ends before the transaction"
    );
    assert_eq!(
        aborted(3, 5),
        vec![(7, 1)],
        "the range starts at the marker"
    );
    assert_eq!(aborted(4, 5), vec![], "the range starts after the marker");
}

#[test]
fn interleaved_producers_hold_the_lso_at_the_earlier_first_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, &txn_data(1, 0, 0)); // 0: P1 starts
    append(&mut log, &txn_data(2, 0, 0)); // 1: P2 starts
    append(&mut log, &txn_data(1, 0, 1)); // 2
    assert_eq!(log.last_stable_offset(3), 0);
    assert_eq!(log.ongoing_transactions(), vec![(1, 0, 0), (2, 0, 1)]);
    assert_eq!(end_txn(&mut log, 1, 0, false), 3); // P1 aborts while P2 is ongoing
    assert_eq!(log.last_stable_offset(4), 1, "now held by P2");
    append(&mut log, &txn_data(1, 0, 2)); // 4: P1 starts again
    assert_eq!(end_txn(&mut log, 2, 0, false), 5); // P2 aborts
    assert_eq!(
        log.last_stable_offset(6),
        4,
        "held by P1's second transaction"
    );
    assert_eq!(end_txn(&mut log, 1, 0, true), 6);
    assert_eq!(log.last_stable_offset(7), 7);
    // P1's entry records P2 still ongoing (LSO 1); P2's records P1's new transaction (4).
    let bytes = std::fs::read(dir.path().join("00000000000000000000.txnindex")).expect("file");
    assert_eq!(bytes.len(), 2 * 34);
    let lso_of = |entry: usize| {
        let at = entry * 34 + 26;
        i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    assert_eq!((lso_of(0), lso_of(1)), (1, 4));
    assert_eq!(
        log.aborted_transactions(0, 7).expect("aborted"),
        vec![(1, 0), (2, 1)]
    );
    // From offset 4, P1's first transaction (ended at 3) is out of range.
    assert_eq!(
        log.aborted_transactions(4, 7).expect("aborted"),
        vec![(2, 1)]
    );
}

#[test]
fn a_zombie_marker_with_an_older_epoch_is_fenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, &txn_data(7, 3, 0));
    let zombie = Bytes::from(control_batch(7, 2, 1_000, false));
    assert!(matches!(
        log.append_from(&zombie, AppendOrigin::Coordinator, 0),
        Err(StorageError::InvalidProducerEpoch {
            producer_id: 7,
            epoch: 2,
            current_epoch: 3
        })
    ));
    assert_eq!(log.log_end_offset(), 1, "nothing written");
    assert_eq!(log.ongoing_transactions(), vec![(7, 3, 0)]);
    // A newer epoch's marker (the coordinator aborting after an epoch bump) is accepted and
    // fences the old epoch's data.
    assert_eq!(end_txn(&mut log, 7, 4, false), 1);
    assert_eq!(log.producer_epoch(7), Some(4));
    assert!(matches!(
        log.append(&txn_data(7, 3, 1), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        log.aborted_transactions(0, 2).expect("aborted"),
        vec![(7, 0)]
    );
}

#[test]
fn transactional_batches_take_the_idempotence_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, &txn_data(7, 0, 0));
    let retry = log.append(&txn_data(7, 0, 0), 0).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 0);
    assert!(matches!(
        log.append(&txn_data(7, 0, 5), 0),
        Err(StorageError::OutOfOrderSequence { expected: 1, .. })
    ));
    assert!(matches!(
        log.append(&txn_data(8, 0, 3), 0),
        Err(StorageError::UnknownProducerId { .. })
    ));
    // A plain idempotent batch of another producer does not start a transaction.
    let idem = idempotent_batch(9, 0, 0, &[NewRecord::new(1, b"", b"x")]);
    append(&mut log, &Bytes::from(idem));
    assert_eq!(log.ongoing_transactions(), vec![(7, 0, 0)]);
}

#[test]
fn aborts_across_segments_are_found_from_any_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for seq in 0..6 {
        append(&mut log, &txn_data(7, 0, seq)); // 0..=5, spread over segments
    }
    assert_eq!(end_txn(&mut log, 7, 0, false), 6);
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    for start in 0..=6 {
        assert_eq!(
            log.aborted_transactions(start, start + 1).expect("aborted"),
            vec![(7, 0)],
            "fetch at {start}"
        );
    }
    assert_eq!(log.aborted_transactions(7, 8).expect("aborted"), vec![]);
}

#[test]
fn deleting_records_past_an_ongoing_transaction_does_not_hide_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, &txn_data(7, 0, 0));
    for _ in 0..3 {
        append(
            &mut log,
            &Bytes::from(batch(&[NewRecord::new(1, b"", b"x")])),
        );
    }
    assert_eq!(log.last_stable_offset(4), 0);
    log.delete_records_before(2).expect("delete");
    assert_eq!(
        log.last_stable_offset(4),
        2,
        "clamped to the log start offset"
    );
    assert_eq!(log.ongoing_transactions(), vec![(7, 0, 0)]);
}

/// `b` (a producer's batch) turned into a control batch: attribute bits 4 and 5 set, CRC
/// recomputed.
fn as_control(mut b: Vec<u8>) -> Bytes {
    b[22] |= 0x30;
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

#[test]
fn malformed_markers_are_invalid_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, &txn_data(7, 0, 0));
    let record = |key: &[u8]| NewRecord::new(1, key, &[0u8; 6]);
    let cases = [
        (
            "type 2",
            idempotent_batch(7, 0, 0, &[record(&[0, 0, 0, 2])]),
        ),
        ("short key", idempotent_batch(7, 0, 0, &[record(&[0, 1])])),
        (
            "negative version",
            idempotent_batch(7, 0, 0, &[record(&[0xff, 0xff, 0, 0])]),
        ),
        (
            "two records",
            idempotent_batch(7, 0, 0, &[record(&[0, 0, 0, 1]), record(&[0, 0, 0, 1])]),
        ),
        ("no producer id", batch(&[record(&[0, 0, 0, 1])])),
    ];
    for (what, b) in cases {
        assert!(
            matches!(
                log.append_from(&as_control(b), AppendOrigin::Coordinator, 0),
                Err(StorageError::InvalidRecord(_))
            ),
            "{what}"
        );
    }
    assert_eq!(log.log_end_offset(), 1, "nothing written");
    assert_eq!(log.ongoing_transactions(), vec![(7, 0, 0)]);
    // The same forging with a valid key is a marker.
    let good = as_control(idempotent_batch(7, 0, 0, &[record(&[0, 0, 0, 1])]));
    log.append_from(&good, AppendOrigin::Coordinator, 0)
        .expect("marker");
    assert!(log.ongoing_transactions().is_empty());
}

#[test]
fn a_producer_inside_a_transaction_may_only_write_transactional_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) =
        courier_storage::Log::open(dir.path(), courier_storage::LogConfig::default(), 0)
            .expect("open");
    let recs = vec![courier_storage::batch_builder::NewRecord::new(
        1, b"k", b"v",
    )];
    log.append(
        &bytes::Bytes::from(courier_storage::batch_builder::transactional_batch(
            9, 0, 0, &recs,
        )),
        1,
    )
    .expect("transactional batch");
    let plain = courier_storage::batch_builder::idempotent_batch(9, 0, 1, &recs);
    let end = log.log_end_offset();
    assert!(matches!(
        log.append(&bytes::Bytes::from(plain), 2),
        Err(courier_storage::StorageError::InvalidTxnState { producer_id: 9 })
    ));
    assert_eq!(log.log_end_offset(), end, "nothing written");
}
