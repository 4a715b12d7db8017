//! Reads `order-events` back, partition by partition, from where this run started to the
//! high watermark: the ground truth of what the Order API stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::order::{Order, TOPIC};
use crate::DemoError;

/// How long reading the topic back may take before the audit gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One stored record of this run.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The order it carries.
    pub order: Order,
}

/// Every record of `run` in `order-events` between `from` (per partition) and `to`, in
/// partition then offset order; and how many records of other runs (or not orders) were
/// skipped.
pub fn read_back(
    bootstrap: &str,
    run: &str,
    from: &BTreeMap<i32, i64>,
    to: &BTreeMap<i32, i64>,
) -> Result<(Vec<TopicRecord>, u64), DemoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("demo-audit-{run}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    for (&p, &end) in to {
        let start = from.get(&p).copied().unwrap_or(0);
        if start < end {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(start))?;
            remaining.insert(p, end);
        }
    }
    consumer.assign(&tpl)?;
    let mut records = Vec::new();
    let mut foreign = 0u64;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(DemoError::Run(format!(
                "reading {TOPIC} back timed out; partitions not read to the end: {remaining:?}"
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        let Some(&end) = remaining.get(&m.partition()) else {
            continue;
        };
        if m.offset() >= end {
            remaining.remove(&m.partition());
            continue;
        }
        match m.payload().and_then(Order::decode) {
            Some(order) if order.run == run => records.push(TopicRecord {
                partition: m.partition(),
                offset: m.offset(),
                order,
            }),
            _ => foreign += 1,
        }
        if m.offset() + 1 >= end {
            remaining.remove(&m.partition());
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok((records, foreign))
}
