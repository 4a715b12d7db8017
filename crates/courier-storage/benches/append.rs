//! Hot paths of the partition log: appending 16 KiB and 1 MiB batches (validation, CRC32C,
//! `pwritev`, index upkeep; no fsync) and reading them back.

use bytes::Bytes;
use courier_storage::batch_builder::{batch, NewRecord};
use courier_storage::{Log, LogConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// An uncompressed batch of 1 KiB records adding up to about `bytes`.
fn batch_of(bytes: usize) -> Bytes {
    let records: Vec<NewRecord> = (0..bytes / 1024)
        .map(|i| NewRecord::new(1_700_000_000_000 + i as i64, b"", &[(i % 251) as u8; 1000]))
        .collect();
    Bytes::from(batch(&records))
}

/// Segments of 64 MiB, keeping at most 256 MiB so the bench does not fill the disk.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        retention_bytes: 256 << 20,
        retention_ms: -1,
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for size in [16 << 10, 1 << 20] {
        let batch = batch_of(size);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &batch, |b, batch| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut log, _) = Log::open(dir.path(), config(), 0).expect("open");
            b.iter(|| {
                log.append(batch, 0).expect("append");
                if log.size_bytes() > 320 << 20 {
                    log.enforce_retention(0).expect("retention");
                }
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    for size in [16 << 10, 1 << 20] {
        let batch = batch_of(size);
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path(), config(), 0).expect("open");
        let mut bases = Vec::new();
        for _ in 0..64 {
            bases.push(log.append(&batch, 0).expect("append").base_offset);
        }
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 7) % bases.len();
                let got = log.read(bases[i] + 3, 1, u64::MAX).expect("read");
                assert_eq!(got.records.len(), batch.len());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
