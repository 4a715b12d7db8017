//! Totals over a history, for the report.

use std::collections::HashSet;

use serde::Serialize;

use crate::history::{ClientF, History, Outcome, ResetCause};

/// How many operations of one kind ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Completed ok (a txn: committed).
    pub ok: usize,
    /// Definitely failed (a txn: aborted).
    pub fail: usize,
    /// Indeterminate, or never completed.
    pub info: usize,
}

impl OutcomeCounts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.info
    }
}

/// Totals over a history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Client operations (send, poll, txn).
    pub ops: usize,
    /// Send operations by outcome.
    pub sends: OutcomeCounts,
    /// Poll operations by outcome.
    pub polls: OutcomeCounts,
    /// Transactions by outcome.
    pub txns: OutcomeCounts,
    /// Records in ok sends and committed transactions.
    pub values_sent: usize,
    /// Records returned by ok polls and committed transactions.
    pub values_read: usize,
    /// Distinct keys sent to or polled from.
    pub keys: usize,
    /// Distinct client processes.
    pub processes: usize,
    /// Client crashes.
    pub crashes: usize,
    /// Assigns, subscribes and rebalances.
    pub rebalances: usize,
    /// Ok offset commits.
    pub commits: usize,
    /// Fault windows.
    pub faults: usize,
    /// Time of the last line (ns since start).
    pub duration_ns: u64,
}

impl Stats {
    /// Totals over `history`.
    pub fn of(history: &History) -> Stats {
        let mut s = Stats {
            ops: history.ops.len(),
            commits: history.commits,
            faults: history.faults.len(),
            duration_ns: history.end_time,
            ..Stats::default()
        };
        let mut keys = HashSet::new();
        let mut processes = HashSet::new();
        for op in &history.ops {
            processes.insert(op.process);
            match op.f {
                ClientF::Send => s.sends.add(op.outcome),
                ClientF::Poll => s.polls.add(op.outcome),
                ClientF::Txn => s.txns.add(op.outcome),
            }
            for m in &op.mops {
                keys.insert(m.key.as_str());
            }
            if op.outcome == Outcome::Ok {
                s.values_sent += op.sends().count();
                s.values_read += op.polls().count();
            }
        }
        for r in &history.resets {
            processes.insert(r.process);
            match r.cause {
                ResetCause::Crash => s.crashes += 1,
                ResetCause::Assign | ResetCause::Subscribe => s.rebalances += 1,
            }
        }
        s.keys = keys.len();
        s.processes = processes.len();
        s
    }
}
