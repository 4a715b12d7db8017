//! The audit on hand-made data: each broken guarantee is caught, and a clean run passes.

use super::*;
use crate::order::Order;

fn order(order_id: u64, user_id: u32, user_seq: u64) -> Order {
    Order {
        run: "r".into(),
        order_id,
        user_id,
        user_seq,
        sku: 7,
        quantity: 2,
        amount_cents: 1000 + order_id as i64,
    }
}

/// Three orders of user 1 and one of user 2, order 2 stored twice (a client retry).
fn topic() -> TopicIndex {
    let recs = [
        (0, 0, 1, 1, 1),
        (0, 1, 2, 1, 2),
        (0, 2, 2, 1, 2),
        (0, 3, 3, 1, 3),
        (1, 0, 4, 2, 1),
    ];
    TopicIndex::new(
        recs.iter()
            .map(|&(p, o, id, user, seq)| TopicRecord {
                partition: p,
                offset: o,
                order: order(id, user, seq),
            })
            .collect(),
    )
}

fn effect(index: &TopicIndex, partition: i32, offset: i64) -> EffectRow {
    let r = index
        .records
        .iter()
        .find(|r| (r.partition, r.offset) == (partition, offset))
        .expect("a record of the topic");
    EffectRow {
        order_id: r.order.order_id,
        user_id: r.order.user_id,
        user_seq: r.order.user_seq,
        partition,
        offset,
        at_ms: 1_000 + offset,
        amount: r.order.amount_cents,
        sku: r.order.sku,
        quantity: r.order.quantity,
        reserved: true,
    }
}

fn rows(index: &TopicIndex, positions: &[(i32, i64)]) -> Vec<EffectRow> {
    positions
        .iter()
        .map(|&(p, o)| effect(index, p, o))
        .collect()
}

#[test]
fn topic_counts_duplicates_and_missing_acknowledged_orders() {
    let t = audit_topic(&topic(), &[1, 2, 3, 4, 5]);
    assert_eq!(
        (t.records, t.distinct_orders, t.duplicate_records),
        (5, 4, 1)
    );
    assert_eq!(
        t.acknowledged_missing, 1,
        "order 5 was acknowledged and is not stored"
    );
    assert_eq!(t.users_out_of_order, 0);
}

#[test]
fn payment_exactly_once_passes_and_a_double_charge_fails() {
    let idx = topic();
    // The retry record (0, 2) is skipped as a duplicate: one charge per order.
    let good = audit_payment(
        PaymentMode::ExactlyOnce,
        &rows(&idx, &[(0, 0), (0, 1), (0, 3), (1, 0)]),
        &idx,
    );
    assert!(good.ok, "{good:?}");
    assert_eq!(
        (
            good.orders_once,
            good.orders_more_than_once,
            good.orders_never
        ),
        (4, 0, 0)
    );
    let double = audit_payment(
        PaymentMode::ExactlyOnce,
        &rows(&idx, &[(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]),
        &idx,
    );
    assert!(!double.ok);
    assert_eq!(double.orders_more_than_once, 1);
    assert!(broken_lines(&double)[0].contains("1 orders applied more than once"));
    let never = audit_payment(
        PaymentMode::ExactlyOnce,
        &rows(&idx, &[(0, 0), (0, 1), (1, 0)]),
        &idx,
    );
    assert!(!never.ok);
    assert_eq!(never.orders_never, 1);
}

#[test]
fn payment_of_the_wrong_amount_fails() {
    let idx = topic();
    let mut r = rows(&idx, &[(0, 0), (0, 1), (0, 3), (1, 0)]);
    r[0].amount += 1;
    let rep = audit_payment(PaymentMode::ExactlyOnce, &r, &idx);
    assert!(!rep.ok);
    assert!(
        rep.checks
            .iter()
            .any(|c| !c.ok && c.name.contains("amount")),
        "{rep:?}"
    );
}

#[test]
fn out_of_order_application_fails_and_redelivery_is_not_reordering() {
    let idx = topic();
    let swapped = audit_inventory(
        &rows(&idx, &[(0, 0), (0, 3), (0, 1), (1, 0)]),
        &BTreeMap::from([(7, initial_stock(7) - 6)]),
        &idx,
    );
    assert_eq!(swapped.users_out_of_order, 1);
    assert!(!swapped.ok);
    // Notification: a crash redelivered orders 2 and 3 after they were sent: allowed.
    let n = audit_notification(
        &rows(
            &idx,
            &[
                (0, 0),
                (0, 1),
                (0, 2),
                (0, 3),
                (0, 1),
                (0, 2),
                (0, 3),
                (1, 0),
            ],
        ),
        &idx,
    );
    assert!(n.ok, "{n:?}");
    assert_eq!(n.users_out_of_order, 0);
    assert_eq!(n.duplicate_effects, 4);
    let missing = audit_notification(&rows(&idx, &[(0, 0), (0, 1), (1, 0)]), &idx);
    assert!(!missing.ok);
    assert_eq!(missing.orders_never, 1);
}

#[test]
fn inventory_stock_must_equal_initial_minus_reserved() {
    let idx = topic();
    let applied = rows(&idx, &[(0, 0), (0, 1), (0, 3), (1, 0)]);
    let right = BTreeMap::from([(7, initial_stock(7) - 8)]);
    assert!(audit_inventory(&applied, &right, &idx).ok);
    let wrong = BTreeMap::from([(7, initial_stock(7) - 10)]);
    let rep = audit_inventory(&applied, &wrong, &idx);
    assert!(!rep.ok);
    assert!(
        rep.checks
            .iter()
            .any(|c| !c.ok && c.name.starts_with("stock =")),
        "{rep:?}"
    );
}

#[test]
fn inventory_refusal_with_stock_left_is_a_wrong_decision() {
    let idx = topic();
    let mut applied = rows(&idx, &[(0, 0), (0, 1), (0, 3), (1, 0)]);
    applied[1].reserved = false;
    let stock = BTreeMap::from([(7, initial_stock(7) - 6)]);
    let rep = audit_inventory(&applied, &stock, &idx);
    assert!(!rep.ok);
    assert!(
        rep.checks
            .iter()
            .any(|c| !c.ok && c.detail.contains("1 wrong decisions")),
        "{rep:?}"
    );
}

#[test]
fn analytics_may_lose_records_but_never_count_one_twice() {
    let idx = topic();
    let lossy = audit_analytics(&rows(&idx, &[(0, 0), (0, 1), (1, 0)]), &idx);
    assert!(lossy.ok, "{lossy:?}");
    assert!((lossy.records_without_effect_percent - 40.0).abs() < 1e-9);
    let twice = audit_analytics(&rows(&idx, &[(0, 0), (0, 1), (0, 1), (1, 0)]), &idx);
    assert!(!twice.ok);
    assert_eq!(twice.records_processed_twice, 1);
}
