//! The share-group state log (`<data>/meta/__share_group_state`) read back on start.
//!
//! It holds two kinds of records, told apart by the first byte of the key: share-partition
//! snapshots and group tombstones (`courier_coordinator::share::ShareRecord`, kinds 0 and 1)
//! and group settings ([`crate::share_config`], kind 0x40). Read in order, the newest snapshot
//! of each (group, topic, partition) wins, a tombstone drops every snapshot of its group written
//! before it, and the newest settings of each group win. A record that does not decode is
//! logged and skipped (an older record for the same key, if any, stays in effect).

use std::collections::BTreeMap;

use courier_coordinator::share::{ShareRecord, ShareSnapshot};

use crate::error::BrokerError;
use crate::internal_log;
use crate::partition::Partition;
use crate::share_config::{ShareGroupSettings, KIND_GROUP_CONFIG};
use crate::shares::ShareKey;

/// What replaying the state log found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// The newest snapshot of each share-partition not dropped by a tombstone.
    pub snapshots: BTreeMap<ShareKey, ShareSnapshot>,
    /// The newest settings of each group.
    pub settings: BTreeMap<String, ShareGroupSettings>,
    /// Records read.
    pub total: usize,
}

/// Replays the state log in order.
pub(crate) fn replay(log: &Partition) -> Result<Replayed, BrokerError> {
    let mut snapshots: BTreeMap<ShareKey, ShareSnapshot> = BTreeMap::new();
    let mut settings = BTreeMap::new();
    let mut total = 0usize;
    internal_log::replay(log, |offset, key, value| {
        total += 1;
        if key.first() == Some(&KIND_GROUP_CONFIG) {
            match ShareGroupSettings::decode(key, value) {
                Ok((group, s)) => {
                    settings.insert(group, s);
                }
                Err(reason) => {
                    tracing::warn!(
                        offset,
                        reason,
                        "skipping an unreadable share group config record"
                    )
                }
            }
            return;
        }
        match ShareRecord::decode(key, value) {
            Ok(ShareRecord::Snapshot(s)) => {
                snapshots.insert((s.group.clone(), s.topic.clone(), s.partition), s);
            }
            Ok(ShareRecord::DeleteGroup { group }) => snapshots.retain(|k, _| k.0 != group),
            Err(e) => {
                tracing::warn!(offset, error = %e, "skipping an unreadable share-state record")
            }
        }
    })?;
    Ok(Replayed {
        snapshots,
        settings,
        total,
    })
}
