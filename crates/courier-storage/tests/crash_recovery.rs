//! What `Log::open` does after a crash: a cut or damaged tail of the active segment is
//! truncated to the last whole valid batch, missing or damaged index files are rebuilt, and a
//! clean shutdown skips the scan. A crash is simulated by dropping the `Log` without `close`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use courier_storage::batch_builder::{batch, NewRecord};
use courier_storage::{Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

fn one_batch(i: usize) -> Vec<u8> {
    batch(&[
        NewRecord::new(10_000 + i as i64, b"key", &[i as u8; 90]),
        NewRecord::new(10_001 + i as i64, b"", &[i as u8; 10]),
    ])
}

/// Appends `n` two-record batches and "crashes"; returns the batch size.
fn write_and_crash(dir: &Path, n: usize) -> usize {
    let (mut log, _) = Log::open(dir, config(), 0).expect("open");
    for i in 0..n {
        log.append(&Bytes::from(one_batch(i)), 0).expect("append");
    }
    one_batch(0).len()
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    files
}

fn active_log(dir: &Path) -> PathBuf {
    segment_files(dir, "log").pop().expect("a segment")
}

fn assert_reads_all(log: &Log) {
    for offset in log.log_start_offset()..log.log_end_offset() {
        let got = log.read(offset, 1, u64::MAX).expect("read");
        let base = got.first_offset.expect("a batch");
        assert!(base <= offset && offset <= got.last_offset.expect("a batch"));
        let i = (base / 2) as usize;
        assert_eq!(&got.records[8..], &one_batch(i)[8..], "offset {offset}");
    }
}

#[test]
fn truncated_tail_is_cut_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = write_and_crash(dir.path(), 40);
    let active = active_log(dir.path());
    let len = std::fs::metadata(&active).expect("stat").len();
    let batches_in_active = len / size as u64;
    OpenOptions::new()
        .write(true)
        .open(&active)
        .expect("open")
        .set_len(len - 30)
        .expect("cut mid-batch");

    let (mut log, report) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert!(!report.clean_shutdown);
    assert_eq!(report.truncated_bytes, size as u64 - 30);
    assert_eq!(report.valid_batches, batches_in_active - 1);
    assert!(report.indexes_rebuilt);
    assert_eq!(
        log.log_end_offset(),
        78,
        "the cut batch (offsets 78, 79) is gone"
    );
    assert_eq!(
        std::fs::metadata(&active).expect("stat").len(),
        len - size as u64
    );
    assert_reads_all(&log);

    let info = log
        .append(&Bytes::from(one_batch(39)), 0)
        .expect("append after recovery");
    assert_eq!(info.base_offset, 78);
    assert_reads_all(&log);
}

#[test]
fn flipped_byte_in_last_batch_truncates_exactly_that_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = write_and_crash(dir.path(), 7);
    let active = active_log(dir.path());
    let mut data = std::fs::read(&active).expect("read");
    let len = data.len();
    data[len - 5] ^= 0x01;
    std::fs::write(&active, &data).expect("write");

    let (log, report) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(report.truncated_bytes, size as u64);
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(
        log.size_bytes(),
        (len - size) as u64 + sealed_bytes(dir.path())
    );
    assert_reads_all(&log);
}

fn sealed_bytes(dir: &Path) -> u64 {
    let logs = segment_files(dir, "log");
    logs[..logs.len() - 1]
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .sum()
}

#[test]
fn damage_in_the_middle_of_the_active_segment_truncates_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = write_and_crash(dir.path(), 5);
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
    let active = active_log(dir.path());
    let mut data = std::fs::read(&active).expect("read");
    data[size + 16] = 7; // magic of the second batch
    std::fs::write(&active, &data).expect("write");
    let (log, report) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(report.valid_batches, 1);
    assert_eq!(report.truncated_bytes, 4 * size as u64);
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn missing_and_damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_crash(dir.path(), 60);
    let indexes = segment_files(dir.path(), "index");
    let timeindexes = segment_files(dir.path(), "timeindex");
    assert!(indexes.len() >= 3, "several sealed segments");
    let originals: Vec<Vec<u8>> = indexes
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let original_time = std::fs::read(&timeindexes[1]).expect("read");
    std::fs::remove_file(&indexes[0]).expect("delete index");
    std::fs::write(&indexes[1], [1, 2, 3]).expect("size not a multiple of 8");
    std::fs::write(&indexes[2], [0, 0, 0, 1, 0x7f, 0, 0, 0]).expect("position past the end");
    std::fs::write(&timeindexes[1], []).expect("empty time index");

    let (log, _) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), 120);
    assert_reads_all(&log);
    for (path, original) in indexes.iter().zip(&originals).take(3) {
        assert_eq!(
            &std::fs::read(path).expect("rebuilt index"),
            original,
            "{path:?}"
        );
    }
    assert_eq!(
        std::fs::read(&timeindexes[1]).expect("rebuilt"),
        original_time
    );
}

#[test]
fn clean_shutdown_skips_the_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), config(), 0).expect("open");
    for i in 0..30 {
        log.append(&Bytes::from(one_batch(i)), 0).expect("append");
    }
    log.close().expect("close");

    let (log, report) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert!(report.clean_shutdown);
    assert_eq!(report.scanned_bytes, 0);
    assert!(!report.indexes_rebuilt);
    assert_eq!(log.log_end_offset(), 60);
    assert_reads_all(&log);
    drop(log); // crash: the marker was consumed by the open above

    let (log, report) = Log::open(dir.path(), config(), 0).expect("reopen after crash");
    assert!(!report.clean_shutdown);
    assert!(report.scanned_bytes > 0);
    assert_eq!(log.log_end_offset(), 60);
}

#[test]
fn clean_shutdown_with_a_lost_active_index_still_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), config(), 0).expect("open");
    for i in 0..30 {
        log.append(&Bytes::from(one_batch(i)), 0).expect("append");
    }
    log.close().expect("close");
    std::fs::remove_file(active_log(dir.path()).with_extension("index")).expect("delete");
    let (log, report) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert!(report.clean_shutdown);
    assert!(report.indexes_rebuilt);
    assert_eq!(log.log_end_offset(), 60);
    assert_reads_all(&log);
}

#[test]
fn lost_tail_below_a_checkpointed_log_start_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), config(), 0).expect("open");
    for i in 0..3 {
        log.append(&Bytes::from(one_batch(i)), 0).expect("append");
    }
    log.delete_records_before(6)
        .expect("delete records up to the end");
    drop(log);
    // The unsynced tail is lost in the crash.
    let active = active_log(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&active)
        .expect("open")
        .set_len(10)
        .expect("cut");
    let (mut log, _) = Log::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_start_offset(), 6);
    assert_eq!(
        log.log_end_offset(),
        6,
        "offsets are never reused below the start offset"
    );
    let info = log.append(&Bytes::from(one_batch(3)), 0).expect("append");
    assert_eq!(info.base_offset, 6);
}
