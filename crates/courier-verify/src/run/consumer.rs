//! Consumer processes: by subscription in one consumer group (committing after each poll,
//! so a crash or rebalance redelivers from the last commit), or by assignment of every
//! partition from the beginning; and the final read, which reads every key from the start.
//!
//! A poll operation gathers what one or more `poll()` calls return over about 100 ms. A
//! rebalance seen during it ends the operation first, then is recorded as an `assign`
//! operation (the checker resets its per-consumer order tracking there).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

use super::recorder::micro;
use super::Shared;

/// Remembers rebalances that happen inside `poll()` so the loop can record them in order.
#[derive(Default)]
pub struct RecordingContext {
    events: Mutex<Vec<Vec<String>>>,
}

impl ClientContext for RecordingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "librdkafka");
    }

    /// Client-level errors are expected under faults (and EOF is reported as one); they are
    /// logged at debug instead of librdkafka's default error level.
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::debug!(%error, reason, "consumer client error");
        }
    }
}

impl ConsumerContext for RecordingContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let keys = match rebalance {
            Rebalance::Assign(tpl) => tpl
                .elements()
                .iter()
                .map(|e| Shared::key_name(e.partition() as usize))
                .collect(),
            Rebalance::Revoke(_) => Vec::new(),
            Rebalance::Error(_) => return,
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(keys);
    }
}

impl RecordingContext {
    /// The rebalances seen since the last call: each the keys newly assigned (empty for a
    /// revocation).
    pub(super) fn take(&self) -> Vec<Vec<String>> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub(super) type VerifyConsumer = BaseConsumer<RecordingContext>;

pub(super) fn create(
    shared: &Shared,
    group: Option<&str>,
    client: &str,
) -> Result<VerifyConsumer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &shared.bootstrap)
        .set("client.id", client)
        .set("group.id", group.unwrap_or("verify-unused"))
        .set("isolation.level", shared.isolation.name())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500");
    c.create_with_context(RecordingContext::default())
}

/// A poll operation being gathered.
struct PollOp {
    process: i64,
    reads: Vec<Value>,
}

impl PollOp {
    fn start(shared: &Shared, process: i64) -> Self {
        shared
            .recorder
            .record(process, "invoke", "poll", Value::Array(Vec::new()));
        Self {
            process,
            reads: Vec::new(),
        }
    }

    fn finish(self, shared: &Shared) {
        shared
            .recorder
            .counters
            .read
            .fetch_add(self.reads.len() as u64, Ordering::Relaxed);
        shared
            .recorder
            .record(self.process, "ok", "poll", Value::Array(self.reads));
    }
}

pub(super) fn record_assignments(shared: &Shared, process: i64, events: Vec<Vec<String>>) {
    for keys in events {
        let value = json!({ "keys": keys });
        shared
            .recorder
            .record(process, "invoke", "assign", value.clone());
        shared.recorder.record(process, "ok", "assign", value);
    }
}

/// One poll operation: about 100 ms of `poll()` calls. Returns false if the consumer hit
/// an error that needs a new client.
fn poll_once(shared: &Shared, consumer: &VerifyConsumer, process: i64) -> bool {
    let mut op = PollOp::start(shared, process);
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut healthy = true;
    while Instant::now() < deadline && op.reads.len() < 500 {
        let polled = consumer.poll(Duration::from_millis(50));
        let events = consumer.context().take();
        if !events.is_empty() {
            op.finish(shared);
            record_assignments(shared, process, events);
            op = PollOp::start(shared, process);
        }
        match polled {
            None => {}
            Some(Ok(m)) => {
                let key = Shared::key_name(m.partition() as usize);
                let value = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse::<i64>().ok());
                match value {
                    Some(v) => op.reads.push(micro("poll", &key, Some(m.offset()), v)),
                    None => tracing::warn!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record that is not a workload value"
                    ),
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "consumer error");
                if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
                    healthy = false;
                    break;
                }
            }
        }
    }
    op.finish(shared);
    healthy
}

fn commit(shared: &Shared, consumer: &VerifyConsumer, process: i64) {
    let Ok(position) = consumer.position() else {
        return;
    };
    let mut offsets = BTreeMap::new();
    for e in position.elements() {
        if let Offset::Offset(o) = e.offset() {
            offsets.insert(format!("{}/{}", e.topic(), e.partition()), o);
        }
    }
    if offsets.is_empty() {
        return;
    }
    let value = json!({ "offsets": offsets });
    shared
        .recorder
        .record(process, "invoke", "commit", value.clone());
    match consumer.commit(&position, CommitMode::Sync) {
        Ok(()) => shared.recorder.record(process, "ok", "commit", value),
        Err(_) => shared.recorder.record(process, "info", "commit", value),
    }
}

/// Runs one consumer until the run stops: `group` subscribes (committing after each poll),
/// `None` assigns every partition from the beginning. Runs on a blocking thread.
pub fn run(shared: Arc<Shared>, worker: usize, group: Option<String>) {
    let slot = shared.producer_workers + worker;
    while !shared.stopping() {
        let process = shared.recorder.new_process();
        let client = format!("verify-consumer-{worker}-{process}");
        let consumer = match create(&shared, group.as_deref(), &client) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "creating a consumer failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let started = match &group {
            Some(_) => consumer.subscribe(&[shared.topic.as_str()]),
            None => {
                let mut tpl = TopicPartitionList::new();
                for p in 0..shared.keys {
                    let _ = tpl.add_partition_offset(&shared.topic, p as i32, Offset::Beginning);
                }
                let keys: Vec<String> = (0..shared.keys).map(Shared::key_name).collect();
                record_assignments(&shared, process, vec![keys]);
                consumer.assign(&tpl)
            }
        };
        if let Err(e) = started {
            tracing::warn!(error = %e, "subscribe/assign failed");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let generation = shared.crash_generation(slot);
        loop {
            if shared.stopping() {
                return;
            }
            if shared.crash_generation(slot) != generation {
                shared
                    .recorder
                    .record(process, "info", "crash", Value::Null);
                break;
            }
            if !poll_once(&shared, &consumer, process) {
                shared
                    .recorder
                    .record(process, "info", "crash", Value::Null);
                break;
            }
            if group.is_some() {
                commit(&shared, &consumer, process);
            }
        }
    }
}

/// The final phase's read: a new consumer assigned every partition from the beginning
/// reads until it has reached each partition's end (an EOF at or past the high watermark
/// taken when it started), or `timeout`. Returns how many partitions it did not finish.
pub fn final_read(shared: &Shared, timeout: Duration) -> usize {
    let process = shared.recorder.new_process();
    let Ok(consumer) = create(shared, None, "verify-final-read") else {
        return shared.keys;
    };
    let mut ends = vec![0i64; shared.keys];
    for (p, end) in ends.iter_mut().enumerate() {
        if let Ok((_, high)) =
            consumer.fetch_watermarks(&shared.topic, p as i32, Duration::from_secs(10))
        {
            *end = high;
        }
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..shared.keys {
        let _ = tpl.add_partition_offset(&shared.topic, p as i32, Offset::Beginning);
    }
    if consumer.assign(&tpl).is_err() {
        return shared.keys;
    }
    let keys: Vec<String> = (0..shared.keys).map(Shared::key_name).collect();
    record_assignments(shared, process, vec![keys]);
    let mut done = vec![false; shared.keys];
    let deadline = Instant::now() + timeout;
    while done.iter().any(|d| !d) && Instant::now() < deadline {
        let mut op = PollOp::start(shared, process);
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let p = m.partition() as usize;
                    if let Some(v) = m
                        .payload()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        op.reads
                            .push(micro("poll", &Shared::key_name(p), Some(m.offset()), v));
                    }
                    if p < done.len() && m.offset() + 1 >= ends[p] {
                        done[p] = true;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    let p = p as usize;
                    if p < done.len() {
                        // EOF: at the high watermark (read_uncommitted) or the last stable
                        // offset (read_committed), which only stays below it while a
                        // transaction is open.
                        let at = consumer.position().ok().and_then(|tpl| {
                            tpl.find_partition(&shared.topic, p as i32)
                                .map(|e| e.offset())
                        });
                        let reached = match at {
                            Some(Offset::Offset(o)) => o >= ends[p],
                            _ => false,
                        };
                        if reached || ends[p] == 0 {
                            done[p] = true;
                        }
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "final read error"),
                None => {}
            }
        }
        op.finish(shared);
    }
    done.iter().filter(|d| !**d).count()
}
