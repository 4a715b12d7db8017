//! The Order API: users place orders at the target rate; each order is published to
//! `order-events`, keyed by user, with the safe producer (acks=all, idempotence, retries).
//!
//! A user places one order at a time, like a customer at a checkout: the next order of a user
//! is sent only once the previous one is acknowledged, so per-user order holds even when a
//! send fails and is retried. Orders are *placed* at the target rate whatever the broker is
//! doing (they queue per user while it is down) and *acknowledged* when the broker has them.
//!
//! A send that fails (the delivery timeout ran out during a fault) is sent again with the same
//! idempotency key until it is acknowledged. The `producer-retry` fault adds what a real API
//! sees: a client that did not get its answer and retries an order that was in fact
//! acknowledged, a second record with the same key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::order::{Order, ATTEMPT_HEADER, KEY_HEADER, SKUS, TOPIC};
use crate::DemoError;

/// Orders a user may have waiting before placing more waits for the broker.
const USER_QUEUE: usize = 256;
/// How often the generator places the orders that are due.
const TICK: Duration = Duration::from_millis(5);
/// Pause before a failed send is tried again.
const RESEND_PAUSE: Duration = Duration::from_millis(200);

/// What the API is asked to do.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Where to publish.
    pub bootstrap: String,
    /// The run id stamped on every order.
    pub run: String,
    /// Orders per second.
    pub rate: u64,
    /// How long orders are placed.
    pub duration: Duration,
    /// Distinct users.
    pub users: u32,
    /// Fraction of acknowledged orders a client sends again (the producer-retry fault).
    pub client_retry_fraction: f64,
    /// Seeds the users, products and retries.
    pub seed: u64,
}

/// Live counters, for the progress display.
#[derive(Debug, Default)]
pub struct ApiProgress {
    /// Orders placed so far.
    pub placed: AtomicU64,
    /// Orders acknowledged so far.
    pub acked: AtomicU64,
}

/// What the API did.
#[derive(Debug, Clone, Default)]
pub struct ApiOutcome {
    /// Orders placed (ids 1..=placed).
    pub placed: u64,
    /// Ids of the orders the broker acknowledged (at least one send of each).
    pub acked: Vec<u64>,
    /// Sends that failed and were sent again.
    pub resends: u64,
    /// Acknowledged orders a client sent again (producer-retry fault).
    pub client_retries: u64,
    /// From the first order placed to the last acknowledgement.
    pub elapsed: Duration,
    /// Time from placing an order to its acknowledgement, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

/// One user's results.
#[derive(Default)]
struct UserOutcome {
    acked: Vec<u64>,
    resends: u64,
    client_retries: u64,
    latencies_us: Vec<u64>,
}

/// Places orders for `options.duration`, then waits until every one is acknowledged (or
/// `give_up` passes after the placing ends).
pub async fn run(
    options: &ApiOptions,
    progress: Arc<ApiProgress>,
    give_up: Duration,
) -> Result<ApiOutcome, DemoError> {
    let producer = Arc::new(SafeProducer::new(
        &ProducerConfig::new(&options.bootstrap)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "15000")
            .set("queue.buffering.max.messages", "1000000"),
    )?);
    let start = Instant::now();
    let deadline = start + options.duration + give_up;
    let mut senders = Vec::with_capacity(options.users as usize);
    let mut tasks = Vec::with_capacity(options.users as usize);
    for user in 0..options.users {
        let (tx, rx) = mpsc::channel::<(Order, Instant)>(USER_QUEUE);
        senders.push(tx);
        let seed = options.seed ^ (u64::from(user) << 32);
        tasks.push(tokio::spawn(user_loop(
            rx,
            Arc::clone(&producer),
            Arc::clone(&progress),
            options.client_retry_fraction,
            seed,
            deadline,
        )));
    }
    let placed = generate(options, &senders, &progress, start).await;
    drop(senders);
    let mut outcome = ApiOutcome {
        placed,
        ..ApiOutcome::default()
    };
    for t in tasks {
        let u = t
            .await
            .map_err(|e| DemoError::Run(format!("an Order API user task failed: {e}")))?;
        outcome.acked.extend(u.acked);
        outcome.resends += u.resends;
        outcome.client_retries += u.client_retries;
        outcome.latencies_us.extend(u.latencies_us);
    }
    outcome.elapsed = start.elapsed();
    outcome.acked.sort_unstable();
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

/// Places `rate` orders per second for the duration, each for a random user; returns how
/// many.
async fn generate(
    options: &ApiOptions,
    users: &[mpsc::Sender<(Order, Instant)>],
    progress: &ApiProgress,
    start: Instant,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut user_seq = vec![0u64; users.len()];
    let mut placed = 0u64;
    let total = options
        .rate
        .saturating_mul(options.duration.as_millis() as u64)
        / 1000;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while placed < total {
        tick.tick().await;
        let due = (options.rate as f64 * start.elapsed().as_secs_f64()) as u64;
        while placed < due.min(total) {
            let user = rng.gen_range(0..users.len());
            user_seq[user] += 1;
            placed += 1;
            let sku = rng.gen_range(0..SKUS);
            let quantity = rng.gen_range(1..=3i64);
            let order = Order {
                run: options.run.clone(),
                order_id: placed,
                user_id: user as u32,
                user_seq: user_seq[user],
                sku,
                quantity,
                amount_cents: quantity * price_cents(sku),
            };
            // A full queue means the broker is far behind: placing waits (bounded memory).
            if users[user].send((order, Instant::now())).await.is_err() {
                return placed;
            }
            progress.placed.store(placed, Ordering::Relaxed);
        }
    }
    placed
}

/// The price of a product.
pub fn price_cents(sku: u32) -> i64 {
    499 + 250 * i64::from(sku % 20)
}

/// One user: sends its orders one at a time, each until acknowledged.
async fn user_loop(
    mut orders: mpsc::Receiver<(Order, Instant)>,
    producer: Arc<SafeProducer>,
    progress: Arc<ApiProgress>,
    client_retry_fraction: f64,
    seed: u64,
    deadline: Instant,
) -> UserOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = UserOutcome::default();
    while let Some((order, placed_at)) = orders.recv().await {
        let mut attempt = 1u32;
        loop {
            match producer.send(&record(&order, attempt)).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(order = order.order_id, error = %e, "send failed; sending again");
                    out.resends += 1;
                    attempt += 1;
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(order = order.order_id, error = %e, "giving up on an order");
                    attempt = 0;
                    break;
                }
            }
        }
        if attempt == 0 {
            continue;
        }
        out.acked.push(order.order_id);
        out.latencies_us
            .push(placed_at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
        progress.acked.fetch_add(1, Ordering::Relaxed);
        if client_retry_fraction > 0.0 && rng.gen_bool(client_retry_fraction.min(1.0)) {
            // The client never saw the answer and retries: same order, same key.
            if producer.send(&record(&order, attempt + 1)).await.is_ok() {
                out.client_retries += 1;
            }
        }
    }
    out
}

/// The record of one send of `order`.
fn record(order: &Order, attempt: u32) -> ProducerRecord {
    ProducerRecord::new(TOPIC, Some(order.record_key()), order.encode())
        .header(KEY_HEADER, order.idempotency_key())
        .header(ATTEMPT_HEADER, attempt.to_string())
}
