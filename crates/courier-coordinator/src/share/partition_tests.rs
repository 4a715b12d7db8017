//! Share-partition scenarios: each checks the state after a call and the effects it returned
//! (what was acquired, what was archived, whether a snapshot is due).

use super::delivery::*;
use super::partition::*;
use super::record::{DeliveryState, ShareRecord, ShareSnapshot, StateBatch};
use crate::error::CoordinatorError;

const LOCK: i64 = 30_000;

/// A share-partition of g/t/0 that starts at offset 0 (earliest over an empty log).
fn fresh() -> SharePartition {
    let (sp, record) = SharePartition::new(
        "g",
        "t",
        0,
        SharePartitionConfig::default(),
        AutoOffsetReset::Earliest,
        0,
        100,
    );
    assert_eq!(record, ShareRecord::Snapshot(sp.snapshot()));
    sp
}

fn range(first_offset: i64, last_offset: i64, delivery_count: u16) -> AcquiredRecords {
    AcquiredRecords {
        first_offset,
        last_offset,
        delivery_count,
    }
}

fn ack(first_offset: i64, last_offset: i64, t: AcknowledgeType) -> AcknowledgementBatch {
    AcknowledgementBatch {
        first_offset,
        last_offset,
        acknowledge_types: vec![t],
    }
}

/// Acknowledges `[first, last]` with one type, expecting it to be accepted.
fn acked(
    sp: &mut SharePartition,
    member: &str,
    first: i64,
    last: i64,
    t: AcknowledgeType,
    now: i64,
) -> ShareEffects {
    sp.acknowledge(member, &[ack(first, last, t)], now)
        .expect("acknowledged")
}

fn state(sp: &SharePartition, offset: i64) -> Option<(RecordState, u16)> {
    sp.state_at(offset).map(|(s, c)| (s.clone(), c))
}

fn offsets(events: &[ArchiveEvent]) -> Vec<(i64, u16, ArchiveReason)> {
    events
        .iter()
        .map(|e| (e.offset, e.delivery_count, e.reason))
        .collect()
}

#[test]
fn latest_starts_at_the_high_watermark_earliest_at_the_log_start() {
    let cfg = SharePartitionConfig::default;
    let (latest, _) = SharePartition::new("g", "t", 0, cfg(), AutoOffsetReset::Latest, 5, 42);
    let (earliest, _) = SharePartition::new("g", "t", 0, cfg(), AutoOffsetReset::Earliest, 5, 42);
    assert_eq!((latest.start_offset(), latest.end_offset()), (42, 42));
    assert_eq!((earliest.start_offset(), earliest.end_offset()), (5, 5));
    assert_eq!(AutoOffsetReset::default(), AutoOffsetReset::Latest);
}

#[test]
fn acquire_then_accept_advances_the_start_offset() {
    let mut sp = fresh();
    let fx = sp.acquire("a", 10, 100, 0);
    assert_eq!(fx.acquired, vec![range(0, 9, 1)]);
    assert_eq!(fx.records.len(), 1, "the delivery counts must be persisted");
    assert_eq!((sp.start_offset(), sp.end_offset()), (0, 10));
    let fx = acked(&mut sp, "a", 0, 4, AcknowledgeType::Accept, 1);
    assert_eq!(sp.start_offset(), 5);
    let ShareRecord::Snapshot(snap) = &fx.records[0] else {
        panic!("a snapshot")
    };
    assert_eq!(snap.start_offset, 5);
    assert_eq!(
        snap.batches,
        vec![StateBatch {
            first_offset: 5,
            last_offset: 9,
            delivery_state: DeliveryState::Available,
            delivery_count: 1
        }]
    );
    let stats = sp.stats(100);
    assert_eq!(
        (stats.acquired, stats.acknowledged_total, stats.lag),
        (5, 5, 95)
    );
}

#[test]
fn two_members_acquire_disjoint_records() {
    let mut sp = fresh();
    assert_eq!(sp.acquire("a", 3, 5, 0).acquired, vec![range(0, 2, 1)]);
    assert_eq!(sp.acquire("b", 3, 5, 0).acquired, vec![range(3, 4, 1)]);
    assert!(
        sp.acquire("c", 3, 5, 0).acquired.is_empty(),
        "nothing left below the high watermark"
    );
    let held_by = |o| match state(&sp, o) {
        Some((RecordState::Acquired { member_id, .. }, 1)) => member_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (0..5).map(held_by).collect::<Vec<_>>(),
        ["a", "a", "a", "b", "b"]
    );
}

#[test]
fn released_records_come_back_with_delivery_count_two() {
    let mut sp = fresh();
    sp.acquire("a", 4, 4, 0);
    let fx = acked(&mut sp, "a", 1, 2, AcknowledgeType::Release, 1);
    assert!(
        fx.records.is_empty(),
        "released is persisted as acquired was: available, count 1"
    );
    assert_eq!(state(&sp, 1), Some((RecordState::Available, 1)));
    assert_eq!(sp.acquire("b", 10, 4, 2).acquired, vec![range(1, 2, 2)]);
}

#[test]
fn a_rejected_record_is_archived_with_an_event() {
    let mut sp = fresh();
    sp.acquire("a", 3, 3, 0);
    let fx = acked(&mut sp, "a", 1, 1, AcknowledgeType::Reject, 1);
    assert_eq!(offsets(&fx.archived), [(1, 1, ArchiveReason::Rejected)]);
    let e = &fx.archived[0];
    assert_eq!(
        (e.group.as_str(), e.topic.as_str(), e.partition),
        ("g", "t", 0)
    );
    assert_eq!(state(&sp, 1), Some((RecordState::Archived, 1)));
    assert_eq!(fx.records.len(), 1);
    acked(&mut sp, "a", 0, 0, AcknowledgeType::Accept, 1);
    assert_eq!(
        sp.start_offset(),
        2,
        "SPSO moves over acknowledged and archived alike"
    );
    assert_eq!(sp.stats(3).archived_total, 1);
}

#[test]
fn an_ended_lock_redelivers_to_another_member() {
    let mut sp = fresh();
    sp.acquire("a", 2, 2, 0);
    assert_eq!(sp.next_lock_deadline(), Some(LOCK));
    assert!(sp.expire_locks(LOCK - 1).records.is_empty());
    assert!(matches!(
        state(&sp, 0),
        Some((RecordState::Acquired { .. }, 1))
    ));
    assert_eq!(sp.acquire("b", 5, 2, LOCK).acquired, vec![range(0, 1, 2)]);
    assert_eq!(
        sp.acknowledge("a", &[ack(0, 1, AcknowledgeType::Accept)], LOCK),
        Err(CoordinatorError::InvalidRecordState),
        "a's lock is gone"
    );
}

#[test]
fn the_last_allowed_delivery_that_fails_archives_the_record() {
    let mut sp = fresh();
    let mut now = 0;
    for delivery in 1..=5u16 {
        let fx = sp.acquire("a", 1, 1, now);
        assert_eq!(fx.acquired, vec![range(0, 0, delivery)]);
        assert!(fx.archived.is_empty());
        now += LOCK;
    }
    let fx = sp.expire_locks(now);
    assert_eq!(
        offsets(&fx.archived),
        [(0, 5, ArchiveReason::DeliveryLimit)]
    );
    assert_eq!(sp.start_offset(), 1);
    assert_eq!(fx.records.len(), 1);
    assert!(sp.acquire("a", 1, 1, now).acquired.is_empty());
}

#[test]
fn a_release_at_the_limit_archives_too() {
    let mut sp = fresh();
    for now in 0..4 {
        sp.acquire("a", 1, 1, now * LOCK);
    }
    sp.acquire("a", 1, 1, 4 * LOCK);
    let fx = acked(&mut sp, "a", 0, 0, AcknowledgeType::Release, 4 * LOCK + 1);
    assert_eq!(
        offsets(&fx.archived),
        [(0, 5, ArchiveReason::DeliveryLimit)]
    );
}

#[test]
fn acknowledging_someone_elses_record_changes_nothing() {
    let mut sp = fresh();
    sp.acquire("a", 2, 4, 0);
    sp.acquire("b", 2, 4, 0);
    let before = sp.snapshot();
    let before_states: Vec<_> = (0..4).map(|o| state(&sp, o)).collect();
    let batches = [
        ack(0, 1, AcknowledgeType::Accept),
        ack(2, 2, AcknowledgeType::Accept),
    ];
    assert_eq!(
        sp.acknowledge("a", &batches, 1),
        Err(CoordinatorError::InvalidRecordState)
    );
    assert_eq!(sp.snapshot(), before);
    assert_eq!(
        (0..4).map(|o| state(&sp, o)).collect::<Vec<_>>(),
        before_states
    );
    for outside in [
        ack(4, 4, AcknowledgeType::Accept),
        ack(3, 7, AcknowledgeType::Accept),
    ] {
        assert_eq!(
            sp.acknowledge("b", &[outside], 1),
            Err(CoordinatorError::InvalidRecordState)
        );
    }
    let malformed = [
        vec![ack(1, 0, AcknowledgeType::Accept)],
        vec![
            ack(0, 1, AcknowledgeType::Accept),
            ack(1, 1, AcknowledgeType::Accept),
        ],
        vec![AcknowledgementBatch {
            first_offset: 0,
            last_offset: 1,
            acknowledge_types: vec![AcknowledgeType::Accept; 3],
        }],
    ];
    for m in malformed {
        assert_eq!(
            sp.acknowledge("a", &m, 1),
            Err(CoordinatorError::InvalidRequest)
        );
    }
}

#[test]
fn per_offset_types_and_gaps() {
    let mut sp = fresh();
    sp.acquire("a", 5, 5, 0);
    let types = [
        AcknowledgeType::Accept,
        AcknowledgeType::Gap,
        AcknowledgeType::Release,
        AcknowledgeType::Reject,
        AcknowledgeType::Accept,
    ];
    let fx = sp
        .acknowledge(
            "a",
            &[AcknowledgementBatch {
                first_offset: 0,
                last_offset: 4,
                acknowledge_types: types.to_vec(),
            }],
            1,
        )
        .expect("ack");
    assert_eq!(
        offsets(&fx.archived),
        [(3, 1, ArchiveReason::Rejected)],
        "a gap is no record"
    );
    assert_eq!(sp.start_offset(), 2);
    assert_eq!(state(&sp, 2), Some((RecordState::Available, 1)));
    assert_eq!(state(&sp, 4), Some((RecordState::Acknowledged, 1)));
    assert_eq!(AcknowledgeType::from_code(4), Some(AcknowledgeType::Renew));
    assert_eq!(AcknowledgeType::from_code(5), None);
    assert!(types
        .iter()
        .all(|t| AcknowledgeType::from_code(t.code()) == Some(*t)));
}

#[test]
fn renew_extends_the_lock() {
    let mut sp = fresh();
    sp.acquire("a", 3, 3, 0);
    let fx = acked(&mut sp, "a", 1, 1, AcknowledgeType::Renew, 20_000);
    assert!(fx.records.is_empty(), "locks are not durable");
    assert_eq!(sp.next_lock_deadline(), Some(LOCK));
    sp.expire_locks(LOCK);
    assert_eq!(state(&sp, 0), Some((RecordState::Available, 1)));
    assert_eq!(
        state(&sp, 1),
        Some((
            RecordState::Acquired {
                member_id: "a".into(),
                deadline_ms: 20_000 + LOCK
            },
            1
        ))
    );
    acked(&mut sp, "a", 1, 1, AcknowledgeType::Accept, 49_999);
}

#[test]
fn the_window_is_bounded_by_max_record_locks() {
    let (mut sp, _) = SharePartition::new(
        "g",
        "t",
        0,
        SharePartitionConfig {
            max_record_locks: 10,
            ..SharePartitionConfig::default()
        },
        AutoOffsetReset::Earliest,
        0,
        1_000,
    );
    assert_eq!(sp.acquire("a", 8, 1_000, 0).acquired, vec![range(0, 7, 1)]);
    assert_eq!(sp.acquire("b", 8, 1_000, 0).acquired, vec![range(8, 9, 1)]);
    assert!(sp.acquire("c", 8, 1_000, 0).acquired.is_empty());
    // Released offsets inside the window can still be handed out.
    acked(&mut sp, "a", 2, 3, AcknowledgeType::Release, 1);
    assert_eq!(sp.acquire("c", 8, 1_000, 1).acquired, vec![range(2, 3, 2)]);
    // Settling the head makes room for new records.
    acked(&mut sp, "a", 0, 1, AcknowledgeType::Accept, 1);
    assert_eq!(
        sp.acquire("c", 8, 1_000, 1).acquired,
        vec![range(10, 11, 1)]
    );
    assert_eq!(sp.end_offset() - sp.start_offset(), 10);
}

#[test]
fn a_departing_member_gives_back_what_it_holds() {
    let mut sp = fresh();
    sp.acquire("a", 2, 4, 0);
    sp.acquire("b", 2, 4, 0);
    let fx = sp.release_member("a");
    assert!(fx.archived.is_empty());
    assert_eq!(state(&sp, 0), Some((RecordState::Available, 1)));
    assert!(matches!(
        state(&sp, 2),
        Some((RecordState::Acquired { .. }, 1))
    ));
    assert_eq!(sp.acquire("c", 9, 4, 1).acquired, vec![range(0, 1, 2)]);
}

#[test]
fn a_rebuilt_partition_redelivers_what_was_acquired() {
    let mut sp = fresh();
    sp.acquire("a", 6, 10, 0);
    acked(&mut sp, "a", 0, 1, AcknowledgeType::Accept, 1);
    acked(&mut sp, "a", 3, 3, AcknowledgeType::Reject, 1);
    acked(&mut sp, "a", 4, 4, AcknowledgeType::Release, 1);
    let fx = sp.acquire("b", 1, 10, 2);
    assert_eq!(fx.acquired, vec![range(4, 4, 2)]);
    let ShareRecord::Snapshot(snap) = fx.records.last().expect("snapshot").clone() else {
        panic!("a snapshot")
    };
    let (k, v) = ShareRecord::Snapshot(snap).encode();
    let ShareRecord::Snapshot(decoded) = ShareRecord::decode(&k, &v).expect("decode") else {
        panic!("a snapshot")
    };
    let rebuilt =
        SharePartition::from_snapshot(&decoded, SharePartitionConfig::default()).expect("rebuild");
    assert_eq!(
        (rebuilt.start_offset(), rebuilt.end_offset()),
        (sp.start_offset(), sp.end_offset())
    );
    for o in sp.start_offset()..sp.end_offset() {
        let (before, count) = state(&sp, o).expect("in flight");
        let after = match before {
            RecordState::Acquired { .. } => RecordState::Available,
            s => s,
        };
        assert_eq!(state(&rebuilt, o), Some((after, count)), "offset {o}");
    }
    assert_eq!(rebuilt.next_lock_deadline(), None);
}

#[test]
fn a_rebuilt_record_at_the_limit_is_archived_not_delivered() {
    let snap = ShareSnapshot {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        state_epoch: 0,
        start_offset: 10,
        batches: vec![
            StateBatch {
                first_offset: 10,
                last_offset: 11,
                delivery_state: DeliveryState::Available,
                delivery_count: 5,
            },
            StateBatch {
                first_offset: 13,
                last_offset: 13,
                delivery_state: DeliveryState::Acknowledged,
                delivery_count: 1,
            },
        ],
    };
    let mut sp = SharePartition::from_snapshot(&snap, SharePartitionConfig::default()).expect("ok");
    assert_eq!(
        state(&sp, 12),
        Some((RecordState::Available, 0)),
        "a gap between batches"
    );
    let fx = sp.acquire("a", 5, 20, 0);
    assert_eq!(
        offsets(&fx.archived),
        [
            (10, 5, ArchiveReason::DeliveryLimit),
            (11, 5, ArchiveReason::DeliveryLimit)
        ]
    );
    assert_eq!(fx.acquired, vec![range(12, 12, 1), range(14, 17, 1)]);
    let bad = ShareSnapshot {
        start_offset: 12,
        ..snap
    };
    assert!(SharePartition::from_snapshot(&bad, SharePartitionConfig::default()).is_err());
}

#[test]
fn retention_and_offset_resets_move_the_start() {
    let mut sp = fresh();
    sp.acquire("a", 10, 10, 0);
    let fx = sp.log_start_offset_moved(4);
    assert_eq!(fx.records.len(), 1);
    assert_eq!((sp.start_offset(), sp.end_offset()), (4, 10));
    assert_eq!(
        sp.acknowledge("a", &[ack(3, 3, AcknowledgeType::Accept)], 1),
        Err(CoordinatorError::InvalidRecordState)
    );
    sp.log_start_offset_moved(50);
    assert_eq!((sp.start_offset(), sp.end_offset()), (50, 50));
    let fx = sp.alter_start_offset(7);
    let ShareRecord::Snapshot(snap) = &fx.records[0] else {
        panic!("a snapshot")
    };
    assert_eq!((snap.start_offset, snap.state_epoch), (7, 1));
    assert!(snap.batches.is_empty());
}

#[test]
fn acknowledging_one_offset_of_a_batch_splits_and_remerges_runs() {
    let mut sp = fresh();
    sp.acquire("a", 100, 100, 0);
    assert_eq!(sp.in_flight().count(), 1);
    acked(&mut sp, "a", 50, 50, AcknowledgeType::Renew, 1);
    assert_eq!(sp.in_flight().count(), 3);
    acked(&mut sp, "a", 50, 50, AcknowledgeType::Release, 1);
    sp.expire_locks(LOCK);
    assert_eq!(
        sp.in_flight().count(),
        1,
        "all available with count 1 again: one run"
    );
    assert_eq!(sp.snapshot().batches.len(), 1);
}
