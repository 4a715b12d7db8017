//! Acknowledged values that no consumer read.
//!
//! A value is *acknowledged* when its send or transaction completed ok, and *read* when an
//! ok poll (or ok transaction) returned it. For each key, the bound is the highest offset an
//! ok poll returned. An acknowledged value never read is a lost write if its offset is at or
//! below the bound (consumers got past it), and unseen otherwise (its offset is unknown, or
//! beyond where anyone polled, so it may merely not have been reached). A value observed at
//! several offsets counts at its highest, as in Jepsen: it is only surely behind the bound
//! if all its copies are.

use std::collections::HashMap;

use super::{Analysis, Anomaly, AnomalyKind};
use crate::history::Outcome;

/// [`AnomalyKind::LostWrite`] and [`AnomalyKind::Unseen`].
pub(super) fn lost_and_unseen(a: &Analysis<'_>) -> Vec<Anomaly> {
    // Key → (highest offset an ok poll returned, the op that returned it).
    let mut bound: HashMap<&str, (i64, usize)> = HashMap::new();
    for (i, op) in a.history.ops.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        for m in op.polls() {
            if let Some(offset) = m.offset {
                let b = bound.entry(m.key.as_str()).or_insert((offset, i));
                if offset > b.0 {
                    *b = (offset, i);
                }
            }
        }
    }

    let mut found = Vec::new();
    for (i, op) in a.history.ops.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        for m in op.sends() {
            let key = m.key.as_str();
            if a.readers_of.contains_key(&(key, m.value)) {
                continue;
            }
            let offset = a
                .logs
                .get(key)
                .and_then(|l| l.offsets_of.get(&m.value))
                .and_then(|o| o.last().copied())
                .or(m.offset);
            match (offset, bound.get(key)) {
                (Some(offset), Some(&(max, reader))) if offset <= max => {
                    found.push(a.anomaly(
                        AnomalyKind::LostWrite,
                        Some(key),
                        vec![offset, max],
                        vec![m.value],
                        &[i, reader],
                        format!(
                            "value {} of key {key} was acknowledged at offset {offset} by {} \
                             but never read, though {} read offset {max}",
                            m.value,
                            a.describe(i),
                            a.describe(reader)
                        ),
                    ));
                }
                _ => {
                    let at =
                        offset.map_or("an unknown offset".to_string(), |o| format!("offset {o}"));
                    let polled = bound.get(key).map_or(
                        "no poll returned anything from it".to_string(),
                        |(max, _)| format!("polls reached offset {max}"),
                    );
                    found.push(a.anomaly(
                        AnomalyKind::Unseen,
                        Some(key),
                        offset.into_iter().collect(),
                        vec![m.value],
                        &[i],
                        format!(
                            "value {} of key {key} was acknowledged at {at} by {} and never \
                             read; {polled}",
                            m.value,
                            a.describe(i)
                        ),
                    ));
                }
            }
        }
    }
    found
}
