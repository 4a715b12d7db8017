//! Per-process order: consumers advance through a partition without skipping or going back,
//! and one producer's acknowledged sends to a key land at increasing offsets.
//!
//! Jepsen compares positions in a dense version order; the history here carries offsets, so
//! the checks compare offsets directly. That keeps a duplicated value (one value at two
//! offsets) from looking like a step backwards. A *skip* is a step from offset `o1` to `o2`
//! with some offset strictly between them known to hold a value (gaps where nothing is known,
//! such as transaction markers, are not skips). A *non-monotonic* step is `o2 <= o1`.
//!
//! Poll tracking of a process starts over at an assign or subscribe (a rebalance may move the
//! consumer anywhere), at a crash, and after an indeterminate poll (it may have consumed
//! records nobody saw). A failed operation leaves it unchanged: a failed poll consumed
//! nothing, and after an aborted read-process-write transaction the consumer rewinds to where
//! its last committed one left off. An operation during which a rebalance happened is not
//! checked at all.

use std::collections::{BTreeMap, HashMap};

use super::{Analysis, Anomaly, AnomalyKind};
use crate::history::{ClientF, MicroF, Outcome};

/// A process's latest position on a key: the last record an operation of it read or sent.
#[derive(Clone, Copy)]
struct Position {
    offset: i64,
    value: i64,
    op: usize,
}

/// Something that happened to a process, in line order.
enum Event {
    /// The op at this position in `history.ops`.
    Op(usize),
    /// An assign, subscribe or crash.
    Reset,
}

/// Each process's ops and resets, in the order of their lines.
fn timelines(a: &Analysis<'_>) -> BTreeMap<i64, Vec<(u64, Event)>> {
    let mut by_process: BTreeMap<i64, Vec<(u64, Event)>> = BTreeMap::new();
    for (i, op) in a.history.ops.iter().enumerate() {
        by_process
            .entry(op.process)
            .or_default()
            .push((op.index, Event::Op(i)));
    }
    for r in &a.history.resets {
        by_process
            .entry(r.process)
            .or_default()
            .push((r.index, Event::Reset));
    }
    for events in by_process.values_mut() {
        events.sort_by_key(|(index, _)| *index);
    }
    by_process
}

/// The records of one micro-op kind in op `i`, grouped by key (keys in first-seen order),
/// each with its offset resolved; records whose offset is unknowable are left out.
fn records_by_key<'h>(a: &Analysis<'h>, i: usize, f: MicroF) -> Vec<(&'h str, Vec<(i64, i64)>)> {
    let mut groups: Vec<(&str, Vec<(i64, i64)>)> = Vec::new();
    for m in a.op(i).mops.iter().filter(|m| m.f == f) {
        let Some(offset) = a.resolve_offset(&m.key, m.offset, m.value) else {
            continue;
        };
        match groups.iter_mut().find(|(k, _)| *k == m.key) {
            Some((_, records)) => records.push((offset, m.value)),
            None => groups.push((m.key.as_str(), vec![(offset, m.value)])),
        }
    }
    groups
}

/// What a step between two records is judged as.
struct Rule {
    /// The kind for a skip; `None` where skips are normal (sends interleave with others').
    skip: Option<AnomalyKind>,
    /// The kind for a step that does not move forward.
    backwards: AnomalyKind,
    /// "polling" or "sending", for explanations.
    what: &'static str,
}

const POLL: Rule = Rule {
    skip: Some(AnomalyKind::PollSkip),
    backwards: AnomalyKind::NonmonotonicPoll,
    what: "polling",
};
const INT_POLL: Rule = Rule {
    skip: Some(AnomalyKind::IntPollSkip),
    backwards: AnomalyKind::IntNonmonotonicPoll,
    what: "polling",
};
const SEND: Rule = Rule {
    skip: None,
    backwards: AnomalyKind::NonmonotonicSend,
    what: "sending",
};
const INT_SEND: Rule = Rule {
    skip: None,
    backwards: AnomalyKind::IntNonmonotonicSend,
    what: "sending",
};

/// Judges one step from `from` to `(offset, value)` of `to_op` on `key`: a skip, a
/// non-monotonic step, or fine.
fn step(
    a: &Analysis<'_>,
    key: &str,
    from: Position,
    (offset, value): (i64, i64),
    to_op: usize,
    rule: &Rule,
) -> Option<Anomaly> {
    let what = rule.what;
    let ops = [from.op, to_op];
    let where_ = if from.op == to_op {
        format!("within {}", a.describe(to_op))
    } else {
        format!("from {} to {}", a.describe(from.op), a.describe(to_op))
    };
    if offset <= from.offset {
        return Some(a.anomaly(
            rule.backwards,
            Some(key),
            vec![from.offset, offset],
            vec![from.value, value],
            &ops,
            format!(
                "{where_}, {what} on key {key} went from offset {} (value {}) to offset {offset} \
                 (value {value})",
                from.offset, from.value
            ),
        ));
    }
    let skip = rule.skip?;
    let skipped = a
        .logs
        .get(key)
        .map(|l| l.between(from.offset, offset))
        .unwrap_or_default();
    if skipped.is_empty() {
        return None;
    }
    let shown = skipped
        .iter()
        .take(5)
        .map(|(o, v)| format!("{v}@{o}"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = if skipped.len() > 5 { ", ..." } else { "" };
    Some(a.anomaly(
        skip,
        Some(key),
        vec![from.offset, offset],
        vec![from.value, value],
        &ops,
        format!(
            "{where_}, {what} on key {key} jumped from offset {} to {offset}, skipping {} known \
             value(s): {shown}{more}",
            from.offset,
            skipped.len()
        ),
    ))
}

/// [`AnomalyKind::PollSkip`], [`AnomalyKind::NonmonotonicPoll`] and their `int-` variants.
pub(super) fn poll_order(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for events in timelines(a).into_values() {
        let mut last: HashMap<&str, Position> = HashMap::new();
        for (_, event) in events {
            let i = match event {
                Event::Reset => {
                    last.clear();
                    continue;
                }
                Event::Op(i) => i,
            };
            let op = a.op(i);
            if op.f == ClientF::Send {
                continue;
            }
            match op.outcome {
                Outcome::Fail => continue,
                // Whether or not it reported reads, it may have consumed records.
                Outcome::Info => {
                    last.clear();
                    continue;
                }
                Outcome::Ok if op.polls().next().is_none() => continue,
                Outcome::Ok => {}
            }
            if op.rebalanced {
                last.clear();
            }
            for (key, records) in records_by_key(a, i, MicroF::Poll) {
                if !op.rebalanced {
                    if let Some(&from) = last.get(key) {
                        found.extend(step(a, key, from, records[0], i, &POLL));
                    }
                    for pair in records.windows(2) {
                        let from = Position {
                            offset: pair[0].0,
                            value: pair[0].1,
                            op: i,
                        };
                        found.extend(step(a, key, from, pair[1], i, &INT_POLL));
                    }
                }
                if let Some(&(offset, value)) = records.last() {
                    last.insert(
                        key,
                        Position {
                            offset,
                            value,
                            op: i,
                        },
                    );
                }
            }
        }
    }
    found
}

/// [`AnomalyKind::NonmonotonicSend`] and [`AnomalyKind::IntNonmonotonicSend`], over each
/// process's ok sends and transactions. Indeterminate ones are left out: a timed-out send may
/// still land after the process's next one.
pub(super) fn send_order(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for events in timelines(a).into_values() {
        let mut last: HashMap<&str, Position> = HashMap::new();
        for (_, event) in events {
            let Event::Op(i) = event else { continue };
            let op = a.op(i);
            if op.outcome != Outcome::Ok || op.f == ClientF::Poll {
                continue;
            }
            for (key, records) in records_by_key(a, i, MicroF::Send) {
                if let Some(&from) = last.get(key) {
                    found.extend(step(a, key, from, records[0], i, &SEND));
                }
                for pair in records.windows(2) {
                    let from = Position {
                        offset: pair[0].0,
                        value: pair[0].1,
                        op: i,
                    };
                    found.extend(step(a, key, from, pair[1], i, &INT_SEND));
                }
                if let Some(&(offset, value)) = records.last() {
                    last.insert(
                        key,
                        Position {
                            offset,
                            value,
                            op: i,
                        },
                    );
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::history::parse;
    use crate::{check, AnomalyKind, CheckOptions};

    const META: &str = r#"{"type":"meta","version":1,"guarantee":"exactly-once","isolation":"read_committed","producer_mode":"rpw"}"#;
    const SENDS: &str = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[["send","k",[null,1]],["send","k",[null,2]],["send","k",[null,3]]]}
{"index":1,"time":2,"process":0,"type":"ok","f":"send","value":[["send","k",[0,1]],["send","k",[1,2]],["send","k",[2,3]]]}"#;

    fn kinds(ops: &str) -> Vec<AnomalyKind> {
        let text = format!("{META}\n{SENDS}\n{ops}");
        let h = parse(text.as_bytes()).unwrap();
        check(&h, CheckOptions::default()).kinds()
    }

    #[test]
    fn an_indeterminate_poll_restarts_tracking() {
        let ops = r#"{"index":2,"time":3,"process":1,"type":"invoke","f":"poll","value":[]}
{"index":3,"time":4,"process":1,"type":"ok","f":"poll","value":[["poll","k",[0,1]]]}
{"index":4,"time":5,"process":1,"type":"invoke","f":"poll","value":[]}
{"index":5,"time":6,"process":1,"type":"info","f":"poll","value":[]}
{"index":6,"time":7,"process":1,"type":"invoke","f":"poll","value":[]}
{"index":7,"time":8,"process":1,"type":"ok","f":"poll","value":[["poll","k",[2,3]]]}
{"index":8,"time":9,"process":2,"type":"invoke","f":"poll","value":[]}
{"index":9,"time":10,"process":2,"type":"ok","f":"poll","value":[["poll","k",[1,2]]]}"#;
        assert_eq!(kinds(ops), vec![]);
        // The same without the indeterminate poll skips offset 1.
        let skipping = ops.replace(r#""type":"info","f":"poll""#, r#""type":"fail","f":"poll""#);
        assert_eq!(kinds(&skipping), vec![AnomalyKind::PollSkip]);
    }

    #[test]
    fn rereading_after_an_aborted_transaction_is_not_going_back() {
        // p1 reads 0, then a transaction reading 1 aborts, and the retry reads 1 again.
        let ops = r#"{"index":2,"time":3,"process":1,"type":"invoke","f":"txn","value":[["send","out",[null,1]]]}
{"index":3,"time":4,"process":1,"type":"ok","f":"txn","value":[["poll","k",[0,1]],["send","out",[0,1]]]}
{"index":4,"time":5,"process":1,"type":"invoke","f":"txn","value":[["send","out",[null,2]]]}
{"index":5,"time":6,"process":1,"type":"fail","f":"txn","value":[["poll","k",[1,2]],["send","out",[2,2]]]}
{"index":6,"time":7,"process":1,"type":"invoke","f":"txn","value":[["send","out",[null,3]]]}
{"index":7,"time":8,"process":1,"type":"ok","f":"txn","value":[["poll","k",[1,2]],["poll","k",[2,3]],["send","out",[4,3]]]}
{"index":8,"time":9,"process":2,"type":"invoke","f":"poll","value":[]}
{"index":9,"time":10,"process":2,"type":"ok","f":"poll","value":[["poll","out",[0,1]],["poll","out",[4,3]]]}"#;
        assert_eq!(kinds(ops), vec![]);
    }
}
