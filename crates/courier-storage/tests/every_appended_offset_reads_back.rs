//! Property: under any sequence of appends, reads, clean reopens and crashes that cut the
//! active segment's tail, every offset below the log end offset reads back exactly the bytes
//! appended for it, and a crash loses only the batches that were cut (nothing more).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use courier_storage::batch_builder::{compressed_batch, NewRecord};
use courier_storage::{Log, LogConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append one request of `batches` batches with `records` records of `value_len` bytes.
    Append {
        batches: usize,
        records: usize,
        value_len: usize,
        codec: u8,
    },
    /// Read from the offset at this fraction of the log, with this `max_bytes`.
    Read {
        at: prop::sample::Index,
        max_bytes: u32,
    },
    /// Close cleanly and reopen.
    Reopen,
    /// Drop without closing and cut this many bytes (modulo its size) off the active segment.
    CrashAndCut { cut: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..3usize, 1..4usize, 0..300usize, prop_oneof![3 => Just(0u8), 1 => 1..=4u8])
            .prop_map(|(batches, records, value_len, codec)| Op::Append { batches, records, value_len, codec }),
        2 => (any::<prop::sample::Index>(), 1..2_000u32).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::Reopen),
        1 => (0..400usize).prop_map(|cut| Op::CrashAndCut { cut }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_500,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A batch as appended: its assigned base offset, last offset and the producer's bytes.
#[derive(Debug, Clone)]
struct Appended {
    base: u64,
    last: u64,
    bytes: Vec<u8>,
}

fn active_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn check_all(log: &Log, oracle: &[Appended]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        log.log_end_offset(),
        oracle.last().map_or(0, |b| b.last + 1)
    );
    for b in oracle {
        for offset in b.base..=b.last {
            let got = log.read(offset, 1, u64::MAX).expect("read");
            prop_assert_eq!(got.first_offset, Some(b.base));
            prop_assert_eq!(&got.records[..8], &b.base.to_be_bytes()[..]);
            prop_assert_eq!(&got.records[8..], &b.bytes[8..]);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_offset_below_the_end_reads_back(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), config(), 0).expect("open").0;
        let mut oracle: Vec<Appended> = Vec::new();
        let mut seq = 0i64;
        for op in ops {
            match op {
                Op::Append { batches, records, value_len, codec } => {
                    let mut request = Vec::new();
                    let mut shapes = Vec::new();
                    for _ in 0..batches {
                        seq += 1;
                        let recs: Vec<NewRecord> = (0..records)
                            .map(|r| NewRecord::new(seq * 10 + r as i64, b"k", &vec![seq as u8; value_len]))
                            .collect();
                        let bytes = compressed_batch(codec, &recs);
                        request.extend_from_slice(&bytes);
                        shapes.push(bytes);
                    }
                    let info = log.append(&Bytes::from(request), seq).expect("append");
                    let mut next = info.base_offset;
                    for bytes in shapes {
                        let last = next + records as u64 - 1;
                        oracle.push(Appended { base: next, last, bytes });
                        next = last + 1;
                    }
                    prop_assert_eq!(next, log.log_end_offset());
                }
                Op::Read { at, max_bytes } => {
                    let end = log.log_end_offset();
                    let offset = at.index(end as usize + 1) as u64;
                    let got = log.read(offset, max_bytes, u64::MAX).expect("read");
                    if offset == end {
                        prop_assert!(got.records.is_empty());
                    } else {
                        let first = oracle.iter().find(|b| b.last >= offset).expect("in oracle");
                        prop_assert_eq!(got.first_offset, Some(first.base));
                        prop_assert!(got.records.len() >= first.bytes.len());
                        prop_assert!(got.records.len() <= (max_bytes as usize).max(first.bytes.len()));
                    }
                }
                Op::Reopen => {
                    log.close().expect("close");
                    let (reopened, report) = Log::open(dir.path(), config(), seq).expect("reopen");
                    prop_assert!(report.clean_shutdown);
                    log = reopened;
                }
                Op::CrashAndCut { cut } => {
                    drop(log);
                    let active = active_segment(dir.path());
                    let base: u64 = active
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse().ok())
                        .expect("numeric stem");
                    let len = std::fs::metadata(&active).expect("stat").len();
                    let new_len = len - (cut as u64 % (len + 1));
                    OpenOptions::new().write(true).open(&active).expect("open")
                        .set_len(new_len).expect("cut");
                    // Batches of the active segment that still fit whole survive.
                    let mut position = 0u64;
                    oracle.retain(|b| {
                        if b.base < base {
                            return true;
                        }
                        position += b.bytes.len() as u64;
                        position <= new_len
                    });
                    let (reopened, report) = Log::open(dir.path(), config(), seq).expect("reopen");
                    prop_assert!(!report.clean_shutdown);
                    log = reopened;
                }
            }
            check_all(&log, &oracle)?;
        }
    }
}
