//! `courier demo orders`: the reference's order pipeline end to end, under faults, with a
//! report that proves each guarantee from the data. `courier demo service` (hidden) is one of
//! its services, started by the demo as a child process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use courier_demo::faults::DemoFault;
use courier_demo::services::{PaymentMode, ServiceArgs, ServiceKind};
use courier_demo::DemoOptions;

use crate::verify::parse_duration;

/// Exit status when a service broke the guarantee it claims.
const EXIT_BROKEN: u8 = 1;
/// Exit status when the demo could not run (bad flags, a broker that cannot be reached).
const EXIT_ERROR: u8 = 2;

/// Demonstrations.
#[derive(Subcommand)]
pub enum DemoCommand {
    /// The order pipeline: an Order API publishing 10,000 orders/s keyed by user; Payment and
    /// Inventory exactly-once into SQLite, Notification at-least-once, Analytics at-most-once,
    /// each its own consumer group and process; services killed, acks lost, connections cut,
    /// the broker restarted; then a report computed from the topic and the services' data.
    /// Exit 0 if every service kept its guarantee, 1 if one broke it, 2 if the demo could not
    /// run.
    Orders(Box<OrdersArgs>),
    /// One service of the order pipeline (started by `demo orders`).
    #[command(hide = true)]
    Service(ServiceCliArgs),
}

/// `demo orders`.
#[derive(Args)]
pub struct OrdersArgs {
    /// Run against this Kafka-compatible broker instead of an embedded Courier (it stands
    /// behind the demo's fault proxy; the broker-restart fault is then skipped).
    #[arg(long)]
    bootstrap: Option<String>,
    /// Orders placed per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long orders are placed: 30, 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Distinct users (orders are keyed, partitioned and ordered by user).
    #[arg(long, default_value_t = 5_000)]
    users: u32,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// No faults at all.
    #[arg(long, conflicts_with = "faults")]
    no_faults: bool,
    /// The faults to inject, comma-separated: kill-service, lost-ack, cut-connections,
    /// broker-restart, producer-retry (or all).
    #[arg(long, default_value = "all")]
    faults: String,
    /// Seed of the users, products and fault schedule (random if not given).
    #[arg(long)]
    seed: Option<u64>,
    /// Payment's guarantee: exactly-once, or at-least-once to see the double charges the
    /// report then finds (the run fails: payments need exactly-once).
    #[arg(long, default_value = "exactly-once", value_parser = parse_payment_mode)]
    payment_guarantee: PaymentMode,
    /// Keep the run's files (databases, logs, broker data) here instead of a temporary
    /// directory (which is removed after a run that passes).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long the services may take to catch up after the last order is placed.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// No live progress display.
    #[arg(long)]
    no_progress: bool,
}

/// `demo service`.
#[derive(Args)]
pub struct ServiceCliArgs {
    /// payment, inventory, notification or analytics.
    #[arg(value_parser = parse_service)]
    service: ServiceKind,
    /// `bootstrap.servers`.
    #[arg(long)]
    bootstrap: String,
    /// The run directory (its database lives there).
    #[arg(long)]
    dir: PathBuf,
    /// Payment's guarantee.
    #[arg(long, default_value = "exactly-once", value_parser = parse_payment_mode)]
    payment_guarantee: PaymentMode,
}

fn parse_payment_mode(s: &str) -> Result<PaymentMode, String> {
    match s {
        "exactly-once" => Ok(PaymentMode::ExactlyOnce),
        "at-least-once" => Ok(PaymentMode::AtLeastOnce),
        _ => Err(format!("{s:?}: exactly-once or at-least-once")),
    }
}

fn parse_service(s: &str) -> Result<ServiceKind, String> {
    ServiceKind::parse(s)
        .ok_or_else(|| format!("{s:?}: payment, inventory, notification or analytics"))
}

/// Runs a demo command, returning the process's exit status.
pub fn run(cmd: DemoCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("courier demo: starting the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match cmd {
        DemoCommand::Orders(args) => runtime.block_on(orders(*args)),
        DemoCommand::Service(args) => runtime.block_on(service(args)),
    }
}

async fn orders(args: OrdersArgs) -> ExitCode {
    let faults = if args.no_faults {
        Vec::new()
    } else {
        match DemoFault::parse_list(&args.faults) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("courier demo: --faults: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        }
    };
    if args.bootstrap.is_some()
        && args
            .faults
            .split(',')
            .any(|f| f.trim() == DemoFault::BrokerRestart.name())
    {
        eprintln!(
            "courier demo: --faults: broker-restart needs the embedded broker (drop --bootstrap \
             or the fault)"
        );
        return ExitCode::from(EXIT_ERROR);
    }
    let courier_bin = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("courier demo: cannot find the courier binary: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = DemoOptions {
        bootstrap: args.bootstrap,
        rate: args.rate,
        duration: args.duration,
        users: args.users,
        faults,
        seed,
        payment_mode: args.payment_guarantee,
        dir: args.dir,
        courier_bin,
        drain_timeout: args.drain_timeout,
        progress: !args.no_progress,
    };
    eprintln!(
        "courier demo orders: {} orders/s for {:?}, {} users, seed {seed}",
        options.rate, options.duration, options.users
    );
    let (report, kept) = match courier_demo::run(options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("courier demo: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    print!("{}", report.render());
    if let Some(dir) = kept {
        println!(
            "run files (databases, logs, broker data): {}",
            dir.display()
        );
    }
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("courier demo: writing {}: {e}", path.display());
            return ExitCode::from(EXIT_ERROR);
        }
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BROKEN)
    }
}

async fn service(args: ServiceCliArgs) -> ExitCode {
    let service_args = ServiceArgs {
        kind: args.service,
        bootstrap: args.bootstrap,
        dir: args.dir,
        payment_mode: args.payment_guarantee,
    };
    let shutdown = async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let shutdown = async {
        shutdown.await;
        tracing::info!("stop requested: finishing the current work and leaving the group");
    };
    match courier_demo::services::run(service_args, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("courier demo service {}: {e}", args.service.name());
            ExitCode::from(EXIT_ERROR)
        }
    }
}
