//! The exactly-once-into-a-database runner against a real Courier broker and a real
//! database (SQLite and PostgreSQL, through the store suite's `suite!`): a runner crashed
//! three times in the middle of a batch and restarted leaves exactly one business row per
//! input message and the database's offsets at the topic's ends; a message failing
//! permanently rolls back its batch and is the only one dead-lettered; a message re-sent as
//! a new record with the same idempotency key is skipped; assigned partitions start at the
//! database's offsets even when Kafka has no committed offsets at all.

#[macro_use]
#[path = "store_suite/mod.rs"]
mod store_suite;

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use broker::{committed, create_topic, read_all, Broker, RunnerTask};
use courier_toolkit::producer::{ProducerConfig, ProducerRecord, SafeProducer};
use courier_toolkit::runner::dead_letter::{HEADER_ATTEMPTS, HEADER_ERROR};
use courier_toolkit::runner::{
    db_handler_fn, ExactlyOnceDbSettings, Guarantee, HandlerError, Message, PruneSettings,
    RetryPolicy, Runner, RunnerConfig,
};
use courier_toolkit::store::{KeyState, ProcessedStore, Tx};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use store_suite::*;

suite!(
    crashes_mid_stream_apply_each_message_exactly_once,
    a_resent_idempotency_key_is_skipped,
    assignment_starts_at_the_database_offsets_not_kafkas,
    failures_roll_back_retry_then_dead_letter_and_move_the_offset,
    a_poison_message_rolls_back_its_batch_and_alone_is_dead_lettered,
    the_runner_prunes_keys_below_the_offsets_and_past_the_retention_only,
);

/// The business table: deliberately without a unique key, so a double application shows.
async fn create_ledger(store: &ProcessedStore) {
    exec(
        store,
        "CREATE TABLE IF NOT EXISTS ledger (order_id TEXT NOT NULL, part BIGINT NOT NULL, off BIGINT NOT NULL)",
    )
    .await;
}

fn settings(store: ProcessedStore, kafka_commits: bool) -> ExactlyOnceDbSettings {
    ExactlyOnceDbSettings {
        retry: RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        kafka_commit_interval: kafka_commits.then(|| Duration::from_millis(100)),
        ..ExactlyOnceDbSettings::new(store)
    }
}

/// A runner whose effect inserts one ledger row per message (after `delay`, inside the
/// transaction).
fn ledger_runner(
    bootstrap: &str,
    store: ProcessedStore,
    kafka_commits: bool,
    delay: Duration,
) -> RunnerTask {
    ledger_runner_counting(bootstrap, store, kafka_commits, delay, Arc::default())
}

/// [`ledger_runner`], counting the handler's calls in `calls`.
fn ledger_runner_counting(
    bootstrap: &str,
    store: ProcessedStore,
    kafka_commits: bool,
    delay: Duration,
    calls: Arc<AtomicI64>,
) -> RunnerTask {
    let cfg = RunnerConfig::new(
        bootstrap,
        GROUP,
        &[TOPIC],
        Guarantee::ExactlyOnceDatabase(settings(store, kafka_commits)),
    )
    .consumer_set("session.timeout.ms", "6000");
    let handler = db_handler_fn(move |m: Message, tx: Tx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let order = String::from_utf8(m.value.clone().unwrap_or_default())
                .map_err(HandlerError::permanent)?;
            insert_ledger(&tx, &order, &m).await?;
            Ok(Vec::new())
        }
    });
    RunnerTask::spawn_db(Runner::new_db(cfg, handler).expect("runner"))
}

/// The business effect: one ledger row for `order`, from `m`.
async fn insert_ledger(tx: &Tx, order: &str, m: &Message) -> Result<(), HandlerError> {
    tx.execute(
        "INSERT INTO ledger (order_id, part, off) VALUES ($1, $2, $3)",
        &[order.into(), m.partition.into(), m.offset.into()],
    )
    .await
    .map_err(HandlerError::retriable)?;
    Ok(())
}

/// Sends `order-<i>` for each `i`, with the idempotency-key header `order-<i>`.
async fn produce(bootstrap: &str, ids: impl Iterator<Item = usize>) {
    let p = SafeProducer::new(&ProducerConfig::new(bootstrap)).expect("producer");
    let records: Vec<ProducerRecord> = ids
        .map(|i| {
            ProducerRecord::new(TOPIC, Some(format!("k{}", i % 7)), format!("order-{i}"))
                .header("idempotency-key", format!("order-{i}"))
        })
        .collect();
    p.send_all(&records).await.expect("produced");
}

/// The end offset of each of the topic's `partitions` partitions.
async fn end_offsets(bootstrap: &str, partitions: i32) -> Vec<(i32, i64)> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "toolkit-test-watermarks")
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|p| {
                let (_, high) = c
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .expect("watermarks");
                (p, high)
            })
            .filter(|(_, high)| *high > 0)
            .collect()
    })
    .await
    .expect("watermarks task")
}

async fn ledger_rows(store: &ProcessedStore) -> i64 {
    query(store, "SELECT COUNT(*) FROM ledger", &[]).await[0][0]
        .as_i64()
        .expect("count")
}

/// Rows per order id.
async fn ledger(store: &ProcessedStore) -> BTreeMap<String, i64> {
    query(
        store,
        "SELECT order_id, COUNT(*) FROM ledger GROUP BY order_id",
        &[],
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].as_str().expect("order id").to_string(),
            r[1].as_i64().expect("count"),
        )
    })
    .collect()
}

/// (value, attempts header, error header) of each dead letter in `orders.dlq`.
async fn dead_letters(bootstrap: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let bootstrap = bootstrap.to_string();
    let letters = tokio::task::spawn_blocking(move || read_all(&bootstrap, "orders.dlq"))
        .await
        .expect("dead letters");
    letters
        .iter()
        .map(|r| (r.text(), r.header(HEADER_ATTEMPTS), r.header(HEADER_ERROR)))
        .collect()
}

/// Polls the database until its offsets are `want`; panics after a minute.
async fn wait_offsets(store: &ProcessedStore, want: &[(i32, i64)], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while offsets(store).await != want {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn crashes_mid_stream_apply_each_message_exactly_once(db: TestDb) {
    // Enough for three lives of more than one default batch (500) each.
    const N: usize = 2500;
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 3).await;
    produce(&bootstrap, 0..N).await;
    let ends = end_offsets(&bootstrap, 3).await;
    let check = db.open().await;
    create_ledger(&check).await;

    let mut before = 0;
    for round in 1..=3i64 {
        // A restarted service: a new store handle on the same database, the same group.
        let calls = Arc::new(AtomicI64::new(0));
        let running = ledger_runner_counting(
            &bootstrap,
            db.open().await,
            true,
            Duration::from_millis(1),
            Arc::clone(&calls),
        );
        // The batch under way holds at most 500 of the calls: at least one batch has
        // committed, and the runner is dropped (most likely) in the middle of the next.
        // Counted in the handler: on SQLite a reader waits for the runner's write lock.
        broker::wait_for(Duration::from_secs(60), "600 messages handled", || {
            calls.load(Ordering::SeqCst) >= 600
        })
        .await;
        running.kill().await;
        let rows = ledger_rows(&check).await;
        let committed: i64 = offsets(&check).await.iter().map(|(_, o)| o).sum();
        assert_eq!(
            rows, committed,
            "round {round}: a row per message below the stored offsets, none of the dropped batch's"
        );
        assert!(
            before < rows && rows < N as i64,
            "round {round}: crashed mid-stream ({before} -> {rows})"
        );
        before = rows;
    }

    let running = ledger_runner(&bootstrap, db.open().await, true, Duration::ZERO);
    wait_offsets(&check, &ends, "database offsets at the ends").await;
    running.stop().await;

    let ledger = ledger(&check).await;
    assert_eq!(ledger.len(), N, "every message applied");
    let doubled: Vec<_> = ledger.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "applied more than once: {doubled:?}");
    assert_eq!(ledger_rows(&check).await, N as i64);
    assert_eq!(offsets(&check).await, ends);
}

async fn a_resent_idempotency_key_is_skipped(db: TestDb) {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;
    let check = db.open().await;
    create_ledger(&check).await;
    produce(&bootstrap, 1..=3).await;
    let running = ledger_runner(&bootstrap, db.open().await, true, Duration::ZERO);
    wait_offsets(&check, &[(0, 3)], "3 messages applied").await;
    // The producer "retries" order-2 as a new record: same content, same key, offset 3.
    produce(&bootstrap, 2..=2).await;
    wait_offsets(&check, &[(0, 4)], "the re-sent message consumed").await;
    let stats = running.stop().await;
    assert_eq!(stats.processed, 3);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.dead_lettered, 0);
    let ledger = ledger(&check).await;
    assert_eq!(
        ledger.into_iter().collect::<Vec<_>>(),
        [
            ("order-1".to_string(), 1),
            ("order-2".to_string(), 1),
            ("order-3".to_string(), 1)
        ]
    );
}

async fn assignment_starts_at_the_database_offsets_not_kafkas(db: TestDb) {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 2).await;
    let check = db.open().await;
    create_ledger(&check).await;
    produce(&bootstrap, 0..40).await;
    let ends = end_offsets(&bootstrap, 2).await;
    // Never commits to Kafka: only the database knows how far the group got.
    let running = ledger_runner(&bootstrap, db.open().await, false, Duration::ZERO);
    wait_offsets(&check, &ends, "40 messages applied").await;
    let first = running.stop().await;
    assert_eq!(first.processed, 40);
    let kafka = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || committed(&bootstrap, GROUP, TOPIC, 2))
            .await
            .expect("committed")
    };
    assert_eq!(kafka, [None, None], "nothing committed to Kafka");
    // Forget the keys (all below the stored offsets): a redelivery would now apply again, so
    // only the positioning at the database's offsets keeps the restart from doing so.
    let pruned = check
        .prune(
            GROUP,
            Duration::ZERO,
            SystemTime::now() + Duration::from_secs(1),
        )
        .await
        .expect("prune");
    assert_eq!(pruned, 40);

    produce(&bootstrap, 40..50).await;
    let ends = end_offsets(&bootstrap, 2).await;
    let running = ledger_runner(&bootstrap, db.open().await, false, Duration::ZERO);
    wait_offsets(&check, &ends, "the 10 new messages applied").await;
    let second = running.stop().await;
    assert_eq!(second.processed, 10, "only the new messages: {second:?}");
    assert_eq!(second.duplicates, 0, "nothing redelivered: {second:?}");
    let ledger = ledger(&check).await;
    assert_eq!(ledger.len(), 50);
    assert!(ledger.values().all(|n| *n == 1), "{ledger:?}");
}

async fn failures_roll_back_retry_then_dead_letter_and_move_the_offset(db: TestDb) {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;
    let check = db.open().await;
    create_ledger(&check).await;
    produce(&bootstrap, 1..=4).await;
    let attempts: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let handler = {
        let attempts = Arc::clone(&attempts);
        db_handler_fn(move |m: Message, tx: Tx| {
            let order = String::from_utf8(m.value.clone().unwrap_or_default()).unwrap();
            let n = {
                let mut a = attempts.lock().unwrap();
                let n = a.entry(order.clone()).or_default();
                *n += 1;
                *n
            };
            async move {
                insert_ledger(&tx, &order, &m).await?;
                match (order.as_str(), n) {
                    // Fails after its insert: the insert must be rolled back.
                    ("order-2", _) => Err(HandlerError::retriable("ledger service down")),
                    ("order-3", 1) => Err(HandlerError::retriable("flaky")),
                    ("order-4", _) => Err(HandlerError::permanent("malformed")),
                    _ => Ok(b"ok".to_vec()),
                }
            }
        })
    };
    let mut s = settings(db.open().await, true);
    s.retry.max_attempts = 3;
    let cfg = RunnerConfig::new(
        &bootstrap,
        GROUP,
        &[TOPIC],
        Guarantee::ExactlyOnceDatabase(s),
    );
    let running = RunnerTask::spawn_db(Runner::new_db(cfg, handler).expect("runner"));
    wait_offsets(&check, &[(0, 4)], "the database offset past 4").await;
    let stats = running.stop().await;
    assert_eq!(stats.processed, 2, "{stats:?}");
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert_eq!(stats.retries, 2 + 1, "{stats:?}");
    let ledger = ledger(&check).await;
    assert_eq!(
        ledger.into_iter().collect::<Vec<_>>(),
        [("order-1".to_string(), 1), ("order-3".to_string(), 1)],
        "failed attempts left nothing"
    );
    let dead = record(&check, "order-2").await;
    assert_eq!(dead.state, KeyState::Completed);
    assert_eq!(dead.result.as_deref(), Some(&[][..]));
    let got = dead_letters(&bootstrap).await;
    assert_eq!(
        got,
        [
            (
                "order-2".to_string(),
                Some("3".to_string()),
                Some("ledger service down".to_string())
            ),
            (
                "order-4".to_string(),
                Some("1".to_string()),
                Some("malformed".to_string())
            ),
        ]
    );
}

async fn a_poison_message_rolls_back_its_batch_and_alone_is_dead_lettered(db: TestDb) {
    const N: usize = 200;
    const POISON: &str = "order-57";
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 2).await;
    let check = db.open().await;
    create_ledger(&check).await;
    // Produced before the runner starts: it takes them in a few large batches.
    produce(&bootstrap, 0..N).await;
    let ends = end_offsets(&bootstrap, 2).await;
    let calls: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let handler = {
        let calls = Arc::clone(&calls);
        db_handler_fn(move |m: Message, tx: Tx| {
            let order = String::from_utf8(m.value.clone().unwrap_or_default()).unwrap();
            *calls.lock().unwrap().entry(order.clone()).or_default() += 1;
            async move {
                insert_ledger(&tx, &order, &m).await?;
                if order == POISON {
                    // After its insert: the insert, and the batch's, must be rolled back.
                    return Err(HandlerError::permanent("unknown product"));
                }
                Ok(order.into_bytes())
            }
        })
    };
    let cfg = RunnerConfig::new(
        &bootstrap,
        GROUP,
        &[TOPIC],
        Guarantee::ExactlyOnceDatabase(settings(db.open().await, true)),
    );
    let running = RunnerTask::spawn_db(Runner::new_db(cfg, handler).expect("runner"));
    wait_offsets(&check, &ends, "database offsets at the ends").await;
    let stats = running.stop().await;
    assert_eq!(stats.processed, N as u64 - 1, "{stats:?}");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(
        stats.retries, 0,
        "a permanent error is not retried: {stats:?}"
    );

    let ledger = ledger(&check).await;
    assert_eq!(ledger.len(), N - 1, "every message but the poison applied");
    assert!(
        !ledger.contains_key(POISON),
        "the poison's insert rolled back"
    );
    let doubled: Vec<_> = ledger.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "applied more than once: {doubled:?}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.get(POISON),
        Some(&1),
        "its failure in the batch counts as its one attempt"
    );
    // The messages before it in its batch were applied, rolled back, and applied again.
    let again: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(!again.is_empty(), "the poison was not in a batch of many");
    assert!(again.iter().all(|(_, n)| **n == 2), "{again:?}");
    let poison = record(&check, POISON).await;
    assert_eq!(
        (poison.state, poison.result),
        (KeyState::Completed, Some(vec![]))
    );
    let neighbour = record(&check, "order-58").await;
    assert_eq!(neighbour.result.as_deref(), Some(&b"order-58"[..]));

    let got = dead_letters(&bootstrap).await;
    assert_eq!(
        got,
        [(
            POISON.to_string(),
            Some("1".to_string()),
            Some("unknown product".to_string())
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_guarantee_needs_a_db_handler_and_vice_versa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ProcessedStore::open_sqlite(dir.path().join("app.db"))
        .await
        .expect("store");
    let guarantee = Guarantee::exactly_once_database(store.clone());
    assert!(format!("{:?}", guarantee.clone()).contains("ExactlyOnceDatabase"));
    let eodb = RunnerConfig::new("127.0.0.1:1", GROUP, &[TOPIC], guarantee);
    let plain = courier_toolkit::runner::handler_fn(|_m: Message| async {
        Ok(courier_toolkit::runner::HandlerOutput::none())
    });
    assert!(matches!(
        Runner::new(eodb.clone(), plain),
        Err(courier_toolkit::ToolkitError::Config(_))
    ));
    let db = || db_handler_fn(|_m: Message, _tx: Tx| async { Ok(Vec::new()) });
    assert!(Runner::new_db(eodb, db()).is_ok());
    let empty_batches = RunnerConfig::new(
        "127.0.0.1:1",
        GROUP,
        &[TOPIC],
        Guarantee::ExactlyOnceDatabase(ExactlyOnceDbSettings {
            batch_size: 0,
            ..ExactlyOnceDbSettings::new(store.clone())
        }),
    );
    assert!(matches!(
        Runner::new_db(empty_batches, db()),
        Err(courier_toolkit::ToolkitError::Config(m)) if m.contains("batch_size")
    ));
    let alo = RunnerConfig::new("127.0.0.1:1", GROUP, &[TOPIC], Guarantee::at_least_once());
    assert!(matches!(
        Runner::new_db(alo, db()),
        Err(courier_toolkit::ToolkitError::Config(_))
    ));
}

/// A ledger runner pruning every 100 ms with `retention`.
fn pruning_runner(bootstrap: &str, store: ProcessedStore, retention: Duration) -> RunnerTask {
    let settings = ExactlyOnceDbSettings {
        prune: Some(PruneSettings {
            every: Duration::from_millis(100),
            retention,
        }),
        ..settings(store, false)
    };
    let cfg = RunnerConfig::new(
        bootstrap,
        GROUP,
        &[TOPIC],
        Guarantee::ExactlyOnceDatabase(settings),
    )
    .consumer_set("session.timeout.ms", "6000");
    let handler = db_handler_fn(|m: Message, tx: Tx| async move {
        let order = String::from_utf8(m.value.clone().unwrap_or_default())
            .map_err(HandlerError::permanent)?;
        insert_ledger(&tx, &order, &m).await?;
        Ok(Vec::new())
    });
    RunnerTask::spawn_db(Runner::new_db(cfg, handler).expect("runner"))
}

async fn the_runner_prunes_keys_below_the_offsets_and_past_the_retention_only(db: TestDb) {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, TOPIC, 1).await;
    let check = db.open().await;
    create_ledger(&check).await;
    produce(&bootstrap, 1..=5).await;

    // A retention of an hour: several prune passes, every key kept (they are below the
    // stored offset, but a resend could still come).
    let running = pruning_runner(&bootstrap, db.open().await, Duration::from_secs(3600));
    wait_offsets(&check, &[(0, 5)], "5 messages applied").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = running.stop().await;
    assert_eq!(stats.keys_pruned, 0);
    for i in 1..=5 {
        let key = check
            .key_state(GROUP, format!("order-{i}"))
            .await
            .expect("read");
        assert_eq!(
            key.map(|k| k.state),
            Some(KeyState::Completed),
            "order-{i} kept"
        );
    }

    // No retention: the runner deletes them in the background, and only them.
    let running = pruning_runner(&bootstrap, db.open().await, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(30);
    while check
        .key_state(GROUP, "order-5")
        .await
        .expect("read")
        .is_some()
    {
        assert!(Instant::now() < deadline, "keys were not pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = running.stop().await;
    assert_eq!(stats.keys_pruned, 5);
    for i in 1..=5 {
        let key = check
            .key_state(GROUP, format!("order-{i}"))
            .await
            .expect("read");
        assert!(key.is_none(), "order-{i} pruned");
    }
    assert_eq!(
        ledger_rows(&check).await,
        5,
        "pruning keys leaves the effects alone"
    );
    assert_eq!(offsets(&check).await, [(0, 5)]);
}
