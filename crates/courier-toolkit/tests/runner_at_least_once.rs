//! The at-least-once runner against a real Courier broker: transient failures are retried
//! and each message is processed once and committed; a message that keeps failing, or fails
//! permanently, lands in the dead-letter topic with its origin, error and attempt count and
//! only then is committed; a crashed runner's successor redelivers exactly the messages
//! processed since the last commit, and loses none; a rebalance commits what was processed
//! before the partitions move, so the new owner does not process it again.

#[path = "support/broker.rs"]
mod broker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{committed, create_topic, read_all, wait_for, Broker, RunnerTask};
use courier_toolkit::keys::KeyExtractor;
use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use courier_toolkit::runner::dead_letter::{
    HEADER_ATTEMPTS, HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC,
};
use courier_toolkit::runner::{
    handler_fn, AtLeastOnceSettings, Guarantee, HandlerError, HandlerOutput, Message, RetryPolicy,
    Runner, RunnerConfig,
};

fn settings(max_attempts: u32, commit_every: usize) -> AtLeastOnceSettings {
    AtLeastOnceSettings {
        retry: RetryPolicy {
            max_attempts,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        commit_every,
        commit_interval: Duration::from_secs(60),
        ..Default::default()
    }
}

async fn produce(bootstrap: &str, topic: &str, n: usize) {
    let p = SafeProducer::new(&ProducerConfig::new(bootstrap)).expect("producer");
    let records: Vec<ProducerRecord> = (0..n)
        .map(|i| {
            ProducerRecord::new(topic, Some(format!("k{}", i % 5)), format!("m{i}"))
                .header("trace", format!("t{i}"))
        })
        .collect();
    p.send_all(&records).await.expect("produced");
}

/// (partition, offset) of a message.
fn pos(m: &Message) -> (i32, i64) {
    (m.partition, m.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_each_message_processed_once() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "jobs", 2).await;
    produce(&bootstrap, "jobs", 20).await;
    let attempts: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let done: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let handler = {
        let (attempts, done) = (Arc::clone(&attempts), Arc::clone(&done));
        handler_fn(move |m: Message| {
            let n = {
                let mut a = attempts.lock().unwrap();
                let n = a.entry(pos(&m)).or_default();
                *n += 1;
                *n
            };
            let done = Arc::clone(&done);
            async move {
                if n <= 2 {
                    return Err(HandlerError::retriable(format!("flaky {n}")));
                }
                // The key comes from the configured header: `trace` is `t<i>` for `m<i>`.
                let value = String::from_utf8(m.value.clone().unwrap_or_default()).unwrap();
                assert_eq!(m.idempotency_key.to_string(), value.replace('m', "t"));
                done.lock().unwrap().push(pos(&m));
                Ok(HandlerOutput::none())
            }
        })
    };
    let cfg = RunnerConfig::new(
        &bootstrap,
        "workers",
        &["jobs"],
        Guarantee::AtLeastOnce(settings(5, 1)),
    )
    .keys(KeyExtractor::header("trace"));
    let running = RunnerTask::spawn(Runner::new(cfg, handler).expect("runner"));
    wait_for(Duration::from_secs(20), "20 messages committed", || {
        let c = committed(&bootstrap, "workers", "jobs", 2);
        c.iter().flatten().sum::<i64>() == 20
    })
    .await;
    let stats = running.stop().await;

    let done = done.lock().unwrap().clone();
    let unique: BTreeSet<(i32, i64)> = done.iter().copied().collect();
    assert_eq!(done.len(), 20, "each message processed once: {done:?}");
    assert_eq!(unique.len(), 20);
    for p in 0..2 {
        let offsets: Vec<i64> = done.iter().filter(|d| d.0 == p).map(|d| d.1).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "order of {p}");
    }
    assert!(attempts.lock().unwrap().values().all(|n| *n == 3));
    assert_eq!(stats.processed, 20);
    assert_eq!(stats.retries, 40);
    assert_eq!(stats.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_and_permanent_failures_are_dead_lettered_then_committed() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "payments", 1).await;
    produce(&bootstrap, "payments", 8).await;
    let ok: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let ok = Arc::clone(&ok);
        handler_fn(move |m: Message| {
            let ok = Arc::clone(&ok);
            async move {
                let v = String::from_utf8(m.value.clone().unwrap_or_default()).unwrap();
                match v.as_str() {
                    "m2" => Err(HandlerError::retriable("database timeout")),
                    "m5" => Err(HandlerError::permanent("malformed amount")),
                    _ => {
                        ok.lock().unwrap().push(v);
                        Ok(HandlerOutput::none())
                    }
                }
            }
        })
    };
    let cfg = RunnerConfig::new(
        &bootstrap,
        "billing",
        &["payments"],
        Guarantee::AtLeastOnce(settings(3, 1)),
    );
    let running = RunnerTask::spawn(Runner::new(cfg, handler).expect("runner"));
    wait_for(Duration::from_secs(20), "offset 8 committed", || {
        committed(&bootstrap, "billing", "payments", 1) == [Some(8)]
    })
    .await;
    let stats = running.stop().await;
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(stats.processed, 6);
    assert_eq!(*ok.lock().unwrap(), ["m0", "m1", "m3", "m4", "m6", "m7"]);

    let dlq = tokio::task::spawn_blocking(move || read_all(&bootstrap, "payments.dlq"))
        .await
        .expect("reader");
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    for (r, (offset, error, attempts)) in dlq.iter().zip([
        ("2", "database timeout", "3"),
        ("5", "malformed amount", "1"),
    ]) {
        let i: usize = offset.parse().unwrap();
        assert_eq!(r.text(), format!("m{i}"));
        assert_eq!(r.key.as_deref(), Some(format!("k{}", i % 5).as_bytes()));
        assert_eq!(
            r.header("trace"),
            Some(format!("t{i}")),
            "original headers kept"
        );
        assert_eq!(r.header(HEADER_TOPIC).as_deref(), Some("payments"));
        assert_eq!(r.header(HEADER_PARTITION).as_deref(), Some("0"));
        assert_eq!(r.header(HEADER_OFFSET).as_deref(), Some(offset));
        assert_eq!(r.header(HEADER_ERROR).as_deref(), Some(error));
        assert_eq!(r.header(HEADER_ATTEMPTS).as_deref(), Some(attempts));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_runner_redelivers_exactly_the_uncommitted_window() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "events", 2).await;
    produce(&bootstrap, "events", 40).await;
    let cfg = RunnerConfig::new(
        &bootstrap,
        "audit",
        &["events"],
        Guarantee::AtLeastOnce(settings(1, 5)),
    );

    // First life: commits every 5 messages; the 23rd handler call does its effect and
    // then hangs until the runner is killed.
    let first: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let handler = {
        let first = Arc::clone(&first);
        handler_fn(move |m: Message| {
            let n = {
                let mut f = first.lock().unwrap();
                f.push(pos(&m));
                f.len()
            };
            async move {
                if n == 23 {
                    std::future::pending::<()>().await;
                }
                Ok(HandlerOutput::none())
            }
        })
    };
    let running = RunnerTask::spawn(Runner::new(cfg.clone(), handler).expect("runner"));
    wait_for(Duration::from_secs(20), "23 handler calls", || {
        first.lock().unwrap().len() == 23
    })
    .await;
    running.kill().await;
    let before = committed(&bootstrap, "audit", "events", 2);
    let committed_total: i64 = before.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(
        committed_total, 20,
        "committed after every 5th message: {before:?}"
    );

    // Second life: resumes from the committed offsets.
    let second: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let handler = {
        let second = Arc::clone(&second);
        handler_fn(move |m: Message| {
            second.lock().unwrap().push(pos(&m));
            async { Ok(HandlerOutput::none()) }
        })
    };
    let running = RunnerTask::spawn(Runner::new(cfg, handler).expect("runner"));
    wait_for(Duration::from_secs(20), "all 40 committed", || {
        committed(&bootstrap, "audit", "events", 2)
            .iter()
            .flatten()
            .sum::<i64>()
            == 40
    })
    .await;
    running.stop().await;

    let first = first.lock().unwrap().clone();
    let second = second.lock().unwrap().clone();
    let all: BTreeSet<(i32, i64)> = first.iter().chain(&second).copied().collect();
    assert_eq!(all.len(), 40, "none lost");
    for (p, c) in before.iter().enumerate() {
        let c = c.unwrap_or(0);
        let resumed: Vec<i64> = second
            .iter()
            .filter(|s| s.0 == p as i32)
            .map(|s| s.1)
            .collect();
        assert_eq!(
            resumed.first().copied().unwrap_or(c),
            c,
            "partition {p} resumes at {c}"
        );
    }
    let duplicates: Vec<&(i32, i64)> = first.iter().filter(|m| second.contains(m)).collect();
    assert_eq!(
        duplicates.len(),
        first.len() - committed_total as usize,
        "redelivered = processed but uncommitted"
    );
    assert_eq!(duplicates.len(), 3);
    assert_eq!(
        second.len(),
        40 - 20,
        "each uncommitted message delivered once more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_commits_processed_offsets_before_the_partitions_move() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "orders", 2).await;
    produce(&bootstrap, "orders", 20).await;
    // Commits only on revoke and at shutdown within this test's time.
    let cfg = RunnerConfig::new(
        &bootstrap,
        "shipping",
        &["orders"],
        Guarantee::AtLeastOnce(settings(1, 1000)),
    );
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let recorder = || {
        let seen = Arc::clone(&seen);
        handler_fn(move |m: Message| {
            seen.lock().unwrap().push(pos(&m));
            async { Ok(HandlerOutput::none()) }
        })
    };
    let a =
        RunnerTask::spawn(Runner::new(cfg.clone().instance_id("a"), recorder()).expect("runner"));
    wait_for(
        Duration::from_secs(20),
        "20 processed by the first member",
        || seen.lock().unwrap().len() == 20,
    )
    .await;
    assert_eq!(committed(&bootstrap, "shipping", "orders", 2), [None, None]);

    // A second member joins: the first commits its processed offsets on revoke.
    let b2 = RunnerTask::spawn(Runner::new(cfg.instance_id("b"), recorder()).expect("runner"));
    wait_for(Duration::from_secs(20), "the commit on revoke", || {
        committed(&bootstrap, "shipping", "orders", 2)
            .iter()
            .flatten()
            .sum::<i64>()
            == 20
    })
    .await;
    produce(&bootstrap, "orders", 20).await;
    wait_for(Duration::from_secs(20), "40 processed", || {
        seen.lock().unwrap().len() >= 40
    })
    .await;
    let stats = [a.stop().await, b2.stop().await];
    let seen = seen.lock().unwrap().clone();
    let unique: BTreeSet<(i32, i64)> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        40,
        "no message processed twice across the rebalance"
    );
    assert_eq!(unique.len(), 40);
    assert_eq!(stats.iter().map(|s| s.processed).sum::<u64>(), 40);
    assert_eq!(
        committed(&bootstrap, "shipping", "orders", 2)
            .iter()
            .flatten()
            .sum::<i64>(),
        40,
        "clean stops commit the rest"
    );
}
