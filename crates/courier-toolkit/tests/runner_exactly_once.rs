//! The exactly-once Kafka-to-Kafka runner against a real Courier broker: a copy job killed
//! mid-transaction several times and restarted leaves a `read_committed` output equal to its
//! input, in per-key order; a handler error aborts the batch, whose outputs never become
//! visible, and the batch is retried; a permanent failure is dead-lettered inside the
//! transaction; a second instance with the same transactional id fences the first.

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{committed, create_topic, read_all, wait_for, Broker, Read, RunnerTask};
use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use courier_toolkit::runner::dead_letter::{HEADER_ATTEMPTS, HEADER_ERROR, HEADER_OFFSET};
use courier_toolkit::runner::{
    handler_fn, ExactlyOnceKafkaSettings, Guarantee, HandlerError, HandlerOutput, Message,
    RetryPolicy, Runner, RunnerConfig,
};
use courier_toolkit::ToolkitError;

fn settings(batch_size: usize) -> ExactlyOnceKafkaSettings {
    ExactlyOnceKafkaSettings {
        batch_size,
        batch_linger: Duration::from_millis(50),
        retry: RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        ..Default::default()
    }
}

/// Produces `n` records over 10 keys, valued `<key>:<seq>`; returns them.
async fn produce(bootstrap: &str, topic: &str, n: usize) -> Vec<ProducerRecord> {
    let p = SafeProducer::new(&ProducerConfig::new(bootstrap)).expect("producer");
    let records: Vec<ProducerRecord> = (0..n)
        .map(|i| {
            let key = format!("k{}", i % 10);
            ProducerRecord::new(topic, Some(key.clone()), format!("{key}:{}", i / 10))
        })
        .collect();
    p.send_all(&records).await.expect("produced");
    records
}

/// Values per key, in read order.
fn per_key(reads: &[Read]) -> BTreeMap<Vec<u8>, Vec<String>> {
    let mut m: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for r in reads {
        m.entry(r.key.clone().unwrap_or_default())
            .or_default()
            .push(r.text());
    }
    m
}

/// Copies each input record to `out` (same key and value).
fn copy_to_out(m: &Message) -> HandlerOutput {
    HandlerOutput::records(vec![ProducerRecord {
        topic: "out".into(),
        key: m.key.clone(),
        value: m.value.clone(),
        ..Default::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_mid_transaction_and_restarted_outputs_its_input_exactly_once() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "in", 3).await;
    create_topic(&bootstrap, "out", 3).await;
    let input = produce(&bootstrap, "in", 300).await;
    let ends = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || read_all(&bootstrap, "in"))
            .await
            .expect("reader")
    };
    let cfg = RunnerConfig::new(
        &bootstrap,
        "copier",
        &["in"],
        Guarantee::ExactlyOnceKafka(settings(10)),
    )
    .instance_id("a");

    // Three lives killed mid-batch (after 37, 41 and 53 handler calls: never on a batch
    // boundary), then one that runs to the end.
    for hang_at in [37usize, 41, 53] {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = Arc::clone(&calls);
            handler_fn(move |m: Message| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == hang_at {
                        std::future::pending::<()>().await;
                    }
                    Ok(copy_to_out(&m))
                }
            })
        };
        let runner = Runner::new(cfg.clone(), handler).expect("runner");
        let task = RunnerTask::spawn(runner);
        wait_for(Duration::from_secs(20), "the hanging call", || {
            calls.load(Ordering::SeqCst) >= hang_at
        })
        .await;
        task.kill().await;
    }
    let handler = handler_fn(|m: Message| async move { Ok(copy_to_out(&m)) });
    let runner = Runner::new(cfg, handler).expect("runner");
    let task = RunnerTask::spawn(runner);
    let want_committed: Vec<Option<i64>> = (0..3)
        .map(|p| ends.iter().filter(|r| r.partition == p).count() as i64)
        .map(Some)
        .collect();
    wait_for(Duration::from_secs(25), "all input committed", || {
        committed(&bootstrap, "copier", "in", 3) == want_committed
    })
    .await;
    let stats = task.stop().await;
    assert!(stats.transactions_committed > 0);

    let out = tokio::task::spawn_blocking(move || read_all(&bootstrap, "out"))
        .await
        .expect("reader");
    assert_eq!(
        out.len(),
        input.len(),
        "read_committed output = input, no duplicates"
    );
    let want: BTreeMap<Vec<u8>, Vec<String>> = per_key(&ends);
    assert_eq!(per_key(&out), want, "same records, in per-key order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_aborts_the_batch_which_is_retried_and_committed_once() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "in", 1).await;
    create_topic(&bootstrap, "out", 1).await;
    produce(&bootstrap, "in", 10).await;
    let calls: Arc<Mutex<BTreeMap<i64, u32>>> = Arc::default();
    let handler = {
        let calls = Arc::clone(&calls);
        handler_fn(move |m: Message| {
            let n = {
                let mut c = calls.lock().unwrap();
                let n = c.entry(m.offset).or_default();
                *n += 1;
                *n
            };
            async move {
                match m.offset {
                    5 if n <= 2 => {
                        // Long enough for the outputs of offsets 0-4 to reach the log
                        // inside the transaction that is about to abort.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err(HandlerError::retriable("cache cold"))
                    }
                    8 => Err(HandlerError::permanent("schema mismatch")),
                    _ => Ok(copy_to_out(&m)),
                }
            }
        })
    };
    let cfg = RunnerConfig::new(
        &bootstrap,
        "retrier",
        &["in"],
        Guarantee::ExactlyOnceKafka(settings(10)),
    );
    let runner = Runner::new(cfg, handler).expect("runner");
    let task = RunnerTask::spawn(runner);
    wait_for(Duration::from_secs(20), "offset 10 committed", || {
        committed(&bootstrap, "retrier", "in", 1) == [Some(10)]
    })
    .await;
    let stats = task.stop().await;

    assert_eq!(
        calls.lock().unwrap()[&5],
        3,
        "offset 5 failed twice, then succeeded"
    );
    assert!(
        calls.lock().unwrap()[&0] >= 3,
        "the aborted batch was read again from its start"
    );
    assert_eq!(stats.transactions_aborted, 2);
    assert_eq!(stats.dead_lettered, 1);
    let (out, dlq) = tokio::task::spawn_blocking(move || {
        (read_all(&bootstrap, "out"), read_all(&bootstrap, "in.dlq"))
    })
    .await
    .expect("reader");
    let values: Vec<String> = out.iter().map(Read::text).collect();
    let want: Vec<String> = (0..10)
        .filter(|i| *i != 8)
        .map(|i| format!("k{i}:0"))
        .collect();
    assert_eq!(values, want, "aborted attempts left no visible output");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].text(), "k8:0");
    assert_eq!(dlq[0].header(HEADER_OFFSET).as_deref(), Some("8"));
    assert_eq!(
        dlq[0].header(HEADER_ERROR).as_deref(),
        Some("schema mismatch")
    );
    assert_eq!(dlq[0].header(HEADER_ATTEMPTS).as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_transactional_id_fences_the_first() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "in", 2).await;
    create_topic(&bootstrap, "out", 2).await;
    let cfg = RunnerConfig::new(
        &bootstrap,
        "twins",
        &["in"],
        Guarantee::ExactlyOnceKafka(settings(1)),
    )
    .instance_id("same");
    let copy = || handler_fn(|m: Message| async move { Ok(copy_to_out(&m)) });
    let older = Runner::new(cfg.clone(), copy()).expect("runner");
    let older = RunnerTask::spawn(older);
    produce(&bootstrap, "in", 10).await;
    wait_for(
        Duration::from_secs(20),
        "the first instance to commit",
        || {
            committed(&bootstrap, "twins", "in", 2)
                .iter()
                .flatten()
                .sum::<i64>()
                == 10
        },
    )
    .await;
    let newer = Runner::new(cfg, copy()).expect("runner");
    let newer = RunnerTask::spawn(newer);
    // Keep input coming to both partitions until the older instance tries a transaction.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    while !older.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the older instance was not fenced"
        );
        produce(&bootstrap, "in", 10).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = older.join().await;
    assert!(
        matches!(ended, Err(ToolkitError::TransactionFatal(_))),
        "fenced: {ended:?}"
    );
    assert!(!newer.is_finished(), "the newer instance keeps running");
    newer.stop().await;
}
