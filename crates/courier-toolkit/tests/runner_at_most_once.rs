//! The at-most-once runner against a real Courier broker: each offset is committed before
//! the handler runs, so a runner killed while processing loses exactly the message it was
//! processing (committed, not processed) and nothing is ever delivered twice; a message whose
//! handler fails is not seen again.

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{committed, create_topic, wait_for, Broker, RunnerTask};
use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use courier_toolkit::runner::{
    handler_fn, Guarantee, HandlerError, HandlerOutput, Message, Runner, RunnerConfig,
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
    let cfg = RunnerConfig::new(&bootstrap, "analytics", &["clicks"], Guarantee::AtMostOnce);

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
