//! What each key's log holds: one value per offset, one offset per value.
//!
//! The log of a key is every `(offset, value)` pair observed: acknowledged sends of writers
//! that took effect, and every poll (polls of failed or indeterminate operations too: a
//! consumer only ever receives records that are in the log, whatever later happens to the
//! operation it was part of). Gaps in offsets are normal (transaction markers take offsets)
//! and are not anomalies.

use super::{Analysis, Anomaly, AnomalyKind};

/// [`AnomalyKind::InconsistentOffsets`]: offsets observed with two or more values.
pub(super) fn inconsistent_offsets(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (&key, log) in &a.logs {
        for (&offset, obs) in &log.at {
            let values = log.values_at(offset);
            if values.len() < 2 {
                continue;
            }
            // The first op to observe each value.
            let ops: Vec<usize> = values
                .iter()
                .filter_map(|v| obs.iter().find(|(w, _)| w == v).map(|&(_, i)| i))
                .collect();
            let seen_by = values
                .iter()
                .zip(&ops)
                .map(|(v, &i)| format!("{v} ({})", a.describe(i)))
                .collect::<Vec<_>>()
                .join(", ");
            found.push(a.anomaly(
                AnomalyKind::InconsistentOffsets,
                Some(key),
                vec![offset],
                values.iter().copied().collect(),
                &ops,
                format!(
                    "offset {offset} of key {key} holds {} values: {seen_by}",
                    values.len()
                ),
            ));
        }
    }
    found
}

/// [`AnomalyKind::Duplicate`]: values observed at two or more offsets.
pub(super) fn duplicates(a: &Analysis<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (&key, log) in &a.logs {
        let mut dups: Vec<(i64, Vec<i64>)> = log
            .offsets_of
            .iter()
            .filter(|(_, offsets)| offsets.len() > 1)
            .map(|(&v, offsets)| (v, offsets.iter().copied().collect()))
            .collect();
        dups.sort();
        for (value, offsets) in dups {
            // The writer (if any) and the first op to observe the value at each offset.
            let mut ops: Vec<usize> = a
                .writer_of
                .get(&(key, value))
                .copied()
                .into_iter()
                .collect();
            let mut seen_by = Vec::new();
            for offset in &offsets {
                let first = log
                    .at
                    .get(offset)
                    .and_then(|obs| obs.iter().find(|(v, _)| *v == value));
                if let Some(&(_, i)) = first {
                    ops.push(i);
                    seen_by.push(format!("at {offset} by {}", a.describe(i)));
                }
            }
            let at = offsets
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let at = format!("{at} (seen {})", seen_by.join(", "));
            found.push(a.anomaly(
                AnomalyKind::Duplicate,
                Some(key),
                offsets,
                vec![value],
                &ops,
                format!("value {value} of key {key} is stored at offsets {at}"),
            ));
        }
    }
    found
}
