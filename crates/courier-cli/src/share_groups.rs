//! `courier share-groups`: list share groups (KIP-932), describe one (members, per
//! share-partition the start offset, log end, lag and delivery state, and the group's
//! settings), and redrive its dead letters to the topics they came from.
//!
//! `list` and `describe` speak the Kafka protocol directly ([`WireClient`]): ListGroups,
//! ShareGroupDescribe, DescribeShareGroupOffsets, ListOffsets, and DescribeConfigs on the
//! group, whose read-only `courier.share.state.<topic>.<partition>` entries carry what no
//! Kafka API does (records in flight, available, archived, acknowledged). `redrive` is a
//! plain consumer and producer (librdkafka), as any client could be.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use courier_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use courier_protocol::kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use courier_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use courier_protocol::kafka_protocol::messages::share_group_describe_response::DescribedGroup;
use courier_protocol::kafka_protocol::messages::{
    BrokerId, DescribeConfigsRequest, DescribeShareGroupOffsetsRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, ShareGroupDescribeRequest, TopicName,
};
use courier_protocol::kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::groups::Target;
use crate::wire::WireClient;

/// Timeout of each librdkafka call.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long redrive waits for the next dead letter it knows is there before giving up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Dead letters produced, acknowledged and committed together.
const REDRIVE_BATCH: usize = 500;
/// Kafka's resource type code for a group.
const RESOURCE_GROUP: i8 = 32;
/// Config source code of a group's own setting (anything else is a default).
const SOURCE_GROUP_CONFIG: i8 = 8;
/// The name prefix of Courier's read-only share-partition state entries.
const STATE_PREFIX: &str = "courier.share.state.";
/// The group setting that names its dead-letter topic.
const DLQ_SETTING: &str = "errors.deadletterqueue.topic.name";
/// The share-group settings shown by `describe`, in this order.
const SETTINGS: [&str; 4] = [
    "share.auto.offset.reset",
    "share.record.lock.duration.ms",
    "share.delivery.count.limit",
    DLQ_SETTING,
];
/// Headers naming a dead letter's source partition; `redrive` needs the first two.
const DLQ_TOPIC_HEADER: &str = "courier-dlq-topic";
const DLQ_PARTITION_HEADER: &str = "courier-dlq-partition";
/// Every header the broker adds to a dead letter starts with this; redrive drops them.
const DLQ_HEADER_PREFIX: &str = "courier-dlq-";
/// Added to a redriven record: `<dead-letter topic>/<partition>/<offset>`.
const REDRIVEN_FROM_HEADER: &str = "courier-redriven-from";
/// Kafka error codes shown by name.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// Share-group administration.
#[derive(Subcommand)]
pub enum ShareGroupsCommand {
    /// List every share group with its state and member count.
    List(Target),
    /// Show a share group's members, its settings, and per share-partition the start offset,
    /// log end offset, lag and records in flight, available, archived and acknowledged.
    Describe(DescribeArgs),
    /// Produce the group's dead letters again to the topic and partition each came from.
    Redrive(RedriveArgs),
}

/// `share-groups describe`.
#[derive(Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    target: Target,
    /// The share group id.
    group: String,
}

/// `share-groups redrive`.
#[derive(Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    target: Target,
    /// The share group id.
    group: String,
    /// The dead-letter topic to read (default: the group's errors.deadletterqueue.topic.name,
    /// `<group>.dlq` unless set).
    #[arg(long)]
    dlq: Option<String>,
    /// Handle at most this many dead letters (redriven or skipped).
    #[arg(long)]
    max: Option<u64>,
    /// Show what would be redriven; send and commit nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs a share-groups command.
pub fn run(cmd: ShareGroupsCommand) -> anyhow::Result<()> {
    match cmd {
        ShareGroupsCommand::List(t) => list(&t.bootstrap),
        ShareGroupsCommand::Describe(a) => describe(&a.target.bootstrap, &a.group),
        ShareGroupsCommand::Redrive(a) => redrive(a),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// ShareGroupDescribe of `ids`, in order.
fn describe_groups(c: &mut WireClient, ids: &[String]) -> anyhow::Result<Vec<DescribedGroup>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let req = ShareGroupDescribeRequest::default()
        .with_group_ids(ids.iter().map(|g| GroupId(s(g))).collect());
    Ok(c.call(1, &req).context("describing share groups")?.groups)
}

fn list(bootstrap: &str) -> anyhow::Result<()> {
    let mut c = WireClient::connect(bootstrap)?;
    let req = ListGroupsRequest::default().with_types_filter(vec![s("share")]);
    let r = c.call(5, &req).context("listing groups")?;
    if r.error_code != 0 {
        bail!("listing groups failed: error {}", r.error_code);
    }
    let mut ids: Vec<String> = r.groups.iter().map(|g| g.group_id.to_string()).collect();
    ids.sort();
    println!("{:<40} {:<12} {:>7}", "GROUP", "STATE", "MEMBERS");
    for g in describe_groups(&mut c, &ids)? {
        println!(
            "{:<40} {:<12} {:>7}",
            g.group_id.as_str(),
            g.group_state.as_str(),
            g.members.len()
        );
    }
    Ok(())
}

/// One share-partition's delivery state, from its `courier.share.state.*` entry.
#[derive(Default)]
struct PartitionState {
    acquired: Option<i64>,
    available: Option<i64>,
    archived: Option<i64>,
    acknowledged: Option<i64>,
}

/// Parses `start=.. end=.. acquired=.. available=.. archived=.. acknowledged=..`.
fn parse_state(value: &str) -> PartitionState {
    let fields: HashMap<&str, i64> = value
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    PartitionState {
        acquired: fields.get("acquired").copied(),
        available: fields.get("available").copied(),
        archived: fields.get("archived").copied(),
        acknowledged: fields.get("acknowledged").copied(),
    }
}

/// The group's DescribeConfigs entries: (settings by name, state by (topic, partition)).
type GroupConfigs = (
    BTreeMap<String, (String, bool)>,
    BTreeMap<(String, i32), PartitionState>,
);

/// DescribeConfigs on the group: its settings (value, is default) and its share-partitions'
/// state entries.
fn group_configs(c: &mut WireClient, group: &str) -> anyhow::Result<GroupConfigs> {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_GROUP)
            .with_resource_name(s(group))]);
    let r = c.call(4, &req).context("describing the group's configs")?;
    let res = r.results.first().context("no DescribeConfigs result")?;
    if res.error_code != 0 {
        bail!(
            "describing the group's configs failed: error {} {}",
            res.error_code,
            res.error_message.as_deref().unwrap_or_default()
        );
    }
    let (mut settings, mut states) = (BTreeMap::new(), BTreeMap::new());
    for e in &res.configs {
        let value = e.value.as_deref().unwrap_or_default().to_string();
        match e.name.strip_prefix(STATE_PREFIX) {
            // `<topic>.<partition>`: a topic name may hold dots, the partition cannot.
            Some(tp) => {
                if let Some((topic, p)) = tp.rsplit_once('.') {
                    if let Ok(p) = p.parse() {
                        states.insert((topic.to_string(), p), parse_state(&value));
                    }
                }
            }
            None => {
                let is_default = e.config_source != SOURCE_GROUP_CONFIG;
                settings.insert(e.name.to_string(), (value, is_default));
            }
        }
    }
    Ok((settings, states))
}

/// The log end offset of each partition (ListOffsets, latest); `None` where it failed.
fn log_end_offsets(
    c: &mut WireClient,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let r = c.call(5, &req).context("listing log end offsets")?;
    Ok(r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0)
                .map(move |p| ((t.name.to_string(), p.partition_index), p.offset))
        })
        .collect())
}

fn or_dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn describe(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let mut c = WireClient::connect(bootstrap)?;
    let g = describe_groups(&mut c, &[group.to_string()])?
        .into_iter()
        .next()
        .context("no answer for the group")?;
    match g.error_code {
        0 => {}
        GROUP_ID_NOT_FOUND => bail!("no share group {group}"),
        code => bail!(
            "describing share group {group} failed: error {code} {}",
            g.error_message.as_deref().unwrap_or_default()
        ),
    }
    println!(
        "share group {}  state {}  epoch {}  members {}",
        group,
        g.group_state.as_str(),
        g.group_epoch,
        g.members.len()
    );
    for m in &g.members {
        let parts: Vec<String> = m
            .assignment
            .topic_partitions
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| format!("{}-{p}", t.topic_name.as_str()))
            })
            .collect();
        println!(
            "  member {}  client {}  host {}  partitions {}",
            m.member_id.as_str(),
            m.client_id.as_str(),
            m.client_host.as_str(),
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(",")
            }
        );
    }
    let (settings, states) = group_configs(&mut c, group)?;
    for name in SETTINGS {
        if let Some((value, is_default)) = settings.get(name) {
            let shown = if value.is_empty() { "(none)" } else { value };
            let origin = if *is_default { "  (default)" } else { "" };
            println!("  setting {name} = {shown}{origin}");
        }
    }
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        // Null topics: every share-partition of the group (an empty list means none).
        DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    let r = c.call(0, &req).context("describing share group offsets")?;
    let offsets = r.groups.first().context("no answer for the group")?;
    if offsets.error_code != 0 {
        bail!(
            "describing share group offsets failed: error {} {}",
            offsets.error_code,
            offsets.error_message.as_deref().unwrap_or_default()
        );
    }
    let mut starts: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &offsets.topics {
        for p in t.partitions.iter().filter(|p| p.error_code == 0) {
            starts.insert(
                (t.topic_name.to_string(), p.partition_index),
                p.start_offset,
            );
        }
    }
    let mut keys: Vec<(String, i32)> = starts.keys().chain(states.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let ends = log_end_offsets(&mut c, &keys)?;
    println!(
        "{:<30} {:>9} {:>12} {:>12} {:>8} {:>9} {:>9} {:>8} {:>12}",
        "TOPIC",
        "PARTITION",
        "START-OFFSET",
        "LOG-END",
        "LAG",
        "IN-FLIGHT",
        "AVAILABLE",
        "ARCHIVED",
        "ACKNOWLEDGED"
    );
    let empty = PartitionState::default();
    for key in &keys {
        let start = starts.get(key).copied().filter(|s| *s >= 0);
        let end = ends.get(key).copied();
        let lag = start.zip(end).map(|(s, e)| (e - s).max(0));
        let st = states.get(key).unwrap_or(&empty);
        println!(
            "{:<30} {:>9} {:>12} {:>12} {:>8} {:>9} {:>9} {:>8} {:>12}",
            key.0,
            key.1,
            or_dash(start),
            or_dash(end),
            or_dash(lag),
            or_dash(st.acquired),
            or_dash(st.available),
            or_dash(st.archived),
            or_dash(st.acknowledged)
        );
    }
    Ok(())
}

/// The group's dead-letter topic as the broker reports it (`None` when set to none).
fn configured_dead_letter_topic(bootstrap: &str, group: &str) -> anyhow::Result<Option<String>> {
    let mut c = WireClient::connect(bootstrap)?;
    let (settings, _) = group_configs(&mut c, group)?;
    Ok(settings
        .get(DLQ_SETTING)
        .map(|(v, _)| v.clone())
        .filter(|v| !v.is_empty()))
}

/// A dead letter ready to go back to its source partition.
struct Letter {
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

/// The letter at `offset` of the dead-letter partition, or why it cannot be redriven.
fn letter_of<M: Message>(m: &M, from: &str) -> Result<Letter, String> {
    let mut topic = None;
    let mut partition = None;
    let mut headers = OwnedHeaders::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let text = h.value.map(String::from_utf8_lossy);
            match h.key {
                DLQ_TOPIC_HEADER => topic = text.map(|t| t.into_owned()),
                DLQ_PARTITION_HEADER => partition = text.and_then(|p| p.parse::<i32>().ok()),
                k if k.starts_with(DLQ_HEADER_PREFIX) => {}
                k => {
                    headers = headers.insert(Header {
                        key: k,
                        value: h.value,
                    })
                }
            }
        }
    }
    let (Some(topic), Some(partition)) = (topic.filter(|t| !t.is_empty()), partition) else {
        return Err(format!(
            "no valid {DLQ_TOPIC_HEADER} and {DLQ_PARTITION_HEADER} headers"
        ));
    };
    Ok(Letter {
        topic,
        partition,
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: headers.insert(Header {
            key: REDRIVEN_FROM_HEADER,
            value: Some(from),
        }),
    })
}

/// What a redrive did.
#[derive(Default)]
struct Tally {
    redriven: u64,
    skipped: u64,
    by_topic: BTreeMap<String, u64>,
}

/// Produces `letters` and waits until every one is acknowledged (acks=all).
fn produce_all(
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    letters: &[Letter],
) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(letters.len());
    for l in letters {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&l.topic)
            .partition(l.partition)
            .headers(l.headers.clone());
        if let Some(k) = &l.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &l.value {
            record = record.payload(v.as_slice());
        }
        let f = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("queueing a record for {}: {e}", l.topic))?;
        pending.push((f, &l.topic, l.partition));
    }
    rt.block_on(async {
        for (f, topic, partition) in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => bail!("producing to {topic}-{partition}: {e}"),
                Err(_) => bail!("producing to {topic}-{partition}: the producer went away"),
            }
        }
        Ok(())
    })
}

fn redrive(a: RedriveArgs) -> anyhow::Result<()> {
    let bootstrap = &a.target.bootstrap;
    let dlq = match a.dlq.clone() {
        Some(t) => t,
        None => configured_dead_letter_topic(bootstrap, &a.group)?.with_context(|| {
            format!(
                "share group {} has no dead-letter topic; name one with --dlq",
                a.group
            )
        })?,
    };
    let progress_group = format!("courier-redrive.{}", a.group);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &progress_group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    let md = consumer
        .fetch_metadata(Some(&dlq), TIMEOUT)
        .with_context(|| format!("fetching metadata of {dlq}"))?;
    let Some(topic) = md
        .topics()
        .iter()
        .find(|t| t.name() == dlq && t.error().is_none())
    else {
        println!("no dead letters: topic {dlq} does not exist");
        return Ok(());
    };
    // Where to start (the committed progress, else the log start) and stop (the log end now).
    let mut all = TopicPartitionList::new();
    for p in topic.partitions() {
        all.add_partition(&dlq, p.id());
    }
    let committed = consumer
        .committed_offsets(all, TIMEOUT)
        .context("fetching the redrive progress")?;
    let mut assignment = TopicPartitionList::new();
    let mut stop_at: BTreeMap<i32, i64> = BTreeMap::new();
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(&dlq, p.id(), TIMEOUT)
            .context("fetching watermarks")?;
        let from = match committed.find_partition(&dlq, p.id()).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        if from < high {
            assignment.add_partition_offset(&dlq, p.id(), Offset::Offset(from))?;
            stop_at.insert(p.id(), high);
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the producer")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut tally = Tally::default();
    if !stop_at.is_empty() {
        consumer
            .assign(&assignment)
            .context("assigning the dead-letter partitions")?;
    }
    let limit = a.max.unwrap_or(u64::MAX);
    let mut batch: Vec<Letter> = Vec::new();
    // The next offset to commit per partition once the batch is acknowledged.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_progress = Instant::now();
    while !stop_at.is_empty() && tally.redriven + tally.skipped < limit {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            if last_progress.elapsed() > STALL_TIMEOUT {
                bail!("no dead letter arrived for {STALL_TIMEOUT:?} although {dlq} holds more");
            }
            continue;
        };
        let m = m.context("reading dead letters")?;
        last_progress = Instant::now();
        let (p, offset) = (m.partition(), m.offset());
        let Some(&high) = stop_at.get(&p) else {
            continue;
        };
        if offset >= high {
            stop_at.remove(&p);
            continue;
        }
        let from = format!("{dlq}/{p}/{offset}");
        match letter_of(&m, &from) {
            Ok(l) => {
                if a.dry_run {
                    println!("would redrive {from} -> {}-{}", l.topic, l.partition);
                }
                tally.redriven += 1;
                *tally.by_topic.entry(l.topic.clone()).or_default() += 1;
                batch.push(l);
            }
            Err(why) => {
                tally.skipped += 1;
                eprintln!("courier: warning: skipped dead letter {from}: {why}");
            }
        }
        next.insert(p, offset + 1);
        if offset + 1 >= high {
            stop_at.remove(&p);
        }
        if batch.len() >= REDRIVE_BATCH {
            flush(
                &rt, &producer, &consumer, &dlq, &mut batch, &mut next, a.dry_run,
            )?;
        }
    }
    flush(
        &rt, &producer, &consumer, &dlq, &mut batch, &mut next, a.dry_run,
    )?;
    let dry = if a.dry_run {
        " (dry run: nothing sent or committed)"
    } else {
        ""
    };
    println!(
        "redriven {}, skipped {} from {dlq}{dry}",
        tally.redriven, tally.skipped
    );
    for (topic, n) in &tally.by_topic {
        println!("  {topic:<40} {n:>8}");
    }
    Ok(())
}

/// Produces the batch, waits for its acknowledgements, then commits the dead-letter offsets it
/// covers (skipped letters included) as the redrive's progress. A crash between the two
/// redrives those letters again on the next run: at least once.
fn flush(
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    consumer: &BaseConsumer,
    dlq: &str,
    batch: &mut Vec<Letter>,
    next: &mut BTreeMap<i32, i64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    if dry_run || next.is_empty() {
        batch.clear();
        next.clear();
        return Ok(());
    }
    produce_all(rt, producer, batch)?;
    let mut progress = TopicPartitionList::new();
    for (p, o) in next.iter() {
        progress.add_partition_offset(dlq, *p, Offset::Offset(*o))?;
    }
    consumer
        .commit(&progress, CommitMode::Sync)
        .context("committing the redrive progress (the letters were sent)")?;
    batch.clear();
    next.clear();
    Ok(())
}
