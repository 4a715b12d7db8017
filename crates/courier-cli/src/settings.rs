//! The optional TOML config file for `courier serve`. Precedence: flag, then env var, then this
//! file, then the built-in default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Every `courier serve` setting that may come from the file; names match the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSettings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub ephemeral_dir: Option<PathBuf>,
    pub advertised_host: Option<String>,
    pub advertised_listener: Option<String>,
    pub node_id: Option<i32>,
    pub auto_create_topics: Option<bool>,
    pub num_partitions: Option<i32>,
    pub max_frame_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_in_flight_per_connection: Option<usize>,
    pub max_request_memory_bytes: Option<usize>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<i64>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub max_message_bytes: Option<u32>,
    pub flush_ms: Option<i64>,
    pub retention_check_interval_ms: Option<u64>,
    pub group_initial_rebalance_delay_ms: Option<i64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    pub group_consumer_session_timeout_ms: Option<i64>,
    pub group_share_max_groups: Option<usize>,
    pub group_share_max_size: Option<usize>,
    pub group_share_heartbeat_interval_ms: Option<i32>,
    pub group_share_session_timeout_ms: Option<i64>,
    pub transaction_max_timeout_ms: Option<i32>,
    pub transaction_version: Option<i16>,
    pub producer_id_expiration_ms: Option<i64>,
}

/// Reads and parses the file; unknown keys are an error so typos do not pass silently.
pub fn load(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}
