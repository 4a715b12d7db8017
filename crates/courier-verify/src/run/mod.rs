//! `courier verify run`: the workload, after Jepsen's Kafka workload.
//!
//! Producers send values unique per key (key `kN` always goes to partition N, so a key's
//! offsets are its partition's), consumers poll by subscription in a group and by
//! assignment, the nemesis injects faults from a seeded schedule, and every operation is
//! recorded in a history (`recorder`). The final phase heals every fault and reads every key
//! from the beginning; then the history is checked ([`crate::check`]) and the reports are
//! written next to it.
//!
//! - [`producer`]: plain sends (acks=0, acks=all, idempotent) and transactions;
//! - [`consumer`]: group and assigned consumers, and the final read;
//! - [`rpw`]: read-process-write transactions (consume, produce, commit offsets);
//! - [`faults`]: the broker process, the proxy and the schedule, driven over time;
//! - [`progress`]: the live display.

pub mod consumer;
mod driver;
pub mod faults;
pub mod producer;
pub mod progress;
pub mod recorder;
pub mod rpw;

pub use driver::{create_topic, execute, RunOutcome};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::history::{Guarantee, Isolation};
use crate::nemesis::FaultKind;
use recorder::Recorder;

/// The client context of the workload's producers: librdkafka's errors and logs are expected
/// under faults, so they go to debug level rather than error.
#[derive(Default, Clone)]
pub struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "librdkafka");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "client error");
    }
}

/// How the producers are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// acks=0.
    Acks0,
    /// acks=all, no idempotence.
    AcksAll,
    /// The idempotent producer.
    Idempotent,
    /// Transactions of 1-4 sends, some aborted on purpose.
    Transactional,
    /// Idempotent producers feed the topic; the group's consumers are read-process-write
    /// processes: poll, send one new value per record read and commit the offsets, all in
    /// one transaction.
    Rpw,
}

impl Mode {
    /// The history header's `producer_mode`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Acks0 => "acks0",
            Mode::AcksAll => "acks-all",
            Mode::Idempotent => "idempotent",
            Mode::Transactional => "transactional",
            Mode::Rpw => "rpw",
        }
    }

    /// The guarantee this mode claims: acks=0 may lose (at-most-once... it may also
    /// duplicate nothing, since it never retries); acks=all retries, so it may duplicate;
    /// idempotence and transactions promise each value once.
    pub fn guarantee(self) -> Guarantee {
        match self {
            Mode::Acks0 => Guarantee::AtMostOnce,
            Mode::AcksAll => Guarantee::AtLeastOnce,
            Mode::Idempotent | Mode::Transactional | Mode::Rpw => Guarantee::ExactlyOnce,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "acks0" | "acks=0" => Mode::Acks0,
            "acks-all" | "acks=all" => Mode::AcksAll,
            "idempotent" => Mode::Idempotent,
            "transactional" => Mode::Transactional,
            "rpw" | "read-process-write" => Mode::Rpw,
            other => {
                return Err(format!(
                    "unknown mode {other:?} (expected acks0, acks-all, idempotent, \
                     transactional or rpw)"
                ))
            }
        })
    }
}

/// Everything `courier verify run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A broker to test instead of one this tool starts (then only client faults apply).
    pub bootstrap: Option<String>,
    /// The `courier` binary to start brokers with.
    pub courier_bin: PathBuf,
    /// How long the workload runs before the final phase.
    pub duration: Duration,
    /// Producer configuration.
    pub mode: Mode,
    /// The consumers' isolation level.
    pub isolation: Isolation,
    /// The guarantee to judge by (default: the mode's).
    pub guarantee: Option<Guarantee>,
    /// Keys, one partition each.
    pub keys: usize,
    /// Producer clients.
    pub producers: usize,
    /// Processes per plain producer client (sends in flight per client).
    pub slots: usize,
    /// Consumers in the group.
    pub group_consumers: usize,
    /// Consumers that assign every partition.
    pub assign_consumers: usize,
    /// Operations per second per process (0: as fast as they complete).
    pub rate: f64,
    /// Fraction of transactions aborted on purpose.
    pub abort_rate: f64,
    /// Fault kinds for the random schedule.
    pub faults: Vec<FaultKind>,
    /// An explicit schedule instead (`kind@start+length,...`).
    pub schedule: Option<String>,
    /// Mean time between faults.
    pub fault_interval: Duration,
    /// The seed of everything random.
    pub seed: u64,
    /// Where the history, the broker's data and log, and the reports go.
    pub out_dir: PathBuf,
    /// Show progress bars.
    pub progress: bool,
}

/// What the workers share.
pub struct Shared {
    /// Where clients connect (the proxy, when there is one).
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// Keys (= partitions).
    pub keys: usize,
    /// Producer configuration.
    pub mode: Mode,
    /// Consumers' isolation.
    pub isolation: Isolation,
    /// Fraction of transactions aborted on purpose.
    pub abort_rate: f64,
    /// The seed.
    pub seed: u64,
    /// The history.
    pub recorder: Recorder,
    /// Producer workers (consumers' crash slots come after theirs).
    pub producer_workers: usize,
    rate: f64,
    next_values: Vec<AtomicI64>,
    stop: AtomicBool,
    crashes: Vec<AtomicU64>,
}

impl Shared {
    /// A key's name.
    pub fn key_name(key: usize) -> String {
        format!("k{key}")
    }

    /// The next value for `key` (unique per key).
    pub fn next_value(&self, key: usize) -> i64 {
        self.next_values[key].fetch_add(1, Ordering::Relaxed)
    }

    /// True once the workload should wind down.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Pause between one process's operations.
    pub fn op_interval(&self) -> Duration {
        if self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / self.rate)
        }
    }

    /// The crash generation of a worker slot (bumped by a client-crash fault).
    pub fn crash_generation(&self, slot: usize) -> u64 {
        self.crashes
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Crashes the client of a worker slot.
    pub fn crash(&self, slot: usize) {
        if let Some(c) = self.crashes.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Worker slots a client crash can hit.
    pub fn crash_slots(&self) -> usize {
        self.crashes.len()
    }

    /// Resolves once slot `slot` has left `generation` (polls every 20 ms).
    pub async fn crashed(&self, slot: usize, generation: u64) {
        while self.crash_generation(slot) == generation && !self.stopping() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The history header.
pub fn header(options: &RunOptions, guarantee: Guarantee, bootstrap: &str) -> serde_json::Value {
    json!({
        "type": "meta",
        "version": 1,
        "guarantee": guarantee.name(),
        "isolation": options.isolation.name(),
        "producer_mode": options.mode.name(),
        "seed": options.seed,
        "bootstrap": bootstrap,
        "started_at": chrono_like_now(),
    })
}

/// Seconds since the Unix epoch, as an RFC 3339 UTC timestamp.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Shared {
    /// Builds the shared state.
    pub fn new(options: &RunOptions, bootstrap: String, topic: String, recorder: Recorder) -> Self {
        let workers = options.producers + options.group_consumers + options.assign_consumers;
        Self {
            bootstrap,
            topic,
            keys: options.keys,
            mode: options.mode,
            isolation: options.isolation,
            abort_rate: options.abort_rate.clamp(0.0, 1.0),
            seed: options.seed,
            recorder,
            producer_workers: options.producers,
            rate: options.rate,
            next_values: (0..options.keys).map(|_| AtomicI64::new(0)).collect(),
            stop: AtomicBool::new(false),
            crashes: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Tells every worker to wind down.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
