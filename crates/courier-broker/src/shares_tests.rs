//! Tests of the share-group service's log handling: replay and reading acquired records.

use std::sync::Arc;

use courier_coordinator::share::{
    AcquiredRecords, DeliveryState, ShareGroupConfig, ShareRecord, ShareSnapshot, StateBatch,
};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::watch;

use crate::internal_log;
use crate::share_config::{ShareGroupSettings, AUTO_OFFSET_RESET};
use crate::share_state_log::replay;
use crate::shares::{read_acquired, ShareService};
use crate::topic_config::AlterOp;

fn snapshot(group: &str, start_offset: i64, delivery_count: u16) -> ShareSnapshot {
    ShareSnapshot {
        group: group.into(),
        topic: "t".into(),
        partition: 0,
        state_epoch: 0,
        start_offset,
        batches: vec![StateBatch {
            first_offset: start_offset,
            last_offset: start_offset + 4,
            delivery_state: DeliveryState::Available,
            delivery_count,
        }],
    }
}

#[tokio::test]
async fn replay_keeps_the_newest_snapshot_and_settings_and_honours_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = internal_log::open(dir.path(), "state", Arc::new(watch::channel(0).0)).expect("open");
    let mut settings = ShareGroupSettings::default();
    settings
        .alter(AUTO_OFFSET_RESET, Some("earliest"), AlterOp::Set)
        .expect("valid");
    let records = vec![
        ShareRecord::Snapshot(snapshot("a", 0, 1)).encode(),
        ShareRecord::Snapshot(snapshot("gone", 0, 1)).encode(),
        ShareGroupSettings::default().encode("a"),
        ShareRecord::Snapshot(snapshot("a", 3, 2)).encode(),
        ShareRecord::DeleteGroup {
            group: "gone".into(),
        }
        .encode(),
        settings.encode("a"),
        (vec![9], vec![1, 2, 3]),
    ];
    let end = internal_log::append(&log, &records).expect("append");
    log.wait_durable(end, std::time::Duration::from_secs(10))
        .await
        .expect("durable");
    let r = replay(&log).expect("replay");
    assert_eq!(r.total, records.len());
    assert_eq!(r.snapshots.len(), 1, "{:?}", r.snapshots);
    assert_eq!(
        r.snapshots.get(&("a".to_string(), "t".to_string(), 0)),
        Some(&snapshot("a", 3, 2))
    );
    assert_eq!(r.settings.get("a"), Some(&settings));
}

#[tokio::test]
async fn acquired_ranges_are_read_as_whole_batches_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = internal_log::open(dir.path(), "data", Arc::new(watch::channel(0).0)).expect("open");
    // Batches [0..2], [3..5], [6..8].
    let mut end = 0;
    for b in 0..3 {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
            .map(|i| (Vec::new(), format!("v{}", b * 3 + i).into_bytes()))
            .collect();
        end = internal_log::append(&log, &records).expect("append");
    }
    log.wait_durable(end, std::time::Duration::from_secs(10))
        .await
        .expect("durable");
    let ranges = |r: &[(i64, i64)]| -> Vec<AcquiredRecords> {
        r.iter()
            .map(|&(first_offset, last_offset)| AcquiredRecords {
                first_offset,
                last_offset,
                delivery_count: 1,
            })
            .collect()
    };
    let offsets = |acquired: &[(i64, i64)], max_bytes: u32| -> Vec<i64> {
        let mut bytes = read_acquired(&log, &ranges(acquired), max_bytes);
        RecordBatchDecoder::decode_all(&mut bytes)
            .expect("batches")
            .into_iter()
            .flat_map(|s| s.records)
            .map(|r| r.offset)
            .collect()
    };
    assert_eq!(
        offsets(&[(1, 1), (2, 4)], 1 << 20),
        (0..9).collect::<Vec<_>>()
    );
    // One batch per read: still every batch holding an acquired offset, once.
    assert_eq!(offsets(&[(1, 1), (2, 4)], 1), (0..6).collect::<Vec<_>>());
    assert_eq!(offsets(&[(4, 4), (7, 7)], 1), vec![3, 4, 5, 6, 7, 8]);
    assert!(offsets(&[], 1 << 20).is_empty());
    assert!(
        offsets(&[(20, 25)], 1 << 20).is_empty(),
        "offsets past the log"
    );
}

#[tokio::test]
async fn compaction_keeps_exactly_the_live_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hw = Arc::new(watch::channel(0).0);
    let name = "__share_group_state";
    let log = internal_log::open(dir.path(), name, Arc::clone(&hw)).expect("open");
    let mut settings = ShareGroupSettings::default();
    settings
        .alter(AUTO_OFFSET_RESET, Some("earliest"), AlterOp::Set)
        .expect("valid");
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = (1..=30)
        .map(|n| ShareRecord::Snapshot(snapshot("a", 0, n)).encode())
        .collect();
    records.push(settings.encode("a"));
    records.push(ShareRecord::Snapshot(snapshot("b", 7, 1)).encode());
    let end = internal_log::append(&log, &records).expect("append");
    log.wait_durable(end, std::time::Duration::from_secs(10))
        .await
        .expect("durable");
    log.close().expect("close");

    let service =
        ShareService::open(dir.path(), ShareGroupConfig::default(), Arc::clone(&hw)).expect("open");
    service.compact().await.expect("compact");
    service.close().expect("close");
    drop(service);

    let log = internal_log::open(dir.path(), name, hw).expect("reopen");
    let r = replay(&log).expect("replay");
    assert_eq!(r.total, 3, "only the live records are left");
    assert_eq!(
        r.snapshots.get(&("a".to_string(), "t".to_string(), 0)),
        Some(&snapshot("a", 0, 30))
    );
    assert_eq!(
        r.snapshots.get(&("b".to_string(), "t".to_string(), 0)),
        Some(&snapshot("b", 7, 1))
    );
    assert_eq!(r.settings.get("a"), Some(&settings));
}
