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
    /// Whether the current (or last) transaction ends the KIP-890 way (transaction version
    /// 2, EndTxn v5+): its end bumps the epoch, and the markers carry the bumped epoch.
    pub tv2: bool,
    /// The epoch the producer used before the last transaction version 2 end bumped it
    /// (-1 when none): a retried EndTxn arrives with it.
    pub last_producer_epoch: i16,
    /// The producer id the completion switches to when the bump reached the largest epoch
    /// (-1 when none).
    pub next_producer_id: i64,
    /// The producer id before such a switch (-1 when none): a retried EndTxn arrives with it.
    pub prev_producer_id: i64,
}

/// An EndTxn request.
#[derive(Debug, Clone, Copy)]
pub struct EndRequest<'a> {
    /// The transactional.id.
    pub transactional_id: &'a str,
    /// The producer id the request carries.
    pub producer_id: i64,
    /// The epoch the request carries.
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// EndTxn v5+ under transaction version 2: the end bumps the epoch.
    pub tv2: bool,
}

/// What EndTxn decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOutcome {
    /// The Prepare record to persist and the markers to write; `None` when nothing changes
    /// (a retry of a completed end, or aborting with nothing open).
    pub prepared: Option<(TxnRecord, MarkerJob)>,
    /// The producer id and epoch the producer continues with (EndTxn v5 returns them).
    pub producer_id: i64,
    /// See `producer_id`.
    pub producer_epoch: i16,
}

/// Where a transactional batch stands with its transaction (KIP-890 verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionCheck {
    /// The partition is in the producer's ongoing transaction: append.
    InTransaction,
    /// It is not: a transaction version 2 producer adds it implicitly; an older one never
    /// added it (a late batch of an ended transaction, or a client bug) and is refused.
    NotAdded,
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
    /// The finalized `transaction.version` feature (1 or 2) advertised in ApiVersions. At 2,
    /// clients that know KIP-890 part 2 use Produce v12+ (partitions join the transaction
    /// implicitly) and EndTxn v5 (the epoch is bumped at every end).
    pub transaction_version: i16,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            transaction_version: 2,
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
                tv2: false,
                last_producer_epoch: -1,
                next_producer_id: -1,
                prev_producer_id: -1,
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
                next.tv2 = false;
                next.last_producer_epoch = -1;
                next.prev_producer_id = -1;
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

    /// Where a transactional batch of `producer_id`/`epoch` for `partition` stands with the
    /// transaction of `id` (checked before every append of a transactional batch).
    pub fn check_partition(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<PartitionCheck, TxnError> {
        let t = self.validate(id, producer_id, epoch)?;
        match t.state {
            TxnState::Ongoing if t.partitions.contains(partition) => {
                Ok(PartitionCheck::InTransaction)
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Ok(PartitionCheck::NotAdded),
        }
    }

    /// EndTxn. With `tv2` (EndTxn v5+, transaction version 2) ending a transaction bumps the
    /// epoch: the markers carry the bumped epoch, so no late batch of this transaction can
    /// join the next one, and the producer continues with the returned id and epoch. A retry
    /// of an end already decided (the producer never saw the answer, so it still sends the
    /// old epoch) gets the same answer again. `new_producer_id` is called when the bump
    /// reaches the largest epoch.
    pub fn prepare_end(
        &self,
        req: &EndRequest<'_>,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> i64,
    ) -> Result<EndOutcome, TxnError> {
        let &EndRequest {
            transactional_id: id,
            producer_id,
            producer_epoch: epoch,
            commit,
            tv2,
        } = req;
        let unchanged = |t: &TxnRecord| EndOutcome {
            prepared: None,
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
        };
        if let Some(t) = self.txns.get(id) {
            let retry = tv2
                && t.tv2
                && t.last_producer_epoch >= 0
                && epoch == t.last_producer_epoch
                && (producer_id == t.producer_id || producer_id == t.prev_producer_id);
            if retry {
                return match (t.state, commit) {
                    (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                        Ok(unchanged(t))
                    }
                    (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                        Err(TxnError::ConcurrentTransactions)
                    }
                    _ => Err(TxnError::InvalidTxnState),
                };
            }
        }
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
                next.tv2 = tv2;
                if tv2 {
                    next.last_producer_epoch = t.producer_epoch;
                    next.producer_epoch = t.producer_epoch.saturating_add(1);
                    if next.producer_epoch == i16::MAX {
                        // The markers use the last epoch; the producer continues under a new id.
                        next.next_producer_id = new_producer_id();
                    }
                }
                let job = job_for(&next, commit);
                let (pid, ep) = if next.next_producer_id >= 0 {
                    (next.next_producer_id, 0)
                } else {
                    (next.producer_id, next.producer_epoch)
                };
                Ok(EndOutcome {
                    prepared: Some((next, job)),
                    producer_id: pid,
                    producer_epoch: ep,
                })
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(unchanged(t)),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            // Aborting with nothing open is harmless (clients do it on error paths).
            (TxnState::Empty, false) => Ok(unchanged(t)),
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
        if t.next_producer_id >= 0 {
            next.prev_producer_id = t.producer_id;
            next.producer_id = t.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = -1;
        }
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
