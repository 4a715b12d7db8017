//! The audit: judges each guarantee from the data the run left behind, never from counters
//! the services keep about themselves.
//!
//! - `topic`: `order-events` read back (what the broker stored);
//! - `effects`: each service's effect rows read from its database;
//! - this module: the comparisons, one function per service.
//!
//! An order is identified by its id; a record by its partition and offset. A client's retried
//! order is a second record of the same order, so "orders" and "records" differ on purpose:
//! Payment and Inventory must apply each *order* once; Notification must tell each order at
//! least once; Analytics may lose *records* but never count one twice.

mod effects;
pub mod topic;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use effects::{load, EffectRow, Effects};
pub use topic::{read_back, TopicRecord};

use crate::order::initial_stock;
use crate::report::{Check, ServiceReport, TopicReport};
use crate::services::{PaymentMode, ServiceKind};

/// What the topic holds, indexed for the service checks.
pub struct TopicIndex {
    /// Every record of the run.
    pub records: Vec<TopicRecord>,
    /// Each order's amount, product and quantity, by order id (from its first record).
    pub orders: BTreeMap<u64, (i64, u32, i64)>,
    /// Records by (partition, offset).
    pub positions: BTreeSet<(i32, i64)>,
}

impl TopicIndex {
    /// Indexes `records`.
    pub fn new(records: Vec<TopicRecord>) -> Self {
        let mut orders = BTreeMap::new();
        let mut positions = BTreeSet::new();
        for r in &records {
            orders.entry(r.order.order_id).or_insert((
                r.order.amount_cents,
                r.order.sku,
                r.order.quantity,
            ));
            positions.insert((r.partition, r.offset));
        }
        Self {
            records,
            orders,
            positions,
        }
    }
}

/// The topic's own checks: every acknowledged order stored, each user's orders in one
/// partition in placement order.
pub fn audit_topic(index: &TopicIndex, acked: &[u64]) -> TopicReport {
    let acked_set: BTreeSet<u64> = acked.iter().copied().collect();
    let acknowledged_missing = acked_set
        .iter()
        .filter(|id| !index.orders.contains_key(id))
        .count() as u64;
    let unacknowledged_present = index
        .orders
        .keys()
        .filter(|id| !acked_set.contains(id))
        .count() as u64;
    // Per user: the partition of the first record, and the placement order of first
    // occurrences along the log.
    let mut partition_of: HashMap<u32, i32> = HashMap::new();
    let mut bad_users: BTreeSet<u32> = BTreeSet::new();
    for r in &index.records {
        let p = *partition_of.entry(r.order.user_id).or_insert(r.partition);
        if p != r.partition {
            bad_users.insert(r.order.user_id);
        }
    }
    let rows: Vec<(u64, u32, u64)> = index
        .records
        .iter()
        .map(|r| (r.order.order_id, r.order.user_id, r.order.user_seq))
        .collect();
    bad_users.extend(users_out_of_order(rows.iter().copied(), true));
    TopicReport {
        records: index.records.len() as u64,
        distinct_orders: index.orders.len() as u64,
        duplicate_records: (index.records.len() - index.orders.len()) as u64,
        acknowledged_missing,
        unacknowledged_present,
        users_out_of_order: bad_users.len() as u64,
    }
}

/// Users some of whose orders were applied after a later order of theirs. Rows are
/// `(order_id, user_id, user_seq)` in the order they were applied; with `first_only`, a
/// repeat of an order already seen is ignored (a redelivery is not a reordering).
fn users_out_of_order(
    rows: impl Iterator<Item = (u64, u32, u64)>,
    first_only: bool,
) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut highest: HashMap<u32, u64> = HashMap::new();
    let mut bad = BTreeSet::new();
    for (order_id, user, seq) in rows {
        if first_only && !seen.insert(order_id) {
            continue;
        }
        let top = highest.entry(user).or_insert(0);
        if seq < *top {
            bad.insert(user);
        }
        *top = (*top).max(seq);
    }
    bad
}

/// Counts shared by every service: effects per order and per record, order, throughput.
fn base_report(
    kind: ServiceKind,
    guarantee: &str,
    rows: &[EffectRow],
    index: &TopicIndex,
    first_only: bool,
) -> ServiceReport {
    let mut per_order: BTreeMap<u64, u64> = BTreeMap::new();
    let mut per_record: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    for r in rows {
        *per_order.entry(r.order_id).or_default() += 1;
        *per_record.entry((r.partition, r.offset)).or_default() += 1;
    }
    let orders_never = index
        .orders
        .keys()
        .filter(|id| !per_order.contains_key(id))
        .count() as u64;
    let records_processed = index
        .positions
        .iter()
        .filter(|pos| per_record.contains_key(pos))
        .count();
    let records = index.positions.len().max(1);
    let lost = index.positions.len() - records_processed;
    let span_ms = match (
        rows.iter().map(|r| r.at_ms).min(),
        rows.iter().map(|r| r.at_ms).max(),
    ) {
        (Some(a), Some(b)) if b > a => (b - a) as f64,
        _ => 0.0,
    };
    let out_of_order = users_out_of_order(
        rows.iter().map(|r| (r.order_id, r.user_id, r.user_seq)),
        first_only,
    );
    ServiceReport {
        service: kind.name().to_string(),
        guarantee: guarantee.to_string(),
        effects: rows.len() as u64,
        orders_once: per_order.values().filter(|n| **n == 1).count() as u64,
        orders_more_than_once: per_order.values().filter(|n| **n > 1).count() as u64,
        orders_never,
        duplicate_effects: (rows.len() - per_order.len()) as u64,
        records_processed_twice: per_record.values().filter(|n| **n > 1).count() as u64,
        records_without_effect_percent: 100.0 * lost as f64 / records as f64,
        users_out_of_order: out_of_order.len() as u64,
        throughput_per_s: if span_ms > 0.0 {
            rows.len() as f64 * 1000.0 / span_ms
        } else {
            0.0
        },
        checks: Vec::new(),
        ok: true,
    }
}

/// Effects for orders that are not in the topic: must never happen.
fn phantom_check(rows: &[EffectRow], index: &TopicIndex) -> Check {
    let phantoms = rows
        .iter()
        .filter(|r| !index.orders.contains_key(&r.order_id))
        .count();
    Check {
        name: "every effect is of an order in the topic".into(),
        ok: phantoms == 0,
        detail: format!("{phantoms} effects of unknown orders"),
    }
}

/// Payment: each order charged exactly once, for its amount, users in order.
pub fn audit_payment(mode: PaymentMode, rows: &[EffectRow], index: &TopicIndex) -> ServiceReport {
    let mut r = base_report(ServiceKind::Payment, mode.name(), rows, index, false);
    let wrong_amount = rows
        .iter()
        .filter(|row| {
            index
                .orders
                .get(&row.order_id)
                .is_some_and(|(amount, _, _)| *amount != row.amount)
        })
        .count();
    let charged: i64 = rows.iter().map(|row| row.amount).sum();
    let owed: i64 = index.orders.values().map(|(amount, _, _)| amount).sum();
    r.checks.push(Check {
        name: "each charge is for its order's amount".into(),
        ok: wrong_amount == 0,
        detail: format!("{wrong_amount} charges of the wrong amount"),
    });
    r.checks.push(Check {
        name: "total charged equals total ordered".into(),
        ok: charged == owed,
        detail: format!("charged {} vs ordered {}", cents(charged), cents(owed)),
    });
    r.checks.push(phantom_check(rows, index));
    // Payment's requirement is exactly-once whatever mode it runs in: the at-least-once
    // mode exists to show that it is not enough.
    r.ok = r.orders_more_than_once == 0
        && r.orders_never == 0
        && r.users_out_of_order == 0
        && r.checks.iter().all(|c| c.ok);
    r.guarantee = format!("{} (needs exactly-once)", mode.name());
    if mode == PaymentMode::ExactlyOnce {
        r.guarantee = "exactly-once".into();
    }
    r
}

/// Inventory: each order reserved or refused exactly once; stock never negative and equal to
/// the initial stock minus what was reserved; each decision right for the stock at the time.
pub fn audit_inventory(
    rows: &[EffectRow],
    stock: &BTreeMap<u32, i64>,
    index: &TopicIndex,
) -> ServiceReport {
    let mut r = base_report(ServiceKind::Inventory, "exactly-once", rows, index, false);
    let mut reserved: BTreeMap<u32, i64> = BTreeMap::new();
    let mut replay: BTreeMap<u32, i64> = BTreeMap::new();
    let mut wrong_decisions = 0u64;
    let mut wrong_items = 0u64;
    let mut sold_out = 0u64;
    for row in rows {
        if let Some((_, sku, qty)) = index.orders.get(&row.order_id) {
            if (*sku, *qty) != (row.sku, row.quantity) {
                wrong_items += 1;
            }
        }
        let left = replay
            .entry(row.sku)
            .or_insert_with(|| initial_stock(row.sku));
        let enough = *left >= row.quantity;
        if row.reserved {
            *left -= row.quantity;
            *reserved.entry(row.sku).or_default() += row.quantity;
        } else {
            sold_out += 1;
        }
        if enough != row.reserved {
            wrong_decisions += 1;
        }
    }
    let negative = stock.values().filter(|q| **q < 0).count();
    let mismatched: Vec<String> = stock
        .iter()
        .filter(|(sku, q)| **q != initial_stock(**sku) - reserved.get(sku).copied().unwrap_or(0))
        .map(|(sku, q)| format!("sku {sku}: {q}"))
        .collect();
    let scarce_left: i64 = stock
        .iter()
        .filter(|(sku, _)| **sku < crate::order::SCARCE_SKUS)
        .map(|(_, q)| q)
        .sum();
    r.checks.push(Check {
        name: "stock = initial − reserved, for every product".into(),
        ok: mismatched.is_empty() && !stock.is_empty(),
        detail: if mismatched.is_empty() {
            format!("{} products match", stock.len())
        } else {
            format!("mismatched: {}", mismatched.join(", "))
        },
    });
    r.checks.push(Check {
        name: "stock never negative; refusals only when short".into(),
        ok: negative == 0 && wrong_decisions == 0,
        detail: format!(
            "{sold_out} orders refused as sold out, {wrong_decisions} wrong decisions, \
             {negative} negative products, {scarce_left} scarce units left"
        ),
    });
    r.checks.push(Check {
        name: "each reservation is for its order's product and quantity".into(),
        ok: wrong_items == 0,
        detail: format!("{wrong_items} wrong"),
    });
    r.checks.push(phantom_check(rows, index));
    r.ok = r.orders_more_than_once == 0
        && r.orders_never == 0
        && r.users_out_of_order == 0
        && r.checks.iter().all(|c| c.ok);
    r
}

/// Notification: every order told at least once (duplicates counted, allowed); first
/// notifications in each user's order.
pub fn audit_notification(rows: &[EffectRow], index: &TopicIndex) -> ServiceReport {
    let mut r = base_report(
        ServiceKind::Notification,
        "at-least-once",
        rows,
        index,
        true,
    );
    r.checks.push(phantom_check(rows, index));
    r.ok = r.orders_never == 0 && r.users_out_of_order == 0 && r.checks.iter().all(|c| c.ok);
    r
}

/// Analytics: no record counted twice (loss allowed, measured); counted records in order.
pub fn audit_analytics(rows: &[EffectRow], index: &TopicIndex) -> ServiceReport {
    let mut r = base_report(ServiceKind::Analytics, "at-most-once", rows, index, false);
    let revenue: i64 = rows.iter().map(|row| row.amount).sum();
    r.checks.push(Check {
        name: "no record counted twice".into(),
        ok: r.records_processed_twice == 0,
        detail: format!(
            "{} records counted twice; revenue counted {}",
            r.records_processed_twice,
            cents(revenue)
        ),
    });
    r.checks.push(phantom_check(rows, index));
    r.ok = r.users_out_of_order == 0 && r.checks.iter().all(|c| c.ok);
    r
}

/// The one-line reasons a service report is broken.
pub fn broken_lines(r: &ServiceReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.ok {
        return out;
    }
    let name = &r.service;
    if r.orders_more_than_once > 0 && r.service != "notification" && r.service != "analytics" {
        out.push(format!(
            "{name}: {} orders applied more than once",
            r.orders_more_than_once
        ));
    }
    if r.orders_never > 0 && r.service != "analytics" {
        out.push(format!("{name}: {} orders never applied", r.orders_never));
    }
    if r.users_out_of_order > 0 {
        out.push(format!(
            "{name}: {} users' orders applied out of order",
            r.users_out_of_order
        ));
    }
    for c in r.checks.iter().filter(|c| !c.ok) {
        out.push(format!("{name}: {} failed ({})", c.name, c.detail));
    }
    out
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, (c % 100).abs())
}

#[cfg(test)]
mod tests;
