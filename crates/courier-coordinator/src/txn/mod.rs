//! The transaction coordinator (KIP-98) as a state machine: requests and the current time in;
//! answers, records to persist and markers to write out.
//!
//! Every change of a transactional id's metadata is a [`TxnRecord`] the caller must persist
//! (in the transaction log) before the change counts: `prepare_*` methods return the record
//! and the caller calls [`TxnCoordinator::apply`] once it is durable, then answers. Committing
//! or aborting moves a transaction to PrepareCommit/PrepareAbort (persisted), after which the
//! caller writes a COMMIT or ABORT marker to every partition of the transaction
//! ([`MarkerJob`]) and reports back with [`TxnCoordinator::markers_written`], which yields the
//! CompleteCommit/CompleteAbort record. After a restart, replaying the log with `apply` and
//! calling [`TxnCoordinator::pending_markers`] finishes what a crash interrupted.

mod codec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use codec::{decode_record, encode_record};

/// Kafka's transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction (a producer id exists).
    Empty,
    /// Partitions have been added; records may be in flight.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// Commit markers written.
    CompleteCommit,
    /// Abort markers written.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// The numeric form used in the transaction log.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Parses [`TxnState::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }
}

/// Why a transactional request was refused; the server maps each to Kafka's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// transaction.timeout.ms above transaction.max.timeout.ms.
    InvalidTransactionTimeout,
    /// A newer producer with this transactional id exists.
    ProducerFenced,
    /// The producer id does not belong to this transactional id.
    InvalidProducerIdMapping,
    /// The transaction is completing; retry.
    ConcurrentTransactions,
    /// The request does not fit the transaction's state (e.g. EndTxn with none open).
    InvalidTxnState,
}

/// The persisted metadata of one transactional id: the whole value, last record wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transactional.id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// transaction.timeout.ms.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// Partitions in the current (or just completed) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the transaction began (-1 when none).
    pub txn_start_ms: i64,
    /// When the metadata last changed.
    pub last_update_ms: i64,
}

/// Markers the caller must write, then report with [`TxnCoordinator::markers_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    /// Whose transaction.
    pub transactional_id: String,
    /// Marker producer id.
    pub producer_id: i64,
    /// Marker epoch.
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT (false).
    pub commit: bool,
    /// Partitions to mark.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose pending transactional offsets to commit or discard.
    pub groups: BTreeSet<String>,
}

/// Settings (transaction.* broker configs).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms.
    pub max_timeout_ms: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
        }
    }
}

/// What InitProducerId decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Persist this record, then answer with its producer id and epoch.
    Ready(TxnRecord),
    /// An open transaction was fenced: persist this PrepareAbort record and write the job's
    /// markers; the producer gets CONCURRENT_TRANSACTIONS and retries.
    Fencing(TxnRecord, MarkerJob),
}

/// Every transactional id on this broker.
#[derive(Default)]
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: BTreeMap<String, TxnRecord>,
}

impl TxnCoordinator {
    /// An empty coordinator.
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            txns: BTreeMap::new(),
        }
    }

    /// Makes a persisted record current (also used to replay the log).
    pub fn apply(&mut self, record: TxnRecord) {
        self.txns.insert(record.transactional_id.clone(), record);
    }

    /// A transactional id's metadata.
    pub fn get(&self, transactional_id: &str) -> Option<&TxnRecord> {
        self.txns.get(transactional_id)
    }

    /// All transactional ids.
    pub fn all(&self) -> impl Iterator<Item = &TxnRecord> {
        self.txns.values()
    }

    fn validate(&self, id: &str, producer_id: i64, epoch: i16) -> Result<&TxnRecord, TxnError> {
        let t = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if t.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch < t.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if epoch > t.producer_epoch {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        Ok(t)
    }

    /// InitProducerId with a transactional id. `new_producer_id` allocates an id when needed.
    pub fn prepare_init(
        &self,
        id: &str,
        timeout_ms: i32,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> i64,
    ) -> Result<InitOutcome, TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let Some(t) = self.txns.get(id) else {
            return Ok(InitOutcome::Ready(TxnRecord {
                transactional_id: id.to_string(),
                producer_id: new_producer_id(),
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                txn_start_ms: -1,
                last_update_ms: now_ms,
            }));
        };
        match t.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // A new producer instance fences the old one: bump the epoch and abort.
                let mut next = t.clone();
                next.producer_epoch = t.producer_epoch.saturating_add(1);
                next.state = TxnState::PrepareAbort;
                next.last_update_ms = now_ms;
                let job = job_for(&next, false);
                Ok(InitOutcome::Fencing(next, job))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = t.clone();
                if t.producer_epoch >= i16::MAX - 1 {
                    next.producer_id = new_producer_id();
                    next.producer_epoch = 0;
                } else {
                    next.producer_epoch += 1;
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.groups.clear();
                next.txn_start_ms = -1;
                next.last_update_ms = now_ms;
                Ok(InitOutcome::Ready(next))
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn through `groups`). `None` when nothing changes
    /// (no record to persist; answer success).
    pub fn prepare_add(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        groups: &[String],
        now_ms: i64,
    ) -> Result<Option<TxnRecord>, TxnError> {
        let t = self.validate(id, producer_id, epoch)?;
        if matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::ConcurrentTransactions);
        }
        let mut next = t.clone();
        if t.state != TxnState::Ongoing {
            next.partitions.clear();
            next.groups.clear();
            next.txn_start_ms = now_ms;
            next.state = TxnState::Ongoing;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.groups.extend(groups.iter().cloned());
        if next == *t {
            return Ok(None);
        }
        next.last_update_ms = now_ms;
        Ok(Some(next))
    }

    /// Checks a TxnOffsetCommit: the producer must own an ongoing transaction that added the
    /// group.
    pub fn validate_offset_commit(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let t = self.validate(id, producer_id, epoch)?;
        if t.state != TxnState::Ongoing || !t.groups.contains(group) {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }

    /// EndTxn. `Ok(None)`: a retry of a transaction already completed that way (answer success).
    pub fn prepare_end(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Option<(TxnRecord, MarkerJob)>, TxnError> {
        let t = self.validate(id, producer_id, epoch)?;
        match (t.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = t.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now_ms;
                let job = job_for(&next, commit);
                Ok(Some((next, job)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            // Aborting with nothing open is harmless (clients do it on error paths).
            (TxnState::Empty, false) => Ok(None),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// The markers of `id` are written: the completion record to persist and apply.
    pub fn markers_written(&self, id: &str, now_ms: i64) -> Option<TxnRecord> {
        let t = self.txns.get(id)?;
        let state = match t.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = t.clone();
        next.state = state;
        next.last_update_ms = now_ms;
        next.txn_start_ms = -1;
        Some(next)
    }

    /// Marker jobs for transactions a crash left between Prepare and Complete.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        self.stuck_markers(i64::MAX)
    }

    /// Marker jobs of transactions prepared before `before_ms` and still not complete (a
    /// marker write failed): run them again. Writing a marker twice is harmless.
    pub fn stuck_markers(&self, before_ms: i64) -> Vec<MarkerJob> {
        self.txns
            .values()
            .filter(|t| t.last_update_ms < before_ms)
            .filter_map(|t| match t.state {
                TxnState::PrepareCommit => Some(job_for(t, true)),
                TxnState::PrepareAbort => Some(job_for(t, false)),
                _ => None,
            })
            .collect()
    }

    /// Ongoing transactions past their timeout: abort them, bumping the epoch so the hung
    /// producer is fenced. Returns the PrepareAbort records to persist and their jobs.
    pub fn expire(&self, now_ms: i64) -> Vec<(TxnRecord, MarkerJob)> {
        self.txns
            .values()
            .filter(|t| {
                t.state == TxnState::Ongoing
                    && t.txn_start_ms >= 0
                    && now_ms - t.txn_start_ms > i64::from(t.timeout_ms)
            })
            .map(|t| {
                let mut next = t.clone();
                next.producer_epoch = t.producer_epoch.saturating_add(1);
                next.state = TxnState::PrepareAbort;
                next.last_update_ms = now_ms;
                let job = job_for(&next, false);
                (next, job)
            })
            .collect()
    }
}

fn job_for(t: &TxnRecord, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: t.transactional_id.clone(),
        producer_id: t.producer_id,
        producer_epoch: t.producer_epoch,
        commit,
        partitions: t.partitions.clone(),
        groups: t.groups.clone(),
    }
}
