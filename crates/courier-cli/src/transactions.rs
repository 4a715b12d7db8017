//! `courier transactions`: list and describe transactional ids.

use anyhow::bail;
use clap::{Args, Subcommand};
use courier_protocol::kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use courier_protocol::kafka_protocol::protocol::StrBytes;

use crate::groups::Target;
use crate::wire::WireClient;

/// Transaction administration.
#[derive(Subcommand)]
pub enum TransactionsCommand {
    /// List transactional ids with their producer id and state.
    List(ListArgs),
    /// Show transactional ids: state, producer id and epoch, timeout, start time, partitions.
    Describe(DescribeArgs),
}

/// `transactions list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort); repeatable.
    #[arg(long = "state")]
    states: Vec<String>,
}

/// `transactions describe`.
#[derive(Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    target: Target,
    /// Transactional ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Runs a transactions command.
pub fn run(cmd: TransactionsCommand) -> anyhow::Result<()> {
    match cmd {
        TransactionsCommand::List(a) => {
            let mut c = WireClient::connect(&a.target.bootstrap)?;
            let req = ListTransactionsRequest::default()
                .with_state_filters(
                    a.states
                        .iter()
                        .map(|s| StrBytes::from_string(s.clone()))
                        .collect(),
                )
                .with_duration_filter(-1);
            let r = c.call(0, &req)?;
            if !r.unknown_state_filters.is_empty() {
                bail!(
                    "unknown states: {:?}",
                    r.unknown_state_filters
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                );
            }
            println!(
                "{:<40} {:>12} {:<16}",
                "TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"
            );
            let mut rows: Vec<_> = r.transaction_states.iter().collect();
            rows.sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
            for t in rows {
                println!(
                    "{:<40} {:>12} {:<16}",
                    t.transactional_id.as_str(),
                    t.producer_id.0,
                    t.transaction_state.as_str()
                );
            }
            Ok(())
        }
        TransactionsCommand::Describe(a) => {
            let mut c = WireClient::connect(&a.target.bootstrap)?;
            let req = DescribeTransactionsRequest::default().with_transactional_ids(
                a.ids
                    .iter()
                    .map(|i| TransactionalId(StrBytes::from_string(i.clone())))
                    .collect(),
            );
            let r = c.call(0, &req)?;
            let mut missing = 0;
            for t in r.transaction_states {
                if t.error_code != 0 {
                    missing += 1;
                    eprintln!(
                        "courier: transactional id {} not found (error {})",
                        t.transactional_id.as_str(),
                        t.error_code
                    );
                    continue;
                }
                println!(
                    "{}  state {}  producer {} epoch {}  timeout {} ms  started {}",
                    t.transactional_id.as_str(),
                    t.transaction_state.as_str(),
                    t.producer_id.0,
                    t.producer_epoch,
                    t.transaction_timeout_ms,
                    t.transaction_start_time_ms
                );
                for topic in t.topics {
                    println!("  {} {:?}", topic.topic.as_str(), topic.partitions);
                }
            }
            if missing > 0 {
                bail!("{missing} transactional id(s) not found");
            }
            Ok(())
        }
    }
}
