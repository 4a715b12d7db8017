//! Runs the transaction coordinator: persists its records in an internal log
//! (`<data>/meta/__transaction_state`), and writes COMMIT/ABORT markers to the partitions of
//! each finished transaction.
//!
//! One transactional operation runs at a time (an async lock around validate, persist,
//! apply), so every decision is made on durable state. EndTxn is answered once its
//! PrepareCommit/PrepareAbort record is fsynced; the markers are written afterwards by
//! [`crate::Broker::complete_transaction`], and the Complete record follows them. After a
//! restart, transactions the crash left prepared are completed the same way.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use courier_coordinator::txn::{
    decode_record, encode_record, EndOutcome, EndRequest, InitOutcome, MarkerJob, PartitionCheck,
    TxnConfig, TxnCoordinator, TxnError, TxnRecord,
};
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::internal_log;
use crate::now_ms;
use crate::partition::Partition;
use crate::producer_ids::ProducerIdManager;

/// How long a transaction-log write may wait for its fsync.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The transaction coordinator as the server sees it.
pub struct TxnService {
    inner: Mutex<TxnCoordinator>,
    /// Serialises transactional operations so each validates against durable state.
    op: tokio::sync::Mutex<()>,
    log: Arc<Partition>,
    transaction_version: i16,
}

/// A transactional operation's outcome: refused, or done (maybe with markers to write).
pub type TxnResult<T> = Result<Result<T, TxnError>, BrokerError>;

impl TxnService {
    /// Opens and replays the transaction log.
    pub fn open(
        meta_dir: &Path,
        config: TxnConfig,
        hw_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let log = internal_log::open(meta_dir, "__transaction_state", hw_changed)?;
        let transaction_version = config.transaction_version;
        let mut coordinator = TxnCoordinator::new(config);
        internal_log::replay(&log, |offset, key, value| match decode_record(key, value) {
            Ok(record) => coordinator.apply(record),
            Err(reason) => {
                tracing::warn!(offset, %reason, "skipping an unreadable transaction record")
            }
        })?;
        tracing::info!(
            transactional_ids = coordinator.all().count(),
            "transaction state loaded"
        );
        Ok(Arc::new(Self {
            inner: Mutex::new(coordinator),
            op: tokio::sync::Mutex::new(()),
            log,
            transaction_version,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, TxnCoordinator> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, fsyncs and applies one record.
    async fn persist(&self, record: TxnRecord) -> Result<(), BrokerError> {
        let end = internal_log::append(&self.log, &[encode_record(&record)])?;
        self.log.wait_durable(end, PERSIST_TIMEOUT).await?;
        self.lock().apply(record);
        Ok(())
    }

    /// InitProducerId with a transactional id. On fencing, returns the marker job to run and
    /// the error the producer should see (CONCURRENT_TRANSACTIONS: retry).
    pub async fn init(
        &self,
        id: &str,
        timeout_ms: i32,
        ids: &ProducerIdManager,
    ) -> TxnResult<(TxnRecord, Option<MarkerJob>)> {
        let _op = self.op.lock().await;
        let mut alloc_err = None;
        let outcome = self
            .lock()
            .prepare_init(id, timeout_ms, now_ms(), || match ids.next() {
                Ok(pid) => pid,
                Err(e) => {
                    alloc_err = Some(e);
                    -1
                }
            });
        if let Some(e) = alloc_err {
            return Err(e);
        }
        match outcome {
            Err(e) => Ok(Err(e)),
            Ok(InitOutcome::Ready(record)) => {
                self.persist(record.clone()).await?;
                Ok(Ok((record, None)))
            }
            Ok(InitOutcome::Fencing(record, job)) => {
                self.persist(record.clone()).await?;
                Ok(Ok((record, Some(job))))
            }
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn.
    pub async fn add(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        groups: &[String],
    ) -> TxnResult<()> {
        let _op = self.op.lock().await;
        let prepared = self
            .lock()
            .prepare_add(id, pid, epoch, partitions, groups, now_ms());
        match prepared {
            Err(e) => Ok(Err(e)),
            Ok(None) => Ok(Ok(())),
            Ok(Some(record)) => {
                self.persist(record).await?;
                Ok(Ok(()))
            }
        }
    }

    /// EndTxn: the Prepare record is durable when this returns; run the outcome's job to
    /// finish. `tv2`: EndTxn v5+ under transaction version 2 (the epoch is bumped).
    pub async fn end(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        tv2: bool,
        ids: &ProducerIdManager,
    ) -> TxnResult<EndOutcome> {
        let _op = self.op.lock().await;
        let mut alloc_err = None;
        let prepared = self.lock().prepare_end(
            &EndRequest {
                transactional_id: id,
                producer_id: pid,
                producer_epoch: epoch,
                commit,
                tv2,
            },
            now_ms(),
            || match ids.next() {
                Ok(pid) => pid,
                Err(e) => {
                    alloc_err = Some(e);
                    -1
                }
            },
        );
        if let Some(e) = alloc_err {
            return Err(e);
        }
        match prepared {
            Err(e) => Ok(Err(e)),
            Ok(outcome) => {
                if let Some((record, _)) = &outcome.prepared {
                    self.persist(record.clone()).await?;
                }
                Ok(Ok(outcome))
            }
        }
    }

    /// Where a transactional batch stands with its transaction (KIP-890 verification).
    pub fn check_partition(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<PartitionCheck, TxnError> {
        self.lock().check_partition(id, pid, epoch, partition)
    }

    /// The finalized transaction.version.
    pub fn transaction_version(&self) -> i16 {
        self.transaction_version
    }

    /// Marks a transaction complete after its markers are durable.
    pub async fn complete(&self, id: &str) -> Result<(), BrokerError> {
        let _op = self.op.lock().await;
        let record = self.lock().markers_written(id, now_ms());
        if let Some(record) = record {
            self.persist(record).await?;
        }
        Ok(())
    }

    /// Checks a TxnOffsetCommit against the transaction.
    pub fn validate_offset_commit(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        self.lock().validate_offset_commit(id, pid, epoch, group)
    }

    /// Transactions a crash left between Prepare and Complete.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        self.lock().pending_markers()
    }

    /// Marker jobs pending for more than 10 s (a marker write failed): run them again.
    pub fn stuck_markers(&self) -> Vec<MarkerJob> {
        self.lock().stuck_markers(now_ms() - 10_000)
    }

    /// Aborts transactions open longer than their timeout; returns the jobs to run.
    pub async fn expire(&self) -> Result<Vec<MarkerJob>, BrokerError> {
        let _op = self.op.lock().await;
        let expired = self.lock().expire(now_ms());
        let mut jobs = Vec::new();
        for (record, job) in expired {
            tracing::info!(transactional_id = %record.transactional_id, "aborting a transaction open past its timeout");
            self.persist(record).await?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Read access (describe, list).
    pub fn read<R>(&self, f: impl FnOnce(&TxnCoordinator) -> R) -> R {
        f(&self.lock())
    }

    /// Closes the transaction log cleanly.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.log.close()
    }
}
