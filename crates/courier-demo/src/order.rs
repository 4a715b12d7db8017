//! The `OrderPlaced` event: what the Order API publishes and every service consumes.
//!
//! The record key is the user id, so all of a user's orders land in one partition, in the
//! order the user placed them (the reference's per-user ordering). The value is JSON. The
//! `idempotency-key` header names the order across resends: a client that retries an order
//! (its answer was lost) sends a second record with the same key, and the exactly-once
//! services skip it.

use serde::{Deserialize, Serialize};

/// The topic the Order API publishes to.
pub const TOPIC: &str = "order-events";
/// Partitions of [`TOPIC`] when the demo creates it.
pub const PARTITIONS: i32 = 8;
/// The header carrying an order's idempotency key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The header saying which send of the order a record is (1 first, 2+ a client retry).
pub const ATTEMPT_HEADER: &str = "attempt";
/// Distinct products.
pub const SKUS: u32 = 50;
/// Products with a small stock, so that some orders find them sold out and the "never
/// negative" rule is exercised; the others are stocked for any demo run.
pub const SCARCE_SKUS: u32 = 5;

/// One order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The demo run that placed it (a `--bootstrap` broker may hold earlier runs' orders).
    pub run: String,
    /// Unique within the run, from 1.
    pub order_id: u64,
    /// The customer; the record key.
    pub user_id: u32,
    /// The user's order number, from 1: per-user order is judged by it.
    pub user_seq: u64,
    /// The product.
    pub sku: u32,
    /// Units ordered, 1–3.
    pub quantity: i64,
    /// The charge.
    pub amount_cents: i64,
}

impl Order {
    /// The record key: the user.
    pub fn record_key(&self) -> Vec<u8> {
        user_key(self.user_id)
    }

    /// The idempotency key: run and order id.
    pub fn idempotency_key(&self) -> String {
        format!("order-{}-{}", self.run, self.order_id)
    }

    /// The JSON value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an Order always serialises")
    }

    /// Parses a record value; `None` if it is not an order.
    pub fn decode(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

/// The record key of `user_id`'s orders.
pub fn user_key(user_id: u32) -> Vec<u8> {
    format!("user-{user_id}").into_bytes()
}

/// The stock of `sku` when the demo starts: small for the scarce products (a few hundred
/// units, sold out within seconds at 10k orders/s), ample for the rest.
pub fn initial_stock(sku: u32) -> i64 {
    if sku < SCARCE_SKUS {
        200 + 100 * i64::from(sku)
    } else {
        100_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keys_by_user() {
        let o = Order {
            run: "r1".into(),
            order_id: 7,
            user_id: 42,
            user_seq: 3,
            sku: 1,
            quantity: 2,
            amount_cents: 1999,
        };
        assert_eq!(Order::decode(&o.encode()), Some(o.clone()));
        assert_eq!(o.record_key(), b"user-42");
        assert_eq!(o.idempotency_key(), "order-r1-7");
        assert_eq!(Order::decode(b"not json"), None);
    }

    #[test]
    fn scarce_products_have_small_stock() {
        assert!(initial_stock(0) < 1_000);
        assert!(initial_stock(SCARCE_SKUS) > 1_000_000);
    }
}
