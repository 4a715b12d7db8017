//! An acks=all producer keeps sending while the broker is SIGKILLed and restarted several
//! times. Afterwards every acknowledged record is readable at the offset it was acknowledged
//! with, offsets are contiguous, and nothing acknowledged is lost.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use support::kafka::*;
use support::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_repeated_sigkill() {
    let mut broker = TestBroker::start();
    let topic = "crash";
    let partitions = 3;
    create_topic(&broker.bootstrap(), topic, partitions).await;

    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = producer(
        &broker.bootstrap(),
        &[
            ("acks", "all"),
            ("message.timeout.ms", "120000"),
            ("retry.backoff.ms", "50"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    let sender = {
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut pending = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let value = format!("m-{i}");
                let key = format!("k{}", i % 11);
                let f = p
                    .send_result(FutureRecord::to("crash").key(&key).payload(&value))
                    .expect("enqueue");
                pending.push((value, f));
                i += 1;
                if pending.len() >= 200 {
                    for (value, f) in pending.drain(..) {
                        if let Ok(Ok(d)) = f.await {
                            acked
                                .lock()
                                .expect("lock")
                                .push((d.partition, d.offset, value));
                        }
                    }
                }
            }
            for (value, f) in pending.drain(..) {
                if let Ok(Ok(d)) = f.await {
                    acked
                        .lock()
                        .expect("lock")
                        .push((d.partition, d.offset, value));
                }
            }
        })
    };

    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let before = acked.lock().expect("lock").len();
        broker.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        broker.restart();
        eprintln!("round {round}: {before} acknowledged before the kill");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.expect("sender");

    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 1000,
        "the producer made progress: {} acked",
        acked.len()
    );
    let c = consumer(&broker.bootstrap(), &[]);
    let mut total = 0usize;
    for p in 0..partitions {
        let (_, high) =
            rdkafka::consumer::Consumer::fetch_watermarks(&c, topic, p, Duration::from_secs(10))
                .expect("wm");
        total += high as usize;
    }
    let reads = read_all(
        &broker.bootstrap(),
        topic,
        partitions,
        total,
        Duration::from_secs(60),
    );
    assert_eq!(
        reads.len(),
        total,
        "everything below the high watermarks is readable"
    );
    let at: HashMap<(i32, i64), String> = reads
        .iter()
        .map(|r| {
            (
                (r.partition, r.offset),
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    for (partition, rs) in by_partition(&reads) {
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(
                r.offset, i as i64,
                "partition {partition}: offsets contiguous"
            );
        }
    }
    for (partition, offset, value) in &acked {
        assert_eq!(
            at.get(&(*partition, *offset)),
            Some(value),
            "acknowledged {value} at {partition}/{offset} must be there"
        );
    }
    let log = broker.log();
    assert!(
        log.contains("recovered partition"),
        "restarts after SIGKILL ran recovery:\n{log}"
    );
}
