//! Where ephemeral topics (`courier.ephemeral=true`) keep their partitions: a directory on a
//! memory-backed file system (tmpfs; `/dev/shm` unless `BrokerConfig::ephemeral_dir` says
//! otherwise), `<base>/courier-ephemeral-<random>/<topic>-<partition>/`. The broker creates it
//! when the first ephemeral partition opens and removes it on clean shutdown; nothing of an
//! ephemeral partition is ever written under the data directory, and no syncer fsyncs it
//! (`partition.rs`; the storage layer's own fsyncs when a segment rolls land on tmpfs, which
//! has no disk). If the base directory is not memory-backed, ephemeral partitions still live
//! there, and a warning says that their data reaches that disk through the page cache.
//!
//! Two small files in `<data>/meta/` make restarts safe and keep offsets from going back:
//! - `ephemeral-dir` names the memory directory while it exists. It is written (durably) before
//!   the directory is created, so a broker that was killed — tmpfs outlives the process, not
//!   the machine — is followed by one that finds the directory, reads each partition's log end
//!   offset from what is left there, records them in the offsets file below, and removes it.
//! - `ephemeral-offsets.toml` holds each ephemeral partition's log end offset, written at clean
//!   shutdown (before the memory directory is removed) or by a start that found a killed
//!   broker's directory (before removing it), and removed once a start has opened every topic.
//!
//! A restarted ephemeral partition is empty and starts at the larger of those two offsets (0 if
//! neither exists, as after a reboot that followed a crash).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use courier_storage::{Log, LogConfig};

use crate::error::BrokerError;
use crate::now_ms;
use crate::topics::{io_err, sync_dir, write_durably};

/// Prefix of the memory directory's name; only a directory named like this is ever removed
/// on the say-so of the `ephemeral-dir` file.
const DIR_PREFIX: &str = "courier-ephemeral-";
/// `<data>/meta/` file naming the memory directory while it exists.
const DIR_RECORD: &str = "ephemeral-dir";
/// `<data>/meta/` file holding ephemeral partitions' log end offsets between two processes.
const OFFSETS_FILE: &str = "ephemeral-offsets.toml";

/// Each ephemeral topic's partitions' log end offsets, by topic name then partition index.
pub type EndOffsets = BTreeMap<String, Vec<u64>>;

/// The memory directory of this broker's ephemeral partitions, and the offsets they resume at.
pub struct EphemeralStore {
    /// `<data>/meta/`, where the two small files live.
    meta_dir: PathBuf,
    /// Where the memory directory is created.
    base: PathBuf,
    /// The memory directory, once the first ephemeral partition has needed it.
    dir: Mutex<Option<PathBuf>>,
    /// The previous process's log end offset of each ephemeral partition; each is taken once,
    /// when its partition opens.
    resume: Mutex<EndOffsets>,
}

impl EphemeralStore {
    /// Finds what the previous process left (its offsets file and, after a crash, its memory
    /// directory), removes the memory directory, and remembers where each partition resumes.
    /// `base` is where a new memory directory goes: `configured`, else `/dev/shm`, else the OS
    /// temporary directory.
    pub fn open(meta_dir: &Path, configured: Option<PathBuf>) -> Result<Self, BrokerError> {
        let base = configured.unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
        let mut resume = EndOffsets::new();
        let offsets_path = meta_dir.join(OFFSETS_FILE);
        match std::fs::read_to_string(&offsets_path) {
            Ok(text) => match toml::from_str::<EndOffsets>(&text) {
                Ok(offsets) => merge(&mut resume, offsets),
                // Only a starting point for offsets; losing it costs monotonic offsets, not data.
                Err(e) => {
                    tracing::warn!(path = %offsets_path.display(), error = %e, "ignoring an unreadable ephemeral offsets file; ephemeral partitions start at offset 0")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &offsets_path)(e)),
        }
        let record = meta_dir.join(DIR_RECORD);
        match std::fs::read_to_string(&record) {
            Ok(text) => {
                let left = PathBuf::from(text.trim());
                let ours = left.is_absolute()
                    && left
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(DIR_PREFIX));
                if !ours {
                    return Err(BrokerError::CorruptMetadata {
                        path: record,
                        reason: format!("{} is not a Courier memory directory", left.display()),
                    });
                }
                if left.is_dir() {
                    merge(&mut resume, left_behind_end_offsets(&left));
                    // Kept durably first: a crash during this start must not lose them.
                    write_offsets(meta_dir, &resume)?;
                    std::fs::remove_dir_all(&left).map_err(io_err("remove", &left))?;
                    tracing::info!(dir = %left.display(), "removed the memory directory a crashed broker left; ephemeral topics start empty");
                }
                std::fs::remove_file(&record).map_err(io_err("remove", &record))?;
                sync_dir(meta_dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &record)(e)),
        }
        Ok(Self {
            meta_dir: meta_dir.to_path_buf(),
            base,
            dir: Mutex::new(None),
            resume: Mutex::new(resume),
        })
    }

    /// Called once every topic is open: the offsets file has been used.
    pub fn finish_start(&self) -> Result<(), BrokerError> {
        let path = self.meta_dir.join(OFFSETS_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.meta_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// The directory for a new ephemeral partition (not created yet) and the offset it starts
    /// at. Creates the memory directory first if this is the first ephemeral partition.
    pub fn partition_dir(&self, topic: &str, index: i32) -> Result<(PathBuf, u64), BrokerError> {
        let mut dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        let root = match dir.as_ref() {
            Some(root) => root.clone(),
            None => {
                let root = self
                    .base
                    .join(format!("{DIR_PREFIX}{}", uuid::Uuid::new_v4().simple()));
                // Recorded before it exists, so that a crash never leaves an unknown directory.
                let record = self.meta_dir.join(DIR_RECORD);
                write_durably(&record, root.display().to_string().as_bytes())?;
                std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
                if is_memory_backed(&root) {
                    tracing::info!(dir = %root.display(), "ephemeral topics keep their partitions in memory (tmpfs)");
                } else {
                    tracing::warn!(dir = %root.display(), "no tmpfs here: ephemeral topics' partitions live in this directory, which is NOT memory-backed; their data reaches its disk through the page cache (never fsynced). Set the broker's ephemeral_dir to a tmpfs mount");
                }
                *dir = Some(root.clone());
                root
            }
        };
        let path = root.join(format!("{topic}-{index}"));
        if path.exists() {
            // Left by a create that failed half-way or a delete that could not remove it; the
            // topic it belonged to no longer exists.
            std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        }
        let start = self
            .resume
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(topic)
            .and_then(|ends| ends.get_mut(usize::try_from(index).ok()?))
            .map(std::mem::take)
            .unwrap_or(0);
        Ok((path, start))
    }

    /// Clean shutdown, after every ephemeral partition is closed: records their log end
    /// offsets durably, then removes the memory directory and its record.
    pub fn close(&self, end_offsets: &EndOffsets) -> Result<(), BrokerError> {
        if !end_offsets.is_empty() {
            write_offsets(&self.meta_dir, end_offsets)?;
        }
        let Some(root) = self.dir.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        std::fs::remove_dir_all(&root).map_err(io_err("remove", &root))?;
        let record = self.meta_dir.join(DIR_RECORD);
        std::fs::remove_file(&record).map_err(io_err("remove", &record))?;
        sync_dir(&self.meta_dir)
    }
}

/// Writes `ephemeral-offsets.toml` durably.
fn write_offsets(meta_dir: &Path, offsets: &EndOffsets) -> Result<(), BrokerError> {
    let path = meta_dir.join(OFFSETS_FILE);
    let text = toml::to_string(offsets).map_err(|e| BrokerError::CorruptMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_durably(&path, text.as_bytes())
}

/// Keeps the larger end offset of each partition.
fn merge(resume: &mut EndOffsets, offsets: EndOffsets) {
    for (topic, ends) in offsets {
        let slots = resume.entry(topic).or_default();
        if slots.len() < ends.len() {
            slots.resize(ends.len(), 0);
        }
        for (slot, end) in slots.iter_mut().zip(ends) {
            *slot = (*slot).max(end);
        }
    }
}

/// The log end offset of every partition in a memory directory a killed broker left behind
/// (opening each log recovers it as after any crash). A partition that cannot be read is
/// logged and skipped: it starts at the other record's offset, or 0.
fn left_behind_end_offsets(root: &Path) -> EndOffsets {
    let mut out = EndOffsets::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let Some((topic, index)) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .and_then(|(t, i)| Some((t.to_string(), i.parse::<usize>().ok()?)))
        else {
            continue;
        };
        match Log::open(&path, LogConfig::default(), now_ms()) {
            Ok((log, _)) => {
                let ends = out.entry(topic).or_default();
                if ends.len() <= index {
                    ends.resize(index + 1, 0);
                }
                ends[index] = log.log_end_offset();
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "cannot read what a crashed broker left of an ephemeral partition; it restarts at offset 0")
            }
        }
    }
    out
}

/// Whether `path` is on tmpfs.
#[cfg(target_os = "linux")]
fn is_memory_backed(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` is plain old data; all-zero is a valid value to overwrite.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a properly sized, writable out-parameter.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type == libc::TMPFS_MAGIC
}

/// Whether `path` is on tmpfs (only known on Linux).
#[cfg(not(target_os = "linux"))]
fn is_memory_backed(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(meta: &Path, base: &Path) -> EphemeralStore {
        EphemeralStore::open(meta, Some(base.to_path_buf())).expect("open")
    }

    #[test]
    fn offsets_resume_after_a_clean_close_and_after_a_crash() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (meta, base) = (tmp.path().join("meta"), tmp.path().join("shm"));
        std::fs::create_dir_all(&meta).expect("meta");
        std::fs::create_dir_all(&base).expect("base");

        // First process: one partition at 7, closed cleanly.
        let s = store(&meta, &base);
        let (dir, start) = s.partition_dir("metrics", 0).expect("dir");
        assert_eq!(start, 0);
        let root = dir.parent().expect("root").to_path_buf();
        assert!(root.is_dir() && meta.join(DIR_RECORD).exists());
        s.close(&EndOffsets::from([("metrics".to_string(), vec![7])]))
            .expect("close");
        assert!(!root.exists(), "memory directory removed on clean close");
        assert!(!meta.join(DIR_RECORD).exists());

        // Second process resumes at 7, writes up to 9, then is killed (no close).
        let s = store(&meta, &base);
        let (dir, start) = s.partition_dir("metrics", 0).expect("dir");
        assert_eq!(start, 7);
        assert_eq!(s.partition_dir("metrics", 1).expect("dir").1, 0);
        s.finish_start().expect("finish");
        assert!(!meta.join(OFFSETS_FILE).exists());
        let mut log = Log::create_at(&dir, LogConfig::default(), start, 0).expect("log");
        let batch = courier_storage::batch_builder::batch(&[
            courier_storage::batch_builder::NewRecord::new(1, b"k", b"a"),
            courier_storage::batch_builder::NewRecord::new(1, b"k", b"b"),
        ]);
        log.append(&bytes::Bytes::from(batch), 0).expect("append");
        drop(log);
        let killed_root = dir.parent().expect("root").to_path_buf();
        drop(s);

        // Third process finds the left-behind directory, resumes at 9 and removes it.
        let s = store(&meta, &base);
        assert!(
            !killed_root.exists(),
            "left-behind memory directory removed"
        );
        assert!(
            meta.join(OFFSETS_FILE).exists(),
            "its offsets kept durably until the start completes"
        );
        assert_eq!(s.partition_dir("metrics", 0).expect("dir").1, 9);
        assert_eq!(s.partition_dir("metrics", 2).expect("dir").1, 0);
        s.finish_start().expect("finish");
        assert!(!meta.join(OFFSETS_FILE).exists());
    }

    #[test]
    fn a_record_naming_a_foreign_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let meta = tmp.path().join("meta");
        std::fs::create_dir_all(&meta).expect("meta");
        std::fs::write(meta.join(DIR_RECORD), tmp.path().display().to_string()).expect("write");
        assert!(matches!(
            EphemeralStore::open(&meta, Some(tmp.path().to_path_buf())),
            Err(BrokerError::CorruptMetadata { .. })
        ));
        assert!(tmp.path().is_dir(), "nothing removed");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dev_shm_is_memory_backed_and_a_missing_path_is_not() {
        if Path::new("/dev/shm").is_dir() {
            assert!(is_memory_backed(Path::new("/dev/shm")));
        }
        assert!(!is_memory_backed(Path::new("/proc/definitely/not/here")));
    }
}
