//! Appends across many segment rolls and reads back from every offset: the batch containing
//! the offset comes back byte for byte, `max_bytes` and `max_offset` are honoured, and the
//! sparse indexes written at each roll point at real batch starts.

use bytes::Bytes;
use courier_storage::batch::{parse_header, validate_batches};
use courier_storage::batch_builder::{batch, NewRecord};
use courier_storage::{Log, LogConfig, StorageError};

/// Appends `count` batches of varying shapes; returns `(base_offset, producer bytes)` per batch.
fn fill(log: &mut Log, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..count {
        let records: Vec<NewRecord> = (0..(i % 4 + 1))
            .map(|r| {
                NewRecord::new(
                    1_000 + (i * 10 + r) as i64,
                    b"k",
                    &vec![i as u8; 50 + i * 7],
                )
            })
            .collect();
        let bytes = batch(&records);
        let info = log.append(&Bytes::from(bytes.clone()), 0).expect("append");
        out.push((info.base_offset, bytes));
    }
    out
}

fn stored(base: u64, producer_bytes: &[u8]) -> Vec<u8> {
    let mut expected = producer_bytes.to_vec();
    expected[..8].copy_from_slice(&base.to_be_bytes());
    expected
}

fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

#[test]
fn every_offset_reads_back_the_batch_containing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), tiny_config(), 0).expect("open");
    let batches = fill(&mut log, 40);
    assert!(log.segment_count() > 5, "tiny segments roll often");
    let check = |log: &Log| {
        for (base, bytes) in &batches {
            let records = parse_header(bytes).expect("header").records_count as u64;
            for offset in *base..base + records {
                let got = log.read(offset, 1, u64::MAX).expect("read");
                assert_eq!(got.first_offset, Some(*base));
                assert_eq!(got.last_offset, Some(base + records - 1));
                assert_eq!(
                    got.records.as_ref(),
                    stored(*base, bytes).as_slice(),
                    "offset {offset}"
                );
            }
        }
    };
    check(&log);
    log.close().expect("close");
    let (log, report) = Log::open(dir.path(), tiny_config(), 0).expect("reopen");
    assert!(report.clean_shutdown);
    check(&log);
}

#[test]
fn max_bytes_and_max_offset_bound_the_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir.path(), config, 0).expect("open");
    let batches = fill(&mut log, 10);
    let all: Vec<u8> = batches
        .iter()
        .flat_map(|(b, bytes)| stored(*b, bytes))
        .collect();

    let everything = log.read(0, u32::MAX, u64::MAX).expect("read");
    assert_eq!(everything.records.as_ref(), all.as_slice());

    // max_bytes stops before a batch that does not fit, but never returns less than one batch.
    let first_two = batches[0].1.len() + batches[1].1.len();
    let got = log
        .read(0, (first_two + 10) as u32, u64::MAX)
        .expect("read");
    assert_eq!(got.records.len(), first_two);
    let got = log.read(0, 1, u64::MAX).expect("read");
    assert_eq!(got.records.len(), batches[0].1.len());

    // max_offset (the high watermark) excludes batches starting at or after it.
    let hw = batches[3].0;
    let got = log.read(0, u32::MAX, hw).expect("read");
    assert_eq!(got.last_offset, Some(hw - 1));
    assert!(log.read(hw, u32::MAX, hw).expect("read").records.is_empty());
    // An offset inside the batch straddling the high watermark is still served whole.
    let got = log.read(hw - 1, u32::MAX, hw).expect("read");
    assert_eq!(got.first_offset, Some(batches[2].0));

    validate_batches(&got.records, u32::MAX).expect("returned batches are intact");
}

#[test]
fn out_of_range_and_end_of_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).expect("open");
    let empty = log.read(0, 100, u64::MAX).expect("empty log reads empty");
    assert!(empty.records.is_empty());
    assert_eq!(empty.first_offset, None);
    fill(&mut log, 3);
    let leo = log.log_end_offset();
    assert!(log
        .read(leo, 100, u64::MAX)
        .expect("read")
        .records
        .is_empty());
    assert!(matches!(
        log.read(leo + 1, 100, u64::MAX),
        Err(StorageError::OffsetOutOfRange { offset, log_end_offset, .. })
            if offset == leo + 1 && log_end_offset == leo
    ));
    log.delete_records_before(2).expect("delete records");
    assert!(matches!(
        log.read(1, 100, u64::MAX),
        Err(StorageError::OffsetOutOfRange {
            log_start_offset: 2,
            ..
        })
    ));
}

/// Reads the `.index` file of a sealed segment and checks each entry names a batch start
/// whose base offset is the entry's offset.
#[test]
fn sealed_offset_indexes_point_at_batch_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), tiny_config(), 0).expect("open");
    fill(&mut log, 40);
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("index") {
            continue;
        }
        let base: u64 = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("numeric stem");
        let index = std::fs::read(&path).expect("index");
        let data = std::fs::read(path.with_extension("log")).expect("log");
        assert_eq!(index.len() % 8, 0);
        for entry in index.chunks_exact(8) {
            let rel = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as u64;
            let pos = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]) as usize;
            let header = parse_header(&data[pos..]).expect("entry points at a batch header");
            assert_eq!(header.base_offset as u64, base + rel);
            checked += 1;
        }
        let timeindex = std::fs::read(path.with_extension("timeindex")).expect("timeindex");
        assert!(
            !timeindex.is_empty(),
            "sealed segments record their max timestamp"
        );
        assert_eq!(timeindex.len() % 12, 0);
    }
    assert!(checked > 0, "index.interval.bytes=200 must produce entries");
}
