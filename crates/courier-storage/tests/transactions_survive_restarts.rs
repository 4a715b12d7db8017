//! Ongoing transactions and the aborted transaction index outlive the process: after a clean
//! close (loaded, nothing replayed), after a crash (replayed from the last snapshot), with a
//! missing or damaged `.txnindex` (rebuilt from the log, to the same bytes), and with no usable
//! producer snapshot (full replay). Retention removes a segment's `.txnindex` with it.
//! A crash is simulated by dropping the `Log` without `close`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use courier_storage::batch_builder::{control_batch, transactional_batch, NewRecord};
use courier_storage::{AppendOrigin, Log, LogConfig, RecoveryReport};

/// Segments of about three batches, so transactions span segments.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 250,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> (Log, RecoveryReport) {
    Log::open(dir, config(), 5_000).expect("open")
}

fn data(log: &mut Log, pid: i64, seq: i32) -> u64 {
    let b = transactional_batch(pid, 0, seq, &[NewRecord::new(1_000, b"k", b"v")]);
    log.append(&Bytes::from(b), 0).expect("data").base_offset
}

fn marker(log: &mut Log, pid: i64, commit: bool) -> u64 {
    let b = Bytes::from(control_batch(pid, 0, 1_000, commit));
    log.append_from(&b, AppendOrigin::Coordinator, 0)
        .expect("marker")
        .base_offset
}

/// Writes the scenario: P1 aborts 0..2 while P2 is ongoing, P2 commits, P3 and P1 interleave
/// and abort, and P1 is left with a transaction from offset 9.
fn write(dir: &Path) -> Log {
    let (mut log, _) = open(dir);
    let offsets = [
        data(&mut log, 1, 0),
        data(&mut log, 2, 0),
        marker(&mut log, 1, false),
        data(&mut log, 2, 1),
        marker(&mut log, 2, true),
        data(&mut log, 3, 0),
        data(&mut log, 1, 1),
        marker(&mut log, 1, false),
        marker(&mut log, 3, false),
        data(&mut log, 1, 2),
    ];
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    log
}

/// The scenario's transactional state, as any correct recovery must rebuild it.
fn assert_scenario(log: &Log) {
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.ongoing_transactions(), vec![(1, 0, 9)]);
    assert_eq!(log.last_stable_offset(10), 9);
    assert_eq!(log.last_stable_offset(5), 5);
    let aborted = |start, upper| log.aborted_transactions(start, upper).expect("aborted");
    assert_eq!(aborted(0, 10), vec![(1, 0), (1, 6), (3, 5)]);
    assert_eq!(aborted(3, 6), vec![(3, 5)]);
    assert_eq!(aborted(8, 10), vec![(3, 5)]);
    assert_eq!(aborted(9, 10), vec![]);
}

/// `(base offset, path)` of every `.txnindex` in `dir`, ascending.
fn txn_indexes(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            let name = path.file_name()?.to_str()?.to_string();
            let stem = name.strip_suffix(".txnindex")?;
            assert_eq!(stem.len(), 20, "Kafka's 20-digit naming: {name}");
            Some((stem.parse().expect("numeric"), path))
        })
        .collect();
    out.sort();
    out
}

fn contents(files: &[(u64, PathBuf)]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|(_, p)| std::fs::read(p).expect("read"))
        .collect()
}

#[test]
fn every_segment_has_a_txnindex_holding_its_aborts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = write(dir.path());
    assert_scenario(&log);
    let files = txn_indexes(dir.path());
    assert_eq!(files.len(), log.segment_count());
    let entries: usize = contents(&files).iter().map(|b| b.len() / 34).sum();
    assert_eq!(entries, 3);
}

#[test]
fn a_clean_close_keeps_everything_without_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path()).close().expect("close");
    let before = contents(&txn_indexes(dir.path()));
    let (log, report) = open(dir.path());
    assert!(report.clean_shutdown);
    assert_eq!(report.producer_batches_replayed, 0);
    assert!(!report.txn_index_rewritten);
    assert_eq!(report.ongoing_transactions, 1);
    assert_scenario(&log);
    assert_eq!(contents(&txn_indexes(dir.path())), before);
}

#[test]
fn a_crash_replays_the_active_segment_and_rebuilds_its_txnindex() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(write(dir.path()));
    let before = contents(&txn_indexes(dir.path()));
    // As if the active segment's entries never reached the disk.
    let (_, active) = txn_indexes(dir.path()).pop().expect("active");
    std::fs::write(&active, b"").expect("truncate");
    let (log, report) = open(dir.path());
    assert!(!report.clean_shutdown);
    assert!(report.producer_batches_replayed > 0);
    assert_scenario(&log);
    assert_eq!(contents(&txn_indexes(dir.path())), before);
}

#[test]
fn a_crash_after_a_clean_reopen_keeps_old_entries_and_replays_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = write(dir.path());
    // Fill the active segment so the close snapshot (offset 11) lies inside it, and keep
    // the later appends in that segment.
    data(&mut log, 2, 2); // 10: P2 starts
    log.close().expect("close");
    let big_segments = LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    };
    let reopen = || Log::open(dir.path(), big_segments.clone(), 5_000).expect("open");
    let (mut log, _) = reopen();
    assert_eq!(marker(&mut log, 2, false), 11);
    assert_eq!(marker(&mut log, 1, false), 12);
    let before = contents(&txn_indexes(dir.path()));
    drop(log);
    // A torn write of the last entry.
    let (_, active) = txn_indexes(dir.path()).pop().expect("active");
    let bytes = std::fs::read(&active).expect("read");
    std::fs::write(&active, &bytes[..bytes.len() - 10]).expect("tear");
    let (log, report) = reopen();
    assert_eq!(report.producer_snapshot_offset, Some(11));
    assert!(report.txn_index_rewritten);
    assert_eq!(contents(&txn_indexes(dir.path())), before);
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(log.last_stable_offset(13), 13);
    assert_eq!(
        log.aborted_transactions(9, 13).expect("aborted"),
        vec![(2, 10), (1, 9)]
    );
}

#[test]
fn missing_or_damaged_txnindex_files_are_rebuilt_from_the_log() {
    for damage in ["missing", "garbage", "unordered"] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path()).close().expect("close");
        let files = txn_indexes(dir.path());
        let before = contents(&files);
        for (i, (_, path)) in files.iter().enumerate() {
            match damage {
                "missing" => std::fs::remove_file(path).expect("remove"),
                "garbage" => std::fs::write(path, b"not an index").expect("write"),
                _ => {
                    // Two entries swapped, where a segment has two; else one cut short.
                    let b = &before[i];
                    let damaged = if b.len() == 68 {
                        [&b[34..], &b[..34]].concat()
                    } else {
                        b[..b.len().saturating_sub(1)].to_vec()
                    };
                    std::fs::write(path, damaged).expect("write");
                }
            }
        }
        let (log, report) = open(dir.path());
        assert!(report.clean_shutdown, "{damage}");
        assert_scenario(&log);
        assert_eq!(
            contents(&txn_indexes(dir.path())),
            before,
            "{damage}: rewritten to the same bytes"
        );
    }
}

#[test]
fn without_a_usable_snapshot_the_whole_log_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(write(dir.path()));
    let before = contents(&txn_indexes(dir.path()));
    for entry in std::fs::read_dir(dir.path()).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            std::fs::write(&path, b"corrupt").expect("corrupt");
        }
    }
    let (log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, None);
    assert_eq!(report.producer_batches_replayed, 10);
    assert_scenario(&log);
    assert_eq!(contents(&txn_indexes(dir.path())), before);
    // The full replay wrote a fresh snapshot, so the next open is cheap again.
    drop(log);
    let (log, report) = open(dir.path());
    assert_eq!(report.producer_snapshot_offset, Some(10));
    assert_scenario(&log);
}

#[test]
fn deleting_segments_deletes_their_txnindex() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = write(dir.path());
    let segments_before = log.segment_count();
    log.delete_records_before(7).expect("delete");
    let deleted = segments_before - log.segment_count();
    assert!(deleted > 0);
    let files = txn_indexes(dir.path());
    assert_eq!(files.len(), log.segment_count());
    for (base, _) in &files {
        assert!(
            dir.path().join(format!("{base:020}.log")).exists(),
            "{base}.txnindex outlived its segment"
        );
    }
    // Transactions that began below the log start offset are still reported where they
    // overlap the range asked for.
    assert_eq!(
        log.aborted_transactions(7, 10).expect("aborted"),
        vec![(1, 6), (3, 5)]
    );
    assert_eq!(log.last_stable_offset(10), 9);
    drop(log);
    let (log, _) = open(dir.path());
    assert_eq!(log.ongoing_transactions(), vec![(1, 0, 9)]);
    assert_eq!(
        log.aborted_transactions(7, 10).expect("aborted"),
        vec![(1, 6), (3, 5)]
    );
}
