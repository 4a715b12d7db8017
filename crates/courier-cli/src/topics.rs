//! `courier topics`: list, create, describe and delete topics.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::groups::Target;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Topic administration.
#[derive(Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    List(Target),
    /// Create a topic.
    Create(CreateArgs),
    /// Show a topic's partitions, offsets and non-default configs.
    Describe(NameArgs),
    /// Delete topics and their data.
    Delete(DeleteArgs),
}

/// `topics create`.
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// Topic name.
    name: String,
    /// Partitions.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor (Courier keeps one copy; up to 3 is accepted).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Topic configs, KEY=VALUE, repeatable (e.g. --config retention.ms=3600000).
    #[arg(long = "config")]
    configs: Vec<String>,
}

/// A topic name.
#[derive(Args)]
pub struct NameArgs {
    #[command(flatten)]
    target: Target,
    /// Topic name.
    name: String,
}

/// `topics delete`.
#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    /// Topic names.
    #[arg(required = true)]
    names: Vec<String>,
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs a topics command.
pub fn run(cmd: TopicsCommand) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::List(t) => {
            let a = admin(&t.bootstrap)?;
            let md = a
                .inner()
                .fetch_metadata(None, TIMEOUT)
                .context("fetching metadata")?;
            println!("{:<40} {:>10}", "TOPIC", "PARTITIONS");
            let mut topics: Vec<_> = md
                .topics()
                .iter()
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect();
            topics.sort();
            for (name, n) in topics {
                println!("{name:<40} {n:>10}");
            }
            Ok(())
        }
        TopicsCommand::Create(c) => {
            let mut topic = NewTopic::new(
                &c.name,
                c.partitions,
                TopicReplication::Fixed(c.replication_factor),
            );
            let pairs: Vec<(String, String)> = c
                .configs
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            for (k, v) in &pairs {
                topic = topic.set(k, v);
            }
            let r = runtime()?.block_on(admin(&c.target.bootstrap)?.create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            ))?;
            match r.into_iter().next() {
                Some(Ok(name)) => println!("created topic {name}"),
                Some(Err((name, e))) => bail!("could not create topic {name}: {e}"),
                None => bail!("no answer from the broker"),
            }
            Ok(())
        }
        TopicsCommand::Describe(n) => {
            let a = admin(&n.target.bootstrap)?;
            let md = a
                .inner()
                .fetch_metadata(Some(&n.name), TIMEOUT)
                .context("fetching metadata")?;
            let t = md.topics().first().context("no answer")?;
            if let Some(e) = t.error() {
                bail!("topic {}: {e:?}", n.name);
            }
            println!("topic {}  partitions {}", t.name(), t.partitions().len());
            println!(
                "{:>9} {:>7} {:>12} {:>12}",
                "PARTITION", "LEADER", "START", "END"
            );
            for p in t.partitions() {
                let (low, high) = a
                    .inner()
                    .fetch_watermarks(&n.name, p.id(), TIMEOUT)
                    .context("fetching watermarks")?;
                println!("{:>9} {:>7} {:>12} {:>12}", p.id(), p.leader(), low, high);
            }
            let configs = runtime()?.block_on(
                a.describe_configs(&[ResourceSpecifier::Topic(&n.name)], &AdminOptions::new()),
            )?;
            if let Some(Ok(resource)) = configs.into_iter().next() {
                for e in resource.entries.iter().filter(|e| !e.is_default) {
                    println!("config {}={}", e.name, e.value.clone().unwrap_or_default());
                }
            }
            Ok(())
        }
        TopicsCommand::Delete(d) => {
            let names: Vec<&str> = d.names.iter().map(String::as_str).collect();
            let r = runtime()?.block_on(admin(&d.target.bootstrap)?.delete_topics(
                &names,
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            ))?;
            let mut failed = 0;
            for x in r {
                match x {
                    Ok(name) => println!("deleted topic {name}"),
                    Err((name, e)) => {
                        failed += 1;
                        eprintln!("courier: could not delete topic {name}: {e}");
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} topic(s) not deleted");
            }
            Ok(())
        }
    }
}
