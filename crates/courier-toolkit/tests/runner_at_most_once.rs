//! The at-most-once runner against a real Courier broker: a batch's offsets are committed
//! before the handler runs on any of its messages, so a runner killed while processing loses
//! at most the rest of that batch (committed, not processed), exactly the message it was
//! processing with batches of one, and nothing is ever delivered twice; a message whose
//! handler fails is not seen again.

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{committed, create_topic, wait_for, Broker, RunnerTask};
use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use courier_toolkit::runner::{
    handler_fn, AtMostOnceSettings, Guarantee, HandlerError, HandlerOutput, Message, Runner,
    RunnerConfig,
};

/// (partition, offset, value) of a handler call.
type Call = (i32, i64, String);

/// A handler that records each call in `calls`, fails on `fail-*` values and hangs on
/// `crash` until its runner is killed.
fn recording(calls: &Arc<Mutex<Vec<Call>>>) -> impl courier_toolkit::runner::Handler {
    let calls = Arc::clone(calls);
    handler_fn(move |m: Message| {
        let v = String::from_utf8(m.value.clone().unwrap_or_default()).unwrap();
        calls
            .lock()
            .unwrap()
            .push((m.partition, m.offset, v.clone()));
        async move {
            if v == "crash" {
                std::future::pending::<()>().await;
            }
            if v.starts_with("fail-") {
                return Err(HandlerError::retriable("downstream unavailable"));
            }
            Ok(HandlerOutput::none())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_commit_loses_exactly_the_committed_unprocessed_message() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "clicks", 2).await;
    let values: Vec<String> = (0..30)
        .map(|i| match i {
            7 | 19 => format!("fail-{i}"),
            12 => "crash".to_string(),
            _ => format!("v{i}"),
        })
        .collect();
    let p = SafeProducer::new(&ProducerConfig::new(&bootstrap)).expect("producer");
    let records: Vec<ProducerRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| ProducerRecord::new("clicks", Some(format!("k{}", i % 4)), v.clone()))
        .collect();
    let deliveries = p.send_all(&records).await.expect("produced");
    let crash_at = (deliveries[12].partition, deliveries[12].offset);
    let ends: Vec<i64> = (0..2)
        .map(|part| deliveries.iter().filter(|d| d.partition == part).count() as i64)
        .collect();
    // Batches of one: each message committed just before it is processed.
    let one_by_one = Guarantee::AtMostOnce(AtMostOnceSettings {
        batch_size: 1,
        ..AtMostOnceSettings::default()
    });
    let cfg = RunnerConfig::new(&bootstrap, "analytics", &["clicks"], one_by_one);

    // First life: killed while processing "crash".
    let first: Arc<Mutex<Vec<Call>>> = Arc::default();
    let runner = Runner::new(cfg.clone(), recording(&first)).expect("runner");
    let task = RunnerTask::spawn(runner);
    wait_for(Duration::from_secs(20), "the crash message", || {
        first.lock().unwrap().iter().any(|c| c.2 == "crash")
    })
    .await;
    task.kill().await;
    let after_crash = committed(&bootstrap, "analytics", "clicks", 2);
    assert!(
        after_crash[crash_at.0 as usize].is_some_and(|c| c > crash_at.1),
        "committed past the crash message before processing it: {after_crash:?}"
    );

    // Second life: resumes after it.
    let second: Arc<Mutex<Vec<Call>>> = Arc::default();
    let runner = Runner::new(cfg, recording(&second)).expect("runner");
    let task = RunnerTask::spawn(runner);
    wait_for(Duration::from_secs(20), "every offset committed", || {
        committed(&bootstrap, "analytics", "clicks", 2)
            == ends.iter().map(|e| Some(*e)).collect::<Vec<_>>()
    })
    .await;
    let stats = task.stop().await;

    let first = first.lock().unwrap().clone();
    let second = second.lock().unwrap().clone();
    let seen: Vec<&Call> = first.iter().chain(&second).collect();
    let unique: BTreeSet<(i32, i64)> = seen.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(
        seen.len(),
        unique.len(),
        "nothing delivered twice: {seen:?}"
    );
    assert_eq!(
        seen.len(),
        30,
        "every message delivered once, the lost one included"
    );
    let completed: BTreeSet<String> = seen
        .iter()
        .filter(|c| c.2 != "crash" && !c.2.starts_with("fail-"))
        .map(|c| c.2.clone())
        .collect();
    let lost: Vec<&String> = values
        .iter()
        .filter(|v| !completed.contains(*v) && !v.starts_with("fail-"))
        .collect();
    assert_eq!(lost, ["crash"], "lost = committed but unprocessed");
    let failed_seen: Vec<&Call> = seen
        .iter()
        .copied()
        .filter(|c| c.2.starts_with("fail-"))
        .collect();
    assert_eq!(
        failed_seen.len(),
        2,
        "a failed message is not retried or redelivered"
    );
    assert!(
        !second.iter().any(|c| c.2 == "crash"),
        "the crash message is not redelivered"
    );
    assert_eq!(stats.processed + stats.failed, second.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_loses_only_that_batch_and_processes_nothing_twice() {
    const N: i64 = 60;
    const CRASH: i64 = 25;
    const BATCH: usize = 10;
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "views", 1).await;
    let p = SafeProducer::new(&ProducerConfig::new(&bootstrap)).expect("producer");
    let records: Vec<ProducerRecord> = (0..N)
        .map(|i| {
            let v = if i == CRASH {
                "crash".to_string()
            } else {
                format!("v{i}")
            };
            ProducerRecord::new("views", Some("k"), v)
        })
        .collect();
    let deliveries = p.send_all(&records).await.expect("produced");
    assert_eq!(deliveries.last().map(|d| d.offset), Some(N - 1));
    // Everything is fetched at once and the linger is long: the batches are full.
    let guarantee = Guarantee::AtMostOnce(AtMostOnceSettings {
        batch_size: BATCH,
        batch_linger: Duration::from_secs(2),
    });
    let cfg = RunnerConfig::new(&bootstrap, "audit", &["views"], guarantee);

    // First life: killed while the handler is stuck on "crash", in the middle of a batch.
    let first: Arc<Mutex<Vec<Call>>> = Arc::default();
    let task = RunnerTask::spawn(Runner::new(cfg.clone(), recording(&first)).expect("runner"));
    wait_for(Duration::from_secs(20), "the crash message", || {
        first.lock().unwrap().iter().any(|c| c.2 == "crash")
    })
    .await;
    task.kill().await;
    let first: Vec<i64> = first.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(
        first,
        (0..=CRASH).collect::<Vec<_>>(),
        "in order, up to the message it hung on"
    );
    let committed_at_crash = committed(&bootstrap, "audit", "views", 1)[0].expect("committed");
    // Full batches from offset 0: the crash message's batch, [20, 30), was committed whole
    // before any of it was processed, and nothing after it.
    assert_eq!(
        committed_at_crash, 30,
        "committed up to the end of its batch"
    );

    // Second life: resumes after the crashed batch.
    let second: Arc<Mutex<Vec<Call>>> = Arc::default();
    let task = RunnerTask::spawn(Runner::new(cfg, recording(&second)).expect("runner"));
    wait_for(Duration::from_secs(20), "every offset committed", || {
        committed(&bootstrap, "audit", "views", 1) == [Some(N)]
    })
    .await;
    let stats = task.stop().await;
    let second: Vec<i64> = second.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(
        second,
        (committed_at_crash..N).collect::<Vec<_>>(),
        "exactly what follows the crashed batch, once each"
    );
    assert_eq!(stats.processed, second.len() as u64);
    assert_eq!(stats.failed, 0);
    // Lost: the crash message (committed, never finished) and the rest of its batch.
    let seen: BTreeSet<i64> = first.iter().chain(&second).copied().collect();
    assert_eq!(seen.len(), first.len() + second.len(), "nothing twice");
    let lost: Vec<i64> = (0..N).filter(|o| !seen.contains(o)).collect();
    assert_eq!(lost, (CRASH + 1..committed_at_crash).collect::<Vec<_>>());
    assert!(lost.len() < BATCH, "at most one batch lost: {lost:?}");
}
