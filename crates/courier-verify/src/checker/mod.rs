//! The anomaly checks, one module per family, over one shared [`Analysis`] of the history.
//!
//! - [`version_order`]: what each key's log holds: inconsistent offsets and duplicates.
//! - [`delivery`]: acknowledged values that were never read: lost writes and unseen values.
//! - [`isolation`]: reads transactions should have hidden: aborted and precommitted reads.
//! - [`processing`]: input consumed by two committed read-process-write transactions.
//! - [`order`]: per-process order: poll skips, non-monotonic polls and sends.
//! - [`cycles`]: write/read dependency cycles between operations (G0, G1c).
//!
//! Which anomalies a run may show is decided in [`crate::judgement`], not here: the checks
//! report everything they find.

mod cycles;
mod delivery;
mod isolation;
mod order;
mod processing;
mod version_order;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Serialize, Serializer};

use crate::history::{ClientOp, FaultWindow, History, Isolation, Outcome};

/// A kind of anomaly. Each is defined on its variant; [`crate::judgement`] says which
/// guarantees forbid it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// Two different values observed at one offset of a key (by sends' acknowledgements or
    /// by polls): the log disagrees with itself.
    InconsistentOffsets,
    /// One value observed at two or more offsets of a key: it was stored twice.
    Duplicate,
    /// A record (key, offset, value) read by the polls of two or more committed (ok) `txn`
    /// operations: in read-process-write, where the group commits its offsets inside each
    /// transaction, the input was processed twice. Aborted and indeterminate transactions,
    /// and plain polls, do not count.
    DoubleProcessed,
    /// An acknowledged value (ok send, committed txn) that no poll ever read, although its
    /// offset is at or below the highest offset some poll read on that key: consumers got
    /// past it, so it should have been delivered.
    LostWrite,
    /// An acknowledged value never read by any poll by the end of the history, and not a
    /// lost write (its offset is unknown, or above everything polled on its key).
    Unseen,
    /// Under read_committed, a committed read of a value whose send failed or whose
    /// transaction aborted (Adya's G1a). Not checked under read_uncommitted.
    AbortedRead,
    /// A transaction that read a value it sent itself: it saw its own write before it
    /// committed (Jepsen's definition; Kafka hides uncommitted records from every consumer).
    PrecommittedRead,
    /// Two consecutive polls by one process (no rebalance between) that jump over offsets
    /// holding values known to exist: the consumer skipped records.
    PollSkip,
    /// Two consecutive polls by one process (no rebalance between) where the later starts
    /// at or before the offset the earlier ended on: the consumer went back.
    NonmonotonicPoll,
    /// A poll skip inside one poll (or one transaction's polls).
    IntPollSkip,
    /// A non-monotonic step inside one poll (or one transaction's polls).
    IntNonmonotonicPoll,
    /// Two consecutive acknowledged sends by one process to one key whose offsets do not
    /// increase: the log reordered acknowledged writes.
    NonmonotonicSend,
    /// Sends to one key inside one operation whose offsets do not increase.
    IntNonmonotonicSend,
    /// A cycle of ww (log-order) dependencies only. Kafka does not isolate writes: two
    /// transactions' records interleave in the log, so these are expected.
    G0,
    /// A cycle of ww and wr dependencies that needs at least one ww edge (Adya's G1c through
    /// log order). Log order is not commit order in Kafka, so these are expected too.
    G1cWw,
    /// A cycle of wr dependencies only: T1 read T2's write and T2 (transitively) read T1's.
    /// Under read_committed each must have committed before the other read: impossible.
    G1c,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 16] = [
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::Duplicate,
        AnomalyKind::DoubleProcessed,
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::AbortedRead,
        AnomalyKind::PrecommittedRead,
        AnomalyKind::PollSkip,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::IntPollSkip,
        AnomalyKind::IntNonmonotonicPoll,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::IntNonmonotonicSend,
        AnomalyKind::G0,
        AnomalyKind::G1cWw,
        AnomalyKind::G1c,
    ];

    /// The name used in reports (Jepsen's where it has one).
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::InconsistentOffsets => "inconsistent-offsets",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::DoubleProcessed => "double-processed",
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Unseen => "unseen",
            AnomalyKind::AbortedRead => "aborted-read",
            AnomalyKind::PrecommittedRead => "precommitted-read",
            AnomalyKind::PollSkip => "poll-skip",
            AnomalyKind::NonmonotonicPoll => "nonmonotonic-poll",
            AnomalyKind::IntPollSkip => "int-poll-skip",
            AnomalyKind::IntNonmonotonicPoll => "int-nonmonotonic-poll",
            AnomalyKind::NonmonotonicSend => "nonmonotonic-send",
            AnomalyKind::IntNonmonotonicSend => "int-nonmonotonic-send",
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1cWw => "G1c-ww",
            AnomalyKind::G1c => "G1c",
        }
    }

    /// The kind with this [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<AnomalyKind> {
        AnomalyKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for AnomalyKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One anomaly found, with what is needed to find it in the history.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    /// What went wrong.
    pub kind: AnomalyKind,
    /// The key, for anomalies about one key (not for cycles, which may span several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The offsets involved, in the order the explanation mentions them.
    pub offsets: Vec<i64>,
    /// The values involved, likewise.
    pub values: Vec<i64>,
    /// `index` of each operation involved (its completion line; its invoke if it never
    /// completed).
    pub ops: Vec<u64>,
    /// When the anomaly became observable: the latest completion among `ops` (ns).
    pub time: u64,
    /// Fault windows overlapping the operations involved (first invoke to last completion).
    pub faults: Vec<FaultWindow>,
    /// One sentence saying what happened.
    pub explanation: String,
}

/// Every observation of one key's log.
#[derive(Debug, Default)]
pub(crate) struct KeyLog {
    /// Offset → each (value, op position) observed there: sends of committed writers, and
    /// every poll.
    pub at: BTreeMap<i64, Vec<(i64, usize)>>,
    /// Value → the offsets it was observed at.
    pub offsets_of: HashMap<i64, BTreeSet<i64>>,
}

impl KeyLog {
    fn observe(&mut self, offset: i64, value: i64, op: usize) {
        self.at.entry(offset).or_default().push((value, op));
        self.offsets_of.entry(value).or_default().insert(offset);
    }

    /// The distinct values observed at `offset`.
    pub fn values_at(&self, offset: i64) -> BTreeSet<i64> {
        self.at
            .get(&offset)
            .map(|obs| obs.iter().map(|&(v, _)| v).collect())
            .unwrap_or_default()
    }

    /// The lowest offset `value` was observed at.
    pub fn offset_of(&self, value: i64) -> Option<i64> {
        self.offsets_of.get(&value).and_then(|o| o.first().copied())
    }

    /// `(offset, value)` for each offset strictly between `lo` and `hi` known to hold a
    /// value (the smallest, if the offset is inconsistent).
    pub fn between(&self, lo: i64, hi: i64) -> Vec<(i64, i64)> {
        if hi <= lo.saturating_add(1) {
            return Vec::new();
        }
        self.at
            .range(lo + 1..hi)
            .filter_map(|(&o, obs)| obs.iter().map(|&(v, _)| v).min().map(|v| (o, v)))
            .collect()
    }
}

/// What every check needs, computed once.
pub(crate) struct Analysis<'h> {
    /// The history.
    pub history: &'h History,
    /// Each key's log, by key.
    pub logs: BTreeMap<&'h str, KeyLog>,
    /// (key, value) → the position in `history.ops` of the op that sent it.
    pub writer_of: HashMap<(&'h str, i64), usize>,
    /// (key, value) → positions of the ok ops that polled it, in op order.
    pub readers_of: HashMap<(&'h str, i64), Vec<usize>>,
    /// Per op: did its sends take effect? True for ok ops, and for indeterminate ones some
    /// of whose sends an ok op read (Jepsen's must-have-committed).
    pub committed: Vec<bool>,
}

impl<'h> Analysis<'h> {
    pub fn new(history: &'h History) -> Self {
        let ops = &history.ops;
        let mut writer_of = HashMap::new();
        let mut readers_of: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            for m in op.sends() {
                writer_of.entry((m.key.as_str(), m.value)).or_insert(i);
            }
            if op.outcome == Outcome::Ok {
                for m in op.polls() {
                    let readers = readers_of.entry((m.key.as_str(), m.value)).or_default();
                    if readers.last() != Some(&i) {
                        readers.push(i);
                    }
                }
            }
        }
        let committed = ops
            .iter()
            .map(|op| match op.outcome {
                Outcome::Ok => true,
                Outcome::Fail => false,
                Outcome::Info => op
                    .sends()
                    .any(|m| readers_of.contains_key(&(m.key.as_str(), m.value))),
            })
            .collect::<Vec<_>>();
        let mut logs: BTreeMap<&str, KeyLog> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            for m in &op.mops {
                let from_send = m.f == crate::history::MicroF::Send;
                if from_send && !committed[i] {
                    continue;
                }
                if let Some(offset) = m.offset {
                    logs.entry(m.key.as_str())
                        .or_default()
                        .observe(offset, m.value, i);
                }
            }
        }
        Analysis {
            history,
            logs,
            writer_of,
            readers_of,
            committed,
        }
    }

    /// The op at position `i`.
    pub fn op(&self, i: usize) -> &'h ClientOp {
        &self.history.ops[i]
    }

    /// `op 12 (p3 send)`: how explanations name an op.
    pub fn describe(&self, i: usize) -> String {
        let op = self.op(i);
        format!("op {} (p{} {})", op.index, op.process, op.f.name())
    }

    /// The offset of a micro-op's record: its own, else where the log saw its value.
    pub fn resolve_offset(&self, key: &str, offset: Option<i64>, value: i64) -> Option<i64> {
        offset.or_else(|| self.logs.get(key).and_then(|l| l.offset_of(value)))
    }

    /// Builds an anomaly involving the ops at positions `ops` (deduplicated, in order).
    pub fn anomaly(
        &self,
        kind: AnomalyKind,
        key: Option<&str>,
        offsets: Vec<i64>,
        values: Vec<i64>,
        ops: &[usize],
        explanation: String,
    ) -> Anomaly {
        let mut positions: Vec<usize> = Vec::with_capacity(ops.len());
        for &i in ops {
            if !positions.contains(&i) {
                positions.push(i);
            }
        }
        let from = positions
            .iter()
            .map(|&i| self.op(i).invoke_time)
            .min()
            .unwrap_or(0);
        let time = positions
            .iter()
            .map(|&i| self.op(i).time)
            .max()
            .unwrap_or(0);
        Anomaly {
            kind,
            key: key.map(str::to_string),
            offsets,
            values,
            ops: positions.iter().map(|&i| self.op(i).index).collect(),
            time,
            faults: self
                .history
                .faults
                .iter()
                .filter(|w| w.overlaps(from, time))
                .cloned()
                .collect(),
            explanation,
        }
    }
}

/// Runs every check, returning the anomalies of each kind found (kinds with none are
/// absent), each list ordered by time.
pub(crate) fn run(history: &History, isolation: Isolation) -> BTreeMap<AnomalyKind, Vec<Anomaly>> {
    let a = Analysis::new(history);
    let mut found = Vec::new();
    found.extend(version_order::inconsistent_offsets(&a));
    found.extend(version_order::duplicates(&a));
    found.extend(processing::double_processed(&a));
    found.extend(delivery::lost_and_unseen(&a));
    if isolation == Isolation::ReadCommitted {
        found.extend(isolation::aborted_reads(&a));
    }
    found.extend(isolation::precommitted_reads(&a));
    found.extend(order::poll_order(&a));
    found.extend(order::send_order(&a));
    found.extend(cycles::cycles(&a));

    let mut by_kind: BTreeMap<AnomalyKind, Vec<Anomaly>> = BTreeMap::new();
    for anomaly in found {
        by_kind.entry(anomaly.kind).or_default().push(anomaly);
    }
    for list in by_kind.values_mut() {
        list.sort_by(|x, y| {
            (x.time, &x.key, &x.offsets, &x.values).cmp(&(y.time, &y.key, &y.offsets, &y.values))
        });
    }
    by_kind
}
