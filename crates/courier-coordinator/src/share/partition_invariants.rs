//! A seeded simulation of one share-partition under three members: random fetches,
//! acknowledgements of every type, lock expiry, members leaving, new records and broker
//! restarts (snapshot → bytes → rebuild). An oracle built only from what the calls returned
//! checks after every step that no offset is held by two members at once, SPSO never moves
//! back, no offset is lost or settled twice, and no delivery count passes the limit.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::delivery::*;
use super::partition::*;
use super::record::ShareRecord;
use crate::error::CoordinatorError;

const MEMBERS: [&str; 3] = ["a", "b", "c"];
const LOCK_MS: i64 = 100;
const LIMIT: u16 = 3;
const MAX_LOCKS: usize = 20;

#[derive(Debug, Clone)]
enum Op {
    Produce(i64),
    Acquire {
        member: usize,
        max: usize,
    },
    Ack {
        member: usize,
        pick: prop::sample::Index,
        len: i64,
        types: Vec<u8>,
    },
    Tick(i64),
    Expire,
    Leave(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0i64..6).prop_map(Op::Produce),
        4 => (0usize..3, 0usize..8).prop_map(|(member, max)| Op::Acquire { member, max }),
        5 => (0usize..3, any::<prop::sample::Index>(), 1i64..4,
              proptest::collection::vec(0u8..5, 1..4))
            .prop_map(|(member, pick, len, types)| Op::Ack { member, pick, len, types }),
        2 => (1i64..80).prop_map(Op::Tick),
        1 => Just(Op::Expire),
        1 => (0usize..3).prop_map(Op::Leave),
        1 => Just(Op::Restart),
    ]
}

/// What the oracle knows, learnt only from returned effects.
#[derive(Default)]
struct Oracle {
    /// Offset → (member, lock deadline) for every offset handed out and not given back.
    held: BTreeMap<i64, (usize, i64)>,
    /// Offset → accepted (true) or archived (false).
    settled: BTreeMap<i64, bool>,
    /// Highest delivery count seen per offset.
    deliveries: BTreeMap<i64, u16>,
}

impl Oracle {
    fn holds(&self, member: usize, offset: i64, now: i64) -> bool {
        self.held
            .get(&offset)
            .is_some_and(|&(m, deadline)| m == member && deadline > now)
    }

    fn settle(&mut self, offset: i64, accepted: bool) -> Result<(), TestCaseError> {
        prop_assert!(
            self.settled.insert(offset, accepted).is_none(),
            "{offset} settled twice"
        );
        self.held.remove(&offset);
        Ok(())
    }

    fn archived(&mut self, events: &[ArchiveEvent]) -> Result<(), TestCaseError> {
        for e in events {
            prop_assert!(e.delivery_count <= LIMIT);
            prop_assert!(
                e.reason == ArchiveReason::Rejected || e.delivery_count == LIMIT,
                "archived for the limit below it: {e:?}"
            );
            self.settle(e.offset, false)?;
        }
        Ok(())
    }
}

fn config() -> SharePartitionConfig {
    SharePartitionConfig {
        record_lock_duration_ms: LOCK_MS,
        delivery_count_limit: LIMIT,
        max_record_locks: MAX_LOCKS,
    }
}

fn ack_type(code: u8) -> AcknowledgeType {
    AcknowledgeType::from_code(code as i8).unwrap_or(AcknowledgeType::Accept)
}

/// Runs one step and returns the effects the oracle must account for.
fn step(
    sp: &mut SharePartition,
    o: &mut Oracle,
    op: Op,
    hw: &mut i64,
    now: &mut i64,
) -> Result<Option<ShareEffects>, TestCaseError> {
    Ok(match op {
        Op::Produce(n) => {
            *hw += n;
            None
        }
        Op::Tick(ms) => {
            *now += ms;
            None
        }
        Op::Acquire { member, max } => {
            let fx = sp.acquire(MEMBERS[member], max, *hw, *now);
            let total: i64 = fx
                .acquired
                .iter()
                .map(|r| r.last_offset - r.first_offset + 1)
                .sum();
            prop_assert!(total <= max as i64);
            Some(fx)
        }
        Op::Ack {
            member,
            pick,
            len,
            types,
        } => {
            let mine: Vec<i64> = o
                .held
                .iter()
                .filter(|(_, &(m, d))| m == member && d > *now)
                .map(|(&offset, _)| offset)
                .collect();
            let first = if mine.is_empty() {
                pick.index((*hw + 2) as usize) as i64
            } else {
                mine[pick.index(mine.len())]
            };
            let last = first + len - 1;
            let types: Vec<AcknowledgeType> = if types.len() as i64 == len {
                types.into_iter().map(ack_type).collect()
            } else {
                vec![ack_type(types[0])]
            };
            let batch = AcknowledgementBatch {
                first_offset: first,
                last_offset: last,
                acknowledge_types: types.clone(),
            };
            let valid = (first..=last).all(|offset| o.holds(member, offset, *now));
            let before = sp.snapshot();
            match sp.acknowledge(MEMBERS[member], &[batch], *now) {
                Err(e) => {
                    prop_assert!(!valid, "refused a valid acknowledgement: {e:?}");
                    prop_assert_eq!(e, CoordinatorError::InvalidRecordState);
                    prop_assert_eq!(
                        sp.snapshot(),
                        before,
                        "a refused acknowledgement changed state"
                    );
                    None
                }
                Ok(fx) => {
                    prop_assert!(valid, "accepted an acknowledgement of records not held");
                    for (i, offset) in (first..=last).enumerate() {
                        let t = if types.len() == 1 { types[0] } else { types[i] };
                        match t {
                            AcknowledgeType::Accept => o.settle(offset, true)?,
                            AcknowledgeType::Gap => o.settle(offset, false)?,
                            AcknowledgeType::Renew => {
                                o.held.insert(offset, (member, *now + LOCK_MS));
                            }
                            AcknowledgeType::Release | AcknowledgeType::Reject => {
                                o.held.remove(&offset);
                            }
                        }
                    }
                    Some(fx)
                }
            }
        }
        Op::Expire => {
            let fx = sp.expire_locks(*now);
            o.held.retain(|_, &mut (_, deadline)| deadline > *now);
            Some(fx)
        }
        Op::Leave(member) => {
            let fx = sp.release_member(MEMBERS[member]);
            o.held.retain(|_, &mut (m, _)| m != member);
            Some(fx)
        }
        Op::Restart => {
            let (k, v) = ShareRecord::Snapshot(sp.snapshot()).encode();
            let Ok(ShareRecord::Snapshot(decoded)) = ShareRecord::decode(&k, &v) else {
                return Err(TestCaseError::fail("snapshot did not decode"));
            };
            *sp = SharePartition::from_snapshot(&decoded, config())
                .map_err(|e| TestCaseError::fail(format!("rebuild: {e}")))?;
            o.held.clear();
            None
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn three_members_never_share_lose_or_overdeliver(ops in proptest::collection::vec(op(), 1..120)) {
        let (mut sp, _) = SharePartition::new("g", "t", 0, config(), AutoOffsetReset::Earliest, 0, 0);
        let mut o = Oracle::default();
        let (mut hw, mut now) = (0i64, 0i64);
        for op in ops {
            let spso = sp.start_offset();
            let acquiring = match &op { Op::Acquire { member, .. } => Some(*member), _ => None };
            if let Some(fx) = step(&mut sp, &mut o, op, &mut hw, &mut now)? {
                // Locks that ended before an acquire were given back by it.
                if acquiring.is_some() {
                    o.held.retain(|_, &mut (_, deadline)| deadline > now);
                }
                o.archived(&fx.archived)?;
                for r in &fx.acquired {
                    prop_assert!(r.delivery_count >= 1 && r.delivery_count <= LIMIT, "{r:?}");
                    for offset in r.first_offset..=r.last_offset {
                        prop_assert!(offset < hw, "acquired {offset} beyond the high watermark");
                        prop_assert!(!o.held.contains_key(&offset), "{offset} handed out twice");
                        prop_assert!(!o.settled.contains_key(&offset), "{offset} settled, delivered again");
                        let seen = o.deliveries.insert(offset, r.delivery_count).unwrap_or(0);
                        prop_assert!(r.delivery_count > seen, "delivery count went back at {offset}");
                        o.held.insert(offset, (acquiring.unwrap_or(0), now + LOCK_MS));
                    }
                }
            }
            prop_assert!(sp.start_offset() >= spso, "SPSO moved back");
            prop_assert!(sp.end_offset() >= sp.start_offset() && sp.end_offset() <= hw.max(sp.start_offset()));
            prop_assert!(sp.end_offset() - sp.start_offset() <= MAX_LOCKS as i64);
            for offset in 0..hw {
                if offset < sp.start_offset() {
                    prop_assert!(o.settled.contains_key(&offset), "{offset} lost below SPSO");
                } else if let Some((state, count)) = sp.state_at(offset) {
                    prop_assert!(count <= LIMIT);
                    match state {
                        RecordState::Acquired { member_id, deadline_ms } => {
                            let &(m, d) = o.held.get(&offset).ok_or_else(|| TestCaseError::fail(format!("{offset} acquired unknown to the oracle")))?;
                            prop_assert_eq!(member_id.as_str(), MEMBERS[m]);
                            prop_assert_eq!(*deadline_ms, d);
                        }
                        RecordState::Acknowledged => prop_assert_eq!(o.settled.get(&offset), Some(&true)),
                        RecordState::Archived => prop_assert_eq!(o.settled.get(&offset), Some(&false)),
                        RecordState::Available => {
                            prop_assert!(!o.settled.contains_key(&offset));
                            prop_assert!(o.held.get(&offset).is_none_or(|&(_, d)| d <= now));
                        }
                    }
                } else {
                    prop_assert!(offset >= sp.end_offset());
                    prop_assert!(!o.deliveries.contains_key(&offset), "{offset} delivered then forgotten");
                }
            }
        }
    }
}
