//! The safe producer against a real Courier broker: keyed records land on the partition
//! Java's murmur2 partitioner picks and keep their per-key order, and retries across a
//! broker SIGKILL store every record exactly once (idempotence).

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker::{create_topic, read_all, wait_for, Broker};
use courier_toolkit::producer::{partition_for_key, ProducerConfig, ProducerRecord, SafeProducer};

/// `n` records over `keys` keys, valued `<key>:<seq>` with `seq` counting per key.
fn keyed(topic: &str, n: usize, keys: usize) -> Vec<ProducerRecord> {
    let mut seq = vec![0usize; keys];
    (0..n)
        .map(|i| {
            let k = i % keys;
            seq[k] += 1;
            let key = format!("user-{k}");
            ProducerRecord::new(topic, Some(key.clone()), format!("{key}:{}", seq[k]))
        })
        .collect()
}

/// Asserts that `topic` holds exactly `sent`, each record once, every key on one partition
/// and in send order.
fn assert_stored_once_in_order(bootstrap: &str, topic: &str, sent: &[ProducerRecord]) {
    let read = read_all(bootstrap, topic);
    let mut by_key: BTreeMap<Vec<u8>, Vec<(i32, String)>> = BTreeMap::new();
    for r in &read {
        by_key
            .entry(r.key.clone().expect("keyed"))
            .or_default()
            .push((r.partition, r.text()));
    }
    let mut want: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for r in sent {
        want.entry(r.key.clone().expect("keyed"))
            .or_default()
            .push(String::from_utf8(r.value.clone().expect("value")).expect("utf8"));
    }
    assert_eq!(read.len(), sent.len(), "every record stored exactly once");
    for (key, values) in &want {
        let got = &by_key[key];
        let partitions: Vec<i32> = got.iter().map(|(p, _)| *p).collect();
        assert!(
            partitions.windows(2).all(|w| w[0] == w[1]),
            "one partition per key"
        );
        let got_values: Vec<&String> = got.iter().map(|(_, v)| v).collect();
        assert_eq!(
            got_values,
            values.iter().collect::<Vec<_>>(),
            "per-key order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_on_the_murmur2_partition_in_key_order() {
    let b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "accounts", 6).await;
    let p = SafeProducer::new(&ProducerConfig::new(&bootstrap)).expect("producer");
    let records = keyed("accounts", 300, 17);
    let deliveries = p.send_all(&records).await.expect("delivered");
    for (r, d) in records.iter().zip(&deliveries) {
        let key = r.key.as_deref().expect("keyed");
        assert_eq!(
            d.partition,
            partition_for_key(key, 6),
            "partition of {key:?}"
        );
    }
    // Offsets per partition increase in send order.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for d in &deliveries {
        let prev = last.insert(d.partition, d.offset);
        assert!(prev.is_none_or(|o| o < d.offset), "offsets in send order");
    }
    let spread = last.len();
    assert!(spread >= 4, "17 keys spread over {spread} of 6 partitions");
    tokio::task::spawn_blocking(move || {
        assert_stored_once_in_order(&bootstrap, "accounts", &records)
    })
    .await
    .expect("reader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_across_a_broker_crash_store_each_record_once() {
    let mut b = Broker::start();
    let bootstrap = b.bootstrap();
    create_topic(&bootstrap, "ledger", 3).await;
    let p = Arc::new(
        SafeProducer::new(
            &ProducerConfig::new(&bootstrap)
                .set("message.timeout.ms", "30000")
                .set("linger.ms", "2"),
        )
        .expect("producer"),
    );
    let records = keyed("ledger", 400, 7);
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (p, records, acked) = (Arc::clone(&p), records.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for chunk in records.chunks(10) {
                p.send_all(chunk).await?;
                acked.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            Ok::<_, courier_toolkit::ToolkitError>(())
        })
    };
    wait_for(Duration::from_secs(15), "first acknowledgements", || {
        acked.load(Ordering::SeqCst) >= 100
    })
    .await;
    // SIGKILL mid-stream: the chunk in flight is retried against the restarted broker. (With
    // `enable.idempotence=false` this test typically reads back ~10 duplicates: the broker
    // had stored the chunk but its acknowledgement died with it.)
    tokio::task::block_in_place(|| b.restart());
    sender
        .await
        .expect("sender task")
        .expect("every record acknowledged despite the crash");
    assert_eq!(acked.load(Ordering::SeqCst), 400);
    let log = b.log_tail();
    tokio::task::spawn_blocking(move || {
        assert_stored_once_in_order(&bootstrap, "ledger", &records)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nbroker log:\n{log}"));
}
