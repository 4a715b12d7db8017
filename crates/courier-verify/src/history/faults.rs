//! Fault windows: when the nemesis had a fault active.
//!
//! The nemesis (process -1) logs `{"fault":kind,"phase":"start"|"stop","detail":..}`. A
//! window runs from a start to the next stop of the same kind, or to the end of the history
//! when no stop comes. Several windows of one kind may be open at once (say, two brokers
//! paused); stops close them first-opened first.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::VerifyError;

/// One fault, from its start to its stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// The fault kind: `kill-broker`, `pause-broker`, `lost-ack`, ...
    pub kind: String,
    /// The nemesis's description of what it did.
    pub detail: String,
    /// When the fault started (ns since start).
    pub start: u64,
    /// When it stopped; `None` if it was still active when the history ended.
    pub stop: Option<u64>,
}

impl FaultWindow {
    /// True if this window overlaps `[from, to]` (ns).
    pub fn overlaps(&self, from: u64, to: u64) -> bool {
        self.start <= to && self.stop.is_none_or(|stop| stop >= from)
    }

    /// `kill-broker [12.301s, 15.002s]`, or `[12.301s, end]` if it never stopped.
    pub fn describe(&self) -> String {
        let stop = match self.stop {
            Some(t) => format!("{:.3}s", t as f64 / 1e9),
            None => "end".to_string(),
        };
        format!("{} [{:.3}s, {stop}]", self.kind, self.start as f64 / 1e9)
    }
}

/// The value of a nemesis operation.
#[derive(Deserialize)]
struct FaultValue {
    fault: String,
    phase: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Builds fault windows from nemesis lines, in history order.
#[derive(Default)]
pub(crate) struct FaultTracker {
    /// Windows already closed, or open ones once `finish` runs.
    windows: Vec<FaultWindow>,
    /// Open windows per kind, oldest first.
    open: BTreeMap<String, VecDeque<FaultWindow>>,
}

impl FaultTracker {
    /// Records one nemesis line's value at `time`.
    pub(crate) fn record(
        &mut self,
        line: usize,
        time: u64,
        value: serde_json::Value,
    ) -> Result<(), VerifyError> {
        let v: FaultValue = serde_json::from_value(value).map_err(|_| VerifyError::BadFault {
            line,
            reason: "expected {\"fault\":kind,\"phase\":\"start\"|\"stop\",\"detail\":..}",
        })?;
        let detail = match v.detail {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s,
            Some(other) => other.to_string(),
        };
        match v.phase.as_str() {
            "start" => {
                self.open
                    .entry(v.fault.clone())
                    .or_default()
                    .push_back(FaultWindow {
                        kind: v.fault,
                        detail,
                        start: time,
                        stop: None,
                    });
                Ok(())
            }
            "stop" => {
                // A stop with no start (the nemesis healed something it never broke) opens
                // no window.
                if let Some(mut w) = self.open.get_mut(&v.fault).and_then(VecDeque::pop_front) {
                    w.stop = Some(time);
                    self.windows.push(w);
                }
                Ok(())
            }
            _ => Err(VerifyError::BadFault {
                line,
                reason: "phase must be \"start\" or \"stop\"",
            }),
        }
    }

    /// All windows, ordered by start; those never stopped stay open to the end.
    pub(crate) fn finish(mut self) -> Vec<FaultWindow> {
        for (_, open) in std::mem::take(&mut self.open) {
            self.windows.extend(open);
        }
        self.windows
            .sort_by(|a, b| (a.start, &a.kind).cmp(&(b.start, &b.kind)));
        self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_close_first_opened_first_and_stay_open_to_the_end() {
        let mut t = FaultTracker::default();
        let start = |k: &str| json!({"fault": k, "phase": "start", "detail": "n1"});
        let stop = |k: &str| json!({"fault": k, "phase": "stop"});
        t.record(2, 10, start("pause-broker")).unwrap();
        t.record(3, 20, start("pause-broker")).unwrap();
        t.record(4, 30, stop("pause-broker")).unwrap();
        t.record(5, 40, start("kill-broker")).unwrap();
        t.record(6, 50, stop("delay")).unwrap();
        let w = t.finish();
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].start, w[0].stop), (10, Some(30)));
        assert_eq!((w[1].start, w[1].stop), (20, None));
        assert_eq!((w[2].kind.as_str(), w[2].stop), ("kill-broker", None));
        assert!(w[0].overlaps(30, 35));
        assert!(!w[0].overlaps(31, 35));
        assert!(w[1].overlaps(1_000, 2_000));
    }

    #[test]
    fn a_bad_phase_is_an_error_naming_the_line() {
        let mut t = FaultTracker::default();
        let err = t
            .record(9, 0, json!({"fault": "delay", "phase": "middle"}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 9: bad fault value: phase must be \"start\" or \"stop\""
        );
    }
}
