//! Reads that transactional isolation should have prevented.

use std::collections::HashSet;

use super::{Analysis, Anomaly, AnomalyKind};
use crate::history::{ClientF, Outcome};

/// [`AnomalyKind::AbortedRead`]: an ok poll or transaction read a value whose writer failed
/// (a failed send, or an aborted transaction). Only meaningful under read_committed; the
/// caller does not run it under read_uncommitted, where aborted records are visible by design.
pub(super) fn aborted_reads(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (reader, op) in a.history.ops.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        let mut reported = HashSet::new();
        for m in op.polls() {
            let key = m.key.as_str();
            let Some(&writer) = a.writer_of.get(&(key, m.value)) else {
                continue;
            };
            let w = a.op(writer);
            if w.outcome != Outcome::Fail || !reported.insert((key, m.value)) {
                continue;
            }
            let how = match w.f {
                ClientF::Txn => "whose transaction aborted",
                _ => "whose send failed",
            };
            found.push(a.anomaly(
                AnomalyKind::AbortedRead,
                Some(key),
                m.offset.into_iter().collect(),
                vec![m.value],
                &[writer, reader],
                format!(
                    "{} read value {} of key {key}{}, sent by {} {how}",
                    a.describe(reader),
                    m.value,
                    m.offset.map_or(String::new(), |o| format!(" at offset {o}")),
                    a.describe(writer)
                ),
            ));
        }
    }
    found
}

/// [`AnomalyKind::PrecommittedRead`]: an operation that polled a value it sent itself. This
/// is Jepsen's definition: in Kafka a transaction's records are invisible to every consumer
/// (its own included) until it commits, and an operation cannot see its own commit.
pub(super) fn precommitted_reads(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (i, op) in a.history.ops.iter().enumerate() {
        let sent: HashSet<(&str, i64)> = op.sends().map(|m| (m.key.as_str(), m.value)).collect();
        if sent.is_empty() {
            continue;
        }
        let mut reported = HashSet::new();
        for m in op.polls() {
            let kv = (m.key.as_str(), m.value);
            if !sent.contains(&kv) || !reported.insert(kv) {
                continue;
            }
            found.push(a.anomaly(
                AnomalyKind::PrecommittedRead,
                Some(&m.key),
                m.offset.into_iter().collect(),
                vec![m.value],
                &[i],
                format!(
                    "{} read value {} of key {}{}, which it sent itself before committing",
                    a.describe(i),
                    m.value,
                    m.key,
                    m.offset.map_or(String::new(), |o| format!(" at offset {o}")),
                ),
            ));
        }
    }
    found
}
