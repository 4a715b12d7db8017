//! A TCP proxy between the workload's clients and the broker that injects network faults:
//! cut connections, delayed frames, a partition, and lost Produce acknowledgements.
//!
//! Each client connection gets its own upstream connection and two pumps, one per direction,
//! run by one tokio task. The pumps understand Kafka framing (`frame.rs`): they read a
//! frame's length and a bounded prefix (the header), decide, then stream the rest through a
//! fixed 16 KiB buffer, so memory per connection is bounded whatever the frame size.
//!
//! The proxy runs on the tokio runtime [`FaultProxy::start`] is called from; the controls are
//! plain methods on atomics and watch channels, callable from any thread. Dropping the proxy
//! stops it and closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::frame::{self, MAX_FRAME, PRODUCE, REQUEST_PREFIX_MAX, RESPONSE_PREFIX};
use super::rewrite::{Rewrite, FIND_COORDINATOR, MAX_REWRITE, METADATA};
use crate::VerifyError;

/// Most client connections proxied at once; more are closed on accept.
const MAX_CONNECTIONS: u64 = 1024;
/// How long connecting to the broker may take before the client is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The buffer each pump streams frame bodies through.
const COPY_CHUNK: usize = 16 * 1024;

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted and forwarded.
    pub connections_accepted: u64,
    /// Client connections closed on accept (partitioned, or too many open).
    pub connections_refused: u64,
    /// Client connections open now.
    pub connections_open: u64,
    /// Client connections closed because the broker could not be reached.
    pub upstream_failures: u64,
    /// Bytes forwarded from clients to the broker.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded from the broker to clients.
    pub bytes_to_client: u64,
    /// Produce responses dropped (each also closed its connection).
    pub acks_dropped: u64,
    /// Cut events: [`FaultProxy::cut_connections`] calls and partitions started.
    pub cuts: u64,
    /// Connections closed by cut events.
    pub connections_cut: u64,
}

/// The fault-injecting proxy. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// State shared with the accept loop and connection tasks.
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The broker.
    upstream: SocketAddr,
    /// Delay per frame in microseconds; 0 for none.
    delay_micros: AtomicU64,
    /// Produce requests still to lose the acknowledgement of.
    acks_to_lose: AtomicU64,
    /// Refuse new connections.
    partitioned: AtomicBool,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    /// Set when the proxy is dropped.
    shutdown: watch::Sender<bool>,
    /// Replace the upstream's advertised address with the proxy's (see `rewrite.rs`).
    rewrite: Mutex<Option<Rewrite>>,
    // The counters reported by `stats`, as documented on `ProxyStats`.
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    upstream_failures: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    acks_dropped: AtomicU64,
    cuts: AtomicU64,
    connections_cut: AtomicU64,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 for an ephemeral port) and forwards every connection to
    /// `upstream`. Must be called from within a tokio runtime, which runs the proxy.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, VerifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| VerifyError::NoRuntime)?;
        let bind_err = |source| VerifyError::Bind {
            addr: listen.to_string(),
            source,
        };
        let std_listener = std::net::TcpListener::bind(listen).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = std_listener.local_addr().map_err(bind_err)?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).map_err(bind_err)?
        };
        let shared = Arc::new(Shared {
            upstream,
            delay_micros: AtomicU64::new(0),
            acks_to_lose: AtomicU64::new(0),
            partitioned: AtomicBool::new(false),
            cut: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            rewrite: Mutex::new(None),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            bytes_to_upstream: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            acks_dropped: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            connections_cut: AtomicU64::new(0),
        });
        runtime.spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::info!(%addr, %upstream, "fault proxy listening");
        Ok(Self { addr, shared })
    }

    /// Makes Metadata and FindCoordinator responses name the proxy instead of the broker
    /// behind it, for a broker that advertises its own address (one this tool did not
    /// start): clients then keep connecting through the proxy.
    pub fn rewrite_advertised(&self, on: bool) {
        *lock(&self.shared.rewrite) = on.then(|| Rewrite {
            upstream: self.shared.upstream,
            host: self.addr.ip().to_string(),
            port: i32::from(self.addr.port()),
        });
    }

    /// Where clients connect (and what the broker should advertise).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Closes every open connection (client and broker side). The connection tasks close
    /// them as soon as they are next polled, within milliseconds.
    pub fn cut_connections(&self) {
        self.shared.cuts.fetch_add(1, Ordering::Relaxed);
        self.shared.cut.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Holds every frame, in both directions, for `delay` before forwarding it; `None` stops.
    /// A connection's frames in one direction are held one after another, like a slow link:
    /// pipelined requests queue behind each other.
    pub fn set_delay(&self, delay: Option<Duration>) {
        let micros = delay.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.shared.delay_micros.store(micros, Ordering::Relaxed);
    }

    /// Loses the acknowledgement of the next `n` Produce requests forwarded (replacing any
    /// count still pending; 0 stops): each is forwarded, and when the broker's response to it
    /// comes back the proxy drops the response and closes that client connection. The broker
    /// appended the records; the producer never hears so and, if it retries, writes them
    /// again. Requests with `acks=0` have no response and are not counted. A marked request
    /// whose connection closes before the response arrives uses up one of the `n` without
    /// losing anything: [`ProxyStats::acks_dropped`] counts what was really lost.
    pub fn lose_acks(&self, n: u64) {
        self.shared.acks_to_lose.store(n, Ordering::SeqCst);
    }

    /// Produce acknowledgements still to be lost.
    pub fn pending_lost_acks(&self) -> u64 {
        self.shared.acks_to_lose.load(Ordering::SeqCst)
    }

    /// While `true`, every new connection is closed on accept and the open ones are cut: the
    /// clients cannot reach the broker. `false` lets connections through again.
    pub fn set_partitioned(&self, partitioned: bool) {
        let was = self.shared.partitioned.swap(partitioned, Ordering::SeqCst);
        if partitioned && !was {
            self.cut_connections();
        }
    }

    /// True while partitioned.
    pub fn is_partitioned(&self) -> bool {
        self.shared.partitioned.load(Ordering::SeqCst)
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            connections_accepted: get(&s.connections_accepted),
            connections_refused: get(&s.connections_refused),
            connections_open: get(&s.connections_open),
            upstream_failures: get(&s.upstream_failures),
            bytes_to_upstream: get(&s.bytes_to_upstream),
            bytes_to_client: get(&s.bytes_to_client),
            acks_dropped: get(&s.acks_dropped),
            cuts: get(&s.cuts),
            connections_cut: get(&s.connections_cut),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.cut.send_modify(|g| *g = g.wrapping_add(1));
    }
}

impl Shared {
    fn delay(&self) -> Option<Duration> {
        match self.delay_micros.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Takes one lost acknowledgement from the budget, if any is left.
    fn claim_lost_ack(&self) -> bool {
        self.acks_to_lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "fault proxy cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Subscribe before checking the partition flag: a partition that starts after the
        // check then still reaches this connection as a cut.
        let cut = shared.cut.subscribe();
        if shared.partitioned.load(Ordering::SeqCst)
            || shared.connections_open.load(Ordering::Relaxed) >= MAX_CONNECTIONS
        {
            shared.connections_refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
        shared.connections_open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(client, cut, Arc::clone(&shared)));
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    ClientClosed,
    UpstreamClosed,
    AckDropped(i32),
    Cut,
    Shutdown,
    BadFrame(i32),
    Io(std::io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("the client closed it"),
            End::UpstreamClosed => f.write_str("the broker closed it"),
            End::AckDropped(id) => write!(f, "dropped the Produce response {id}"),
            End::Cut => f.write_str("cut"),
            End::Shutdown => f.write_str("the proxy stopped"),
            End::BadFrame(len) => write!(f, "bad frame length {len}"),
            End::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

async fn connection(mut client: TcpStream, mut cut: watch::Receiver<u64>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let end = tokio::select! {
        end = proxy(&mut client, &shared) => end,
        _ = cut.changed() => End::Cut,
        _ = shutdown.changed() => End::Shutdown,
    };
    if matches!(end, End::Cut) {
        shared.connections_cut.fetch_add(1, Ordering::Relaxed);
    }
    shared.connections_open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%end, "fault proxy connection closed");
    // Dropping both streams closes them.
}

/// Connects to the broker and runs both pumps until one direction ends.
async fn proxy(client: &mut TcpStream, shared: &Shared) -> End {
    let mut upstream =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.upstream_failures.fetch_add(1, Ordering::Relaxed);
                return End::Io(e);
            }
            Err(_) => {
                shared.upstream_failures.fetch_add(1, Ordering::Relaxed);
                return End::Io(std::io::ErrorKind::TimedOut.into());
            }
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Correlation ids of this connection's Produce requests whose responses are to be lost,
    // and of its Metadata/FindCoordinator requests whose responses are to be rewritten.
    let marks = Marks::default();
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::select! {
        end = pump_requests(client_read, upstream_write, shared, &marks) => end,
        end = pump_responses(upstream_read, client_write, shared, &marks) => end,
    }
}

/// Requests of one connection whose responses the proxy acts on.
#[derive(Default)]
struct Marks {
    /// Produce requests whose responses are to be lost.
    doomed: Mutex<Vec<i32>>,
    /// (correlation id, api key, api version) of responses to rewrite.
    rewrite: Mutex<Vec<(i32, i16, i16)>>,
}

/// Most rewrite marks kept per connection (a client pipelines far fewer).
const MAX_MARKS: usize = 1024;

/// Client → broker: marks Produce requests whose acknowledgement is to be lost, and
/// Metadata/FindCoordinator requests whose answers are to be rewritten.
async fn pump_requests(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    marks: &Marks,
) -> End {
    let mut head = Vec::with_capacity(4 + REQUEST_PREFIX_MAX);
    let mut chunk = vec![0u8; COPY_CHUNK];
    loop {
        let len = match read_frame_head(&mut from, &mut head, REQUEST_PREFIX_MAX).await {
            Ok(Some(len)) => len,
            Ok(None) => return End::ClientClosed,
            Err(end) => return end,
        };
        let prefix = &head[4..];
        if let Some(req) = frame::request_head(prefix) {
            if req.api_key == PRODUCE
                && frame::produce_acks(prefix) != Some(0)
                && shared.claim_lost_ack()
            {
                lock(&marks.doomed).push(req.correlation_id);
            }
            if matches!(req.api_key, METADATA | FIND_COORDINATOR) && lock(&shared.rewrite).is_some()
            {
                let mut r = lock(&marks.rewrite);
                if r.len() >= MAX_MARKS {
                    r.remove(0);
                }
                r.push((req.correlation_id, req.api_key, req.api_version));
            }
        }
        if let Err(e) = forward(&mut from, &mut to, &head, len, shared, &mut chunk).await {
            return e.into();
        }
        shared
            .bytes_to_upstream
            .fetch_add(4 + len as u64, Ordering::Relaxed);
    }
}

/// Broker → client: drops the responses of marked Produce requests, ending the connection;
/// rewrites the marked Metadata/FindCoordinator responses.
async fn pump_responses(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    marks: &Marks,
) -> End {
    let mut head = Vec::with_capacity(4 + RESPONSE_PREFIX);
    let mut chunk = vec![0u8; COPY_CHUNK];
    loop {
        let len = match read_frame_head(&mut from, &mut head, RESPONSE_PREFIX).await {
            Ok(Some(len)) => len,
            Ok(None) => return End::UpstreamClosed,
            Err(end) => return end,
        };
        if let Some(id) = frame::response_correlation_id(&head[4..]) {
            {
                let mut doomed = lock(&marks.doomed);
                if let Some(i) = doomed.iter().position(|&d| d == id) {
                    doomed.swap_remove(i);
                    shared.acks_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(correlation_id = id, "dropped a Produce response");
                    return End::AckDropped(id);
                }
            }
            let marked = {
                let mut r = lock(&marks.rewrite);
                r.iter().position(|m| m.0 == id).map(|i| r.remove(i))
            };
            let rewrite = lock(&shared.rewrite).clone();
            if let (Some((_, key, version)), Some(rewrite), true) =
                (marked, rewrite, len <= MAX_REWRITE)
            {
                let mut body = head[4..].to_vec();
                body.resize(len, 0);
                if let Err(e) = from.read_exact(&mut body[head.len() - 4..]).await {
                    return e.into();
                }
                let body = rewrite.response(key, version, &body).unwrap_or(body);
                if let Some(delay) = shared.delay() {
                    tokio::time::sleep(delay).await;
                }
                let mut frame = Vec::with_capacity(4 + body.len());
                frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
                frame.extend_from_slice(&body);
                if let Err(e) = to.write_all(&frame).await {
                    return e.into();
                }
                shared
                    .bytes_to_client
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
                continue;
            }
        }
        if let Err(e) = forward(&mut from, &mut to, &head, len, shared, &mut chunk).await {
            return e.into();
        }
        shared
            .bytes_to_client
            .fetch_add(4 + len as u64, Ordering::Relaxed);
    }
}

/// Reads a frame's length and up to `prefix_max` bytes of it into `head` (length included).
/// `Ok(None)` on a clean end of stream before a frame starts.
async fn read_frame_head(
    from: &mut (impl AsyncRead + Unpin),
    head: &mut Vec<u8>,
    prefix_max: usize,
) -> Result<Option<usize>, End> {
    let mut len_bytes = [0u8; 4];
    match from.read_exact(&mut len_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(End::Io(e)),
    }
    let raw = i32::from_be_bytes(len_bytes);
    let len = usize::try_from(raw)
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or(End::BadFrame(raw))?;
    let prefix = len.min(prefix_max);
    head.clear();
    head.extend_from_slice(&len_bytes);
    head.resize(4 + prefix, 0);
    from.read_exact(&mut head[4..]).await?;
    Ok(Some(len))
}

/// Waits out the delay, then writes `head` and streams the rest of the `len`-byte frame.
async fn forward(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    head: &[u8],
    len: usize,
    shared: &Shared,
    chunk: &mut [u8],
) -> std::io::Result<()> {
    if let Some(delay) = shared.delay() {
        tokio::time::sleep(delay).await;
    }
    to.write_all(head).await?;
    let mut left = len + 4 - head.len();
    while left > 0 {
        let n = left.min(chunk.len());
        from.read_exact(&mut chunk[..n]).await?;
        to.write_all(&chunk[..n]).await?;
        left -= n;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
