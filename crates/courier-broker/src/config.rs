//! The broker's own settings (the CLI fills them from flags, env vars and a TOML file).

use std::path::PathBuf;

use courier_coordinator::consumer::ConsumerConfig;
use courier_coordinator::group::GroupConfig;
use courier_coordinator::share::ShareGroupConfig;
use courier_coordinator::txn::TxnConfig;

use crate::topic_config::TopicDefaults;

/// Everything the broker needs to know about itself.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This node's id, reported in Metadata as the only broker and every partition's leader.
    pub node_id: i32,
    /// Host clients are told to connect to (Metadata's broker list).
    pub advertised_host: String,
    /// Port clients are told to connect to; the server fills it in after binding.
    pub advertised_port: i32,
    /// Root of all on-disk state.
    pub data_dir: PathBuf,
    /// Create a topic when Metadata asks for an unknown one (Kafka's auto.create.topics.enable).
    pub auto_create_topics: bool,
    /// Partition count for auto-created topics and CreateTopics with -1 (num.partitions).
    pub default_partitions: i32,
    /// Largest partition count a topic may have; bounds memory and file handles.
    pub max_partitions_per_topic: i32,
    /// Largest replication factor CreateTopics accepts. Courier is one node and stores one copy;
    /// it accepts up to this so tools that ask for RF 3 keep working, and reports the truth.
    pub max_replication_factor: i16,
    /// Defaults for every topic config that a topic does not override.
    pub topic_defaults: TopicDefaults,
    /// Where ephemeral topics (`courier.ephemeral=true`) keep their partitions: a directory on
    /// a memory-backed file system (tmpfs). `None` means `/dev/shm` (or the OS temporary
    /// directory where there is none, with a warning that it is not memory-backed).
    pub ephemeral_dir: Option<PathBuf>,
    /// How often retention runs (log.retention.check.interval.ms).
    pub retention_check_interval_ms: u64,
    /// Most fetch sessions kept at once (max.incremental.fetch.session.cache.slots).
    pub max_fetch_sessions: usize,
    /// Cluster id reported in Metadata; generated once and persisted in the data dir.
    pub cluster_id: Option<String>,
    /// Consumer-group limits and timings (group.* settings).
    pub group: GroupConfig,
    /// KIP-848 consumer-protocol settings (group.consumer.* settings).
    pub consumer_group: ConsumerConfig,
    /// Share-group (KIP-932) limits and timings (group.share.* settings).
    pub share_group: ShareGroupConfig,
    /// Transaction settings (transaction.max.timeout.ms).
    pub txn: TxnConfig,
    /// producer.id.expiration.ms: idempotent producers idle this long are forgotten.
    pub producer_id_expiration_ms: i64,
    /// Fault injection for crash tests: the process exits right after an EndTxn decision is
    /// fsynced, before any marker is written (as if SIGKILLed in that window).
    pub crash_after_txn_prepare: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            data_dir: PathBuf::from("./data"),
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions_per_topic: 10_000,
            max_replication_factor: 3,
            topic_defaults: TopicDefaults::default(),
            ephemeral_dir: None,
            retention_check_interval_ms: 300_000,
            max_fetch_sessions: 1000,
            cluster_id: None,
            group: GroupConfig::default(),
            consumer_group: ConsumerConfig::default(),
            share_group: ShareGroupConfig::default(),
            txn: TxnConfig::default(),
            producer_id_expiration_ms: 86_400_000,
            crash_after_txn_prepare: false,
        }
    }
}
