//! The root of the broker's state.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::fetch_session::FetchSessionCache;
use crate::groups::GroupService;
use crate::now_ms;
use crate::producer_ids::ProducerIdManager;
use crate::shares::ShareService;
use crate::topic_config::TopicConfig;
use crate::topics::{write_durably, Topic, TopicRegistry};
use crate::transactions::TxnService;

/// Everything the request handlers work on.
pub struct Broker {
    /// The broker's settings.
    pub config: BrokerConfig,
    /// Cluster id reported in Metadata, persisted in the data dir.
    pub cluster_id: String,
    /// All topics.
    pub topics: TopicRegistry,
    /// Producer ids for InitProducerId, unique across restarts.
    pub producer_ids: ProducerIdManager,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupService>,
    /// Transactions.
    pub txns: Arc<TxnService>,
    /// Share groups (KIP-932) and their share-partitions' delivery state.
    pub shares: Arc<ShareService>,
    /// KIP-227 fetch sessions.
    fetch_sessions: Mutex<FetchSessionCache>,
    /// Bumped whenever any partition's high watermark moves; long-polling fetches wait on it.
    hw_changed: Arc<watch::Sender<u64>>,
    /// Holds an exclusive flock on `<data>/.lock` so two brokers never share a data dir.
    _lock: std::fs::File,
}

impl Broker {
    /// Opens the data directory, recovering every partition. Must run inside a tokio runtime
    /// (each partition starts its syncer task).
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>, BrokerError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| BrokerError::Metadata {
            op: "create data dir",
            path: dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&dir)?;
        let cluster_id = load_cluster_id(&dir, config.cluster_id.clone())?;
        let (hw_changed, _) = watch::channel(0u64);
        let hw_changed = Arc::new(hw_changed);
        let started = std::time::Instant::now();
        let topics = TopicRegistry::load(
            &dir,
            config.topic_defaults.clone(),
            config.ephemeral_dir.clone(),
            Arc::clone(&hw_changed),
        )?;
        let producer_ids = ProducerIdManager::open(&dir.join("meta"))?;
        let groups = GroupService::open(
            &dir.join("meta"),
            config.group.clone(),
            config.consumer_group.clone(),
            Arc::clone(&hw_changed),
        )?;
        let shares = ShareService::open(
            &dir.join("meta"),
            config.share_group.clone(),
            Arc::clone(&hw_changed),
        )?;
        let txns = TxnService::open(
            &dir.join("meta"),
            config.txn.clone(),
            Arc::clone(&hw_changed),
        )?;
        let partitions: usize = topics
            .list()
            .iter()
            .map(|t| t.partition_count() as usize)
            .sum();
        tracing::info!(
            data_dir = %dir.display(),
            topics = topics.list().len(),
            partitions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage opened"
        );
        Ok(Arc::new(Self {
            fetch_sessions: Mutex::new(FetchSessionCache::new(config.max_fetch_sessions, 120_000)),
            config,
            cluster_id,
            topics,
            producer_ids,
            groups,
            txns,
            shares,
            hw_changed,
            _lock: lock,
        }))
    }

    /// The fetch session cache.
    pub fn fetch_sessions(&self) -> MutexGuard<'_, FetchSessionCache> {
        self.fetch_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes whenever any high watermark moves.
    pub fn watch_high_watermarks(&self) -> watch::Receiver<u64> {
        self.hw_changed.subscribe()
    }

    /// The topic, creating it with broker defaults when auto-creation is on and `allow` is set.
    pub fn topic_or_create(&self, name: &str, allow: bool) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t);
        }
        if !(allow && self.config.auto_create_topics) {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        }
        match self.topics.create(
            name,
            self.config.default_partitions,
            1,
            TopicConfig::default(),
            false,
        ) {
            Ok(Some(t)) => Ok(t),
            Ok(None) | Err(BrokerError::TopicExists(_)) => self
                .topics
                .get(name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Topic names to (id, partition count), what the consumer-group assignors work from.
    pub fn topics_view(&self) -> courier_coordinator::consumer::TopicsView {
        self.topics
            .list()
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    (t.topic_id.as_u128(), t.partition_count()),
                )
            })
            .collect()
    }

    /// Runs retention on every partition now, and expires idle idempotent producers.
    pub fn enforce_retention(&self) {
        let now = now_ms();
        for topic in self.topics.list() {
            for p in topic.partitions() {
                // producer.id.expiration.ms: forget idle idempotent producers.
                let _ = p.with_log(|log| {
                    Ok(log.expire_producers(
                        now,
                        courier_storage::producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
                    ))
                });
                match p.with_log(|log| Ok(log.enforce_retention(now)?)) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(partition = %p.name(), segments = n, "retention deleted segments")
                    }
                    Err(e) => tracing::warn!(partition = %p.name(), error = %e, "retention failed"),
                }
            }
        }
    }

    /// Writes a finished transaction's markers to every partition, applies or drops its
    /// transactional offsets, and records the transaction complete. Partitions of deleted
    /// topics are skipped. Idempotent: a retry after a failure writes markers again, which
    /// readers treat as no-ops.
    pub async fn complete_transaction(
        &self,
        job: courier_coordinator::txn::MarkerJob,
    ) -> Result<(), BrokerError> {
        let mut waits = Vec::new();
        for (topic, index) in &job.partitions {
            let Some(partition) = self.topics.get(topic).and_then(|t| t.partition(*index)) else {
                tracing::warn!(
                    topic,
                    partition = index,
                    "transaction partition no longer exists; no marker"
                );
                continue;
            };
            let end = partition.append_marker(job.producer_id, job.producer_epoch, job.commit)?;
            waits.push((partition, end));
        }
        for (partition, end) in waits {
            partition.wait_durable(end, Duration::from_secs(30)).await?;
        }
        for group in &job.groups {
            self.groups
                .end_txn(group, job.producer_id, job.commit)
                .await?;
        }
        self.txns.complete(&job.transactional_id).await?;
        tracing::debug!(transactional_id = %job.transactional_id, commit = job.commit, partitions = job.partitions.len(), "transaction complete");
        Ok(())
    }

    /// Runs a marker job in the background; a failure is logged and retried by the timer.
    pub fn spawn_completion(self: &Arc<Self>, job: courier_coordinator::txn::MarkerJob) {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let id = job.transactional_id.clone();
            if let Err(e) = broker.complete_transaction(job).await {
                tracing::warn!(transactional_id = %id, error = %e, "writing transaction markers failed; will retry");
            }
        });
    }

    /// Starts the periodic retention task, the consumer-group timer and the transaction timer
    /// (timeouts, and completing transactions a crash left prepared).
    pub fn start_background_tasks(self: &Arc<Self>) {
        for job in self.txns.pending_markers() {
            tracing::info!(transactional_id = %job.transactional_id, commit = job.commit, "completing a transaction left prepared by a crash");
            self.spawn_completion(job);
        }
        let weak_txn = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000));
            loop {
                tick.tick().await;
                let Some(broker) = weak_txn.upgrade() else {
                    return;
                };
                match broker.txns.expire().await {
                    Ok(jobs) => jobs.into_iter().for_each(|j| broker.spawn_completion(j)),
                    Err(e) => tracing::warn!(error = %e, "transaction timeout check failed"),
                }
                for job in broker.txns.stuck_markers() {
                    tracing::info!(transactional_id = %job.transactional_id, "retrying transaction markers");
                    broker.spawn_completion(job);
                }
            }
        });
        crate::shares::spawn_timer(self);
        let weak_groups = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(broker) = weak_groups.upgrade() else {
                    return;
                };
                let view = broker.topics_view();
                broker.groups.consumer_tick(&view);
            }
        });
        let weak = Arc::downgrade(self);
        let every = Duration::from_millis(self.config.retention_check_interval_ms.max(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(broker) = weak.upgrade() else { return };
                let b = Arc::clone(&broker);
                let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
            }
        });
    }

    /// Closes every partition cleanly so the next start skips recovery.
    pub fn shutdown(&self) {
        self.topics.close_all();
        if let Err(e) = self.txns.close() {
            tracing::error!(error = %e, "closing the transaction log failed; the next start will recover it");
        }
        if let Err(e) = self.shares.close() {
            tracing::error!(error = %e, "closing the share-group state log failed; the next start will recover it");
        }
        if let Err(e) = self.groups.close() {
            tracing::error!(error = %e, "closing the offsets log failed; the next start will recover it");
        }
        tracing::info!("storage closed cleanly");
    }
}

fn lock_data_dir(dir: &Path) -> Result<std::fs::File, BrokerError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BrokerError::Metadata {
            op: "open lock file",
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(BrokerError::Metadata {
            op: "lock data dir (is another broker using it?)",
            path,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

fn load_cluster_id(dir: &Path, configured: Option<String>) -> Result<String, BrokerError> {
    let meta = dir.join("meta");
    std::fs::create_dir_all(&meta).map_err(|source| BrokerError::Metadata {
        op: "create",
        path: meta.clone(),
        source,
    })?;
    let path = meta.join("cluster_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id =
        configured.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..22].to_string());
    write_durably(&path, id.as_bytes())?;
    Ok(id)
}
