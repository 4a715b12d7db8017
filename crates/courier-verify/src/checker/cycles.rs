//! Dependency cycles between operations, as in Jepsen's Kafka checker (which hands its graph
//! to Elle).
//!
//! Vertices are operations whose effects took place (ok ones, and indeterminate ones some of
//! whose sends were read). Edges:
//!
//! - **ww**: T1 sent v1 to key k and T2 sent v2 to k, and v2 immediately follows v1 in k's
//!   log (offset order, ignoring offsets with no known value).
//! - **wr**: T1 sent v to k and an ok T2 (T1 ≠ T2) polled v.
//!
//! Strongly connected components are found with Tarjan's algorithm, and one cycle per
//! component is reported as the example. Components are classified by the edges they need:
//! wr edges alone ([`AnomalyKind::G1c`]), ww edges alone ([`AnomalyKind::G0`]), or a mix
//! ([`AnomalyKind::G1cWw`]). Jepsen's note applies: Kafka does not isolate writes, so log
//! order is not commit order and cycles through ww edges are expected; a cycle of wr edges
//! alone is not, under read_committed.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Analysis, Anomaly, AnomalyKind};
use crate::history::Outcome;

/// Which dependency an edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dep {
    Ww,
    Wr,
}

/// `from → to` because of `key`: for ww, `from` sent `before` and `to` sent `after`; for wr,
/// `from` sent `before` (= `after`) and `to` read it.
#[derive(Debug, Clone, Copy)]
struct Edge<'h> {
    to: usize,
    dep: Dep,
    key: &'h str,
    before: i64,
    after: i64,
}

/// The dependency graph: for each op position, its outgoing edges.
fn graph<'h>(a: &Analysis<'h>) -> Vec<Vec<Edge<'h>>> {
    let n = a.history.ops.len();
    let mut adj: Vec<Vec<Edge<'h>>> = vec![Vec::new(); n];
    let mut seen: HashSet<(usize, usize, Dep)> = HashSet::new();
    let mut link = |from: usize, edge: Edge<'h>| {
        if from != edge.to && seen.insert((from, edge.to, edge.dep)) {
            adj[from].push(edge);
        }
    };
    for (&key, log) in &a.logs {
        // Distinct values in log order, each at its first offset, whose writer took effect.
        let mut placed = HashSet::new();
        let mut order: Vec<(i64, usize)> = Vec::new();
        for obs in log.at.values() {
            let Some(v) = obs.iter().map(|&(v, _)| v).min() else {
                continue;
            };
            if !placed.insert(v) {
                continue;
            }
            if let Some(&w) = a.writer_of.get(&(key, v)) {
                if a.committed[w] {
                    order.push((v, w));
                }
            }
        }
        for pair in order.windows(2) {
            let ((v1, w1), (v2, w2)) = (pair[0], pair[1]);
            link(
                w1,
                Edge {
                    to: w2,
                    dep: Dep::Ww,
                    key,
                    before: v1,
                    after: v2,
                },
            );
        }
    }
    for (r, op) in a.history.ops.iter().enumerate() {
        if op.outcome != Outcome::Ok {
            continue;
        }
        for m in op.polls() {
            let key = m.key.as_str();
            if let Some(&w) = a.writer_of.get(&(key, m.value)) {
                if a.committed[w] {
                    link(
                        w,
                        Edge {
                            to: r,
                            dep: Dep::Wr,
                            key,
                            before: m.value,
                            after: m.value,
                        },
                    );
                }
            }
        }
    }
    adj
}

/// Tarjan's strongly connected components over the edges `allow` admits, iteratively (a
/// long history would overflow the stack of a recursive one). Returns only components of two
/// or more ops (there are no self-edges), each sorted.
fn components(adj: &[Vec<Edge<'_>>], allow: impl Fn(Dep) -> bool) -> Vec<Vec<usize>> {
    const UNVISITED: usize = usize::MAX;
    let n = adj.len();
    let mut index = vec![UNVISITED; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut found = Vec::new();
    for root in 0..n {
        if index[root] != UNVISITED || adj[root].is_empty() {
            continue;
        }
        // (vertex, position of the next edge to look at)
        let mut calls = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, pos)) = calls.last() {
            if let Some(edge) = adj[v].get(pos) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if !allow(edge.dep) {
                    continue;
                }
                let w = edge.to;
                if index[w] == UNVISITED {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    found.push(component);
                }
            }
        }
    }
    found
}

/// The shortest cycle through the component's first op, over admitted edges inside the
/// component: each step is (from, edge).
fn cycle_in<'h>(
    adj: &[Vec<Edge<'h>>],
    component: &[usize],
    allow: impl Fn(Dep) -> bool,
) -> Vec<(usize, Edge<'h>)> {
    let members: HashSet<usize> = component.iter().copied().collect();
    let start = component[0];
    let mut parent: HashMap<usize, (usize, Edge<'h>)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for edge in adj[u]
            .iter()
            .filter(|e| allow(e.dep) && members.contains(&e.to))
        {
            if edge.to == start {
                let mut steps = vec![(u, *edge)];
                let mut at = u;
                while at != start {
                    let Some(&(prev, e)) = parent.get(&at) else {
                        return Vec::new();
                    };
                    steps.push((prev, e));
                    at = prev;
                }
                steps.reverse();
                return steps;
            }
            if edge.to != start && !parent.contains_key(&edge.to) {
                parent.insert(edge.to, (u, *edge));
                queue.push_back(edge.to);
            }
        }
    }
    // Unreachable for a strongly connected component; an empty cycle reports nothing.
    Vec::new()
}

fn report(a: &Analysis<'_>, kind: AnomalyKind, steps: &[(usize, Edge<'_>)]) -> Option<Anomaly> {
    if steps.is_empty() {
        return None;
    }
    let ops: Vec<usize> = steps.iter().map(|(from, _)| *from).collect();
    let mut values = Vec::new();
    let text = steps
        .iter()
        .map(|(from, e)| match e.dep {
            Dep::Wr => {
                values.push(e.before);
                format!(
                    "{} sent {}={} which {} read (wr)",
                    a.describe(*from),
                    e.key,
                    e.before,
                    a.describe(e.to)
                )
            }
            Dep::Ww => {
                values.extend([e.before, e.after]);
                format!(
                    "{} sent {}={} just before {} sent {}={} (ww)",
                    a.describe(*from),
                    e.key,
                    e.before,
                    a.describe(e.to),
                    e.key,
                    e.after
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(a.anomaly(
        kind,
        None,
        Vec::new(),
        values,
        &ops,
        format!("cycle of {} ops: {text}", ops.len()),
    ))
}

/// [`AnomalyKind::G1c`], [`AnomalyKind::G0`] and [`AnomalyKind::G1cWw`]: one per strongly
/// connected component.
pub(super) fn cycles(a: &Analysis<'_>) -> Vec<Anomaly> {
    let adj = graph(a);
    let mut found = Vec::new();
    let mut explained: HashSet<usize> = HashSet::new();
    let wr_only = |d: Dep| d == Dep::Wr;
    let ww_only = |d: Dep| d == Dep::Ww;
    for component in components(&adj, wr_only) {
        found.extend(report(
            a,
            AnomalyKind::G1c,
            &cycle_in(&adj, &component, wr_only),
        ));
        explained.extend(component);
    }
    for component in components(&adj, ww_only) {
        found.extend(report(
            a,
            AnomalyKind::G0,
            &cycle_in(&adj, &component, ww_only),
        ));
        explained.extend(component);
    }
    // Mixed cycles, in components no pure cycle already accounts for.
    for component in components(&adj, |_| true) {
        if component.iter().any(|i| explained.contains(i)) {
            continue;
        }
        found.extend(report(
            a,
            AnomalyKind::G1cWw,
            &cycle_in(&adj, &component, |_| true),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(to: usize, dep: Dep) -> Edge<'static> {
        Edge {
            to,
            dep,
            key: "k",
            before: 0,
            after: 0,
        }
    }

    #[test]
    fn tarjan_finds_components_and_respects_the_edge_filter() {
        // 0 →wr 1 →wr 2 →wr 0, 2 →ww 3 →wr 2, 4 alone.
        let adj = vec![
            vec![edge(1, Dep::Wr)],
            vec![edge(2, Dep::Wr)],
            vec![edge(0, Dep::Wr), edge(3, Dep::Ww)],
            vec![edge(2, Dep::Wr)],
            vec![],
        ];
        assert_eq!(components(&adj, |_| true), vec![vec![0, 1, 2, 3]]);
        assert_eq!(components(&adj, |d| d == Dep::Wr), vec![vec![0, 1, 2]]);
        assert!(components(&adj, |d| d == Dep::Ww).is_empty());
        let cycle = cycle_in(&adj, &[0, 1, 2], |d| d == Dep::Wr);
        let path: Vec<(usize, usize)> = cycle.iter().map(|(f, e)| (*f, e.to)).collect();
        assert_eq!(path, vec![(0, 1), (1, 2), (2, 0)]);
    }

    #[test]
    fn tarjan_survives_a_long_chain() {
        let n = 200_000;
        let adj: Vec<Vec<Edge<'static>>> =
            (0..n).map(|i| vec![edge((i + 1) % n, Dep::Wr)]).collect();
        let found = components(&adj, |_| true);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), n);
        assert_eq!(cycle_in(&adj, &found[0], |_| true).len(), n);
    }
}
