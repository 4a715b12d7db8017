//! The broker under test as a child process the nemesis owns: `courier serve` on a fixed port,
//! killed, paused and restarted on demand.
//!
//! Every method blocks the calling thread (starting waits until the broker answers, up to
//! [`READY_TIMEOUT`]); from async code call them under `tokio::task::spawn_blocking`. The
//! process is kept behind a mutex, so a [`BrokerProcess`] can be shared (`Arc`) between the
//! nemesis and whatever else watches the broker.
//!
//! Readiness is an answered ApiVersions request, not merely an open port: `courier serve`
//! binds its listener before it recovers the data directory, so the port accepts connections
//! (into the kernel's backlog) before the broker can serve them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;

use super::torn_write::{self, TruncateInfo};
use crate::VerifyError;

/// How long [`BrokerProcess::start`] and [`BrokerProcess::restart`] wait for the broker to
/// answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`BrokerProcess::stop`] waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one readiness probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How much of the end of the log an error quotes.
const LOG_TAIL_BYTES: u64 = 4096;
/// Largest ApiVersions response the probe reads.
const PROBE_MAX_RESPONSE: usize = 1 << 20;

/// How to run the broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The `courier` binary (the workload passes `std::env::current_exe()`).
    pub bin: PathBuf,
    /// `--data-dir`; created if missing.
    pub data_dir: PathBuf,
    /// The port to listen on, on 127.0.0.1; fixed so that a restarted broker is where the
    /// proxy expects it. [`free_port`] picks one.
    pub listen_port: u16,
    /// `--advertised-listener` (HOST:PORT): the proxy's address, so that clients which
    /// bootstrap through the proxy are told to keep connecting through it.
    pub advertised: String,
    /// More `courier serve` flags.
    pub extra_args: Vec<String>,
    /// File the broker's stdout and stderr are appended to (across restarts).
    pub log_path: PathBuf,
}

impl BrokerOptions {
    /// The address the broker listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.listen_port))
    }
}

/// A `courier serve` child process. Dropping it kills the broker (after resuming it if
/// paused); it is not killed if this process itself dies without unwinding.
#[derive(Debug)]
pub struct BrokerProcess {
    /// How to (re)start it.
    opts: BrokerOptions,
    /// The child, if started; behind a mutex so that every method takes `&self`.
    state: Mutex<ProcessState>,
}

#[derive(Debug, Default)]
struct ProcessState {
    /// The running (or stopped) child; `None` once killed or reaped.
    child: Option<Child>,
    /// SIGSTOPped and not yet SIGCONTed.
    paused: bool,
}

impl BrokerProcess {
    /// Starts the broker and waits until it answers an ApiVersions request.
    pub fn start(opts: BrokerOptions) -> Result<Self, VerifyError> {
        let child = spawn_ready(&opts)?;
        Ok(Self {
            opts,
            state: Mutex::new(ProcessState {
                child: Some(child),
                paused: false,
            }),
        })
    }

    /// The options it was started with.
    pub fn options(&self) -> &BrokerOptions {
        &self.opts
    }

    /// The address the broker listens on (not the advertised one).
    pub fn listen_addr(&self) -> SocketAddr {
        self.opts.listen_addr()
    }

    /// The child's pid, if it is running.
    pub fn pid(&self) -> Option<u32> {
        let mut st = self.lock();
        reap_if_exited(&mut st);
        st.child.as_ref().map(Child::id)
    }

    /// True while the process exists (a paused broker is running). A broker that exited on
    /// its own is reaped here and reported as not running.
    pub fn is_running(&self) -> bool {
        let mut st = self.lock();
        reap_if_exited(&mut st);
        st.child.is_some()
    }

    /// True between [`pause`](Self::pause) and [`resume`](Self::resume).
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// SIGKILLs the broker and waits for it to die: no clean shutdown, the page cache keeps
    /// whatever was written. Does nothing if it is not running.
    pub fn kill(&self) -> Result<(), VerifyError> {
        kill_child(&mut self.lock())
    }

    /// Starts the broker again with the same options (killing it first if it runs), and
    /// waits until it answers.
    pub fn restart(&self) -> Result<(), VerifyError> {
        let mut st = self.lock();
        kill_child(&mut st)?;
        st.child = Some(spawn_ready(&self.opts)?);
        Ok(())
    }

    /// SIGSTOPs the broker: its connections stay open but nothing is answered.
    pub fn pause(&self) -> Result<(), VerifyError> {
        let mut st = self.lock();
        reap_if_exited(&mut st);
        let pid = st
            .child
            .as_ref()
            .map(Child::id)
            .ok_or(VerifyError::BrokerNotRunning("pause it"))?;
        signal(pid, libc::SIGSTOP, "SIGSTOP")?;
        st.paused = true;
        Ok(())
    }

    /// SIGCONTs a paused broker; does nothing if it is not paused.
    pub fn resume(&self) -> Result<(), VerifyError> {
        let mut st = self.lock();
        resume_child(&mut st)
    }

    /// Stops the broker cleanly: SIGTERM, then SIGKILL if it has not exited after 10 s.
    /// Does nothing if it is not running.
    pub fn stop(&self) -> Result<(), VerifyError> {
        let mut st = self.lock();
        reap_if_exited(&mut st);
        let Some(pid) = st.child.as_ref().map(Child::id) else {
            return Ok(());
        };
        resume_child(&mut st)?;
        signal(pid, libc::SIGTERM, "SIGTERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            reap_if_exited(&mut st);
            if st.child.is_none() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid, "broker ignored SIGTERM for 10 s; killing it");
        kill_child(&mut st)
    }

    /// Cuts the tail of a random partition's active segment while the broker is down: a
    /// torn write. See [`TruncateInfo`].
    ///
    /// **Destructive**: the bytes cut were written and usually acknowledged (acks=all waits
    /// for the fsync), so this simulates the disk losing data it promised to keep. A broker
    /// cannot survive that without losing records; the checker is expected to flag the loss.
    /// Refused while the broker runs (even paused); call [`kill`](Self::kill) first.
    pub fn truncate_tail(&self, rng: &mut impl Rng) -> Result<TruncateInfo, VerifyError> {
        let mut st = self.lock();
        reap_if_exited(&mut st);
        if st.child.is_some() {
            return Err(VerifyError::BrokerRunning("truncating a segment"));
        }
        torn_write::truncate_tail(&self.opts.data_dir, rng)
    }

    /// The last few KiB of the broker's log, for error reports.
    pub fn log_tail(&self) -> String {
        log_tail(&self.opts.log_path)
    }

    fn lock(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = resume_child(st);
        let _ = kill_child(st);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it). Another process could
/// take it before the broker binds it; with ephemeral ports that is rare.
pub fn free_port() -> Result<u16, VerifyError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| VerifyError::Bind {
        addr: "127.0.0.1:0".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| VerifyError::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })
}

/// Sends one ApiVersions (v0) request to `addr` and waits up to `timeout` (per step: connect,
/// write, read) for its response. `Ok` means a broker is serving there.
pub fn probe_api_versions(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<()> {
    const CORRELATION_ID: i32 = 0x4E45_4D31;
    const CLIENT_ID: &[u8] = b"courier-nemesis";
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // Header v1: api_key 18, api_version 0, correlation id, client id; v0 has no body.
    let mut req = Vec::with_capacity(32);
    let body_len = 2 + 2 + 4 + 2 + CLIENT_ID.len();
    req.extend_from_slice(&(body_len as i32).to_be_bytes());
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    req.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    req.extend_from_slice(CLIENT_ID);
    s.write_all(&req)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| (4..=PROBE_MAX_RESPONSE).contains(&n))
        .ok_or_else(|| std::io::Error::other(format!("bad response length {len}")))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if got != CORRELATION_ID {
        return Err(std::io::Error::other(format!(
            "response has correlation id {got}, expected {CORRELATION_ID}"
        )));
    }
    Ok(())
}

/// Spawns `courier serve` and waits until it answers, or fails with the log's tail.
fn spawn_ready(opts: &BrokerOptions) -> Result<Child, VerifyError> {
    if !opts.bin.is_file() {
        return Err(VerifyError::BinaryNotFound(opts.bin.clone()));
    }
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| VerifyError::io("create", &opts.data_dir, e))?;
    if let Some(parent) = opts.log_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| VerifyError::io("create", parent, e))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.log_path)
        .map_err(|e| VerifyError::io("open", &opts.log_path, e))?;
    let log_out = log
        .try_clone()
        .map_err(|e| VerifyError::io("open", &opts.log_path, e))?;
    let addr = opts.listen_addr();
    wait_until_bindable(addr);
    let mut child = Command::new(&opts.bin)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&opts.data_dir)
        .arg("--advertised-listener")
        .arg(&opts.advertised)
        .args(&opts.extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_out))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|source| VerifyError::Spawn {
            bin: opts.bin.clone(),
            source,
        })?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(VerifyError::BrokerExited {
                    status: status.to_string(),
                    log: opts.log_path.clone(),
                    tail: log_tail(&opts.log_path),
                })
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot poll the broker process"),
        }
        if probe_api_versions(addr, PROBE_TIMEOUT).is_ok() {
            tracing::debug!(%addr, pid = child.id(), "broker is serving");
            return Ok(child);
        }
        if started.elapsed() >= READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VerifyError::BrokerNotReady {
                addr: addr.to_string(),
                waited: READY_TIMEOUT,
                log: opts.log_path.clone(),
                tail: log_tail(&opts.log_path),
            });
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Waits (up to 5 s) until `addr` can be bound, so that a restart right after a kill does not
/// race the dying process's socket. Best effort: the broker reports a real bind failure.
fn wait_until_bindable(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpListener::bind(addr).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forgets the child if it has exited (reaping it).
fn reap_if_exited(st: &mut ProcessState) {
    let exited = match st.child.as_mut().map(Child::try_wait) {
        Some(Ok(Some(status))) => {
            tracing::info!(%status, "the broker process exited");
            true
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot poll the broker process; forgetting it");
            true
        }
        Some(Ok(None)) | None => false,
    };
    if exited {
        st.child = None;
        st.paused = false;
    }
}

fn kill_child(st: &mut ProcessState) -> Result<(), VerifyError> {
    st.paused = false;
    let Some(mut child) = st.child.take() else {
        return Ok(());
    };
    let pid = child.id();
    // SIGKILL also ends a stopped process. An error means it already exited: wait reaps it.
    let _ = child.kill();
    child.wait().map_err(|source| VerifyError::Signal {
        signal: "SIGKILL",
        pid,
        source,
    })?;
    Ok(())
}

fn resume_child(st: &mut ProcessState) -> Result<(), VerifyError> {
    if !st.paused {
        return Ok(());
    }
    if let Some(pid) = st.child.as_ref().map(Child::id) {
        signal(pid, libc::SIGCONT, "SIGCONT")?;
    }
    st.paused = false;
    Ok(())
}

fn signal(pid: u32, sig: libc::c_int, name: &'static str) -> Result<(), VerifyError> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| VerifyError::Signal {
        signal: name,
        pid,
        source: std::io::Error::other("pid out of range"),
    })?;
    // SAFETY: kill(2) has no memory-safety preconditions; `raw` is our own unreaped child,
    // so the pid cannot have been reused by another process.
    if unsafe { libc::kill(raw, sig) } == 0 {
        Ok(())
    } else {
        Err(VerifyError::Signal {
            signal: name,
            pid,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The last [`LOG_TAIL_BYTES`] of `path`, lossily decoded; a note if it cannot be read.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut buf = Vec::with_capacity(LOG_TAIL_BYTES as usize);
        f.take(LOG_TAIL_BYTES).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}
