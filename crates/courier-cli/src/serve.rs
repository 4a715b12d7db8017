//! `courier serve`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use courier_broker::{Broker, BrokerConfig};
use courier_server::{Context, ServerConfig};

use crate::settings::{self, FileSettings};

/// Run the broker. Each setting can be given by flag, by environment variable, or in the TOML
/// file named by --config (keys are the flag names without dashes' prefix, e.g. `data-dir`).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout). [default: 127.0.0.1:9092]
    #[arg(long, env = "COURIER_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Directory holding all data. [default: ./data]
    #[arg(long, env = "COURIER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML file with any of these settings.
    #[arg(long, env = "COURIER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where ephemeral topics (`courier.ephemeral=true`) keep their data: a memory-backed
    /// directory. [default: a new directory under /dev/shm]
    #[arg(long, env = "COURIER_EPHEMERAL_DIR", value_name = "DIR")]
    ephemeral_dir: Option<PathBuf>,
    /// Host name clients are told to connect to. [default: the listen host]
    #[arg(long, env = "COURIER_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// HOST:PORT clients are told to connect to, when they reach the broker through a proxy
    /// or NAT. Overrides --advertised-host. [default: the listen address]
    #[arg(long, env = "COURIER_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// This broker's node id. [default: 0]
    #[arg(long, env = "COURIER_NODE_ID")]
    node_id: Option<i32>,
    /// Create unknown topics when a client asks for their metadata. [default: true]
    #[arg(long, env = "COURIER_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics. [default: 1]
    #[arg(long, env = "COURIER_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// Largest request frame accepted, in bytes. [default: 104857600]
    #[arg(long, env = "COURIER_MAX_FRAME_BYTES")]
    max_frame_bytes: Option<usize>,
    /// Most client connections at once. [default: 1000]
    #[arg(long, env = "COURIER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most unanswered requests per connection. [default: 32]
    #[arg(long, env = "COURIER_MAX_IN_FLIGHT")]
    max_in_flight_per_connection: Option<usize>,
    /// Bytes of requests held in memory at once across all connections. [default: 536870912]
    #[arg(long, env = "COURIER_MAX_REQUEST_MEMORY_BYTES")]
    max_request_memory_bytes: Option<usize>,
    /// Default segment.bytes. [default: 1073741824]
    #[arg(long, env = "COURIER_SEGMENT_BYTES")]
    segment_bytes: Option<u64>,
    /// Default segment.ms. [default: 604800000]
    #[arg(long, env = "COURIER_SEGMENT_MS")]
    segment_ms: Option<i64>,
    /// Default retention.ms; -1 keeps forever. [default: 604800000]
    #[arg(long, env = "COURIER_RETENTION_MS", allow_hyphen_values = true)]
    retention_ms: Option<i64>,
    /// Default retention.bytes; -1 for no limit. [default: -1]
    #[arg(long, env = "COURIER_RETENTION_BYTES", allow_hyphen_values = true)]
    retention_bytes: Option<i64>,
    /// Default max.message.bytes (largest batch). [default: 1048588]
    #[arg(long, env = "COURIER_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<u32>,
    /// Default flush.ms: how long unsynced data may wait for a background fsync when no acks=all
    /// producer waits. Consumers see records once fsynced. [default: 0]
    #[arg(long, env = "COURIER_FLUSH_MS")]
    flush_ms: Option<i64>,
    /// How long the first rebalance of an empty group waits for more members
    /// (group.initial.rebalance.delay.ms). [default: 3000]
    #[arg(long, env = "COURIER_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<i64>,
    /// Smallest session.timeout.ms a consumer may ask for. [default: 6000]
    #[arg(long, env = "COURIER_GROUP_MIN_SESSION_TIMEOUT_MS")]
    group_min_session_timeout_ms: Option<i32>,
    /// Largest session.timeout.ms a consumer may ask for. [default: 1800000]
    #[arg(long, env = "COURIER_GROUP_MAX_SESSION_TIMEOUT_MS")]
    group_max_session_timeout_ms: Option<i32>,
    /// Heartbeat interval told to KIP-848 consumers (group.consumer.heartbeat.interval.ms).
    /// [default: 5000]
    #[arg(long, env = "COURIER_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    group_consumer_heartbeat_interval_ms: Option<i32>,
    /// Session timeout of KIP-848 consumers (group.consumer.session.timeout.ms). [default: 45000]
    #[arg(long, env = "COURIER_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    group_consumer_session_timeout_ms: Option<i64>,
    /// Share groups (KIP-932) a broker keeps at once, empty ones included
    /// (group.share.max.groups). [default: 10]
    #[arg(long, env = "COURIER_GROUP_SHARE_MAX_GROUPS")]
    group_share_max_groups: Option<usize>,
    /// Members per share group (group.share.max.size). [default: 200]
    #[arg(long, env = "COURIER_GROUP_SHARE_MAX_SIZE")]
    group_share_max_size: Option<usize>,
    /// Heartbeat interval told to share consumers (group.share.heartbeat.interval.ms).
    /// [default: 5000]
    #[arg(long, env = "COURIER_GROUP_SHARE_HEARTBEAT_INTERVAL_MS")]
    group_share_heartbeat_interval_ms: Option<i32>,
    /// A share consumer silent this long leaves its group, and its records are released
    /// (group.share.session.timeout.ms). [default: 45000]
    #[arg(long, env = "COURIER_GROUP_SHARE_SESSION_TIMEOUT_MS")]
    group_share_session_timeout_ms: Option<i64>,
    /// Largest transaction.timeout.ms a producer may ask for (transaction.max.timeout.ms).
    /// [default: 900000]
    #[arg(long, env = "COURIER_TRANSACTION_MAX_TIMEOUT_MS")]
    transaction_max_timeout_ms: Option<i32>,
    /// The transaction protocol version offered to clients (the finalized transaction.version
    /// feature): 2 = KIP-890 (implicit partition adds, an epoch bump per transaction), 1 = the
    /// classic protocol. [default: 2]
    #[arg(long, env = "COURIER_TRANSACTION_VERSION")]
    transaction_version: Option<i16>,
    /// Forget idempotent producers idle this long (producer.id.expiration.ms). [default: 86400000]
    #[arg(long, env = "COURIER_PRODUCER_ID_EXPIRATION_MS")]
    producer_id_expiration_ms: Option<i64>,
    /// Fault injection for crash tests only: abort the process right after an EndTxn decision
    /// is durable, before its markers are written.
    #[arg(long, hide = true)]
    fault_crash_after_txn_prepare: bool,
    /// How often retention runs, in ms. [default: 300000]
    #[arg(long, env = "COURIER_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
}

/// The fully resolved settings.
struct Resolved {
    listen: String,
    /// Port to advertise instead of the bound one.
    advertised_port: Option<i32>,
    broker: BrokerConfig,
    server: ServerConfig,
}

fn resolve(a: ServeArgs) -> anyhow::Result<Resolved> {
    let f = match &a.config {
        Some(path) => settings::load(path)?,
        None => FileSettings::default(),
    };
    let listen = a
        .listen
        .or(f.listen)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let mut broker = BrokerConfig {
        data_dir: a
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data")),
        ephemeral_dir: a.ephemeral_dir.or(f.ephemeral_dir),
        ..BrokerConfig::default()
    };
    let listen_host = listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();
    broker.advertised_host = a.advertised_host.or(f.advertised_host).unwrap_or_else(|| {
        if listen_host.is_empty() || listen_host == "0.0.0.0" || listen_host == "::" {
            "127.0.0.1".into()
        } else {
            listen_host.clone()
        }
    });
    let mut advertised_port = None;
    if let Some(l) = a.advertised_listener.or(f.advertised_listener) {
        let (host, port) = l
            .rsplit_once(':')
            .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), i32::from(p))))
            .with_context(|| format!("--advertised-listener {l:?} is not HOST:PORT"))?;
        broker.advertised_host = host;
        advertised_port = Some(port);
    }
    if let Some(v) = a.node_id.or(f.node_id) {
        broker.node_id = v;
    }
    if let Some(v) = a.auto_create_topics.or(f.auto_create_topics) {
        broker.auto_create_topics = v;
    }
    if let Some(v) = a.num_partitions.or(f.num_partitions) {
        anyhow::ensure!(v >= 1, "--num-partitions must be at least 1");
        broker.default_partitions = v;
    }
    if let Some(v) = a
        .retention_check_interval_ms
        .or(f.retention_check_interval_ms)
    {
        broker.retention_check_interval_ms = v;
    }
    if let Some(v) = a
        .group_initial_rebalance_delay_ms
        .or(f.group_initial_rebalance_delay_ms)
    {
        anyhow::ensure!(
            v >= 0,
            "--group-initial-rebalance-delay-ms must be 0 or more"
        );
        broker.group.initial_rebalance_delay_ms = v;
    }
    if let Some(v) = a
        .group_min_session_timeout_ms
        .or(f.group_min_session_timeout_ms)
    {
        anyhow::ensure!(v >= 1, "--group-min-session-timeout-ms must be at least 1");
        broker.group.min_session_timeout_ms = v;
    }
    if let Some(v) = a
        .group_max_session_timeout_ms
        .or(f.group_max_session_timeout_ms)
    {
        anyhow::ensure!(
            v >= broker.group.min_session_timeout_ms,
            "--group-max-session-timeout-ms must be at least the minimum"
        );
        broker.group.max_session_timeout_ms = v;
    }
    if let Some(v) = a
        .group_consumer_heartbeat_interval_ms
        .or(f.group_consumer_heartbeat_interval_ms)
    {
        anyhow::ensure!(
            v >= 1,
            "--group-consumer-heartbeat-interval-ms must be at least 1"
        );
        broker.consumer_group.heartbeat_interval_ms = v;
    }
    if let Some(v) = a
        .group_consumer_session_timeout_ms
        .or(f.group_consumer_session_timeout_ms)
    {
        anyhow::ensure!(
            v > i64::from(broker.consumer_group.heartbeat_interval_ms),
            "--group-consumer-session-timeout-ms must exceed the heartbeat interval"
        );
        broker.consumer_group.session_timeout_ms = v;
    }
    let share = &mut broker.share_group;
    if let Some(v) = a.group_share_max_groups.or(f.group_share_max_groups) {
        anyhow::ensure!(v >= 1, "--group-share-max-groups must be at least 1");
        share.max_groups = v;
    }
    if let Some(v) = a.group_share_max_size.or(f.group_share_max_size) {
        anyhow::ensure!(v >= 1, "--group-share-max-size must be at least 1");
        share.max_size = v;
    }
    if let Some(v) = a
        .group_share_heartbeat_interval_ms
        .or(f.group_share_heartbeat_interval_ms)
    {
        anyhow::ensure!(
            v >= 1,
            "--group-share-heartbeat-interval-ms must be at least 1"
        );
        share.heartbeat_interval_ms = v;
    }
    if let Some(v) = a
        .group_share_session_timeout_ms
        .or(f.group_share_session_timeout_ms)
    {
        anyhow::ensure!(
            v > i64::from(share.heartbeat_interval_ms),
            "--group-share-session-timeout-ms must exceed the heartbeat interval"
        );
        share.session_timeout_ms = v;
    }
    if let Some(v) = a
        .transaction_max_timeout_ms
        .or(f.transaction_max_timeout_ms)
    {
        anyhow::ensure!(v >= 1, "--transaction-max-timeout-ms must be at least 1");
        broker.txn.max_timeout_ms = v;
    }
    if let Some(v) = a.transaction_version.or(f.transaction_version) {
        anyhow::ensure!(
            matches!(v, 1 | 2),
            "--transaction-version must be 1 or 2 (got {v})"
        );
        broker.txn.transaction_version = v;
    }
    if let Some(v) = a.producer_id_expiration_ms.or(f.producer_id_expiration_ms) {
        anyhow::ensure!(v >= 1, "--producer-id-expiration-ms must be at least 1");
        broker.producer_id_expiration_ms = v;
    }
    broker.crash_after_txn_prepare = a.fault_crash_after_txn_prepare;
    let log = &mut broker.topic_defaults.log;
    if let Some(v) = a.segment_bytes.or(f.segment_bytes) {
        anyhow::ensure!(v >= 1024, "--segment-bytes must be at least 1024");
        log.segment_bytes = v;
    }
    if let Some(v) = a.segment_ms.or(f.segment_ms) {
        anyhow::ensure!(v >= 1, "--segment-ms must be at least 1");
        log.segment_ms = v;
    }
    if let Some(v) = a.retention_ms.or(f.retention_ms) {
        anyhow::ensure!(v >= -1, "--retention-ms must be -1 or more");
        log.retention_ms = v;
    }
    if let Some(v) = a.retention_bytes.or(f.retention_bytes) {
        anyhow::ensure!(v >= -1, "--retention-bytes must be -1 or more");
        log.retention_bytes = v;
    }
    if let Some(v) = a.max_message_bytes.or(f.max_message_bytes) {
        log.max_message_bytes = v;
    }
    if let Some(v) = a.flush_ms.or(f.flush_ms) {
        anyhow::ensure!(v >= 0, "--flush-ms must be 0 or more");
        broker.topic_defaults.flush_ms = v;
    }
    let mut server = ServerConfig::default();
    if let Some(v) = a.max_frame_bytes.or(f.max_frame_bytes) {
        anyhow::ensure!(v >= 1024, "--max-frame-bytes must be at least 1024");
        server.max_frame_bytes = v;
    }
    if let Some(v) = a.max_connections.or(f.max_connections) {
        anyhow::ensure!(v >= 1, "--max-connections must be at least 1");
        server.max_connections = v;
    }
    if let Some(v) = a.max_request_memory_bytes.or(f.max_request_memory_bytes) {
        anyhow::ensure!(
            v >= server.max_frame_bytes,
            "--max-request-memory-bytes must be at least --max-frame-bytes ({})",
            server.max_frame_bytes
        );
        server.max_request_memory_bytes = v;
    }
    if let Some(v) = a
        .max_in_flight_per_connection
        .or(f.max_in_flight_per_connection)
    {
        anyhow::ensure!(v >= 1, "--max-in-flight-per-connection must be at least 1");
        server.max_in_flight_per_connection = v;
    }
    Ok(Resolved {
        listen,
        advertised_port,
        broker,
        server,
    })
}

/// Runs the broker until SIGINT or SIGTERM, then shuts down cleanly.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("courier")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&resolved.listen)
            .await
            .with_context(|| format!("binding {}", resolved.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let mut broker_config = resolved.broker;
        broker_config.advertised_port = resolved.advertised_port.unwrap_or(i32::from(local.port()));
        let data_dir = broker_config.data_dir.clone();
        let broker = Broker::open(broker_config)
            .with_context(|| format!("opening data dir {}", data_dir.display()))?;
        broker.start_background_tasks();
        let ctx = Arc::new(Context::new(Arc::clone(&broker), resolved.server));
        tracing::info!(listen = %local, data_dir = %data_dir.display(), "courier is serving");
        println!("courier listening on {local}");
        courier_server::serve(listener, ctx, shutdown_signal()).await;
        let b = Arc::clone(&broker);
        tokio::task::spawn_blocking(move || b.shutdown())
            .await
            .context("closing storage")?;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
