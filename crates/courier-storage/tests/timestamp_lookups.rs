//! `offset_for_timestamp` and `max_timestamp_offset` agree with a brute-force oracle over
//! uncompressed and compressed batches, across segment rolls, sparse time index entries,
//! out-of-order record timestamps and a restart (sealed indexes loaded lazily).

use bytes::Bytes;
use courier_storage::batch_builder::{compressed_batch, NewRecord};
use courier_storage::{Log, LogConfig};

/// Every record appended, as `(offset, timestamp)`.
type Oracle = Vec<(u64, i64)>;

/// Small segments and a dense index, scaled so each segment holds several batches
/// whether or not they compress well.
fn config(codec: u8) -> LogConfig {
    let (segment_bytes, index_interval_bytes) = if codec == 0 { (3_000, 300) } else { (500, 60) };
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        ..LogConfig::default()
    }
}

/// Appends 30 batches of 1-5 records with jittered, mostly rising timestamps.
fn fill(log: &mut Log, codec: u8) -> Oracle {
    let mut oracle = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in 0..30i64 {
        let count = (b % 5 + 1) as usize;
        let records: Vec<NewRecord> = (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = (state >> 33) as i64 % 700 - 350;
                NewRecord::new(10_000 + b * 200 + jitter, b"key", &[b as u8; 120])
            })
            .collect();
        let info = log
            .append(&Bytes::from(compressed_batch(codec, &records)), 0)
            .expect("append");
        for (i, r) in records.iter().enumerate() {
            oracle.push((info.base_offset + i as u64, r.timestamp));
        }
    }
    oracle
}

fn expected_for(oracle: &Oracle, target: i64) -> Option<(u64, i64)> {
    oracle.iter().copied().find(|&(_, ts)| ts >= target)
}

fn expected_max(oracle: &Oracle) -> Option<(u64, i64)> {
    let max = oracle.iter().map(|&(_, ts)| ts).max()?;
    oracle.iter().copied().find(|&(_, ts)| ts == max)
}

fn check(log: &Log, oracle: &Oracle) {
    for target in (9_000..17_000).step_by(37) {
        assert_eq!(
            log.offset_for_timestamp(target).expect("lookup"),
            expected_for(oracle, target),
            "target {target}"
        );
    }
    assert_eq!(
        log.offset_for_timestamp(i64::MIN).expect("lookup"),
        oracle.first().copied()
    );
    assert_eq!(log.offset_for_timestamp(i64::MAX).expect("lookup"), None);
    assert_eq!(
        log.max_timestamp_offset().expect("max"),
        expected_max(oracle)
    );
}

#[test]
fn lookups_match_the_oracle_for_every_codec() {
    for codec in 0..=4u8 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path(), config(codec), 0).expect("open");
        let oracle = fill(&mut log, codec);
        assert!(
            log.segment_count() > 2 && log.segment_count() < 25,
            "codec {codec}: several segments of several batches, got {}",
            log.segment_count()
        );
        check(&log, &oracle);
        log.close().expect("close");
        let (log, _) = Log::open(dir.path(), config(codec), 0).expect("reopen");
        check(&log, &oracle);
        drop(log);
        let (log, report) = Log::open(dir.path(), config(codec), 0).expect("reopen after crash");
        assert!(!report.clean_shutdown);
        check(&log, &oracle);
    }
}

#[test]
fn empty_log_has_no_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = Log::open(dir.path(), config(0), 0).expect("open");
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), None);
    assert_eq!(log.max_timestamp_offset().expect("max"), None);
}
