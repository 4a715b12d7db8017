//! The history recorder: every worker reports its operations here, and one writer thread
//! appends them to the history file as JSON lines (the format `history::parse` reads), giving
//! each its index in file order.
//!
//! The channel to the writer is bounded: a writer that falls behind slows the workload down
//! rather than growing memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::{json, Value};

use crate::VerifyError;

/// How many operations may wait for the writer.
const QUEUE: usize = 16 * 1024;

/// The nemesis's process id.
pub const NEMESIS: i64 = -1;

struct Line {
    time: u64,
    process: i64,
    kind: &'static str,
    f: &'static str,
    value: Value,
}

/// Live totals for the progress display.
#[derive(Default)]
pub struct Counters {
    /// Sends (or transactions) acknowledged.
    pub ok: AtomicU64,
    /// Sends (or transactions) whose outcome is unknown.
    pub info: AtomicU64,
    /// Sends (or transactions) that definitely failed (or aborted).
    pub fail: AtomicU64,
    /// Values consumers read.
    pub read: AtomicU64,
    /// Faults started.
    pub faults: AtomicU64,
}

/// Records operations; cheap to share (`Arc<Recorder>`).
pub struct Recorder {
    start: Instant,
    tx: Mutex<Option<SyncSender<Line>>>,
    writer: Mutex<Option<JoinHandle<std::io::Result<u64>>>>,
    next_process: AtomicI64,
    /// Live totals.
    pub counters: Counters,
}

/// A micro-op `[f, key, [offset, value]]`.
pub fn micro(f: &str, key: &str, offset: Option<i64>, value: i64) -> Value {
    json!([f, key, [offset, value]])
}

impl Recorder {
    /// Creates the history file and writes its header line.
    pub fn create(path: &Path, header: Value) -> Result<Self, VerifyError> {
        let file = File::create(path).map_err(|e| VerifyError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let (tx, rx) = sync_channel::<Line>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("verify-history".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                serde_json::to_writer(&mut out, &header)?;
                out.write_all(b"\n")?;
                let mut index = 0u64;
                while let Ok(line) = rx.recv() {
                    let op = json!({
                        "index": index,
                        "time": line.time,
                        "process": line.process,
                        "type": line.kind,
                        "f": line.f,
                        "value": line.value,
                    });
                    serde_json::to_writer(&mut out, &op)?;
                    out.write_all(b"\n")?;
                    index += 1;
                }
                out.flush()?;
                Ok(index)
            })
            .map_err(|e| VerifyError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        Ok(Self {
            start: Instant::now(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            next_process: AtomicI64::new(0),
            counters: Counters::default(),
        })
    }

    /// A fresh process id (a crashed client's replacement gets a new one).
    pub fn new_process(&self) -> i64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records one operation event: `kind` is invoke / ok / info / fail.
    pub fn record(&self, process: i64, kind: &'static str, f: &'static str, value: Value) {
        let line = Line {
            time: self.now(),
            process,
            kind,
            f,
            value,
        };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(tx) = tx {
            // A closed writer (an I/O error) is reported by `finish`.
            let _ = tx.send(line);
        }
    }

    /// Records a fault starting or stopping.
    pub fn fault(&self, kind: &str, phase: &str, detail: &str) {
        if phase == "start" {
            self.counters.faults.fetch_add(1, Ordering::Relaxed);
        }
        self.record(
            NEMESIS,
            "info",
            "fault",
            json!({"fault": kind, "phase": phase, "detail": detail}),
        );
    }

    /// Closes the history: waits for the writer; returns the number of operations written.
    pub fn finish(&self) -> Result<u64, VerifyError> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match writer.map(|w| w.join()) {
            Some(Ok(Ok(n))) => Ok(n),
            Some(Ok(Err(e))) => Err(VerifyError::Io {
                path: "history".into(),
                source: e,
            }),
            Some(Err(_)) => Err(VerifyError::Io {
                path: "history".into(),
                source: std::io::Error::other("the history writer panicked"),
            }),
            None => Ok(0),
        }
    }
}
