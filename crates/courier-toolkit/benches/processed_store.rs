//! The processed-ID store's hot path on SQLite (WAL, `synchronous=FULL`: every commit is an
//! fsync): exactly-once application of messages whose effect is one `INSERT`, one transaction
//! per message against one transaction per batch of 500.
//!
//! `cargo bench -p courier-toolkit --bench processed_store`; throughput is in messages.

use std::sync::atomic::{AtomicI64, Ordering};

use courier_toolkit::store::{ProcessRequest, ProcessedStore};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const GROUP: &str = "bench";
const TOPIC: &str = "orders";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt.block_on(async {
        let store = ProcessedStore::open_sqlite(dir.path().join("bench.db"))
            .await
            .expect("open");
        store
            .transaction(|tx| async move {
                tx.execute("CREATE TABLE ledger (id INTEGER NOT NULL)", &[])
                    .await
            })
            .await
            .expect("ledger");
        store
    });
    // Every message gets a new offset and key: nothing is a duplicate.
    let next = AtomicI64::new(0);
    let mut group = c.benchmark_group("processed_store_sqlite");
    for batch in [1usize, 500] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                let first = next.fetch_add(batch as i64, Ordering::Relaxed);
                let keys: Vec<Vec<u8>> = (first..first + batch as i64)
                    .map(|o| format!("k{o}").into_bytes())
                    .collect();
                let reqs: Vec<ProcessRequest<'_>> = keys
                    .iter()
                    .zip(first..)
                    .map(|(key, offset)| ProcessRequest {
                        group: GROUP,
                        topic: TOPIC,
                        partition: 0,
                        offset,
                        idempotency_key: key,
                    })
                    .collect();
                rt.block_on(store.process_batch(&reqs, |i, tx| async move {
                    tx.execute(
                        "INSERT INTO ledger (id) VALUES ($1)",
                        &[(first + i as i64).into()],
                    )
                    .await?;
                    Ok(Vec::new())
                }))
                .expect("applied")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
