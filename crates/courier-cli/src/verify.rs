//! `courier verify`: Jepsen-style delivery verification. `run` drives a workload with faults
//! against a broker and records a history, then checks it; `check` judges a recorded history.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use courier_verify::nemesis::FaultKind;
use courier_verify::run::{Mode, RunOptions};
use courier_verify::{
    check, history, html, report, CheckOptions, Guarantee, Isolation, VerifyError,
};

/// Exit status when the history holds an anomaly its guarantee forbids.
const EXIT_INVALID: u8 = 1;
/// Exit status when the history cannot be read (or an output cannot be written).
const EXIT_UNREADABLE: u8 = 2;

/// Delivery verification.
#[derive(Subcommand)]
pub enum VerifyCommand {
    /// Check a recorded history (JSON lines) for delivery anomalies: exit 0 if the run kept
    /// its guarantee, 1 if a forbidden anomaly was found, 2 if the history is unreadable.
    Check(CheckArgs),
    /// Run a workload against a broker (by default one this tool starts, behind a fault
    /// proxy), inject faults, record the history, then check it: exit 0 if the run kept its
    /// guarantee, 1 if not, 2 if the run could not be carried out.
    Run(Box<RunArgs>),
}

/// `verify run`.
#[derive(Args)]
pub struct RunArgs {
    /// Test this broker instead of starting one: the fault proxy stands in front of it
    /// (rewriting the broker address in Metadata answers so clients stay behind it); faults
    /// that act on the broker process are then unavailable.
    #[arg(long)]
    bootstrap: Option<String>,
    /// How long the workload runs before the final phase heals every fault and reads every
    /// key from the beginning: 60, 60s, 10m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Producers: acks0, acks-all, idempotent, transactional, or rpw (idempotent producers
    /// feed the topic and the group's consumers run read-process-write transactions).
    #[arg(long, default_value = "idempotent")]
    mode: Mode,
    /// Consumers' isolation level: read_committed or read_uncommitted.
    #[arg(long, default_value = "read_committed")]
    isolation: Isolation,
    /// Judge against this guarantee instead of the mode's (acks0: at-most-once, acks-all:
    /// at-least-once, idempotent and transactional: exactly-once).
    #[arg(long)]
    guarantee: Option<Guarantee>,
    /// Keys; key kN is partition N of the run's topic.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Producer clients.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Processes per plain producer client: sends in flight per client.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Consumers in the consumer group (subscribe, commit after each poll; in rpw mode the
    /// read-process-write processes).
    #[arg(long, default_value_t = 2)]
    group_consumers: usize,
    /// Consumers that assign every partition from the beginning.
    #[arg(long, default_value_t = 1)]
    assign_consumers: usize,
    /// Operations per second per process (0: as fast as they complete).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Fraction of transactions aborted on purpose (transactional mode).
    #[arg(long, default_value_t = 0.1)]
    abort_rate: f64,
    /// Fault kinds for the random schedule, comma-separated, or "none". Default:
    /// kill-broker, pause-broker, lost-ack, cut-connections, delay, partition, client-crash
    /// (with --bootstrap, only those that do not act on the broker process). Also available:
    /// truncate-segment (destroys written data: expect lost writes) and disk-full (root).
    #[arg(long)]
    faults: Option<String>,
    /// An explicit schedule instead: "kill-broker@5s+2s,lost-ack@8s+3s".
    #[arg(long)]
    schedule: Option<String>,
    /// Mean time between faults of the random schedule.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    fault_interval: Duration,
    /// Seed for the schedule and the workload's choices (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for the history, the reports and the broker's data and log
    /// (default: ./verify-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// How many examples of each anomaly kind to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    examples: usize,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 60, 60s, 10m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `verify check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The history file: a {"type":"meta",...} header line, then one operation per line.
    history: PathBuf,
    /// Judge against this guarantee instead of the header's: at-most-once, at-least-once or
    /// exactly-once.
    #[arg(long)]
    guarantee: Option<Guarantee>,
    /// Judge at this consumer isolation level instead of the header's: read_committed or
    /// read_uncommitted.
    #[arg(long)]
    isolation: Option<Isolation>,
    /// Also write a self-contained HTML page with throughput, latency and fault plots here.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// How many examples of each anomaly kind to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    examples: usize,
}

/// Runs a verify command, returning the process's exit status.
pub fn run(cmd: VerifyCommand) -> ExitCode {
    match cmd {
        VerifyCommand::Check(args) => run_check(&args),
        VerifyCommand::Run(args) => run_workload(*args),
    }
}

fn run_workload(args: RunArgs) -> ExitCode {
    let spec = args.faults.clone().unwrap_or_else(|| {
        if args.bootstrap.is_some() {
            "lost-ack,cut-connections,delay,partition,client-crash".into()
        } else {
            "kill-broker,pause-broker,lost-ack,cut-connections,delay,partition,client-crash".into()
        }
    });
    let faults: Result<Vec<FaultKind>, String> = if spec.trim() == "none" {
        Ok(Vec::new())
    } else {
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<FaultKind>().map_err(|e| e.to_string()))
            .collect()
    };
    let faults = match faults {
        Ok(f) => f,
        Err(e) => {
            eprintln!("courier verify: --faults: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    if args.keys == 0 || args.producers == 0 {
        eprintln!("courier verify: --keys and --producers must be at least 1");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("verify-{seed}")));
    let courier_bin = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("courier verify: cannot find the courier binary: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    eprintln!(
        "courier verify: {} for {:?}, seed {seed}, output in {}",
        args.mode.name(),
        args.duration,
        out_dir.display()
    );
    let options = RunOptions {
        bootstrap: args.bootstrap,
        courier_bin,
        duration: args.duration,
        mode: args.mode,
        isolation: args.isolation,
        guarantee: args.guarantee,
        keys: args.keys,
        producers: args.producers,
        slots: args.slots,
        group_consumers: args.group_consumers,
        assign_consumers: args.assign_consumers,
        rate: args.rate,
        abort_rate: args.abort_rate,
        faults,
        schedule: args.schedule,
        fault_interval: args.fault_interval,
        seed,
        out_dir: out_dir.clone(),
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    match courier_verify::run::execute(options) {
        Ok(outcome) => {
            print!("{}", outcome.report);
            println!(
                "history: {}; reports: {}/report.{{txt,json,html}}",
                outcome.history.display(),
                out_dir.display()
            );
            if outcome.result.valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INVALID)
            }
        }
        Err(e) => {
            eprintln!("courier verify: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let history = match history::parse_file(&args.history) {
        Ok(h) => h,
        // An I/O error names the file itself; the others name a line in it.
        Err(e @ VerifyError::Io { .. }) => {
            eprintln!("courier verify: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
        Err(e) => {
            eprintln!("courier verify: {}: {e}", args.history.display());
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let result = check(
        &history,
        CheckOptions {
            guarantee: args.guarantee,
            isolation: args.isolation,
        },
    );
    let text = report::text(&result, &args.history.display().to_string(), args.examples);
    print!("{text}");
    if let Some(path) = &args.json {
        let written = report::json(&result, args.examples)
            .map_err(|e| e.to_string())
            .and_then(|json| write(path, &json));
        if let Err(e) = written {
            eprintln!("courier verify: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    }
    if let Some(path) = &args.html {
        if let Err(e) = write(path, &html::page(&history, &result, &text)) {
            eprintln!("courier verify: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    }
    if result.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
