//! The idempotent producers' state outlives the process: after a clean close it is loaded from
//! the close snapshot with nothing replayed; after a crash from the last roll's snapshot plus
//! the active segment's headers; without a usable snapshot from every segment's headers. In
//! each case a retry of a batch appended before the restart is still recognised.
//! A crash is simulated by dropping the `Log` without `close`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use courier_storage::batch_builder::{idempotent_batch, NewRecord};
use courier_storage::{Log, LogConfig, RecoveryReport, StorageError};

const PID: i64 = 77;

/// Segments of about five batches.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 5 * batch_bytes(0).len() as u64,
        ..LogConfig::default()
    }
}

/// Batch `i` of the producer: two records, sequences `2i` and `2i + 1`, offsets `2i`, `2i + 1`.
fn batch_bytes(i: i32) -> Vec<u8> {
    idempotent_batch(
        PID,
        0,
        2 * i,
        &[
            NewRecord::new(1_000, b"k", &[i as u8; 50]),
            NewRecord::new(1_001, b"k", &[i as u8; 50]),
        ],
    )
}

fn open(dir: &Path) -> (Log, RecoveryReport) {
    Log::open(dir, config(), 5_000).expect("open")
}

/// Appends batches `0..n` to a fresh log and returns it (still open).
fn write(dir: &Path, n: i32) -> Log {
    let (mut log, _) = open(dir);
    for i in 0..n {
        let info = log.append(&Bytes::from(batch_bytes(i)), 0).expect("append");
        assert_eq!(info.base_offset, 2 * i as u64);
    }
    log
}

/// Offsets of the snapshot files in `dir`, ascending.
fn snapshots(dir: &Path) -> Vec<u64> {
    let mut offsets: Vec<u64> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().expect("utf-8");
            let stem = name.strip_suffix(".snapshot")?;
            assert_eq!(stem.len(), 20, "Kafka's 20-digit naming: {name}");
            Some(stem.parse().expect("numeric"))
        })
        .collect();
    offsets.sort_unstable();
    offsets
}

fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

/// Retries of the last five of `n` batches are duplicates with their original offsets, an
/// older one is out of order, and batch `n` appends at the log end.
fn assert_state_after(log: &mut Log, n: i32) {
    let end = log.log_end_offset();
    assert_eq!(end, 2 * n as u64);
    for i in n - 5..n {
        let info = log.append(&Bytes::from(batch_bytes(i)), 0).expect("retry");
        assert!(info.duplicate, "batch {i} is a duplicate");
        assert_eq!(
            (info.base_offset, info.last_offset),
            (2 * i as u64, 2 * i as u64 + 1)
        );
    }
    assert!(matches!(
        log.append(&Bytes::from(batch_bytes(n - 6)), 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), end);
    let info = log.append(&Bytes::from(batch_bytes(n)), 0).expect("next");
    assert_eq!((info.base_offset, info.duplicate), (end, false));
}

#[test]
fn clean_close_snapshots_at_the_log_end_and_nothing_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = write(dir.path(), 23);
    assert!(log.segment_count() > 3);
    log.close().expect("close");
    assert_eq!(snapshots(dir.path()).last(), Some(&46));
    assert_eq!(
        snapshots(dir.path()).len(),
        2,
        "only the newest two are kept"
    );

    let (mut log, report) = open(dir.path());
    assert!(report.clean_shutdown);
    assert_eq!(report.producer_snapshot_offset, Some(46));
    assert_eq!(report.producer_batches_replayed, 0);
    assert_eq!(report.producers, 1);
    assert_state_after(&mut log, 23);
}

#[test]
fn after_a_crash_only_the_active_segment_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = write(dir.path(), 23);
    let segments = log.segment_count();
    drop(log);
    let rolls = snapshots(dir.path());
    assert_eq!(rolls.len(), 2);
    let active_base = *rolls.last().expect("a roll snapshot");
    assert!(active_base > 0 && active_base < 46);

    let (mut log, report) = open(dir.path());
    assert!(!report.clean_shutdown);
    assert_eq!(log.segment_count(), segments);
    assert_eq!(report.producer_snapshot_offset, Some(active_base));
    assert_eq!(report.producer_batches_replayed, (46 - active_base) / 2);
    assert_state_after(&mut log, 23);
}

#[test]
fn without_snapshots_every_segment_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(write(dir.path(), 23));
    for offset in snapshots(dir.path()) {
        std::fs::remove_file(snapshot_path(dir.path(), offset)).expect("remove");
    }
    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, None);
    assert_eq!(report.producer_batches_replayed, 23);
    assert_eq!(
        snapshots(dir.path()),
        vec![46],
        "a snapshot is written after a full replay"
    );
    assert_state_after(&mut log, 23);
    drop(log);

    // So the next crash replays only what came after it.
    let (_, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, Some(46));
    assert_eq!(report.producer_batches_replayed, 1);
}

#[test]
fn a_corrupt_snapshot_falls_back_to_an_older_one_then_to_a_full_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(write(dir.path(), 23));
    let offsets = snapshots(dir.path());
    let (older, newer) = (offsets[0], offsets[1]);
    let newer_path = snapshot_path(dir.path(), newer);
    let mut bytes = std::fs::read(&newer_path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&newer_path, &bytes).expect("corrupt");

    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, Some(older));
    assert_eq!(report.producer_batches_replayed, (46 - older) / 2);
    assert_state_after(&mut log, 23);
    drop(log);

    // Now every snapshot is garbage (one empty, one random bytes).
    let offsets = snapshots(dir.path());
    std::fs::write(snapshot_path(dir.path(), offsets[0]), b"").expect("empty");
    std::fs::write(snapshot_path(dir.path(), offsets[1]), [0x5a; 64]).expect("garbage");
    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, None);
    assert_eq!(report.producer_batches_replayed, 24);
    assert_state_after(&mut log, 24);
}

#[test]
fn a_snapshot_renamed_to_another_offset_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 8).close().expect("close");
    // The close snapshot (offset 16) renamed as if it covered only up to 10.
    std::fs::rename(snapshot_path(dir.path(), 16), snapshot_path(dir.path(), 10)).expect("rename");
    for offset in snapshots(dir.path()).into_iter().filter(|o| *o != 10) {
        std::fs::remove_file(snapshot_path(dir.path(), offset)).expect("remove");
    }
    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, None);
    assert_eq!(report.producer_batches_replayed, 8);
    assert_state_after(&mut log, 8);
}

#[test]
fn a_snapshot_past_a_lost_tail_is_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 23).close().expect("close");
    // As if the last batch never reached the disk: cut it, and forget the clean shutdown.
    std::fs::remove_file(dir.path().join(".clean-shutdown")).expect("marker");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let active = logs.pop().expect("active segment");
    let len = std::fs::metadata(&active).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .expect("open")
        .set_len(len - 10)
        .expect("cut");

    let (mut log, report) = open(dir.path());
    assert_eq!(log.log_end_offset(), 44);
    assert!(
        !snapshots(dir.path()).contains(&46),
        "the snapshot past the end is deleted"
    );
    let loaded = report.producer_snapshot_offset.expect("the roll snapshot");
    assert!(loaded < 44);
    // Batch 22 was lost, so its retry is appended again rather than called a duplicate.
    let info = log
        .append(&Bytes::from(batch_bytes(22)), 0)
        .expect("re-send");
    assert_eq!((info.base_offset, info.duplicate), (44, false));
    assert_state_after(&mut log, 23);
}

#[test]
fn deleted_records_keep_their_producers_across_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = write(dir.path(), 23);
    log.delete_records_before(46).expect("delete records");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        snapshots(dir.path()),
        vec![46],
        "older snapshots go, one at the end is kept"
    );
    drop(log);

    let (mut log, report) = open(dir.path());
    assert_eq!(log.log_start_offset(), 46);
    assert_eq!(report.producer_snapshot_offset, Some(46));
    assert_eq!(report.producer_batches_replayed, 0);
    // The data is gone but the producer is not: its retries are still duplicates.
    assert_state_after(&mut log, 23);
}

#[test]
fn retention_removes_snapshots_below_the_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = write(dir.path(), 23);
    let before = snapshots(dir.path());
    log.set_config(LogConfig {
        retention_bytes: 0,
        ..config()
    });
    assert!(log.enforce_retention(0).expect("retention") > 0);
    let start = log.log_start_offset();
    let after = snapshots(dir.path());
    assert!(
        after.iter().all(|o| *o >= start),
        "{after:?} vs start {start}"
    );
    assert!(!after.is_empty());
    assert!(after.len() <= 2);
    assert_ne!(before, Vec::<u64>::new());
    drop(log);
    let (mut log, _) = open(dir.path());
    assert_state_after(&mut log, 23);
}

#[test]
fn sequence_wraparound_survives_a_restart() {
    use courier_storage::batch::parse_header;
    use courier_storage::producer_state::ProducerStateManager;

    let dir = tempfile::tempdir().expect("tempdir");
    let log = write(dir.path(), 3);
    // Bring the producer to the end of the sequence space through its own snapshot.
    let near_max = idempotent_batch(PID, 0, i32::MAX - 3, &vec![NewRecord::new(1, b"", b"x"); 2]);
    let header = parse_header(&near_max).expect("header");
    let mut state = ProducerStateManager::new();
    state.update(&header, 4, 5, 0);
    log.close().expect("close");
    std::fs::write(snapshot_path(dir.path(), 6), state.encode_snapshot(6)).expect("snapshot");

    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, Some(6));
    // MAX-1, MAX, 0: the batch straddles the wrap.
    let straddling = Bytes::from(idempotent_batch(
        PID,
        0,
        i32::MAX - 1,
        &vec![NewRecord::new(1, b"", b"y"); 3],
    ));
    let info = log.append(&straddling, 0).expect("wraps");
    assert_eq!((info.base_offset, info.last_offset), (6, 8));
    let next = Bytes::from(idempotent_batch(PID, 0, 1, &[NewRecord::new(1, b"", b"z")]));
    drop(log);

    // After a crash, the replayed straddling batch is still a duplicate and 1 follows 0.
    let (mut log, report) = open(dir.path());
    assert_eq!(report.producer_batches_replayed, 1);
    assert!(log.append(&straddling, 0).expect("retry").duplicate);
    assert_eq!(log.append(&next, 0).expect("after the wrap").base_offset, 9);
}
