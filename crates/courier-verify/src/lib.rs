//! The history checker of `courier verify`: reads what a Jepsen-style delivery workload
//! recorded against a broker, and says whether the run kept the guarantee it claimed.
//!
//! The pipeline, one module per step:
//!
//! - [`history`]: parse the JSON-lines history and pair each invoke with its completion;
//!   collect the nemesis's fault windows.
//! - `checker`: derive each key's log from every observed `(offset, value)` and run the
//!   anomaly checks (one module per family), each anomaly tagged with the faults around it.
//!   The anomalies are defined on [`AnomalyKind`], after Jepsen's Kafka workload.
//! - [`judgement`]: which anomalies each guarantee forbids.
//! - [`report`]: the readable text report and its JSON form; [`html`]: a self-contained page
//!   plotting throughput, latency and fault windows over time.
//!
//! It never talks to a broker: it judges a file, so it is proved on hand-written histories
//! (`tests/histories/`).

mod checker;
mod error;
pub mod history;
pub mod html;
pub mod judgement;
pub mod nemesis;
pub mod report;
pub mod run;
mod stats;

use std::collections::BTreeMap;

pub use checker::{Anomaly, AnomalyKind};
pub use error::VerifyError;
pub use history::{FaultWindow, Guarantee, History, Isolation, Meta};
pub use stats::{OutcomeCounts, Stats};

/// What to judge a history against, overriding its header.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// The guarantee, instead of the header's.
    pub guarantee: Option<Guarantee>,
    /// The consumers' isolation level, instead of the header's.
    pub isolation: Option<Isolation>,
}

/// Everything the checker found in a history.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The history's header.
    pub meta: Meta,
    /// The guarantee judged against.
    pub guarantee: Guarantee,
    /// The isolation level judged against (aborted reads are only looked for under
    /// read_committed).
    pub isolation: Isolation,
    /// Every anomaly found, by kind, each list in time order; kinds not found are absent.
    pub anomalies: BTreeMap<AnomalyKind, Vec<Anomaly>>,
    /// Totals.
    pub stats: Stats,
    /// The nemesis's fault windows.
    pub faults: Vec<FaultWindow>,
}

impl CheckResult {
    /// How many anomalies of `kind` were found.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.get(&kind).map_or(0, Vec::len)
    }

    /// The kinds found, in report order.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        self.anomalies.keys().copied().collect()
    }

    /// The kinds found that `guarantee` forbids (at this result's isolation).
    pub fn forbidden_under(&self, guarantee: Guarantee) -> Vec<AnomalyKind> {
        self.anomalies
            .keys()
            .copied()
            .filter(|&k| judgement::is_forbidden(k, guarantee, self.isolation))
            .collect()
    }

    /// True if nothing found is forbidden by `guarantee`.
    pub fn valid_under(&self, guarantee: Guarantee) -> bool {
        self.forbidden_under(guarantee).is_empty()
    }

    /// The kinds found that the run's guarantee forbids.
    pub fn forbidden(&self) -> Vec<AnomalyKind> {
        self.forbidden_under(self.guarantee)
    }

    /// True if the run kept its guarantee.
    pub fn valid(&self) -> bool {
        self.valid_under(self.guarantee)
    }
}

/// Checks a parsed history.
pub fn check(history: &History, options: CheckOptions) -> CheckResult {
    let guarantee = options.guarantee.unwrap_or(history.meta.guarantee);
    let isolation = options.isolation.unwrap_or(history.meta.isolation);
    CheckResult {
        meta: history.meta.clone(),
        guarantee,
        isolation,
        anomalies: checker::run(history, isolation),
        stats: Stats::of(history),
        faults: history.faults.clone(),
    }
}
