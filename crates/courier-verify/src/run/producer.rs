//! Producer processes: plain sends (acks=0, acks=all, idempotent) and transactions (some
//! aborted on purpose).
//!
//! Each producer client serves several logical processes, each running one operation at a
//! time (a history's rule) — so one client has several sends in flight, as a real service
//! does, which is what exercises the idempotent producer's pipelining. A client crash drops
//! the client mid-flight: its processes' open operations end as `info` (they may or may not
//! have happened) and new process ids replace them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde_json::Value;

use super::recorder::micro;
use super::{Mode, QuietContext, Shared};

pub(super) type QuietProducer = FutureProducer<QuietContext>;

/// How long one send may take before the client gives up (an `info` outcome).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn config(shared: &Shared, mode: Mode, client: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &shared.bootstrap)
        .set("client.id", client)
        .set("linger.ms", "2")
        .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
        .set("request.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("socket.connection.setup.timeout.ms", "3000");
    match mode {
        Mode::Acks0 => c.set("acks", "0").set("enable.idempotence", "false"),
        Mode::AcksAll => c.set("acks", "all").set("enable.idempotence", "false"),
        // In rpw mode the plain producers are idempotent; the rpw processes are transactional.
        Mode::Idempotent | Mode::Rpw => c.set("acks", "all").set("enable.idempotence", "true"),
        Mode::Transactional => c
            .set("acks", "all")
            .set("transactional.id", format!("{client}-txn"))
            .set("transaction.timeout.ms", "10000"),
    };
    c
}

/// The outcome of a failed send: `fail` only when the record certainly never reached the
/// broker, `info` otherwise.
fn failure_kind(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull)
        | Some(RDKafkaErrorCode::MessageSizeTooLarge)
        | Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        | Some(RDKafkaErrorCode::PurgeQueue) => "fail",
        _ => "info",
    }
}

/// Runs one plain producer client with `slots` processes until the run stops.
pub async fn run_plain(shared: Arc<Shared>, worker: usize, slots: usize) {
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (0x5eed_0000 + worker as u64));
    while !shared.stopping() {
        let client = format!("verify-producer-{worker}-{}", rng.gen::<u32>());
        let producer: QuietProducer =
            match config(&shared, shared.mode, &client).create_with_context(QuietContext) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "creating a producer failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
        let generation = shared.crash_generation(worker);
        let mut tasks = Vec::with_capacity(slots);
        for slot in 0..slots {
            let shared = Arc::clone(&shared);
            let producer = producer.clone();
            let seed = rng.gen::<u64>();
            tasks.push(tokio::spawn(async move {
                slot_loop(shared, producer, worker, generation, seed).await;
                slot
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        // Either the run is stopping or the client "crashed": drop it without flushing.
        drop(producer);
    }
}

async fn slot_loop(
    shared: Arc<Shared>,
    producer: QuietProducer,
    worker: usize,
    generation: u64,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = shared.recorder.new_process();
    let pause = shared.op_interval();
    loop {
        if shared.stopping() {
            return;
        }
        if shared.crash_generation(worker) != generation {
            shared
                .recorder
                .record(process, "info", "crash", Value::Null);
            return;
        }
        let key = rng.gen_range(0..shared.keys);
        let value = shared.next_value(key);
        let key_name = Shared::key_name(key);
        shared.recorder.record(
            process,
            "invoke",
            "send",
            Value::Array(vec![micro("send", &key_name, None, value)]),
        );
        let payload = value.to_string();
        let record = FutureRecord::to(&shared.topic)
            .partition(key as i32)
            .key(&key_name)
            .payload(&payload);
        let sent = tokio::select! {
            r = producer.send(record, Timeout::After(SEND_TIMEOUT)) => Some(r),
            _ = shared.crashed(worker, generation) => None,
        };
        let counters = &shared.recorder.counters;
        match sent {
            Some(Ok(delivery)) => {
                let offset = (delivery.offset >= 0).then_some(delivery.offset);
                counters.ok.fetch_add(1, Ordering::Relaxed);
                shared.recorder.record(
                    process,
                    "ok",
                    "send",
                    Value::Array(vec![micro("send", &key_name, offset, value)]),
                );
            }
            Some(Err((e, _))) => {
                let kind = failure_kind(&e);
                if kind == "fail" {
                    counters.fail.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.info.fetch_add(1, Ordering::Relaxed);
                }
                shared.recorder.record(
                    process,
                    kind,
                    "send",
                    Value::Array(vec![micro("send", &key_name, None, value)]),
                );
            }
            None => {
                counters.info.fetch_add(1, Ordering::Relaxed);
                shared.recorder.record(
                    process,
                    "info",
                    "send",
                    Value::Array(vec![micro("send", &key_name, None, value)]),
                );
                shared
                    .recorder
                    .record(process, "info", "crash", Value::Null);
                return;
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Runs one transactional producer (one process at a time) on a blocking thread until the
/// run stops: each operation is a transaction of 1-4 sends, aborted on purpose at the
/// configured rate. A committed transaction is `ok` with its offsets, an aborted one `fail`,
/// one whose commit outcome is unknown `info`.
pub fn run_transactional(shared: Arc<Shared>, worker: usize) {
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (0x7a11_0000 + worker as u64));
    let client = format!("verify-txn-{worker}");
    let pause = shared.op_interval();
    while !shared.stopping() {
        let producer: QuietProducer =
            match config(&shared, Mode::Transactional, &client).create_with_context(QuietContext) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "creating a transactional producer failed");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
        if let Err(e) = producer.init_transactions(Timeout::After(Duration::from_secs(15))) {
            tracing::debug!(error = %e, "init_transactions failed; retrying");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let process = shared.recorder.new_process();
        let generation = shared.crash_generation(worker);
        loop {
            if shared.stopping() {
                return;
            }
            if shared.crash_generation(worker) != generation {
                shared
                    .recorder
                    .record(process, "info", "crash", Value::Null);
                break;
            }
            match transaction(&shared, &producer, process, &mut rng) {
                TxnEnd::Continue => {}
                TxnEnd::Recreate => break,
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        drop(producer);
    }
}

enum TxnEnd {
    Continue,
    Recreate,
}

fn transaction(
    shared: &Shared,
    producer: &QuietProducer,
    process: i64,
    rng: &mut StdRng,
) -> TxnEnd {
    let n = rng.gen_range(1..=4);
    let sends: Vec<(usize, i64)> = (0..n)
        .map(|_| {
            let key = rng.gen_range(0..shared.keys);
            (key, shared.next_value(key))
        })
        .collect();
    let ops = |offsets: &[Option<i64>]| {
        Value::Array(
            sends
                .iter()
                .zip(offsets)
                .map(|((k, v), o)| micro("send", &Shared::key_name(*k), *o, *v))
                .collect(),
        )
    };
    let none = vec![None; sends.len()];
    let counters = &shared.recorder.counters;
    shared.recorder.record(process, "invoke", "txn", ops(&none));
    let timeout = Timeout::After(Duration::from_secs(10));
    if let Err(e) = producer.begin_transaction() {
        counters.fail.fetch_add(1, Ordering::Relaxed);
        shared.recorder.record(process, "fail", "txn", ops(&none));
        tracing::debug!(error = %e, "begin_transaction failed");
        return TxnEnd::Recreate;
    }
    let mut deliveries = Vec::with_capacity(sends.len());
    for (key, value) in &sends {
        let key_name = Shared::key_name(*key);
        let payload = value.to_string();
        let record = FutureRecord::to(&shared.topic)
            .partition(*key as i32)
            .key(&key_name)
            .payload(&payload);
        match producer.send_result(record) {
            Ok(f) => deliveries.push(Some(f)),
            Err(_) => deliveries.push(None),
        }
    }
    let mut offsets = Vec::with_capacity(sends.len());
    let mut send_failed = false;
    for d in deliveries {
        let got = match d {
            Some(f) => block_on(f),
            None => None,
        };
        match got {
            Some(Ok(Ok(delivery))) => offsets.push(Some(delivery.offset)),
            _ => {
                send_failed = true;
                offsets.push(None);
            }
        }
    }
    let value = ops(&offsets);
    // Records the transaction's outcome; an unknown outcome also ends the process (its
    // producer is recreated, and with it a new process id).
    let finish = |kind: &'static str| {
        let counter = match kind {
            "ok" => &counters.ok,
            "fail" => &counters.fail,
            _ => &counters.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        shared.recorder.record(process, kind, "txn", value.clone());
        if kind == "info" {
            shared
                .recorder
                .record(process, "info", "crash", Value::Null);
            TxnEnd::Recreate
        } else {
            TxnEnd::Continue
        }
    };
    // An abort that succeeds is a definite failure; one that fails leaves it unknown.
    let abort = |why: &str| match producer.abort_transaction(timeout) {
        Ok(()) => finish("fail"),
        Err(e) => {
            tracing::debug!(error = %e, why, "abort_transaction failed");
            finish("info")
        }
    };
    if send_failed || rng.gen_bool(shared.abort_rate) {
        return abort("deliberate or after a failed send");
    }
    match producer.commit_transaction(timeout) {
        Ok(()) => finish("ok"),
        // Not committed: abort, and the outcome is a definite failure.
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => abort("commit refused"),
        Err(e) => {
            // Retriable or fatal: the commit may or may not have happened.
            tracing::debug!(error = %e, "commit_transaction failed");
            finish("info")
        }
    }
}

/// Waits for a delivery future on this blocking thread (one of the runtime's
/// `spawn_blocking` threads, so the handle is there).
pub(super) fn block_on<F: std::future::Future>(f: F) -> Option<F::Output> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.block_on(f))
}
