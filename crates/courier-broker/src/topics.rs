//! The topic registry: which topics exist, their partitions, ids and configs, kept on disk.
//!
//! Each topic's metadata lives in `<data>/meta/topics/<name>.toml`, written to a temporary file,
//! fsynced and renamed into place, then the directory fsynced, so a crash leaves the old file or
//! the new one. Partition logs live in `<data>/<name>-<index>/`. Creation makes the partition
//! directories first and the metadata file last; deletion removes the metadata file first. A
//! crash in between leaves only orphan directories, which [`TopicRegistry::load`] removes.
//!
//! An ephemeral topic (`courier.ephemeral=true`) keeps the same metadata file, so it survives
//! restarts, but its partitions live in the memory directory of [`EphemeralStore`] and start
//! empty at every start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::ephemeral::{EndOffsets, EphemeralStore};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::topic_config::{TopicConfig, TopicDefaults};
use crate::topic_name;

/// A topic and its partitions.
pub struct Topic {
    /// The topic's name.
    pub name: Arc<str>,
    /// Stable id (KIP-516), used by Fetch v13+ and Metadata v10+.
    pub topic_id: Uuid,
    /// The replication factor the creator asked for. Courier stores one copy; Metadata reports
    /// the one replica that exists.
    pub requested_replication_factor: i16,
    /// The partitions, index = position. Only ever grows (CreatePartitions).
    partitions: RwLock<Vec<Arc<Partition>>>,
    /// Config overrides.
    config: RwLock<TopicConfig>,
}

impl Topic {
    /// A partition by index.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i).cloned())
    }

    /// All partitions in index order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i32
    }

    /// The topic's config overrides.
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// On-disk form of a topic's metadata.
#[derive(Serialize, Deserialize)]
struct TopicMeta {
    topic_id: String,
    partitions: i32,
    replication_factor: i16,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// Every topic on this broker.
pub struct TopicRegistry {
    /// Root data directory; partition directories live directly under it.
    data_dir: PathBuf,
    /// Where topic metadata files live.
    meta_dir: PathBuf,
    /// Broker-wide defaults for configs a topic does not override.
    defaults: TopicDefaults,
    /// Topics by name.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Broker-wide "some high watermark moved" signal handed to each partition.
    hw_changed: Arc<watch::Sender<u64>>,
    /// Serialises create/delete/grow/alter so directories and metadata files stay consistent.
    admin: Mutex<()>,
    /// Where ephemeral topics' partitions live (in memory), and where they resume.
    ephemeral: EphemeralStore,
}

/// Maps an I/O error on a metadata file or directory to [`BrokerError::Metadata`].
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BrokerError + 'a {
    move |source| BrokerError::Metadata {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
pub fn write_durably(path: &Path, contents: &[u8]) -> Result<(), BrokerError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(contents).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that entries created or removed in it survive power loss.
pub fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

impl TopicRegistry {
    /// Loads every topic from `data_dir`, recovering each partition, and removes orphans.
    /// Ephemeral topics' partitions start empty in a memory directory under `ephemeral_dir`
    /// (`/dev/shm` when `None`).
    pub fn load(
        data_dir: &Path,
        defaults: TopicDefaults,
        ephemeral_dir: Option<PathBuf>,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Self, BrokerError> {
        let meta_dir = data_dir.join("meta").join("topics");
        std::fs::create_dir_all(&meta_dir).map_err(io_err("create", &meta_dir))?;
        let ephemeral = EphemeralStore::open(&data_dir.join("meta"), ephemeral_dir)?;
        let registry = Self {
            data_dir: data_dir.to_path_buf(),
            meta_dir: meta_dir.clone(),
            defaults,
            topics: RwLock::new(HashMap::new()),
            hw_changed,
            admin: Mutex::new(()),
            ephemeral,
        };
        let entries = std::fs::read_dir(&meta_dir).map_err(io_err("list", &meta_dir))?;
        let mut loaded = HashMap::new();
        for entry in entries {
            let path = entry.map_err(io_err("list", &meta_dir))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".toml"))
            else {
                continue;
            };
            if topic_name::validate(name).is_err() {
                tracing::warn!(path = %path.display(), "ignoring metadata file with an invalid topic name");
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
            let meta: TopicMeta =
                toml::from_str(&text).map_err(|e| BrokerError::CorruptMetadata {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let topic = registry.open_topic(name, &meta)?;
            loaded.insert(name.to_string(), topic);
        }
        *registry.topics.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        registry.remove_orphans()?;
        registry.ephemeral.finish_start()?;
        Ok(registry)
    }

    fn open_topic(&self, name: &str, meta: &TopicMeta) -> Result<Arc<Topic>, BrokerError> {
        let topic_id =
            Uuid::parse_str(&meta.topic_id).map_err(|e| BrokerError::CorruptMetadata {
                path: self.meta_path(name),
                reason: e.to_string(),
            })?;
        let config = TopicConfig::from_pairs(
            meta.config
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        )?;
        let name: Arc<str> = Arc::from(name);
        let mut partitions = Vec::with_capacity(meta.partitions.max(0) as usize);
        for index in 0..meta.partitions {
            partitions.push(self.open_partition(&name, index, &config)?);
        }
        Ok(Arc::new(Topic {
            name,
            topic_id,
            requested_replication_factor: meta.replication_factor,
            partitions: RwLock::new(partitions),
            config: RwLock::new(config),
        }))
    }

    fn open_partition(
        &self,
        name: &Arc<str>,
        index: i32,
        config: &TopicConfig,
    ) -> Result<Arc<Partition>, BrokerError> {
        if config.is_ephemeral() {
            let (dir, start_offset) = self.ephemeral.partition_dir(name, index)?;
            return Partition::open_in_memory(
                Arc::clone(name),
                index,
                &dir,
                config.log_config(&self.defaults),
                start_offset,
                Arc::clone(&self.hw_changed),
            );
        }
        let dir = self.partition_dir(name, index);
        Partition::open(
            Arc::clone(name),
            index,
            &dir,
            config.log_config(&self.defaults),
            config.flush_ms(&self.defaults),
            Arc::clone(&self.hw_changed),
        )
    }

    fn partition_dir(&self, name: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{name}-{index}"))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.meta_dir.join(format!("{name}.toml"))
    }

    fn write_meta(
        &self,
        topic: &Topic,
        partitions: i32,
        config: &TopicConfig,
    ) -> Result<(), BrokerError> {
        let meta = TopicMeta {
            topic_id: topic.topic_id.to_string(),
            partitions,
            replication_factor: topic.requested_replication_factor,
            config: config.overrides().clone(),
        };
        let text = toml::to_string(&meta).map_err(|e| BrokerError::CorruptMetadata {
            path: self.meta_path(&topic.name),
            reason: e.to_string(),
        })?;
        write_durably(&self.meta_path(&topic.name), text.as_bytes())
    }

    /// Removes partition directories that belong to no topic (an interrupted create or delete).
    fn remove_orphans(&self) -> Result<(), BrokerError> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let entries = std::fs::read_dir(&self.data_dir).map_err(io_err("list", &self.data_dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(dir_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((name, index)) = dir_name.rsplit_once('-') else {
                continue;
            };
            let Ok(index) = index.parse::<i32>() else {
                continue;
            };
            let owned = topics
                .get(name)
                .is_some_and(|t| index < t.partition_count());
            if !owned {
                tracing::warn!(dir = %path.display(), "removing orphan partition directory left by an interrupted create or delete");
                std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
            }
        }
        Ok(())
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.topic_id == id)
            .cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The broker-wide defaults.
    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    /// Creates a topic. With `validate_only`, checks everything and creates nothing.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, BrokerError> {
        topic_name::validate(name)?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if validate_only {
            return Ok(None);
        }
        let topic = Arc::new(Topic {
            name: Arc::from(name),
            topic_id: Uuid::new_v4(),
            requested_replication_factor: replication_factor,
            partitions: RwLock::new(Vec::new()),
            config: RwLock::new(config.clone()),
        });
        let mut parts = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            parts.push(self.open_partition(&topic.name, index, &config)?);
        }
        sync_dir(&self.data_dir)?;
        self.write_meta(&topic, partitions, &config)?;
        *topic.partitions.write().unwrap_or_else(|p| p.into_inner()) = parts;
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(
            topic = name,
            partitions,
            replication_factor,
            "created topic"
        );
        Ok(Some(topic))
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let meta = self.meta_path(name);
        std::fs::remove_file(&meta).map_err(io_err("remove", &meta))?;
        sync_dir(&self.meta_dir)?;
        for p in topic.partitions() {
            if let Err(e) = p.delete() {
                tracing::warn!(partition = %p.name(), error = %e, "could not remove partition data; it will be removed at next start");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let config = topic.config();
        let mut new = Vec::new();
        for index in current..count {
            new.push(self.open_partition(&topic.name, index, &config)?);
        }
        sync_dir(&self.data_dir)?;
        self.write_meta(&topic, count, &config)?;
        topic
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(new);
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides, persists them and applies them to every partition.
    pub fn set_config(&self, name: &str, config: TopicConfig) -> Result<(), BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        topic.config().check_change(&config)?;
        self.write_meta(&topic, topic.partition_count(), &config)?;
        let log_config = config.log_config(&self.defaults);
        let flush_ms = config.flush_ms(&self.defaults);
        for p in topic.partitions() {
            p.set_config(log_config.clone(), flush_ms);
        }
        *topic.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// Closes every partition cleanly; ephemeral topics' log end offsets are recorded and
    /// their memory directory removed.
    pub fn close_all(&self) {
        let mut in_memory = EndOffsets::new();
        for topic in self.list() {
            for p in topic.partitions() {
                if let Err(e) = p.close() {
                    tracing::error!(partition = %p.name(), error = %e, "clean close failed; the next start will recover the tail");
                }
            }
            if topic.config().is_ephemeral() {
                let ends = topic
                    .partitions()
                    .iter()
                    .map(|p| p.high_watermark())
                    .collect();
                in_memory.insert(topic.name.to_string(), ends);
            }
        }
        if let Err(e) = self.ephemeral.close(&in_memory) {
            tracing::error!(error = %e, "removing the ephemeral topics' memory directory failed; the next start removes it");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use courier_storage::batch_builder::{batch, NewRecord};

    use super::*;

    fn registry(data: &Path, shm: &Path) -> TopicRegistry {
        let (hw, _) = watch::channel(0u64);
        TopicRegistry::load(
            data,
            TopicDefaults::default(),
            Some(shm.to_path_buf()),
            Arc::new(hw),
        )
        .expect("load")
    }

    fn ephemeral() -> TopicConfig {
        TopicConfig::from_pairs([(crate::topic_config::EPHEMERAL, Some("true"))]).expect("valid")
    }

    fn records(n: usize) -> Bytes {
        let new: Vec<NewRecord> = (0..n).map(|_| NewRecord::new(1, b"k", b"v")).collect();
        Bytes::from(batch(&new))
    }

    #[tokio::test]
    async fn ephemeral_partitions_live_outside_the_data_dir_and_start_empty_after_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (data, shm) = (tmp.path().join("data"), tmp.path().join("shm"));
        std::fs::create_dir_all(&shm).expect("shm");
        let r = registry(&data, &shm);
        r.create("m", 2, 1, ephemeral(), false).expect("create");
        r.create("d", 1, 1, TopicConfig::default(), false)
            .expect("create");
        let p = r.get("m").and_then(|t| t.partition(1)).expect("partition");
        assert!(p.is_memory_only());
        let changes = r.hw_changed.subscribe();
        let info = p.append(&records(3), -1).expect("append");
        assert!(
            changes.has_changed().expect("open"),
            "an append wakes long-polling fetches"
        );
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        assert_eq!(p.high_watermark(), 3, "visible as soon as appended");
        p.wait_durable(3, Duration::ZERO).await.expect("no wait");
        assert!(!data.join("m-0").exists() && !data.join("m-1").exists());
        assert!(data.join("d-0").is_dir());
        let in_memory: Vec<_> = std::fs::read_dir(&shm).expect("shm").flatten().collect();
        assert_eq!(in_memory.len(), 1, "one memory directory");
        assert!(in_memory[0].path().join("m-1").is_dir());

        r.close_all();
        assert_eq!(
            std::fs::read_dir(&shm).expect("shm").count(),
            0,
            "memory directory removed on clean close"
        );
        drop(r);

        let r = registry(&data, &shm);
        let t = r.get("m").expect("the topic survives");
        assert!(t.config().is_ephemeral());
        let p = t.partition(1).expect("partition");
        assert_eq!(p.log_start_offset(), 3, "empty, at the old log end offset");
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(t.partition(0).expect("p0").high_watermark(), 0);
        assert!(p.read(3, 1 << 20).expect("read").records.is_empty());
        assert!(
            p.read(0, 1 << 20).is_err(),
            "offsets before the restart are gone"
        );
        assert!(matches!(
            r.set_config("m", TopicConfig::default()),
            Err(BrokerError::InvalidConfig(_))
        ));
        r.delete("m").expect("delete");
        r.close_all();
    }
}
