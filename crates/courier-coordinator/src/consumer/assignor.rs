//! Server-side assignors for the consumer protocol (KIP-848): `uniform` (balanced and sticky)
//! and `range` (contiguous ranges per topic, as the classic range assignor).

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, TopicId};

/// One member's subscription, as the assignor sees it.
pub struct MemberSubscription<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// Topics it subscribes to that exist, with their partition counts.
    pub topics: Vec<(TopicId, i32)>,
    /// Its current target, to keep partitions where they are when possible.
    pub previous: Option<&'a Assignment>,
}

/// The assignor names the broker accepts.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Computes a target assignment for every member.
pub fn assign(assignor: &str, members: &[MemberSubscription<'_>]) -> BTreeMap<String, Assignment> {
    match assignor {
        "range" => range(members),
        _ => uniform(members),
    }
}

fn range(members: &[MemberSubscription<'_>]) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    let mut topics: BTreeMap<TopicId, i32> = BTreeMap::new();
    for m in members {
        for (t, n) in &m.topics {
            topics.insert(*t, *n);
        }
    }
    for (topic, count) in topics {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.iter().any(|(t, _)| *t == topic))
            .map(|m| m.member_id)
            .collect();
        subscribers.sort();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let parts: BTreeSet<i32> = (next..next + take).collect();
            next += take;
            if !parts.is_empty() {
                out.entry(member.to_string())
                    .or_default()
                    .insert(topic, parts);
            }
        }
    }
    out
}

fn uniform(members: &[MemberSubscription<'_>]) -> BTreeMap<String, Assignment> {
    let mut load: BTreeMap<String, usize> = members
        .iter()
        .map(|m| (m.member_id.to_string(), 0))
        .collect();
    let mut owner: BTreeMap<(TopicId, i32), String> = BTreeMap::new();
    let eligible = |t: TopicId| -> Vec<&str> {
        members
            .iter()
            .filter(|m| m.topics.iter().any(|(x, _)| *x == t))
            .map(|m| m.member_id)
            .collect()
    };
    let mut all: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    for m in members {
        for (t, n) in &m.topics {
            all.extend((0..*n).map(|p| (*t, p)));
        }
    }
    // Keep partitions with their previous owner while that owner still subscribes.
    for m in members {
        if let Some(prev) = m.previous {
            for (t, parts) in prev {
                if !m.topics.iter().any(|(x, _)| x == t) {
                    continue;
                }
                for p in parts {
                    if all.contains(&(*t, *p)) && !owner.contains_key(&(*t, *p)) {
                        owner.insert((*t, *p), m.member_id.to_string());
                        *load.entry(m.member_id.to_string()).or_default() += 1;
                    }
                }
            }
        }
    }
    // Give every unowned partition to the least-loaded eligible member.
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        if let Some(best) = eligible(tp.0)
            .into_iter()
            .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), m.to_string()))
        {
            owner.insert(*tp, best.to_string());
            *load.entry(best.to_string()).or_default() += 1;
        }
    }
    // Move partitions from the most to the least loaded eligible member until balanced.
    for _ in 0..all.len().saturating_mul(2) {
        let mut moved = false;
        for tp in &all {
            let Some(from) = owner.get(tp).cloned() else {
                continue;
            };
            let from_load = load[&from];
            let Some(to) = eligible(tp.0)
                .into_iter()
                .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), m.to_string()))
            else {
                continue;
            };
            if load[to] + 1 < from_load {
                owner.insert(*tp, to.to_string());
                *load.entry(from).or_default() -= 1;
                *load.entry(to.to_string()).or_default() += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for ((t, p), m) in owner {
        out.entry(m).or_default().entry(t).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    #[test]
    fn uniform_balances_and_keeps_owners() {
        let topics = vec![(1u128, 5), (2u128, 3)];
        let m = |id| MemberSubscription {
            member_id: id,
            topics: topics.clone(),
            previous: None,
        };
        let first = assign("uniform", &[m("a"), m("b")]);
        let counts: Vec<usize> = first.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1);
        // A third member takes partitions only from the others; nothing else moves.
        let (pa, pb) = (first["a"].clone(), first["b"].clone());
        let second = assign(
            "uniform",
            &[
                MemberSubscription {
                    member_id: "a",
                    topics: topics.clone(),
                    previous: Some(&pa),
                },
                MemberSubscription {
                    member_id: "b",
                    topics: topics.clone(),
                    previous: Some(&pb),
                },
                m("c"),
            ],
        );
        let counts: Vec<usize> = second.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1);
        for (t, parts) in &second["a"] {
            assert!(
                parts
                    .iter()
                    .all(|p| pa.get(t).is_some_and(|x| x.contains(p))),
                "a only lost partitions"
            );
        }
    }

    #[test]
    fn range_splits_each_topic_in_member_order() {
        let m = |id| MemberSubscription {
            member_id: id,
            topics: vec![(7u128, 5)],
            previous: None,
        };
        let r = assign("range", &[m("b"), m("a")]);
        assert_eq!(
            r["a"][&7].iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(r["b"][&7].iter().copied().collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let a = MemberSubscription {
            member_id: "a",
            topics: vec![(1, 4)],
            previous: None,
        };
        let b = MemberSubscription {
            member_id: "b",
            topics: vec![(2, 4)],
            previous: None,
        };
        let r = assign("uniform", &[a, b]);
        assert_eq!(r["a"].keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(r["b"].keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(count(&r["a"]), 4);
    }
}
