//! Read-process-write processes (mode `rpw`): each consumes the topic in one consumer group
//! (read_committed, no auto-commit) and, for every batch it polls, runs one transaction that
//! sends one new value per record read (to a random key) and commits the batch's offsets to
//! the group inside the transaction — Kafka's exactly-once pattern.
//!
//! The transaction is recorded as one `txn` operation holding its polls and its sends, so the
//! checker sees the write-read dependencies between transactions (G1c), reads of aborted
//! writes, and every write's fate. A deliberately aborted transaction (or one aborted after an
//! error) rewinds the consumer to the batch's first offsets, so a later transaction reads the
//! batch again.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::consumer::{self, VerifyConsumer};
use super::producer::{self, QuietProducer};
use super::recorder::micro;
use super::{Mode, QuietContext, Shared};

/// Largest batch one transaction handles.
const BATCH: usize = 8;

/// What one polled batch holds: (key index, offset, value) in read order.
type Batch = Vec<(usize, i64, i64)>;

/// Polls up to [`BATCH`] records for about 100 ms; records rebalances seen meanwhile as
/// `assign` operations of `process`.
fn poll_batch(shared: &Shared, c: &VerifyConsumer, process: i64) -> Batch {
    let mut batch = Batch::new();
    let deadline = Instant::now() + Duration::from_millis(100);
    while batch.len() < BATCH && Instant::now() < deadline {
        let polled = c.poll(Duration::from_millis(50));
        let events = c.context().take();
        if !events.is_empty() {
            consumer::record_assignments(shared, process, events);
        }
        if let Some(Ok(m)) = polled {
            let value = m
                .payload()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|s| s.parse::<i64>().ok());
            if let Some(v) = value {
                batch.push((m.partition() as usize, m.offset(), v));
            }
        }
    }
    batch
}

/// Runs one read-process-write process until the run stops. Runs on a blocking thread.
pub fn run(shared: Arc<Shared>, worker: usize, group: String) {
    let slot = shared.producer_workers + worker;
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (0x0bb0_0000 + worker as u64));
    let client = format!("verify-rpw-{worker}");
    let pause = shared.op_interval();
    while !shared.stopping() {
        let process = shared.recorder.new_process();
        let producer: QuietProducer = match producer::config(&shared, Mode::Transactional, &client)
            .create_with_context(QuietContext)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "creating a transactional producer failed");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if producer
            .init_transactions(Timeout::After(Duration::from_secs(15)))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // After init_transactions: a predecessor's open transaction is aborted before this
        // process reads the group's committed offsets.
        let c = match consumer::create(&shared, Some(&group), &format!("{client}-{process}")) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "creating a consumer failed");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if c.subscribe(&[shared.topic.as_str()]).is_err() {
            continue;
        }
        let generation = shared.crash_generation(slot);
        loop {
            if shared.stopping() {
                return;
            }
            if shared.crash_generation(slot) != generation {
                shared
                    .recorder
                    .record(process, "info", "crash", Value::Null);
                break;
            }
            let batch = poll_batch(&shared, &c, process);
            if batch.is_empty() {
                continue;
            }
            if !transaction(&shared, &producer, &c, process, &batch, &mut rng) {
                break;
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }
}

/// One transaction over `batch`. Returns false when the process must start over (an
/// unknown outcome: its clients are recreated).
fn transaction(
    shared: &Shared,
    producer: &QuietProducer,
    c: &VerifyConsumer,
    process: i64,
    batch: &Batch,
    rng: &mut StdRng,
) -> bool {
    let sends: Vec<(usize, i64)> = batch
        .iter()
        .map(|_| {
            let key = rng.gen_range(0..shared.keys);
            (key, shared.next_value(key))
        })
        .collect();
    let polls: Vec<Value> = batch
        .iter()
        .map(|(k, o, v)| micro("poll", &Shared::key_name(*k), Some(*o), *v))
        .collect();
    let ops = |offsets: &[Option<i64>]| {
        let mut all = polls.clone();
        all.extend(
            sends
                .iter()
                .zip(offsets)
                .map(|((k, v), o)| micro("send", &Shared::key_name(*k), *o, *v)),
        );
        Value::Array(all)
    };
    let rec = &shared.recorder;
    rec.record(process, "invoke", "txn", ops(&vec![None; sends.len()]));
    let timeout = Timeout::After(Duration::from_secs(10));

    // The batch's first offsets (to rewind to) and next offsets (to commit).
    let mut first: BTreeMap<usize, i64> = BTreeMap::new();
    let mut next: BTreeMap<usize, i64> = BTreeMap::new();
    for (k, o, _) in batch {
        first
            .entry(*k)
            .and_modify(|f| *f = (*f).min(*o))
            .or_insert(*o);
        next.entry(*k)
            .and_modify(|n| *n = (*n).max(o + 1))
            .or_insert(o + 1);
    }
    let rewind = || {
        for (k, o) in &first {
            // Revoked meanwhile: its next owner starts at the committed offset anyway.
            let _ = c.seek(
                &shared.topic,
                *k as i32,
                Offset::Offset(*o),
                Duration::from_secs(5),
            );
        }
    };
    let finish = |kind: &'static str, offsets: &[Option<i64>]| {
        let counter = match kind {
            "ok" => &rec.counters.ok,
            "fail" => &rec.counters.fail,
            _ => &rec.counters.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        rec.record(process, kind, "txn", ops(offsets));
        if kind == "info" {
            rec.record(process, "info", "crash", Value::Null);
            false
        } else {
            true
        }
    };
    let none = vec![None; sends.len()];
    if producer.begin_transaction().is_err() {
        return finish("info", &none);
    }
    let mut offsets = Vec::with_capacity(sends.len());
    let mut failed = false;
    let deliveries: Vec<_> = sends
        .iter()
        .map(|(k, v)| {
            let key = Shared::key_name(*k);
            let payload = v.to_string();
            let record = FutureRecord::to(&shared.topic)
                .partition(*k as i32)
                .key(&key)
                .payload(&payload);
            producer.send_result(record).ok()
        })
        .collect();
    for d in deliveries {
        match d.and_then(producer::block_on) {
            Some(Ok(Ok(delivery))) => offsets.push(Some(delivery.offset)),
            _ => {
                failed = true;
                offsets.push(None);
            }
        }
    }
    let abort = |offsets: &[Option<i64>]| match producer.abort_transaction(timeout) {
        Ok(()) => {
            rewind();
            finish("fail", offsets)
        }
        Err(_) => finish("info", offsets),
    };
    if failed || rng.gen_bool(shared.abort_rate) {
        return abort(&offsets);
    }
    let mut tpl = TopicPartitionList::new();
    for (k, o) in &next {
        let _ = tpl.add_partition_offset(&shared.topic, *k as i32, Offset::Offset(*o));
    }
    let sent = c
        .group_metadata()
        .ok_or_else(|| KafkaError::Subscription("no group metadata".into()))
        .and_then(|meta| producer.send_offsets_to_transaction(&tpl, &meta, timeout));
    if let Err(e) = sent {
        tracing::debug!(error = %e, "send_offsets_to_transaction failed");
        return abort(&offsets);
    }
    match producer.commit_transaction(timeout) {
        Ok(()) => finish("ok", &offsets),
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => abort(&offsets),
        Err(e) => {
            tracing::debug!(error = %e, "commit_transaction failed");
            finish("info", &offsets)
        }
    }
}
