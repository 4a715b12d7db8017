//! The service processes: started as `courier demo service <name>`, killed with SIGKILL
//! (mid-batch: they are busy the whole run) and started again, stopped with SIGTERM at the
//! end. Each one's stdout carries its progress (`processed <n>`); its stderr goes to
//! `<name>.log` in the run directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::services::{PaymentMode, ServiceKind};
use crate::DemoError;

/// How long a clean stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a service process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `courier` binary.
    pub bin: PathBuf,
    /// `bootstrap.servers` for the service.
    pub bootstrap: String,
    /// The run directory.
    pub dir: PathBuf,
    /// Payment's guarantee.
    pub payment_mode: PaymentMode,
}

/// One running (or killed) service process.
#[derive(Debug)]
pub struct ServiceProcess {
    kind: ServiceKind,
    launch: Launch,
    child: Option<Child>,
    /// Handler calls of earlier incarnations.
    earlier: u64,
    /// Handler calls of the current incarnation, as last reported.
    current: Arc<AtomicU64>,
    /// SIGKILLs so far.
    kills: u32,
}

impl ServiceProcess {
    /// Starts the service.
    pub fn start(kind: ServiceKind, launch: &Launch) -> Result<Self, DemoError> {
        let mut p = Self {
            kind,
            launch: launch.clone(),
            child: None,
            earlier: 0,
            current: Arc::new(AtomicU64::new(0)),
            kills: 0,
        };
        p.spawn()?;
        Ok(p)
    }

    /// Which service.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// Handler calls across every incarnation (live display only).
    pub fn processed(&self) -> u64 {
        self.earlier + self.current.load(Ordering::Relaxed)
    }

    /// SIGKILLs so far.
    pub fn kills(&self) -> u32 {
        self.kills
    }

    /// True if the process is running; one that exited on its own is reaped and reported.
    pub fn check_running(&mut self) -> Result<bool, DemoError> {
        let Some(child) = &mut self.child else {
            return Ok(false);
        };
        match child.try_wait() {
            Ok(None) => Ok(true),
            Ok(Some(status)) => {
                self.child = None;
                Err(DemoError::Service {
                    service: self.kind.name(),
                    reason: format!(
                        "exited on its own ({status}); see {}",
                        log_path(&self.launch.dir, self.kind).display()
                    ),
                })
            }
            Err(e) => Err(self.err(format!("waiting for it: {e}"))),
        }
    }

    /// SIGKILLs it (no clean shutdown: whatever it had not committed is lost).
    pub fn kill(&mut self) -> Result<(), DemoError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .and_then(|()| child.wait().map(|_| ()))
                .map_err(|e| self.err(format!("SIGKILL: {e}")))?;
            self.kills += 1;
        }
        Ok(())
    }

    /// Starts it again (if it is not running).
    pub fn restart(&mut self) -> Result<(), DemoError> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    /// Asks it to stop (SIGTERM): it finishes the work in hand, commits and leaves its group.
    /// [`wait_stopped`](Self::wait_stopped) waits for that.
    pub fn terminate(&mut self) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Waits for a [`terminate`](Self::terminate)d process to exit; kills it if it takes
    /// longer than [`STOP_TIMEOUT`] (and says so).
    pub fn wait_stopped(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    tracing::warn!(
                        service = self.kind.name(),
                        "did not stop within {STOP_TIMEOUT:?}; killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    fn spawn(&mut self) -> Result<(), DemoError> {
        self.earlier += self.current.load(Ordering::Relaxed);
        let log = log_path(&self.launch.dir, self.kind);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(DemoError::io(&log))?;
        let mut child = Command::new(&self.launch.bin)
            .args(["demo", "service", self.kind.name()])
            .arg("--bootstrap")
            .arg(&self.launch.bootstrap)
            .arg("--dir")
            .arg(&self.launch.dir)
            .arg("--payment-guarantee")
            .arg(self.launch.payment_mode.name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| self.err(format!("starting {}: {e}", self.launch.bin.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let current = Arc::new(AtomicU64::new(0));
        self.current = Arc::clone(&current);
        std::thread::Builder::new()
            .name(format!("{}-progress", self.kind.name()))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("processed ").and_then(|n| n.parse().ok()) {
                        current.store(n, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| self.err(format!("progress reader: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    fn err(&self, reason: String) -> DemoError {
        DemoError::Service {
            service: self.kind.name(),
            reason,
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a service's stderr goes.
pub fn log_path(dir: &Path, kind: ServiceKind) -> PathBuf {
    dir.join(format!("{}.log", kind.name()))
}
