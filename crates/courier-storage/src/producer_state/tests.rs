//! Unit tests of the producer-state rules: each case checks the verdict and the state after.

use super::*;

const PID: i64 = 17;

/// A data batch header of `records` records from `PID`.
fn header(epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 100,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 1_000,
        max_timestamp: 1_000 + i64::from(records),
        producer_id: PID,
        producer_epoch: epoch,
        base_sequence,
        records_count: records,
    }
}

/// A transaction-marker header (control bit, sequence -1).
fn marker(epoch: i16) -> BatchHeader {
    BatchHeader {
        attributes: 1 << 5 | 1 << 4,
        base_sequence: -1,
        ..header(epoch, -1, 1)
    }
}

/// A transactional data batch header from `pid`.
fn txn(pid: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
    BatchHeader {
        attributes: 1 << 4,
        producer_id: pid,
        ..header(epoch, base_sequence, records)
    }
}

/// Checks and, if it is to be appended, records `h` at `next` offset; returns the verdict.
/// Markers are recorded as COMMITs.
fn append(state: &mut ProducerStateManager, h: &BatchHeader, next: &mut u64) -> ProducerCheck {
    let verdict = state.check(h).expect("accepted");
    if verdict == ProducerCheck::Append {
        let last = *next + h.last_offset_delta as u64;
        if h.is_control() {
            state.end_transaction(h, *next, ControlRecordType::Commit, 50);
        } else {
            state.update(h, *next, last, 50);
        }
        *next = last + 1;
    }
    verdict
}

#[test]
fn non_idempotent_batches_are_not_checked() {
    let state = ProducerStateManager::new();
    let h = BatchHeader {
        producer_id: -1,
        ..header(-1, -1, 3)
    };
    assert_eq!(state.check(&h).expect("ok"), ProducerCheck::NotIdempotent);
    let mut state = state;
    state.update(&h, 0, 2, 0);
    assert!(state.is_empty());
}

#[test]
fn new_producer_must_start_at_sequence_zero() {
    let state = ProducerStateManager::new();
    assert_eq!(
        state.check(&header(0, 0, 2)).expect("ok"),
        ProducerCheck::Append
    );
    assert!(matches!(
        state.check(&header(0, 5, 2)),
        Err(StorageError::UnknownProducerId {
            producer_id: PID,
            base_sequence: 5
        })
    ));
}

#[test]
fn in_order_batches_are_appended_and_cached() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    for seq in [0, 3, 6] {
        assert_eq!(
            append(&mut state, &header(0, seq, 3), &mut next),
            ProducerCheck::Append
        );
    }
    let entry = state.get(PID).expect("entry");
    assert_eq!(entry.epoch, 0);
    assert_eq!(entry.next_sequence(), 9);
    assert_eq!(entry.batches.len(), 3);
    assert_eq!(
        entry.batches[2],
        BatchMetadata {
            first_seq: 6,
            last_seq: 8,
            first_offset: 6,
            last_offset: 8,
            max_timestamp: 1_003,
        }
    );
}

#[test]
fn retries_of_the_last_five_batches_are_duplicates() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    for seq in 0..7 {
        append(&mut state, &header(0, seq * 2, 2), &mut next);
    }
    // Batches 2..7 are cached; each retry gets its original offsets.
    for seq in 2..7 {
        assert_eq!(
            state.check(&header(0, seq * 2, 2)).expect("ok"),
            ProducerCheck::Duplicate {
                base_offset: seq as u64 * 2,
                last_offset: seq as u64 * 2 + 1,
                max_timestamp: 1_002,
            }
        );
    }
    // Batch 1 has left the cache: its retry is out of order.
    assert!(matches!(
        state.check(&header(0, 2, 2)),
        Err(StorageError::OutOfOrderSequence {
            expected: 14,
            got: 2,
            ..
        })
    ));
    assert_eq!(
        state.get(PID).expect("entry").batches.len(),
        MAX_CACHED_BATCHES
    );
}

#[test]
fn a_retry_with_different_bounds_is_not_a_duplicate() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    append(&mut state, &header(0, 0, 3), &mut next);
    assert!(matches!(
        state.check(&header(0, 0, 2)),
        Err(StorageError::OutOfOrderSequence {
            expected: 3,
            got: 0,
            ..
        })
    ));
}

#[test]
fn a_gap_is_out_of_order() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    append(&mut state, &header(0, 0, 3), &mut next);
    assert!(matches!(
        state.check(&header(0, 4, 1)),
        Err(StorageError::OutOfOrderSequence {
            producer_id: PID,
            expected: 3,
            got: 4
        })
    ));
}

#[test]
fn an_older_epoch_is_fenced() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    append(&mut state, &header(3, 0, 1), &mut next);
    assert!(matches!(
        state.check(&header(2, 1, 1)),
        Err(StorageError::InvalidProducerEpoch {
            producer_id: PID,
            epoch: 2,
            current_epoch: 3
        })
    ));
    // Even an exact copy of an old-epoch batch is fenced, not a duplicate.
    assert!(state.check(&header(2, 0, 1)).is_err());
}

#[test]
fn a_new_epoch_starts_over_at_zero() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    append(&mut state, &header(0, 0, 5), &mut next);
    assert!(matches!(
        state.check(&header(1, 3, 1)),
        Err(StorageError::OutOfOrderSequence {
            expected: 0,
            got: 3,
            ..
        })
    ));
    assert_eq!(
        append(&mut state, &header(1, 0, 1), &mut next),
        ProducerCheck::Append
    );
    let entry = state.get(PID).expect("entry");
    assert_eq!(entry.epoch, 1);
    assert_eq!(
        entry.batches.len(),
        1,
        "the old epoch's batches are forgotten"
    );
    // The old epoch's batches are not duplicates any more (and the old epoch is fenced).
    assert!(state.check(&header(0, 0, 5)).is_err());
}

#[test]
fn sequences_wrap_from_max_to_zero() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(increment_sequence(5, 0), 5);
    assert_eq!(
        increment_sequence(i32::MIN, i32::MIN),
        0,
        "no panic on odd input"
    );

    let mut state = ProducerStateManager::new();
    state.producers.insert(
        PID,
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::from([BatchMetadata {
                first_seq: i32::MAX - 4,
                last_seq: i32::MAX - 2,
                first_offset: 0,
                last_offset: 2,
                max_timestamp: 0,
            }]),
            last_timestamp_ms: 0,
            current_txn_first_offset: None,
        },
    );
    let mut next = 3;
    // MAX-1, MAX, 0, 1: the batch straddles the wrap.
    let straddling = header(0, i32::MAX - 1, 4);
    assert_eq!(
        append(&mut state, &straddling, &mut next),
        ProducerCheck::Append
    );
    assert_eq!(state.get(PID).expect("entry").batches[1].last_seq, 1);
    assert_eq!(
        state.check(&straddling).expect("ok"),
        ProducerCheck::Duplicate {
            base_offset: 3,
            last_offset: 6,
            max_timestamp: 1_004,
        }
    );
    assert_eq!(
        append(&mut state, &header(0, 2, 1), &mut next),
        ProducerCheck::Append
    );

    // A batch ending exactly at MAX is followed by 0.
    let mut state = ProducerStateManager::new();
    state.update(&header(0, i32::MAX - 1, 2), 0, 1, 0);
    assert_eq!(state.get(PID).expect("entry").next_sequence(), 0);
    assert_eq!(
        state.check(&header(0, 0, 1)).expect("ok"),
        ProducerCheck::Append
    );
}

#[test]
fn control_batches_skip_the_sequence_check() {
    let mut state = ProducerStateManager::new();
    let mut next = 0;
    // A marker for an unknown producer, or with sequence -1, is fine.
    assert_eq!(
        append(&mut state, &marker(0), &mut next),
        ProducerCheck::Append
    );
    assert!(state.get(PID).expect("entry").batches.is_empty());
    append(&mut state, &header(0, 0, 2), &mut next);
    // A marker does not disturb the sequence...
    assert_eq!(
        append(&mut state, &marker(0), &mut next),
        ProducerCheck::Append
    );
    assert_eq!(
        append(&mut state, &header(0, 2, 1), &mut next),
        ProducerCheck::Append
    );
    // ...an older-epoch marker is fenced (a zombie coordinator request, as Kafka); were one
    // replayed from an inconsistent log, it would change nothing...
    let before = state.get(PID).cloned();
    assert!(matches!(
        state.check(&marker(-1)),
        Err(StorageError::InvalidProducerEpoch {
            producer_id: PID,
            epoch: -1,
            current_epoch: 0
        })
    ));
    assert_eq!(
        state.end_transaction(&marker(-1), 100, ControlRecordType::Abort, 60),
        None
    );
    assert_eq!(state.get(PID).cloned(), before);
    // A same-epoch marker is accepted, even for a producer with no transaction.
    assert_eq!(state.check(&marker(0)).expect("ok"), ProducerCheck::Append);
    // ...and a newer-epoch marker moves the producer to it.
    assert_eq!(
        append(&mut state, &marker(4), &mut next),
        ProducerCheck::Append
    );
    let entry = state.get(PID).expect("entry");
    assert_eq!((entry.epoch, entry.batches.len()), (4, 0));
    assert!(state.check(&header(3, 0, 1)).is_err());
    assert_eq!(
        state.check(&header(4, 0, 1)).expect("ok"),
        ProducerCheck::Append
    );
}

#[test]
fn idle_producers_expire() {
    let mut state = ProducerStateManager::new();
    for (pid, at) in [(1, 1_000), (2, 5_000), (3, 9_000)] {
        let h = BatchHeader {
            producer_id: pid,
            ..header(0, 0, 1)
        };
        state.update(&h, 0, 0, at);
    }
    assert_eq!(
        state.expire(10_000, -1),
        0,
        "negative expiration keeps everyone"
    );
    assert_eq!(
        state.expire(10_000, 5_000),
        2,
        "idle for exactly 5000 ms counts"
    );
    assert_eq!(state.len(), 1);
    assert!(state.get(3).is_some());
    // An append refreshes the producer's timestamp.
    state.update(&header(0, 0, 1), 1, 1, 20_000);
    assert_eq!(state.expire(20_001, DEFAULT_PRODUCER_ID_EXPIRATION_MS), 0);
    assert_eq!(
        state.expire(
            20_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            DEFAULT_PRODUCER_ID_EXPIRATION_MS
        ),
        2
    );
    assert!(state.is_empty());
}

#[test]
fn timestamps_never_go_backwards() {
    let mut state = ProducerStateManager::new();
    state.update(&header(0, 0, 1), 0, 0, 9_000);
    state.update(&header(0, 1, 1), 1, 1, 2_000);
    assert_eq!(state.get(PID).expect("entry").last_timestamp_ms, 9_000);
}

#[test]
fn a_transactional_batch_starts_a_transaction_and_a_marker_ends_it() {
    let mut state = ProducerStateManager::new();
    state.update(&txn(PID, 0, 0, 2), 10, 11, 0);
    state.update(&txn(PID, 0, 2, 3), 12, 14, 0);
    let entry = state.get(PID).expect("entry");
    assert_eq!(
        entry.current_txn_first_offset,
        Some(10),
        "the first batch starts it"
    );
    assert_eq!(state.first_unstable_offset(), Some(10));
    assert_eq!(state.ongoing_transactions(), vec![(PID, 0, 10)]);
    let done = state
        .end_transaction(&marker(0), 15, ControlRecordType::Abort, 0)
        .expect("completed");
    assert_eq!(
        done,
        CompletedTxn {
            producer_id: PID,
            first_offset: 10,
            last_offset: 15,
            aborted: true,
            last_stable_offset: 16,
        }
    );
    assert_eq!(
        state.get(PID).expect("entry").current_txn_first_offset,
        None
    );
    assert_eq!(state.first_unstable_offset(), None);
    // The sequence carries on across transactions.
    assert_eq!(
        state.check(&txn(PID, 0, 5, 1)).expect("ok"),
        ProducerCheck::Append
    );
}

#[test]
fn interleaved_transactions_keep_the_earliest_first_offset() {
    let mut state = ProducerStateManager::new();
    state.update(&txn(1, 0, 0, 1), 0, 0, 0);
    state.update(&txn(2, 0, 0, 1), 1, 1, 0);
    state.update(&txn(1, 0, 1, 1), 2, 2, 0);
    assert_eq!(state.first_unstable_offset(), Some(0));
    let marker_of = |pid| BatchHeader {
        producer_id: pid,
        ..marker(0)
    };
    let done = state
        .end_transaction(&marker_of(1), 3, ControlRecordType::Commit, 0)
        .expect("completed");
    assert!(!done.aborted);
    assert_eq!((done.first_offset, done.last_stable_offset), (0, 1));
    assert_eq!(state.first_unstable_offset(), Some(1));
    let done = state
        .end_transaction(&marker_of(2), 4, ControlRecordType::Abort, 0)
        .expect("completed");
    assert_eq!((done.first_offset, done.last_stable_offset), (1, 5));
    // A marker for a producer without a transaction reports the marker itself (Kafka).
    let done = state
        .end_transaction(&marker_of(2), 5, ControlRecordType::Abort, 0)
        .expect("completed");
    assert_eq!((done.first_offset, done.last_offset), (5, 5));
    // Non-transactional batches never start one.
    state.update(&header(0, 0, 1), 6, 6, 0);
    assert_eq!(state.first_unstable_offset(), None);
}

#[test]
fn producers_with_an_ongoing_transaction_never_expire() {
    let mut state = ProducerStateManager::new();
    state.update(&txn(1, 0, 0, 1), 0, 0, 0);
    state.update(&header(0, 0, 1), 1, 1, 0);
    assert_eq!(state.expire(1_000_000, 10), 1);
    assert!(state.get(1).is_some() && state.get(PID).is_none());
    state.end_transaction(
        &BatchHeader {
            producer_id: 1,
            ..marker(0)
        },
        2,
        ControlRecordType::Commit,
        0,
    );
    assert_eq!(state.expire(1_000_000, 10), 1);
    assert!(state.is_empty());
}
