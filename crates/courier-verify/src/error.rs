//! The crate's one error type: everything that can make a history unreadable, and every way
//! a run's set-up or fault injection can fail (the nemesis's variants say what to do about
//! it where there is something).
//!
//! Every error about the history's content names the 1-based line it was found on, so a
//! workload author can open the file at that line. Anomalies are not errors: they are the
//! checker's findings, reported in a [`crate::CheckResult`].

use std::path::PathBuf;
use std::time::Duration;

/// serde_json's message, with its position ("at line 1 column 12") given as a column only:
/// each JSON document here is one line, and the line is already named.
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rsplit_once(" at line ") {
        Some((reason, _)) if e.column() > 0 => format!("{reason} (column {})", e.column()),
        _ => message,
    }
}

/// Why a history could not be read or checked.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The history has no lines at all (or only blank ones).
    #[error("the history is empty: expected a {{\"type\":\"meta\"}} header on line 1")]
    Empty,
    /// A line is not UTF-8.
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 { line: usize },
    /// Line 1 is not a meta header, or a header field is missing or has the wrong type.
    #[error("line {line}: bad meta header: {}", json_reason(.source))]
    BadMeta {
        line: usize,
        source: serde_json::Error,
    },
    /// Line 1 parses but is not `"type":"meta"`.
    #[error("line {line}: expected the meta header ({{\"type\":\"meta\",\"version\":1,...}})")]
    NotMeta { line: usize },
    /// The header's version is one this checker does not read.
    #[error(
        "line {line}: history version {version} is not supported (this checker reads version 1)"
    )]
    UnsupportedVersion { line: usize, version: u64 },
    /// An operation line is not JSON, or lacks a field, or a field has the wrong type.
    #[error("line {line}: not a valid operation: {}", json_reason(.source))]
    BadOp {
        line: usize,
        source: serde_json::Error,
    },
    /// A micro-op inside an operation's value is not `[f, key, [offset, value]]`.
    #[error("line {line}: value[{position}]: {reason}")]
    BadMicroOp {
        line: usize,
        position: usize,
        reason: &'static str,
    },
    /// A fault (nemesis) operation's value is not `{"fault":..,"phase":"start"|"stop"}`.
    #[error("line {line}: bad fault value: {reason}")]
    BadFault { line: usize, reason: &'static str },
    /// The `index` field does not increase from one operation to the next.
    #[error("line {line}: index {index} does not follow the previous index {previous}")]
    IndexNotIncreasing {
        line: usize,
        index: u64,
        previous: u64,
    },
    /// A process invoked an operation while its previous one had not completed.
    #[error(
        "line {line}: process {process} invokes {f} while its {pending} from line {pending_line} \
         has not completed (a process runs one operation at a time)"
    )]
    OverlappingInvoke {
        line: usize,
        process: i64,
        f: &'static str,
        pending: &'static str,
        pending_line: usize,
    },
    /// A completion (ok, fail, info) with no invoke before it from the same process.
    #[error("line {line}: process {process} completes a {f} it never invoked")]
    CompletionWithoutInvoke {
        line: usize,
        process: i64,
        f: &'static str,
    },
    /// A completion whose `f` is not the `f` of the process's pending invoke.
    #[error("line {line}: process {process} completes a {completed} but invoked a {invoked} on line {invoke_line}")]
    CompletionMismatch {
        line: usize,
        process: i64,
        invoked: &'static str,
        completed: &'static str,
        invoke_line: usize,
    },
    /// A process did something after it crashed (process ids are never reused).
    #[error(
        "line {line}: process {process} crashed on line {crash_line} and cannot run operations"
    )]
    AfterCrash {
        line: usize,
        process: i64,
        crash_line: usize,
    },
    /// Two operations sent the same value to one key; values must be unique per key.
    #[error("line {line}: value {value} of key {key:?} was already sent by the operation on line {first_line}; values must be unique per key")]
    DuplicateSend {
        line: usize,
        key: String,
        value: i64,
        first_line: usize,
    },
    /// A `--guarantee` value that is not one of the three.
    #[error("unknown guarantee {0:?} (expected at-most-once, at-least-once or exactly-once)")]
    UnknownGuarantee(String),
    /// An `--isolation` value that is not one of the two.
    #[error("unknown isolation {0:?} (expected read_committed or read_uncommitted)")]
    UnknownIsolation(String),
    /// `courier verify run` could not set up or drive its workload (broker, proxy, topic,
    /// clients).
    #[error("verify run: {0}")]
    Run(String),
    /// The JSON report could not be serialized (should not happen: it holds plain data).
    #[error("cannot encode the JSON report: {0}")]
    Encode(serde_json::Error),

    // ----- the nemesis: starting brokers, the proxy, the small filesystem, schedules -----
    /// A file-system operation of the nemesis failed.
    #[error("{action} {path}: {source}")]
    FileOp {
        /// What was being done ("open", "truncate", ...).
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `courier` binary to run does not exist.
    #[error("the courier binary {0} does not exist")]
    BinaryNotFound(PathBuf),
    /// Starting the broker process failed.
    #[error("cannot run {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    /// The broker process exited while it was being started.
    #[error("the broker exited while starting ({status}); the end of {log}:\n{tail}")]
    BrokerExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// The broker did not answer on its port in time.
    #[error("the broker did not answer on {addr} within {waited:?}; the end of {log}:\n{tail}")]
    BrokerNotReady {
        addr: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    /// The operation needs the broker stopped (truncating a segment under a running broker
    /// would race its writes).
    #[error("the broker is running: {0} needs it killed first")]
    BrokerRunning(&'static str),
    /// The operation needs a running broker.
    #[error("the broker is not running: cannot {0}")]
    BrokerNotRunning(&'static str),
    /// Sending a signal to the broker failed.
    #[error("cannot send {signal} to the broker (pid {pid}): {source}")]
    Signal {
        signal: &'static str,
        pid: u32,
        source: std::io::Error,
    },
    /// No partition of the data directory has a non-empty active segment to cut.
    #[error("no partition under {0} has data to truncate")]
    NothingToTruncate(PathBuf),
    /// The proxy was started outside a tokio runtime.
    #[error("the fault proxy must be started from within a tokio runtime")]
    NoRuntime,
    /// The proxy could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// Mounting the size-limited filesystem is not permitted.
    #[error(
        "cannot mount a tmpfs at {dir}: {source}. The disk-full fault needs root (or \
         CAP_SYS_ADMIN); run as root or leave disk-full out of the faults"
    )]
    MountNotPermitted {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Mounting failed for another reason.
    #[error("cannot mount a {size_mib} MiB tmpfs at {dir}: {source}")]
    Mount {
        dir: PathBuf,
        size_mib: u64,
        source: std::io::Error,
    },
    /// The mount point already has files, which the mount would hide.
    #[error("{0} is not empty: the disk-full fault mounts over it, so it must be created empty")]
    DirNotEmpty(PathBuf),
    /// A fault name is not one of the known kinds.
    #[error("unknown fault {name:?}; valid faults: {valid}")]
    UnknownFault { name: String, valid: String },
    /// An explicit schedule does not parse.
    #[error("bad fault schedule item {item:?}: {reason}")]
    BadSchedule { item: String, reason: String },
}

impl VerifyError {
    /// An [`VerifyError::FileOp`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        VerifyError::FileOp {
            action,
            path: path.into(),
            source,
        }
    }
}
