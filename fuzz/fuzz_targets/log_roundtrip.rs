//! Whatever `validate_batches` accepts must append to a `Log` and read back unchanged except for
//! the 8-byte base offset the broker assigns. Inputs get their batch CRCs corrected first (see
//! `fix_crcs`), otherwise almost nothing would pass validation.
//!
//! Compressed batches are accepted after the CRC check without looking inside, and are only
//! decompressed later, by `ListOffsets` by timestamp (`record_timestamps` in courier-storage,
//! through its bounded `decompress`). After each append the target runs both timestamp lookups
//! over the new batches, so a producer-controlled decompression must not panic or allocate
//! without bound either (run with `-malloc_limit_mb` to catch the latter). This stage once
//! decoded through kafka-protocol's `RecordBatchDecoder` and found its unbounded snappy
//! allocation, decompression bombs and an overflow panic; see fuzz/README.md.
//!
//! One log in a temporary directory lives for the whole fuzzing process (opening one per input
//! would be all fsyncs); it is deleted and recreated once it holds 64 MiB.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use courier_fuzz::fix_crcs;
use courier_storage::batch::validate_batches;
use courier_storage::{AppendOrigin, Log, LogConfig};
use libfuzzer_sys::fuzz_target;

struct State {
    _root: tempfile::TempDir,
    dir: std::path::PathBuf,
    log: Option<Log>,
    generation: u64,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn config() -> LogConfig {
    LogConfig {
        // Small segments so rolling is exercised too.
        segment_bytes: 1 << 20,
        max_message_bytes: u32::MAX,
        ..LogConfig::default()
    }
}

fn fresh_log(state: &mut State) -> Log {
    state.generation += 1;
    let dir = state.dir.join(format!("p-{}", state.generation));
    Log::open(&dir, config(), 0).expect("open fresh log").0
}

fuzz_target!(|data: &[u8]| {
    let mut input = data.to_vec();
    fix_crcs(&mut input);
    let Ok(headers) = validate_batches(&input, u32::MAX) else {
        return;
    };
    let input = Bytes::from(input);
    STATE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let state = guard.get_or_insert_with(|| {
            let root = tempfile::tempdir().expect("tempdir");
            let dir = root.path().to_path_buf();
            State {
                _root: root,
                dir,
                log: None,
                generation: 0,
            }
        });
        if state.log.as_ref().is_some_and(|l| l.size_bytes() > 64 << 20) {
            state.log.take().expect("log").delete().expect("delete log");
        }
        if state.log.is_none() {
            let log = fresh_log(state);
            state.log = Some(log);
        }
        let log = state.log.as_mut().expect("log");

        let end_before = log.log_end_offset();
        let info = log
            .append_from(&input, AppendOrigin::Coordinator, 0)
            .expect("validated input must append");
        let records: u64 = headers
            .iter()
            .map(|h| u64::try_from(h.records_count).expect("positive"))
            .sum();
        assert_eq!(info.base_offset, end_before);
        assert_eq!(info.record_count, records);
        assert_eq!(info.last_offset, end_before + records - 1);
        assert_eq!(log.log_end_offset(), info.last_offset + 1);
        assert_eq!(info.batches.len(), headers.len());

        for h in &headers {
            // Errors are fine (a corrupt segment is reported, not hidden); panics and unbounded
            // allocations are not.
            let _ = log.offset_for_timestamp(h.base_timestamp);
            let _ = log.offset_for_timestamp(h.max_timestamp);
        }
        let _ = log.max_timestamp_offset();

        let read = log
            .read(info.base_offset, input.len() as u32, u64::MAX)
            .expect("read back");
        assert_eq!(read.first_offset, Some(info.base_offset));
        assert_eq!(read.last_offset, Some(info.last_offset));
        assert_eq!(read.records.len(), input.len(), "read back a different length");
        let mut pos = 0usize;
        for (h, b) in headers.iter().zip(&info.batches) {
            let size = h.size();
            assert_eq!(&read.records[pos..pos + 8], &b.base_offset.to_be_bytes());
            assert_eq!(
                &read.records[pos + 8..pos + size],
                &input[pos + 8..pos + size],
                "stored batch differs from the producer's"
            );
            pos += size;
        }
    });
});
