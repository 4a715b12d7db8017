//! The history a workload records, and its operations paired up.
//!
//! A history is JSON lines: a `{"type":"meta",...}` header, then one line per operation
//! event (`invoke`, then exactly one `ok`, `fail` or `info` from the same process). [`parse`]
//! reads it and pairs every invoke with its completion into a [`ClientOp`]; fault-injector
//! (nemesis) events become [`FaultWindow`]s; `assign`, `subscribe` and `crash` become
//! [`Reset`]s of a process's poll-order tracking.

mod faults;
mod parse;

use serde::{Deserialize, Serialize};

pub use faults::FaultWindow;
pub use parse::{parse, parse_file};

use crate::VerifyError;

/// The delivery guarantee a run claims; it decides which anomalies are forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Records may be lost, never delivered twice.
    AtMostOnce,
    /// Records may be delivered twice, never lost.
    AtLeastOnce,
    /// Records are neither lost nor delivered twice, and transactions are atomic.
    ExactlyOnce,
}

impl Guarantee {
    /// All three, weakest-first.
    pub const ALL: [Guarantee; 3] = [
        Guarantee::AtMostOnce,
        Guarantee::AtLeastOnce,
        Guarantee::ExactlyOnce,
    ];

    /// The name used in histories and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::AtMostOnce => "at-most-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Guarantee {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guarantee::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| VerifyError::UnknownGuarantee(s.to_string()))
    }
}

/// The consumers' `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Consumers see only committed transactional records (below the last stable offset).
    ReadCommitted,
    /// Consumers see every record below the high watermark, aborted ones included.
    ReadUncommitted,
}

impl Isolation {
    /// The name used in histories and on the command line (Kafka's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isolation {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read_committed" => Ok(Isolation::ReadCommitted),
            "read_uncommitted" => Ok(Isolation::ReadUncommitted),
            _ => Err(VerifyError::UnknownIsolation(s.to_string())),
        }
    }
}

/// How the workload's producers were configured. Informational: the checker judges by
/// [`Guarantee`] and [`Isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProducerMode {
    /// `acks=0`: fire and forget, no offsets known.
    #[serde(rename = "acks0")]
    Acks0,
    /// `acks=all` without idempotence.
    #[serde(rename = "acks-all")]
    AcksAll,
    /// The idempotent producer.
    #[serde(rename = "idempotent")]
    Idempotent,
    /// A transactional producer.
    #[serde(rename = "transactional")]
    Transactional,
    /// Read-process-write: consume, produce and commit offsets in one transaction.
    #[serde(rename = "rpw")]
    Rpw,
}

/// The header on line 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Format version; only 1 exists.
    pub version: u64,
    /// The guarantee the run claims (overridable on the command line).
    pub guarantee: Guarantee,
    /// The consumers' isolation level (overridable on the command line).
    pub isolation: Isolation,
    /// How producers were configured.
    pub producer_mode: ProducerMode,
    /// The workload's random seed, to reproduce the run.
    #[serde(default)]
    pub seed: u64,
    /// The broker the workload talked to.
    #[serde(default)]
    pub bootstrap: String,
    /// Wall-clock start of the run (RFC 3339); operation times are relative to it.
    #[serde(default)]
    pub started_at: String,
}

/// What a client operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientF {
    /// Produce records (send micro-ops only).
    Send,
    /// One consumer poll (poll micro-ops only).
    Poll,
    /// A transaction: sends, and for read-process-write its polls.
    Txn,
}

impl ClientF {
    /// The name used in histories.
    pub fn name(self) -> &'static str {
        match self {
            ClientF::Send => "send",
            ClientF::Poll => "poll",
            ClientF::Txn => "txn",
        }
    }
}

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened (for a txn: committed).
    Ok,
    /// It definitely did not happen (for a txn: aborted).
    Fail,
    /// Unknown: a timeout, a crash, or the history ended before it completed.
    Info,
}

/// Whether a micro-op sends or polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MicroF {
    /// A record produced to `key`.
    Send,
    /// A record a consumer received from `key`.
    Poll,
}

/// One record sent or received: `[f, key, [offset, value]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MicroOp {
    /// Send or poll.
    pub f: MicroF,
    /// The key; keys map one-to-one to partitions.
    pub key: String,
    /// The record's offset in the key's partition, when known.
    pub offset: Option<i64>,
    /// The value, unique per key.
    pub value: i64,
}

/// A client operation: an invoke paired with its completion.
#[derive(Debug, Clone)]
pub struct ClientOp {
    /// The process that ran it.
    pub process: i64,
    /// Send, poll or txn.
    pub f: ClientF,
    /// How it ended; [`Outcome::Info`] when it never completed.
    pub outcome: Outcome,
    /// `index` of the invoke line.
    pub invoke_index: u64,
    /// `time` of the invoke line (ns since start).
    pub invoke_time: u64,
    /// `index` of the completion line; for an op that never completed, the index of the
    /// process's crash or the end of the history.
    pub index: u64,
    /// `time` of the completion (or of the crash or end of the history).
    pub time: u64,
    /// False when the op never completed: its latency is unknown.
    pub completed: bool,
    /// The micro-ops: from the completion (which carries offsets and reads), or from the
    /// invoke for a send or txn whose completion carries none.
    pub mops: Vec<MicroOp>,
    /// A rebalance (assign or subscribe) happened while this op was in flight, so its reads
    /// need not continue from where the process left off, nor be contiguous.
    pub rebalanced: bool,
    /// 1-based line of the completion (or of the invoke, if it never completed).
    pub line: usize,
}

impl ClientOp {
    /// The sends in this op.
    pub fn sends(&self) -> impl Iterator<Item = &MicroOp> {
        self.mops.iter().filter(|m| m.f == MicroF::Send)
    }

    /// The records this op polled, in the order returned.
    pub fn polls(&self) -> impl Iterator<Item = &MicroOp> {
        self.mops.iter().filter(|m| m.f == MicroF::Poll)
    }
}

/// Why a process's poll-order tracking starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetCause {
    /// The consumer was assigned partitions (possibly by a rebalance callback).
    Assign,
    /// The consumer subscribed (and will be rebalanced).
    Subscribe,
    /// The process crashed; it runs nothing more.
    Crash,
}

/// A point after which a process's next poll need not continue from its previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The process.
    pub process: i64,
    /// `index` of the line.
    pub index: u64,
    /// `time` of the line.
    pub time: u64,
    /// What happened.
    pub cause: ResetCause,
}

/// A parsed history.
#[derive(Debug, Clone)]
pub struct History {
    /// The header.
    pub meta: Meta,
    /// Client operations (send, poll, txn), in order of completion.
    pub ops: Vec<ClientOp>,
    /// Rebalances and crashes, in line order.
    pub resets: Vec<Reset>,
    /// Fault windows, in order of start.
    pub faults: Vec<FaultWindow>,
    /// Offset commits seen (informational).
    pub commits: usize,
    /// Time of the last line (ns since start).
    pub end_time: u64,
}
