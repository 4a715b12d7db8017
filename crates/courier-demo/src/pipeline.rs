//! One demo run: broker, topic, services, Order API and faults; then drain, stop, audit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_verify::run::create_topic;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api::{self, ApiOptions, ApiProgress};
use crate::audit::{self, TopicIndex};
use crate::env::{self, Environment};
use crate::faults::{self, DemoFault, Planned};
use crate::order::{PARTITIONS, TOPIC};
use crate::progress::Progress;
use crate::report::{ApiReport, FaultRecord, FaultSummary, Report, Settings};
use crate::services::{PaymentMode, ServiceKind};
use crate::supervisor::{Launch, ServiceProcess};
use crate::DemoError;

/// How long the Order API keeps trying to get an order acknowledged after placing ends.
const API_GIVE_UP: Duration = Duration::from_secs(120);
/// How often the drain looks at the services' positions.
const DRAIN_POLL: Duration = Duration::from_millis(500);

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A Kafka-compatible broker to use instead of the embedded one.
    pub bootstrap: Option<String>,
    /// Orders per second.
    pub rate: u64,
    /// How long orders are placed.
    pub duration: Duration,
    /// Distinct users.
    pub users: u32,
    /// The faults to inject.
    pub faults: Vec<DemoFault>,
    /// Seeds users, products and the fault schedule.
    pub seed: u64,
    /// Payment's guarantee.
    pub payment_mode: PaymentMode,
    /// Where the run's databases, logs and broker data go (a temporary directory if `None`).
    pub dir: Option<PathBuf>,
    /// The `courier` binary, to start the broker and the services.
    pub courier_bin: PathBuf,
    /// How long the services may take to catch up once placing ends.
    pub drain_timeout: Duration,
    /// Show progress on stderr.
    pub progress: bool,
}

impl DemoOptions {
    fn validate(&mut self) -> Result<(), DemoError> {
        let bad = |m: &str| Err(DemoError::BadArgument(m.to_string()));
        if self.rate == 0 {
            return bad("--rate must be at least 1 order per second");
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than 0 seconds");
        }
        if self.users == 0 {
            return bad("--users must be at least 1");
        }
        if self.rate.saturating_mul(self.duration.as_secs().max(1)) > 50_000_000 {
            return bad("--rate × --duration is over 50 million orders; the audit keeps every order in memory");
        }
        if self.bootstrap.is_some() && self.faults.contains(&DemoFault::BrokerRestart) {
            // The default list has it; a broker the demo did not start is not its to kill.
            self.faults.retain(|f| *f != DemoFault::BrokerRestart);
        }
        Ok(())
    }
}

/// Runs the demo and returns the report (and where the run's files are, if kept).
pub async fn run(mut options: DemoOptions) -> Result<(Report, Option<PathBuf>), DemoError> {
    options.validate()?;
    let (temp, dir) = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(DemoError::io(d))?;
            (None, d.clone())
        }
        None => {
            let t = tempfile_dir()?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let report = run_in(&options, &dir).await?;
    // A broken run keeps its files for a look; a good one cleans up after itself.
    let kept = match temp {
        Some(t) if !report.ok => Some(t.keep()),
        Some(_) => None,
        None => Some(dir),
    };
    Ok((report, kept))
}

fn tempfile_dir() -> Result<tempfile::TempDir, DemoError> {
    tempfile::Builder::new()
        .prefix("courier-demo-")
        .tempdir()
        .map_err(DemoError::io(Path::new("$TMPDIR")))
}

async fn run_in(options: &DemoOptions, dir: &Path) -> Result<Report, DemoError> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let env = Arc::new(Environment::start(
        options.bootstrap.as_deref(),
        &options.courier_bin,
        dir,
    )?);
    let bootstrap = env.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS as usize).await?;
    create_topic(&bootstrap, &format!("{TOPIC}.dlq"), 1).await?;
    let from = blocking(|| env::watermarks(&bootstrap, TOPIC))?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect::<BTreeMap<_, _>>();

    let launch = Launch {
        bin: options.courier_bin.clone(),
        bootstrap: bootstrap.clone(),
        dir: dir.to_path_buf(),
        payment_mode: options.payment_mode,
    };
    let mut procs = Vec::new();
    for kind in ServiceKind::ALL {
        procs.push(ServiceProcess::start(kind, &launch)?);
    }
    let services = Arc::new(Mutex::new(procs));

    let total = options.rate * options.duration.as_millis() as u64 / 1000;
    let names: Vec<&'static str> = ServiceKind::ALL.iter().map(|k| k.name()).collect();
    let progress = Arc::new(Progress::new(options.progress, total, &names));
    let api_progress = Arc::new(ApiProgress::default());
    let done = Arc::new(AtomicBool::new(false));
    let display = tokio::spawn(Arc::clone(&progress).follow(
        Arc::clone(&api_progress),
        Arc::clone(&services),
        Arc::clone(&done),
        options.progress,
    ));

    let mut rng = StdRng::seed_from_u64(options.seed);
    let plan = faults::plan(&options.faults, options.duration, &mut rng);
    let records = Arc::new(Mutex::new(Vec::<FaultRecord>::new()));
    let start = Instant::now();
    let nemesis = tokio::spawn(play(
        plan,
        start,
        Arc::clone(&env),
        Arc::clone(&services),
        Arc::clone(&records),
        Arc::clone(&progress),
        options.seed,
    ));

    let api_options = ApiOptions {
        bootstrap: bootstrap.clone(),
        run: run_id.clone(),
        rate: options.rate,
        duration: options.duration,
        users: options.users,
        client_retry_fraction: if options.faults.contains(&DemoFault::ProducerRetry) {
            faults::CLIENT_RETRY_FRACTION
        } else {
            0.0
        },
        seed: options.seed,
    };
    let outcome = api::run(&api_options, Arc::clone(&api_progress), API_GIVE_UP).await;
    let nemesis_result = nemesis
        .await
        .map_err(|e| DemoError::Run(format!("the fault loop failed: {e}")))?;
    let outcome = outcome?;
    nemesis_result?;
    progress.line(&format!(
        "orders placed: {}, acknowledged: {}; waiting for the services to catch up",
        outcome.placed,
        outcome.acked.len()
    ));

    blocking(|| env.heal())?;
    let to = blocking(|| env::watermarks(&bootstrap, TOPIC))?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect::<BTreeMap<_, _>>();
    let drained = drain(options, dir, &bootstrap, &to, &services).await;
    {
        let mut procs = services.lock().unwrap_or_else(|e| e.into_inner());
        // All at once: each finishes its work in hand, commits and leaves its group.
        procs.iter_mut().for_each(ServiceProcess::terminate);
        procs.iter_mut().for_each(ServiceProcess::wait_stopped);
    }
    done.store(true, Ordering::Relaxed);
    let _ = display.await;
    drained?;

    progress.line("auditing: reading order-events back and every service's database");
    let (records_back, foreign) = blocking(|| audit::read_back(&bootstrap, &run_id, &from, &to))?;
    if foreign > 0 {
        tracing::info!(foreign, "skipped records of other runs");
    }
    let effects = audit::load(dir, &run_id)?;
    let stats = env.proxy.stats();
    env.shutdown();

    let index = TopicIndex::new(records_back);
    let topic = audit::audit_topic(&index, &outcome.acked);
    let rows = |k: ServiceKind| effects.rows.get(&k).map_or(&[][..], Vec::as_slice);
    let services_report = vec![
        audit::audit_payment(options.payment_mode, rows(ServiceKind::Payment), &index),
        audit::audit_inventory(rows(ServiceKind::Inventory), &effects.stock, &index),
        audit::audit_notification(rows(ServiceKind::Notification), &index),
        audit::audit_analytics(rows(ServiceKind::Analytics), &index),
    ];
    let mut broken = Vec::new();
    if topic.acknowledged_missing > 0 {
        broken.push(format!(
            "order-events: {} acknowledged orders are missing (acks=all broken)",
            topic.acknowledged_missing
        ));
    }
    if topic.users_out_of_order > 0 {
        broken.push(format!(
            "order-events: {} users' orders stored out of order",
            topic.users_out_of_order
        ));
    }
    for s in &services_report {
        broken.extend(audit::broken_lines(s));
    }
    let events = records.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let kills: u32 = services
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(ServiceProcess::kills)
        .sum();
    let pct = |q: f64| {
        let l = &outcome.latencies_us;
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * q) as usize] as f64 / 1000.0
        }
    };
    Ok(Report {
        run: run_id,
        settings: Settings {
            rate: options.rate,
            duration_s: options.duration.as_secs_f64(),
            users: options.users,
            broker: options
                .bootstrap
                .clone()
                .unwrap_or_else(|| "embedded".into()),
            payment_guarantee: options.payment_mode.name().into(),
            faults_enabled: options
                .faults
                .iter()
                .map(|f| f.name().to_string())
                .collect(),
            seed: options.seed,
        },
        faults: FaultSummary {
            service_kills: kills,
            broker_restarts: events
                .iter()
                .filter(|e| e.fault == "broker-restart")
                .count() as u32,
            acks_dropped: stats.acks_dropped,
            connections_cut: stats.connections_cut,
            events,
        },
        order_api: ApiReport {
            placed: outcome.placed,
            acknowledged: outcome.acked.len() as u64,
            resends: outcome.resends,
            client_retries: outcome.client_retries,
            throughput_per_s: outcome.acked.len() as f64 / outcome.elapsed.as_secs_f64().max(1e-3),
            ack_latency_p50_ms: pct(0.5),
            ack_latency_p99_ms: pct(0.99),
        },
        topic,
        services: services_report,
        ok: broken.is_empty(),
        broken,
    })
}

/// Plays the fault schedule; returns when the last event is done and every killed service
/// runs again.
async fn play(
    plan: Vec<Planned>,
    start: Instant,
    env: Arc<Environment>,
    services: Arc<Mutex<Vec<ServiceProcess>>>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
    progress: Arc<Progress>,
    seed: u64,
) -> Result<(), DemoError> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
    let mut restarts = Vec::new();
    for event in plan {
        tokio::time::sleep_until((start + event.at).into()).await;
        let target = match event.fault {
            DemoFault::KillService => {
                let i = rng.gen_range(0..ServiceKind::ALL.len());
                let name = {
                    let mut procs = services.lock().unwrap_or_else(|e| e.into_inner());
                    procs[i].kill()?;
                    procs[i].kind().name()
                };
                let down = Duration::from_millis(rng.gen_range(500..2000));
                let services = Arc::clone(&services);
                restarts.push(tokio::spawn(async move {
                    tokio::time::sleep(down).await;
                    let mut procs = services.lock().unwrap_or_else(|e| e.into_inner());
                    procs[i].restart()
                }));
                name.to_string()
            }
            DemoFault::LostAck => {
                env.proxy.lose_acks(faults::ACKS_LOST_PER_EVENT);
                "proxy".to_string()
            }
            DemoFault::CutConnections => {
                env.proxy.cut_connections();
                "proxy".to_string()
            }
            DemoFault::BrokerRestart => {
                blocking(|| env.restart_broker())?;
                "broker".to_string()
            }
            DemoFault::ProducerRetry => continue,
        };
        let at_s = event.at.as_secs_f64();
        progress.line(&format!("fault: {} → {target}", event.fault));
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FaultRecord {
                at_s,
                fault: event.fault.name().to_string(),
                target,
            });
    }
    for r in restarts {
        r.await
            .map_err(|e| DemoError::Run(format!("restarting a service failed: {e}")))??;
    }
    Ok(())
}

/// Waits until every service has processed `order-events` up to `to`: the exactly-once
/// services' offsets in their databases, the others' committed offsets in Kafka.
async fn drain(
    options: &DemoOptions,
    dir: &Path,
    bootstrap: &str,
    to: &BTreeMap<i32, i64>,
    services: &Mutex<Vec<ServiceProcess>>,
) -> Result<(), DemoError> {
    let deadline = Instant::now() + options.drain_timeout;
    loop {
        {
            let mut procs = services.lock().unwrap_or_else(|e| e.into_inner());
            for p in procs.iter_mut() {
                p.check_running()?;
            }
        }
        let mut behind = Vec::new();
        for kind in ServiceKind::ALL {
            let at = position(kind, options.payment_mode, dir, bootstrap, to)?;
            let lag: i64 = to
                .iter()
                .map(|(p, end)| (end - at.get(p).copied().unwrap_or(0)).max(0))
                .sum();
            if lag > 0 {
                behind.push(format!("{} ({lag} behind)", kind.name()));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Run(format!(
                "the services did not catch up within {:?}: {}",
                options.drain_timeout,
                behind.join(", ")
            )));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Where `kind` is in `order-events`, per partition.
fn position(
    kind: ServiceKind,
    payment_mode: PaymentMode,
    dir: &Path,
    bootstrap: &str,
    to: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, DemoError> {
    let in_db = match kind {
        ServiceKind::Payment => payment_mode == PaymentMode::ExactlyOnce,
        ServiceKind::Inventory => true,
        _ => false,
    };
    if !in_db {
        return blocking(|| {
            env::kafka_committed(bootstrap, kind.name(), TOPIC, to.keys().copied())
        });
    }
    let path = kind.db_path(dir);
    let read = || -> rusqlite::Result<BTreeMap<i32, i64>> {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut stmt = conn.prepare(
            "SELECT kafka_partition, next_offset FROM courier_consumer_offsets
             WHERE group_id = ?1 AND topic = ?2",
        )?;
        let rows = stmt.query_map([kind.name(), TOPIC], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    match read() {
        Ok(m) => Ok(m),
        // Not created yet (the service is still starting): nothing processed.
        Err(_) if !path.exists() => Ok(BTreeMap::new()),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
            Ok(BTreeMap::new())
        }
        Err(e) => Err(DemoError::db(&path)(e)),
    }
}

/// Runs a blocking call from async code (the runtime is multi-threaded).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
