//! Exactly-once processing: no input record is consumed by two committed read-process-write
//! transactions.
//!
//! In a read-process-write run the group's processes run `txn` operations that hold their
//! polls (the input the transaction consumed) and their sends (what it produced), and commit
//! the group's offsets inside the transaction. Once one such transaction commits, the group
//! has moved past its input, so no later transaction of the group may consume it again; if
//! one does and commits too (a zombie that kept its partition through a rebalance, a
//! successor that resumed from a stale committed offset), the record was processed twice.
//!
//! Only ok (committed) transactions count: a failed one aborted, so its consumption was
//! rolled back with its offsets, and an indeterminate one may or may not have committed.
//! Plain polls never count: they are consumers outside the group's transactions (other
//! consumers, the final read).
//!
//! A record is its key, offset and value (a poll's offset resolved from the log when the
//! history lacks it). Reads of one value at two offsets are of two records (the duplicate is
//! reported as such), and two values at one offset are two records too (reported as
//! inconsistent offsets): neither is a processing failure of the group.

use std::collections::BTreeMap;

use super::{Analysis, Anomaly, AnomalyKind};
use crate::history::{ClientF, Outcome};

/// [`AnomalyKind::DoubleProcessed`]: records read by the polls of two or more ok `txn`
/// operations, one anomaly per record.
pub(super) fn double_processed(a: &Analysis<'_>) -> Vec<Anomaly> {
    // (key, offset, value) → positions of the committed transactions that read it, in op
    // order, each once.
    let mut readers: BTreeMap<(&str, Option<i64>, i64), Vec<usize>> = BTreeMap::new();
    for (i, op) in a.history.ops.iter().enumerate() {
        if op.f != ClientF::Txn || op.outcome != Outcome::Ok {
            continue;
        }
        for m in op.polls() {
            let offset = a.resolve_offset(&m.key, m.offset, m.value);
            let txns = readers
                .entry((m.key.as_str(), offset, m.value))
                .or_default();
            if txns.last() != Some(&i) {
                txns.push(i);
            }
        }
    }

    readers
        .into_iter()
        .filter(|(_, txns)| txns.len() > 1)
        .map(|((key, offset, value), txns)| {
            let by = txns
                .iter()
                .map(|&i| a.describe(i))
                .collect::<Vec<_>>()
                .join(", ");
            a.anomaly(
                AnomalyKind::DoubleProcessed,
                Some(key),
                offset.into_iter().collect(),
                vec![value],
                &txns,
                format!(
                    "value {value} of key {key}{} was consumed by {} committed transactions: \
                     {by}",
                    offset.map_or(String::new(), |o| format!(" at offset {o}")),
                    txns.len()
                ),
            )
        })
        .collect()
}
