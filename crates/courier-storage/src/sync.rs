//! The handle the group-commit syncer uses, and the poison flag it shares with the log.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::txn_index::TxnIndexFile;

/// Set once any write or fsync of the log fails; shared by the log and every [`SyncTarget`].
#[derive(Debug, Clone)]
pub(crate) struct Poison {
    /// Whether a failure has happened.
    flag: Arc<AtomicBool>,
    /// The partition directory, for the error message.
    dir: Arc<PathBuf>,
}

impl Poison {
    /// A fresh, healthy flag for the log in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Poison {
            flag: Arc::new(AtomicBool::new(false)),
            dir: Arc::new(dir),
        }
    }

    /// Marks the log as poisoned.
    pub(crate) fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// `Err(Poisoned)` if the log is poisoned.
    pub(crate) fn check(&self) -> Result<()> {
        if self.flag.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned {
                path: self.dir.as_ref().clone(),
            });
        }
        Ok(())
    }

    /// Runs `op`; if it fails the log is poisoned and the error returned.
    pub(crate) fn guard<T>(&self, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let result = op();
        if result.is_err() {
            self.set();
        }
        result
    }
}

/// What the group-commit syncer needs to make a prefix of the log durable: the active
/// segment's files and the log end offset when the target was taken. After
/// [`SyncTarget::sync`] returns `Ok`, every offset below `log_end_offset` is durable, and so
/// is the aborted-transaction index entry of every ABORT marker among them, because older
/// segments were fsynced (with their indexes) when they rolled.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// The active segment's `.log` file at the time the target was taken.
    pub file: Arc<File>,
    /// Offsets below this are durable once `sync` succeeds.
    pub log_end_offset: u64,
    /// Poisons the log if the fsync fails, so no later write pretends to succeed.
    pub(crate) poison: Poison,
    /// The file's path, for errors.
    pub(crate) path: PathBuf,
    /// The active segment's `.txnindex`, fdatasynced too when it has unsynced entries.
    pub(crate) txn_index: Option<TxnIndexFile>,
}

impl SyncTarget {
    /// `fdatasync` of the `.log` file, then of the segment's `.txnindex` if an ABORT marker
    /// wrote an entry since its last sync (an entry is written before its marker's append
    /// returns, so every entry of a marker below `log_end_offset` is covered). Refuses if the
    /// log is already poisoned; poisons it on failure (a failed fsync may have dropped dirty
    /// pages, so nothing written since the last good sync can be trusted).
    pub fn sync(&self) -> Result<()> {
        self.poison.check()?;
        self.poison.guard(|| {
            self.file
                .sync_data()
                .map_err(|e| StorageError::io("fdatasync", &self.path, e))?;
            match &self.txn_index {
                Some(txn_index) => txn_index.sync_if_dirty(),
                None => Ok(()),
            }
        })
    }
}
