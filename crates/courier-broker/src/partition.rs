//! One partition: its log, its group-commit syncer and its high watermark.
//!
//! Durability lives here, in one place:
//! - [`Partition::append`] writes batches to the OS page cache and returns their offsets.
//! - The syncer task fdatasyncs the active segment whenever data is unsynced. One sync covers
//!   every append that reached the OS before it started, so concurrent producers share syncs
//!   (group commit). While one sync runs, new appends accumulate for the next.
//! - The high watermark is the log end offset covered by the last successful fdatasync.
//!   Consumers read only below it, so a record a consumer has seen survives power loss.
//! - acks=all producers wait ([`Partition::wait_durable`]) until the high watermark passes their
//!   last offset; acks=1 and acks=0 producers do not wait. With `flush.ms` > 0 the syncer waits
//!   up to that long for more data unless an acks=all producer is waiting.
//! - If an fdatasync fails the partition goes offline for writes: the page cache may have dropped
//!   the dirty pages, so pretending the data is safe would be a lie (as fjall and PostgreSQL do).
//!
//! A partition of an ephemeral topic ([`Partition::open_in_memory`]) has no syncer: its log lives
//! on a memory-backed file system and is never fsynced, and the high watermark is the log end
//! offset, published by every append. acks=all therefore means "in memory", and a restart
//! empties the partition (see `ephemeral.rs` and docs/guarantees.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use courier_storage::{AppendOrigin, FetchDataInfo, Log, LogAppendInfo, LogConfig, RecoveryReport};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::error::BrokerError;
use crate::now_ms;

/// What a consumer's read returns: the data, the last stable offset, and the aborted
/// transactions (producer id, first offset) overlapping the data (read_committed only).
pub type IsolatedRead = (FetchDataInfo, u64, Vec<(i64, u64)>);

/// A partition of a topic, shared by every connection that produces to or fetches from it.
pub struct Partition {
    /// Topic name, for logs and errors.
    pub topic: Arc<str>,
    /// Partition index within the topic.
    pub index: i32,
    /// Where the log lives, for deletion.
    dir: PathBuf,
    /// The log; `None` once closed or deleted. A std mutex: held only for in-memory work and
    /// page-cache writes, never across an await or an fsync.
    log: Mutex<Option<Log>>,
    /// The fsynced log end offset, published to waiting producers and fetchers.
    high_watermark: watch::Sender<u64>,
    /// Broker-wide counter bumped whenever any high watermark moves; long-polling fetches wait
    /// on it.
    hw_changed: Arc<watch::Sender<u64>>,
    /// Wakes the syncer after an append.
    sync_wanted: Notify,
    /// An acks=all producer is waiting: sync now even if flush.ms says wait.
    urgent: AtomicBool,
    /// Effective flush.ms for this topic.
    flush_ms: AtomicI64,
    /// Set after a failed fsync; writes are refused from then on.
    offline: AtomicBool,
    /// Set on close; the syncer exits.
    closing: AtomicBool,
    /// An ephemeral topic's partition: the log is in memory, there is no syncer, and every
    /// append moves the high watermark at once.
    memory_only: bool,
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir` and starts its syncer on the current runtime.
    pub fn open(
        topic: Arc<str>,
        index: i32,
        dir: &Path,
        config: LogConfig,
        flush_ms: i64,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let (log, report) = Log::open(dir, config, now_ms())?;
        log_recovery(&topic, index, &report);
        if !report.clean_shutdown {
            // What survived a crash may be only in the page cache. Sync it before it becomes
            // visible below the high watermark, or a later power loss could take back records
            // consumers have already read.
            log.sync_target().sync()?;
        }
        let partition = Arc::new(Self::new(
            topic, index, dir, log, flush_ms, hw_changed, false,
        ));
        tokio::spawn(Arc::clone(&partition).run_syncer());
        Ok(partition)
    }

    /// Creates an ephemeral topic's partition: an empty log in `dir` (a directory on a
    /// memory-backed file system that must not exist yet) starting at `start_offset`. No
    /// syncer: nothing is ever fsynced, and each append is visible as soon as it is written.
    pub fn open_in_memory(
        topic: Arc<str>,
        index: i32,
        dir: &Path,
        config: LogConfig,
        start_offset: u64,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let log = Log::create_at(dir, config, start_offset, now_ms())?;
        Ok(Arc::new(Self::new(
            topic, index, dir, log, 0, hw_changed, true,
        )))
    }

    fn new(
        topic: Arc<str>,
        index: i32,
        dir: &Path,
        log: Log,
        flush_ms: i64,
        hw_changed: Arc<watch::Sender<u64>>,
        memory_only: bool,
    ) -> Self {
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Self {
            topic,
            index,
            dir: dir.to_path_buf(),
            log: Mutex::new(Some(log)),
            high_watermark,
            hw_changed,
            sync_wanted: Notify::new(),
            urgent: AtomicBool::new(false),
            flush_ms: AtomicI64::new(flush_ms),
            offline: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            memory_only,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Log>> {
        // A poisoned mutex means a panic while appending; the log's own state is still
        // consistent (appends validate before writing), so keep serving.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open log.
    pub fn with_log<R>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(log) => f(log),
            None => Err(BrokerError::ShuttingDown),
        }
    }

    /// Appends producer batches, assigning offsets. The data is in the OS page cache, not yet
    /// durable; call [`Partition::wait_durable`] for acks=all. (In memory only, the append is
    /// visible at once and `wait_durable` returns at once.)
    pub fn append(&self, records: &Bytes, acks: i16) -> Result<LogAppendInfo, BrokerError> {
        self.append_from(records, AppendOrigin::Client, acks)
    }

    /// Appends a COMMIT or ABORT marker for a producer's transaction and returns the offset
    /// to wait for (see [`Partition::wait_durable`]).
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<u64, BrokerError> {
        let marker = Bytes::from(courier_storage::batch_builder::control_batch(
            producer_id,
            epoch,
            now_ms(),
            commit,
        ));
        let info = self.append_from(&marker, AppendOrigin::Coordinator, -1)?;
        Ok(info.last_offset + 1)
    }

    /// Appends as `origin` (only the broker's coordinators may write control batches).
    pub fn append_from(
        &self,
        records: &Bytes,
        origin: AppendOrigin,
        acks: i16,
    ) -> Result<LogAppendInfo, BrokerError> {
        if self.offline.load(Ordering::Acquire) {
            return Err(BrokerError::StorageOffline(self.name()));
        }
        if self.memory_only {
            let (info, leo) = self.with_log(|log| {
                let info = log.append_from(records, origin, now_ms())?;
                Ok((info, log.log_end_offset()))
            })?;
            self.publish_high_watermark(leo);
            return Ok(info);
        }
        let info = self.with_log(|log| Ok(log.append_from(records, origin, now_ms())?))?;
        if acks == -1 {
            self.urgent.store(true, Ordering::Release);
        }
        self.sync_wanted.notify_one();
        Ok(info)
    }

    /// Waits until every offset below `end_offset` is fsynced, or the timeout passes.
    pub async fn wait_durable(
        &self,
        end_offset: u64,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let mut rx = self.high_watermark.subscribe();
        let outcome = {
            let wait = rx.wait_for(|hw| *hw >= end_offset || self.offline.load(Ordering::Acquire));
            tokio::time::timeout(timeout, wait).await.map(|r| r.is_ok())
        };
        match outcome {
            Ok(true) if !self.offline.load(Ordering::Acquire) => Ok(()),
            Ok(_) => Err(BrokerError::StorageOffline(self.name())),
            Err(_) => Err(BrokerError::DurabilityTimeout),
        }
    }

    /// Offsets below this are fsynced (in memory only: appended) and visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.with_log(|log| Ok(log.log_start_offset())).unwrap_or(0)
    }

    /// The next offset to be assigned (may be above the high watermark until the next sync).
    pub fn log_end_offset(&self) -> u64 {
        self.with_log(|log| Ok(log.log_end_offset())).unwrap_or(0)
    }

    /// The last stable offset: below it, every transaction is decided (committed or aborted).
    pub fn last_stable_offset(&self) -> u64 {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.last_stable_offset(hw)))
            .unwrap_or(hw)
    }

    /// Reads whole batches from `offset` for a consumer: below the high watermark, or below
    /// the last stable offset for read_committed, which also gets the aborted transactions
    /// (producer id, first offset) overlapping what was read.
    pub fn read_isolated(
        &self,
        offset: u64,
        max_bytes: u32,
        read_committed: bool,
    ) -> Result<IsolatedRead, BrokerError> {
        let hw = self.high_watermark();
        self.with_log(|log| {
            let lso = log.last_stable_offset(hw);
            let data = log.read(offset, max_bytes, if read_committed { lso } else { hw })?;
            let aborted = match (read_committed, data.last_offset) {
                (true, Some(last)) => log.aborted_transactions(offset, last + 1)?,
                _ => Vec::new(),
            };
            Ok((data, lso, aborted))
        })
    }

    /// Reads whole batches from `offset`, below the high watermark.
    pub fn read(&self, offset: u64, max_bytes: u32) -> Result<FetchDataInfo, BrokerError> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.read(offset, max_bytes, hw)?))
    }

    /// Applies a new effective config.
    pub fn set_config(&self, config: LogConfig, flush_ms: i64) {
        self.flush_ms.store(flush_ms, Ordering::Release);
        let _ = self.with_log(|log| {
            log.set_config(config);
            Ok(())
        });
        self.sync_wanted.notify_one();
    }

    /// `topic-index`, for logs.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// True when a failed fsync has taken the partition offline for writes.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Stops the syncer and closes the log cleanly (fsync, indexes, clean-shutdown marker).
    /// An in-memory log is only dropped: its files go with the memory directory. Afterwards
    /// the high watermark is the final log end offset.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.closing.store(true, Ordering::Release);
        self.sync_wanted.notify_one();
        let log = self.lock().take();
        if let Some(log) = log {
            let leo = log.log_end_offset();
            if !self.memory_only {
                log.close()?;
            }
            self.publish_high_watermark(leo);
        }
        Ok(())
    }

    /// True for an ephemeral topic's partition (memory only, never fsynced).
    pub fn is_memory_only(&self) -> bool {
        self.memory_only
    }

    /// Stops the syncer and removes the partition's directory.
    pub fn delete(&self) -> Result<(), BrokerError> {
        self.closing.store(true, Ordering::Release);
        self.sync_wanted.notify_one();
        let log = self.lock().take();
        match log {
            Some(log) => log.delete()?,
            None => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
        Ok(())
    }

    fn publish_high_watermark(&self, leo: u64) {
        let moved = self.high_watermark.send_if_modified(|hw| {
            if leo > *hw {
                *hw = leo;
                true
            } else {
                false
            }
        });
        if moved {
            self.hw_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The group-commit loop. See the module docs.
    async fn run_syncer(self: Arc<Self>) {
        let mut dirty_since: Option<Instant> = None;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            let leo = match self.with_log(|log| Ok(log.log_end_offset())) {
                Ok(leo) => leo,
                Err(_) => return,
            };
            if leo <= self.high_watermark() {
                dirty_since = None;
                self.sync_wanted.notified().await;
                continue;
            }
            let flush_ms = self.flush_ms.load(Ordering::Acquire);
            if flush_ms > 0 && !self.urgent.load(Ordering::Acquire) {
                let since = *dirty_since.get_or_insert_with(Instant::now);
                let deadline = since + Duration::from_millis(flush_ms as u64);
                if Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = self.sync_wanted.notified() => continue,
                    }
                }
            }
            self.urgent.store(false, Ordering::Release);
            let target = match self.with_log(|log| Ok(log.sync_target())) {
                Ok(t) => t,
                Err(_) => return,
            };
            let covered = target.log_end_offset;
            let result = tokio::task::spawn_blocking(move || target.sync()).await;
            match result {
                Ok(Ok(())) => {
                    dirty_since = None;
                    self.publish_high_watermark(covered);
                }
                Ok(Err(e)) => {
                    tracing::error!(partition = %self.name(), error = %e, "fdatasync failed; partition is offline for writes");
                    self.go_offline();
                    return;
                }
                Err(e) => {
                    tracing::error!(partition = %self.name(), error = %e, "sync task failed; partition is offline for writes");
                    self.go_offline();
                    return;
                }
            }
        }
    }

    fn go_offline(&self) {
        self.offline.store(true, Ordering::Release);
        // Wake every waiting producer so it sees the failure instead of timing out.
        self.high_watermark.send_modify(|_| {});
    }
}

fn log_recovery(topic: &str, index: i32, r: &RecoveryReport) {
    if r.truncated_bytes > 0 {
        tracing::warn!(
            topic,
            partition = index,
            valid_batches = r.valid_batches,
            scanned_bytes = r.scanned_bytes,
            truncated_bytes = r.truncated_bytes,
            "recovered partition: truncated a torn or corrupt tail"
        );
    } else if !r.clean_shutdown && r.scanned_bytes > 0 {
        tracing::info!(
            topic,
            partition = index,
            valid_batches = r.valid_batches,
            scanned_bytes = r.scanned_bytes,
            "recovered partition after unclean shutdown; tail is intact"
        );
    }
}
