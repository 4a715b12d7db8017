//! The checker's findings as text for people and as JSON for programs.
//!
//! Both hold the same things: what was judged against, totals, a count per anomaly kind with
//! whether the guarantee forbids it (and why), the first examples of each kind with the faults
//! active around them, and the verdict under each of the three guarantees.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::history::{Guarantee, Isolation, ProducerMode};
use crate::judgement::{is_forbidden, rationale};
use crate::{Anomaly, AnomalyKind, CheckResult, FaultWindow, Stats, VerifyError};

/// Seconds, for display.
fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// True if `kind` is not looked for at this isolation.
fn not_checked(kind: AnomalyKind, isolation: Isolation) -> bool {
    kind == AnomalyKind::AbortedRead && isolation == Isolation::ReadUncommitted
}

fn list<T: ToString>(xs: &[T]) -> String {
    xs.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

/// The text report. `source` names the history (a path); at most `examples` examples are
/// shown per kind.
pub fn text(result: &CheckResult, source: &str, examples: usize) -> String {
    let mut out = String::new();
    let m = &result.meta;
    let s = &result.stats;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "courier verify check: {source}");
    let _ = writeln!(
        out,
        "run: guarantee {}, isolation {}, producer {}, seed {}, started {}, bootstrap {}",
        m.guarantee,
        m.isolation,
        producer_name(m.producer_mode),
        m.seed,
        if m.started_at.is_empty() {
            "?"
        } else {
            &m.started_at
        },
        if m.bootstrap.is_empty() {
            "?"
        } else {
            &m.bootstrap
        },
    );
    let overridden = result.guarantee != m.guarantee || result.isolation != m.isolation;
    let _ = writeln!(
        out,
        "judged as: {} at {}{}",
        result.guarantee,
        result.isolation,
        if overridden {
            " (overriding the header)"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    write_totals(&mut out, s, &result.faults);
    let _ = writeln!(out);

    let _ = writeln!(
        out,
        "{:<24} {:>7}  under {}",
        "anomaly", "count", result.guarantee
    );
    for kind in AnomalyKind::ALL {
        let verdict = if not_checked(kind, result.isolation) {
            "not checked at read_uncommitted".to_string()
        } else {
            match (
                is_forbidden(kind, result.guarantee, result.isolation),
                result.count(kind),
            ) {
                (true, 0) => "forbidden".to_string(),
                (true, _) => "FORBIDDEN: found".to_string(),
                (false, _) => "allowed".to_string(),
            }
        };
        let _ = writeln!(
            out,
            "  {:<22} {:>7}  {verdict}",
            kind.name(),
            result.count(kind)
        );
    }

    for (kind, found) in &result.anomalies {
        let _ = writeln!(out);
        let forbidden = is_forbidden(*kind, result.guarantee, result.isolation);
        let _ = writeln!(
            out,
            "{kind}: {} found, {} under {} ({})",
            found.len(),
            if forbidden { "FORBIDDEN" } else { "allowed" },
            result.guarantee,
            rationale(*kind)
        );
        for (n, a) in found.iter().take(examples).enumerate() {
            write_example(&mut out, n + 1, a);
        }
        if found.len() > examples {
            let _ = writeln!(out, "  ... and {} more", found.len() - examples);
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "verdict per guarantee (isolation {}):",
        result.isolation
    );
    for g in Guarantee::ALL {
        let forbidden = result.forbidden_under(g);
        let verdict = if forbidden.is_empty() {
            "valid".to_string()
        } else {
            format!("INVALID: {}", list(&forbidden))
        };
        let _ = writeln!(out, "  {:<14} {verdict}", g.name());
    }
    let _ = writeln!(out);
    let forbidden = result.forbidden();
    if forbidden.is_empty() {
        let _ = writeln!(
            out,
            "RESULT: VALID: nothing {} forbids was found",
            result.guarantee
        );
    } else {
        let counts = forbidden
            .iter()
            .map(|&k| format!("{k} ({})", result.count(k)))
            .collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "RESULT: INVALID: {} forbids {}",
            result.guarantee,
            counts.join(", ")
        );
    }
    out
}

fn producer_name(mode: ProducerMode) -> &'static str {
    match mode {
        ProducerMode::Acks0 => "acks0",
        ProducerMode::AcksAll => "acks-all",
        ProducerMode::Idempotent => "idempotent",
        ProducerMode::Transactional => "transactional",
        ProducerMode::Rpw => "rpw",
    }
}

fn write_totals(out: &mut String, s: &Stats, faults: &[FaultWindow]) {
    let _ = writeln!(
        out,
        "operations: {} over {} ({} processes, {} crashes, {} rebalances, {} offset commits)",
        s.ops,
        secs(s.duration_ns),
        s.processes,
        s.crashes,
        s.rebalances,
        s.commits
    );
    for (name, c) in [("sends", s.sends), ("txns", s.txns), ("polls", s.polls)] {
        let _ = writeln!(
            out,
            "  {name:<7} ok {:<7} fail {:<7} info {}",
            c.ok, c.fail, c.info
        );
    }
    let _ = writeln!(
        out,
        "  values  sent {}, read {}, over {} keys",
        s.values_sent, s.values_read, s.keys
    );
    let shown: Vec<String> = faults.iter().take(10).map(FaultWindow::describe).collect();
    let more = if faults.len() > 10 {
        format!(", ... {} more", faults.len() - 10)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  faults  {} windows{}{}{more}",
        faults.len(),
        if shown.is_empty() { "" } else { ": " },
        shown.join(", ")
    );
}

fn write_example(out: &mut String, n: usize, a: &Anomaly) {
    let mut head = format!("  {n}. t={}", secs(a.time));
    if let Some(key) = &a.key {
        let _ = write!(head, " key {key}");
    }
    if !a.offsets.is_empty() {
        let _ = write!(head, " offsets [{}]", list(&a.offsets));
    }
    let _ = write!(head, " values [{}] ops [{}]", list(&a.values), list(&a.ops));
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "     {}", a.explanation);
    let faults = if a.faults.is_empty() {
        "none".to_string()
    } else {
        a.faults
            .iter()
            .map(FaultWindow::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "     faults: {faults}");
}

/// One anomaly kind in the JSON report.
#[derive(Serialize)]
struct KindJson<'a> {
    kind: AnomalyKind,
    count: usize,
    forbidden: bool,
    checked: bool,
    rationale: &'static str,
    examples: &'a [Anomaly],
}

/// The JSON report.
#[derive(Serialize)]
struct ReportJson<'a> {
    valid: bool,
    guarantee: Guarantee,
    isolation: Isolation,
    producer_mode: ProducerMode,
    seed: u64,
    started_at: &'a str,
    forbidden: Vec<AnomalyKind>,
    verdicts: BTreeMap<&'static str, bool>,
    stats: &'a Stats,
    anomalies: Vec<KindJson<'a>>,
    faults: &'a [FaultWindow],
}

/// The JSON report: every kind with its count and verdict, and at most `examples` examples
/// each.
pub fn json(result: &CheckResult, examples: usize) -> Result<String, VerifyError> {
    let report = ReportJson {
        valid: result.valid(),
        guarantee: result.guarantee,
        isolation: result.isolation,
        producer_mode: result.meta.producer_mode,
        seed: result.meta.seed,
        started_at: &result.meta.started_at,
        forbidden: result.forbidden(),
        verdicts: Guarantee::ALL
            .iter()
            .map(|&g| (g.name(), result.valid_under(g)))
            .collect(),
        stats: &result.stats,
        anomalies: AnomalyKind::ALL
            .iter()
            .map(|&kind| {
                let found = result.anomalies.get(&kind).map_or(&[][..], Vec::as_slice);
                KindJson {
                    kind,
                    count: found.len(),
                    forbidden: is_forbidden(kind, result.guarantee, result.isolation),
                    checked: !not_checked(kind, result.isolation),
                    rationale: rationale(kind),
                    examples: &found[..found.len().min(examples)],
                }
            })
            .collect(),
        faults: &result.faults,
    };
    serde_json::to_string_pretty(&report).map_err(VerifyError::Encode)
}
