//! The run's environment (a broker process this tool owns, behind a fault proxy, its data
//! dir optionally on a small filesystem) and the nemesis loop that plays the schedule on it,
//! recording each fault's start and stop in the history.
//!
//! Every client connects through the proxy: the broker advertises the proxy's address, so
//! the connections clients open after metadata go through it too. Against a broker given with
//! `--bootstrap` the proxy stands in front of that broker and rewrites the broker address
//! in Metadata and FindCoordinator answers to its own, so network faults work there too;
//! faults that act on the broker process (kill, pause, truncate, disk-full) do not.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{RunOptions, Shared};
pub use crate::nemesis::Schedule;
use crate::nemesis::{
    free_port, BrokerOptions, BrokerProcess, DiskLimit, FaultEvent, FaultKind, FaultProxy,
};
use crate::VerifyError;

/// Size of the data dir's filesystem when the disk-full fault is on.
const DISK_MIB: u64 = 512;

/// The broker and what sits around it.
pub struct Environment {
    broker: Option<BrokerProcess>,
    proxy: Option<FaultProxy>,
    disk: Option<DiskLimit>,
    /// Where clients connect.
    pub bootstrap: String,
}

impl Environment {
    /// Starts the broker (unless `--bootstrap`), the proxy and, when the schedule fills the
    /// disk, the small filesystem.
    pub async fn start(options: &RunOptions, schedule: &Schedule) -> Result<Self, VerifyError> {
        let mut kinds: Vec<FaultKind> = options.faults.clone();
        kinds.extend(schedule.events().iter().map(|e| e.kind));
        if let Some(bootstrap) = &options.bootstrap {
            let unsupported: Vec<&str> = kinds
                .iter()
                .filter(|k| k.acts_on_process() || **k == FaultKind::DiskFull)
                .map(|k| k.name())
                .collect();
            if !unsupported.is_empty() {
                return Err(VerifyError::Run(format!(
                    "with --bootstrap the broker is not this tool's to kill, pause, truncate or \
                     fill: drop {} from --faults (network faults and client crashes work)",
                    unsupported.join(", ")
                )));
            }
            let upstream = bootstrap
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    VerifyError::Run(format!(
                        "--bootstrap {bootstrap}: not a reachable host:port"
                    ))
                })?;
            let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)?;
            // The broker advertises itself: have clients come back through the proxy.
            proxy.rewrite_advertised(true);
            return Ok(Self {
                bootstrap: proxy.local_addr().to_string(),
                broker: None,
                proxy: Some(proxy),
                disk: None,
            });
        }
        let data_dir = options.out_dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| VerifyError::Io {
            path: data_dir.clone(),
            source: e,
        })?;
        let disk = if kinds.contains(&FaultKind::DiskFull) {
            Some(DiskLimit::mount(&data_dir, DISK_MIB)?)
        } else {
            None
        };
        let port = free_port()?;
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let proxy = FaultProxy::start(loopback(0), loopback(port))?;
        let proxy_addr = proxy.local_addr().to_string();
        let broker_options = BrokerOptions {
            bin: options.courier_bin.clone(),
            data_dir,
            listen_port: port,
            advertised: proxy_addr.clone(),
            extra_args: Vec::new(),
            log_path: options.out_dir.join("broker.log"),
        };
        let broker = tokio::task::block_in_place(|| BrokerProcess::start(broker_options))?;
        Ok(Self {
            bootstrap: proxy_addr,
            broker: Some(broker),
            proxy: Some(proxy),
            disk,
        })
    }

    /// Undoes every fault: the broker running and not paused, the network whole, the disk
    /// with room.
    pub fn heal(&mut self) -> Result<(), VerifyError> {
        if let Some(p) = &self.proxy {
            p.set_partitioned(false);
            p.set_delay(None);
        }
        if let Some(d) = &self.disk {
            d.release()?;
        }
        if let Some(b) = &self.broker {
            b.resume()?;
            if !b.is_running() {
                tokio::task::block_in_place(|| b.restart())?;
            }
        }
        Ok(())
    }

    /// Stops the broker cleanly.
    pub fn shutdown(&mut self) {
        if let Some(b) = &self.broker {
            let _ = b.stop();
        }
    }

    /// The broker's data dir (for the report).
    pub fn owns_broker(&self) -> bool {
        self.broker.is_some()
    }
}

/// The schedule the options ask for.
pub fn schedule(options: &RunOptions) -> Result<Schedule, VerifyError> {
    match &options.schedule {
        Some(spec) => Schedule::parse(spec),
        None => Ok(Schedule::random(
            options.seed,
            options.duration,
            &options.faults,
            options.fault_interval,
        )),
    }
}

/// Plays the schedule until `duration` has passed since `started`, then heals.
pub async fn drive(
    env: &mut Environment,
    shared: &Shared,
    schedule: &Schedule,
    started: Instant,
    duration: Duration,
) -> Result<(), VerifyError> {
    let mut rng = StdRng::seed_from_u64(shared.seed ^ 0xfa_u64);
    for event in schedule.events() {
        let at = started + event.at;
        if at > started + duration {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        if let Err(e) = apply(env, shared, event, &mut rng).await {
            tracing::warn!(fault = event.kind.name(), error = %e, "fault injection failed");
            shared
                .recorder
                .fault(event.kind.name(), "stop", &format!("failed: {e}"));
            env.heal()?;
        }
    }
    tokio::time::sleep_until((started + duration).into()).await;
    env.heal()
}

/// One fault: start it, record, hold it for its length, undo it, record.
async fn apply(
    env: &mut Environment,
    shared: &Shared,
    event: &FaultEvent,
    rng: &mut StdRng,
) -> Result<(), VerifyError> {
    let kind = event.kind;
    let name = kind.name();
    let length = event.length;
    let rec = &shared.recorder;
    if kind == FaultKind::ClientCrash {
        let slot = rng.gen_range(0..shared.crash_slots().max(1));
        rec.fault(name, "start", &format!("client slot {slot}"));
        shared.crash(slot);
        rec.fault(name, "stop", "");
        return Ok(());
    }
    let Some(proxy) = env.proxy.as_ref() else {
        return Ok(());
    };
    let broker = env.broker.as_ref();
    match kind {
        FaultKind::KillBroker | FaultKind::TruncateSegment | FaultKind::PauseBroker
            if broker.is_none() =>
        {
            tracing::warn!(fault = name, "no broker process to act on; skipped");
        }
        FaultKind::KillBroker | FaultKind::TruncateSegment => {
            let broker = broker.ok_or(VerifyError::Run("no broker process".into()))?;
            rec.fault(name, "start", "SIGKILL");
            broker.kill()?;
            let mut detail = String::new();
            if kind == FaultKind::TruncateSegment {
                let info = broker.truncate_tail(rng)?;
                detail = format!(
                    "{} {} -> {} bytes",
                    Path::new(&info.path).display(),
                    info.old_len,
                    info.new_len
                );
            }
            tokio::time::sleep(length).await;
            tokio::task::block_in_place(|| broker.restart())?;
            rec.fault(name, "stop", &detail);
        }
        FaultKind::PauseBroker => {
            let broker = broker.ok_or(VerifyError::Run("no broker process".into()))?;
            rec.fault(name, "start", "SIGSTOP");
            broker.pause()?;
            tokio::time::sleep(length).await;
            broker.resume()?;
            rec.fault(name, "stop", "SIGCONT");
        }
        FaultKind::LostAck => {
            rec.fault(name, "start", "dropping Produce responses");
            proxy.lose_acks(3);
            tokio::time::sleep(length).await;
            proxy.lose_acks(0);
            rec.fault(name, "stop", "");
        }
        FaultKind::CutConnections => {
            rec.fault(name, "start", "");
            proxy.cut_connections();
            rec.fault(name, "stop", "");
        }
        FaultKind::Delay => {
            let delay = Duration::from_millis(rng.gen_range(20..=300));
            rec.fault(name, "start", &format!("{} ms", delay.as_millis()));
            proxy.set_delay(Some(delay));
            tokio::time::sleep(length).await;
            proxy.set_delay(None);
            rec.fault(name, "stop", "");
        }
        FaultKind::Partition => {
            rec.fault(name, "start", "clients cut off");
            proxy.set_partitioned(true);
            tokio::time::sleep(length).await;
            proxy.set_partitioned(false);
            rec.fault(name, "stop", "");
        }
        FaultKind::DiskFull => {
            let Some(disk) = env.disk.as_ref() else {
                return Ok(());
            };
            rec.fault(name, "start", "data dir filesystem full");
            let filled = disk.fill()?;
            tracing::debug!(bytes = filled, "disk filled");
            tokio::time::sleep(length).await;
            disk.release()?;
            rec.fault(name, "stop", "");
        }
        FaultKind::ClientCrash => {}
    }
    Ok(())
}
