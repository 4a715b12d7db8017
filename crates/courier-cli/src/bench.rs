//! `courier bench`: throughput and latency through librdkafka, the client most users run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Produce fixed-size records as fast as the broker acknowledges them.
    Produce(ProduceArgs),
}

/// `courier bench produce` settings.
#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Broker to measure; without it, a Courier broker is started in a temporary directory.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// Topic to produce to (created with --partitions if absent).
    #[arg(long, default_value = "courier-bench")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Records to send.
    #[arg(long, default_value_t = 3_000_000)]
    messages: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// librdkafka linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: u32,
    /// librdkafka max.in.flight.requests.per.connection.
    #[arg(long, default_value_t = 5)]
    in_flight: u32,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Enable the idempotent producer.
    #[arg(long)]
    idempotent: bool,
    /// Send in transactions of --txn-messages records each (transactional.id set; implies
    /// idempotence). Prints commit latency per transaction.
    #[arg(long)]
    transactional: bool,
    /// Records per transaction with --transactional.
    #[arg(long, default_value_t = 1000)]
    txn_messages: u64,
    /// Target send rate in messages per second; 0 sends as fast as the client queue allows.
    /// Ack latency is only meaningful below saturation, where the client queue stays short.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// Records each delivery's latency and outcome.
struct Stats {
    latency_us: Histogram<u64>,
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
}

struct BenchContext {
    stats: Arc<Mutex<Stats>>,
}

impl ClientContext for BenchContext {}

impl ProducerContext for BenchContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Self::DeliveryOpaque) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                s.delivered += 1;
                let us = sent_at.elapsed().as_micros() as u64;
                let _ = s.latency_us.record(us.max(1));
            }
            Err((e, _)) => {
                s.failed += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(e.to_string());
                }
            }
        }
    }
}

/// The broker to measure: `--bootstrap`, or a Courier broker started in a temporary directory
/// (returned so it lives as long as the benchmark). The topic exists afterwards.
fn target(args: &ProduceArgs) -> anyhow::Result<(Option<crate::embedded::EmbeddedBroker>, String)> {
    let embedded = match &args.bootstrap {
        Some(_) => None,
        None => {
            Some(crate::embedded::EmbeddedBroker::start().context("starting an embedded broker")?)
        }
    };
    let bootstrap = match (&args.bootstrap, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(e)) => e.bootstrap(),
        (None, None) => anyhow::bail!("no broker to measure"),
    };
    crate::admin::ensure_topic(&bootstrap, &args.topic, args.partitions)?;
    Ok((embedded, bootstrap))
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(args) => produce(args),
    }
}

fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if args.transactional {
        return produce_transactional(args);
    }
    let (embedded, bootstrap) = target(&args)?;
    let stats = Arc::new(Mutex::new(Stats {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
        delivered: 0,
        failed: 0,
        first_error: None,
    }));
    let producer: BaseProducer<BenchContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set(
            "max.in.flight.requests.per.connection",
            args.in_flight.to_string(),
        )
        .set("compression.codec", &args.compression)
        .set("enable.idempotence", args.idempotent.to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("message.max.bytes", "10000000")
        .create_with_context(BenchContext {
            stats: Arc::clone(&stats),
        })
        .context("creating the producer")?;
    let value = vec![b'x'; args.value_size];
    // Warm up: connections, metadata and (idempotent) the producer id are in place before the
    // clock starts, so start-up is not measured as ack latency.
    producer
        .send::<[u8], [u8]>(
            BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now()))
                .payload(&value[..])
                .partition(0),
        )
        .map_err(|(e, _)| anyhow::anyhow!("warm-up send failed: {e}"))?;
    producer
        .flush(Duration::from_secs(30))
        .context("warm-up flush")?;
    {
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        s.latency_us.reset();
        s.delivered = 0;
    }
    let bar = ProgressBar::new(args.messages);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} msgs  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    for i in 0..args.messages {
        let partition = (i % args.partitions as u64) as i32;
        let mut record = BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now()))
            .payload(&value[..])
            .partition(partition);
        loop {
            match producer.send::<[u8], [u8]>(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        anyhow::bail!("send failed: {e}");
                    }
                    producer.poll(Duration::from_millis(1));
                    record = r;
                }
            }
        }
        if args.rate > 0 && i % 1000 == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
            let now = Instant::now();
            if due > now {
                producer.poll(due - now);
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
            bar.set_position(stats.lock().unwrap_or_else(|p| p.into_inner()).delivered);
        }
    }
    while producer.in_flight_count() > 0 {
        producer.poll(Duration::from_millis(10));
        bar.set_position(stats.lock().unwrap_or_else(|p| p.into_inner()).delivered);
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("deliveries still outstanding after 10 minutes");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let s = stats.lock().unwrap_or_else(|p| p.into_inner());
    let rate = s.delivered as f64 / elapsed;
    println!(
        "produce: {} msgs of {} B, acks={}, linger.ms={}, batch.size={}, in-flight={}, partitions={}, compression={}, rate={}",
        args.messages,
        args.value_size,
        args.acks,
        args.linger_ms,
        args.batch_size,
        args.in_flight,
        args.partitions,
        args.compression,
        if args.rate == 0 { "unlimited".to_string() } else { format!("{}/s", args.rate) }
    );
    println!(
        "  {:.0} msgs/s  {:.1} MB/s  in {:.2} s  delivered {}  failed {}",
        rate,
        rate * args.value_size as f64 / 1e6,
        elapsed,
        s.delivered,
        s.failed
    );
    println!(
        "  ack latency: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        s.latency_us.value_at_quantile(0.50) as f64 / 1000.0,
        s.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        s.latency_us.value_at_quantile(0.999) as f64 / 1000.0,
        s.latency_us.max() as f64 / 1000.0
    );
    if let Some(e) = &s.first_error {
        anyhow::bail!("{} deliveries failed; first error: {e}", s.failed);
    }
    drop(embedded);
    Ok(())
}

/// Transactions of `txn_messages` records, back to back: begin, send, commit.
fn produce_transactional(args: ProduceArgs) -> anyhow::Result<()> {
    let (embedded, bootstrap) = target(&args)?;
    // ThreadedProducer: a background thread serves delivery reports, so commit_transaction's
    // flush is not paced by the application's polls.
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set(
            "transactional.id",
            format!("courier-bench-{}", std::process::id()),
        )
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("compression.codec", &args.compression)
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .context("creating the transactional producer")?;
    producer
        .init_transactions(Duration::from_secs(30))
        .context("init_transactions")?;
    let value = vec![b'x'; args.value_size];
    let txns = args.messages.div_ceil(args.txn_messages.max(1));
    let bar = ProgressBar::new(txns);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} transactions  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut commit_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    let started = Instant::now();
    let mut sent = 0u64;
    for t in 0..txns {
        producer.begin_transaction().context("begin_transaction")?;
        let n = args.txn_messages.min(args.messages - sent);
        for i in 0..n {
            let partition = ((sent + i) % args.partitions as u64) as i32;
            let mut record = BaseRecord::to(&args.topic)
                .payload(&value[..])
                .partition(partition);
            loop {
                match producer.send::<[u8], [u8]>(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        if !matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ) {
                            anyhow::bail!("send failed: {e}");
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        record = r;
                    }
                }
            }
        }
        sent += n;
        let commit_started = Instant::now();
        producer
            .commit_transaction(Duration::from_secs(60))
            .context("commit_transaction")?;
        let _ = commit_us.record((commit_started.elapsed().as_micros() as u64).max(1));
        bar.set_position(t + 1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let rate = sent as f64 / elapsed;
    println!(
        "produce (transactional): {} msgs of {} B in {} transactions of {}, partitions={}, compression={}",
        sent, args.value_size, txns, args.txn_messages, args.partitions, args.compression
    );
    println!(
        "  {:.0} msgs/s  {:.1} MB/s  {:.0} txn/s  in {:.2} s",
        rate,
        rate * args.value_size as f64 / 1e6,
        txns as f64 / elapsed,
        elapsed
    );
    println!(
        "  commit latency (send of the last record to commit acknowledged): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        commit_us.value_at_quantile(0.50) as f64 / 1000.0,
        commit_us.value_at_quantile(0.99) as f64 / 1000.0,
        commit_us.max() as f64 / 1000.0
    );
    // The producer goes before the broker it talks to.
    drop(producer);
    drop(embedded);
    Ok(())
}
