//! `courier`: the broker, its benchmarks, its admin commands and its delivery verifier, in one
//! binary.

mod admin;
mod bench;
mod demo;
mod embedded;
mod groups;
mod serve;
mod settings;
mod share_groups;
mod topics;
mod transactions;
mod verify;
mod wire;

use clap::{Parser, Subcommand};

/// Courier: a Kafka-compatible message broker whose delivery guarantees can be shown to hold.
#[derive(Parser)]
#[command(name = "courier", version, about, long_about = None)]
struct Cli {
    /// Log level or filter (e.g. `info`, `debug`, `courier_server=trace`). RUST_LOG, if set, wins.
    #[arg(long, global = true, env = "COURIER_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<serve::ServeArgs>),
    /// Measure the broker through a real Kafka client.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Administer consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Administer share groups (KIP-932): list, describe, redrive dead letters.
    #[command(subcommand)]
    ShareGroups(share_groups::ShareGroupsCommand),
    /// Administer topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Inspect transactions.
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
    /// The reference's order pipeline, end to end, under faults, proved from its data.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Verify delivery guarantees: check a recorded history for anomalies.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        // The demo injects faults on purpose: the clients' reports of them would drown its
        // display (its services log to files; RUST_LOG still overrides all of this).
        Command::Demo(_) => format!(
            "{},rdkafka=off,librdkafka=off,courier_verify=warn",
            cli.log_level
        ),
        _ => cli.log_level.clone(),
    };
    init_logging(&level);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Groups(cmd) => groups::run(cmd),
        Command::ShareGroups(cmd) => share_groups::run(cmd),
        Command::Topics(cmd) => topics::run(cmd),
        Command::Transactions(cmd) => transactions::run(cmd),
        // Its exit status says more than success or failure: 1 is a verdict, 2 bad input.
        Command::Verify(cmd) => return verify::run(cmd),
        Command::Demo(cmd) => return demo::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("courier: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
