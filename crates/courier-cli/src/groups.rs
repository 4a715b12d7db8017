//! `courier groups`: list, describe (members, assignment, committed offset, log end, lag),
//! delete, and reset offsets of consumer groups, through librdkafka like any other client.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use courier_protocol::kafka_protocol::messages::ConsumerProtocolAssignment;
use courier_protocol::kafka_protocol::protocol::Decodable;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Consumer-group administration.
#[derive(Subcommand)]
pub enum GroupsCommand {
    /// List every group with its state.
    List(Target),
    /// Show a group's members, their partitions, and per partition the committed offset, the
    /// log end offset and the lag.
    Describe(GroupArgs),
    /// Delete empty groups and their committed offsets.
    Delete(DeleteArgs),
    /// Move an empty group's committed offsets.
    ResetOffsets(ResetArgs),
}

/// Which broker to talk to.
#[derive(Args)]
pub struct Target {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092", env = "COURIER_BOOTSTRAP")]
    pub bootstrap: String,
}

/// A group on a broker.
#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    target: Target,
    /// The group id.
    group: String,
}

/// Groups to delete.
#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    /// Group ids.
    #[arg(required = true)]
    groups: Vec<String>,
}

/// Where to move offsets: exactly one of the options.
#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    target: Target,
    /// The group id.
    group: String,
    /// Topics whose partitions to reset (all partitions of each).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// To the first offset still in the log.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the log end (skip everything not yet consumed).
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To this offset in every partition.
    #[arg(long, group = "to")]
    to_offset: Option<i64>,
    /// To the first record at or after this time (milliseconds since the epoch).
    #[arg(long, group = "to")]
    to_time: Option<i64>,
    /// Show the plan without committing it.
    #[arg(long)]
    dry_run: bool,
}

fn consumer(bootstrap: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a client")
}

/// Runs a groups command.
pub fn run(cmd: GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List(t) => list(&t.bootstrap),
        GroupsCommand::Describe(a) => describe(&a.target.bootstrap, &a.group),
        GroupsCommand::Delete(a) => delete(&a.target.bootstrap, &a.groups),
        GroupsCommand::ResetOffsets(a) => reset(a),
    }
}

fn list(bootstrap: &str) -> anyhow::Result<()> {
    let c = consumer(bootstrap, "courier-cli")?;
    let groups = c
        .fetch_group_list(None, TIMEOUT)
        .context("listing groups")?;
    println!(
        "{:<40} {:<20} {:<10} {:>7}",
        "GROUP", "STATE", "TYPE", "MEMBERS"
    );
    for g in groups.groups() {
        println!(
            "{:<40} {:<20} {:<10} {:>7}",
            g.name(),
            g.state(),
            g.protocol_type(),
            g.members().len()
        );
    }
    Ok(())
}

/// (topic, partition) pairs from a member's consumer-protocol assignment.
fn assigned(bytes: Option<&[u8]>) -> Vec<(String, i32)> {
    let Some(b) = bytes.filter(|b| b.len() >= 2) else {
        return Vec::new();
    };
    let version = i16::from_be_bytes([b[0], b[1]]);
    let mut buf = bytes::Bytes::copy_from_slice(&b[2..]);
    ConsumerProtocolAssignment::decode(&mut buf, version)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .flat_map(|t| {
                    let topic = t.topic.to_string();
                    t.partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn describe(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let c = consumer(bootstrap, group)?;
    let groups = c
        .fetch_group_list(Some(group), TIMEOUT)
        .context("describing the group")?;
    let info = groups.groups().first().context("no answer for the group")?;
    println!(
        "group {}  state {}  protocol {} {}",
        info.name(),
        info.state(),
        info.protocol_type(),
        info.protocol()
    );
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in info.members() {
        let parts = assigned(m.assignment());
        println!(
            "  member {}  client {}  host {}  partitions {}",
            m.id(),
            m.client_id(),
            m.client_host(),
            parts.len()
        );
        for p in parts {
            owner.insert(p, m.id().to_string());
        }
    }
    // Committed offsets for every partition of every topic; keep those with a commit or an owner.
    let metadata = c
        .fetch_metadata(None, TIMEOUT)
        .context("fetching metadata")?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = c
        .committed_offsets(tpl, TIMEOUT)
        .context("fetching committed offsets")?;
    println!(
        "{:<30} {:>9} {:>12} {:>12} {:>10}  OWNER",
        "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"
    );
    for e in committed.elements() {
        let key = (e.topic().to_string(), e.partition());
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        let who = owner.get(&key).cloned();
        if offset.is_none() && who.is_none() {
            continue;
        }
        let (_, high) = c
            .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
            .context("fetching watermarks")?;
        let lag = offset
            .map(|o| (high - o).max(0).to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<30} {:>9} {:>12} {:>12} {:>10}  {}",
            e.topic(),
            e.partition(),
            offset.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
            high,
            lag,
            who.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

fn delete(bootstrap: &str, groups: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = rt.block_on(admin.delete_groups(
        &names,
        &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
    ))?;
    let mut failed = 0;
    for r in results {
        match r {
            Ok(g) => println!("deleted group {g}"),
            Err((g, e)) => {
                failed += 1;
                eprintln!("courier: could not delete group {g}: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} group(s) not deleted");
    }
    Ok(())
}

fn reset(a: ResetArgs) -> anyhow::Result<()> {
    let c = consumer(&a.target.bootstrap, &a.group)?;
    let groups = c
        .fetch_group_list(Some(&a.group), TIMEOUT)
        .context("describing the group")?;
    if let Some(info) = groups.groups().first() {
        if !info.members().is_empty() {
            bail!(
                "group {} has {} active member(s) (state {}); stop its consumers before resetting offsets",
                a.group,
                info.members().len(),
                info.state()
            );
        }
    }
    let metadata = c
        .fetch_metadata(None, TIMEOUT)
        .context("fetching metadata")?;
    let mut plan = TopicPartitionList::new();
    for topic in &a.topics {
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .with_context(|| format!("unknown topic {topic}"))?;
        for p in t.partitions() {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), TIMEOUT)
                .context("fetching watermarks")?;
            let target = if a.to_earliest {
                low
            } else if a.to_latest {
                high
            } else if let Some(o) = a.to_offset {
                o.clamp(low, high)
            } else if let Some(ts) = a.to_time {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(topic, p.id(), Offset::Offset(ts))?;
                let r = c
                    .offsets_for_times(q, TIMEOUT)
                    .context("looking up offsets by time")?;
                match r.find_partition(topic, p.id()).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            } else {
                bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-time MS");
            };
            plan.add_partition_offset(topic, p.id(), Offset::Offset(target))?;
        }
    }
    for e in plan.elements() {
        if let Offset::Offset(o) = e.offset() {
            println!("{} {} -> {}", e.topic(), e.partition(), o);
        }
    }
    if a.dry_run {
        println!("(dry run: nothing committed)");
        return Ok(());
    }
    c.commit(&plan, CommitMode::Sync)
        .context("committing the new offsets")?;
    println!("committed new offsets for group {}", a.group);
    Ok(())
}
