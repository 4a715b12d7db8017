//! The truncate-segment fault: cut the tail of a partition's active segment while the broker
//! is down, as if the last write never fully reached the disk.
//!
//! Layout relied on (courier-broker's `topics.rs`, courier-storage's `segment.rs`): each
//! partition is a directory `<data_dir>/<topic>-<partition>/` holding segments named
//! `<20-digit base offset>.log`; the one with the highest base offset is the active segment.
//! `<data_dir>/meta` holds topic metadata and is never touched.
//!
//! Only the active segment is cut. That is the only place a real crash can tear a write
//! (courier fsyncs a segment before creating the next), and the only one recovery rescans:
//! on restart the broker finds the broken batch, truncates to the last whole one and carries
//! on. Internal topics (names starting with `__`) are left alone, since the checker cannot
//! see what losing their records does.
//!
//! **Destructive**: with acks=all the bytes cut were fsynced and acknowledged, so the records
//! in them are lost for good. This models a disk that loses written data (power loss with a
//! lying write cache, corruption); a broker cannot survive it without losing records, and
//! the checker is expected to report them as lost.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::VerifyError;

/// The most bytes cut from a segment at once.
const MAX_CUT: u64 = 4096;
/// The marker a clean shutdown leaves in a partition directory; it makes the next start trust
/// the segment without rescanning it, so it is removed along with the tail.
const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";

/// What [`BrokerProcess::truncate_tail`](super::BrokerProcess::truncate_tail) cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateInfo {
    /// The segment file cut.
    pub path: PathBuf,
    /// Its length before.
    pub old_len: u64,
    /// Its length after (1 to 4096 bytes less, never below 0).
    pub new_len: u64,
}

/// Cuts 1..=min(len, 4096) bytes off the active segment of a random partition under
/// `data_dir` that has data. The broker must not be running.
pub fn truncate_tail(data_dir: &Path, rng: &mut impl Rng) -> Result<TruncateInfo, VerifyError> {
    let mut candidates = Vec::new();
    for dir in partition_dirs(data_dir)? {
        if let Some((segment, len)) = active_segment(&dir)? {
            if len > 0 {
                candidates.push((dir, segment, len));
            }
        }
    }
    // Sorted so that the same data directory and seed pick the same partition.
    candidates.sort();
    let (dir, path, old_len) = candidates
        .choose(rng)
        .cloned()
        .ok_or_else(|| VerifyError::NothingToTruncate(data_dir.to_path_buf()))?;
    let cut = rng.gen_range(1..=old_len.min(MAX_CUT));
    let new_len = old_len - cut;
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| VerifyError::io("open", &path, e))?;
    file.set_len(new_len)
        .map_err(|e| VerifyError::io("truncate", &path, e))?;
    file.sync_all()
        .map_err(|e| VerifyError::io("fsync", &path, e))?;
    let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VerifyError::io("remove", marker, e)),
    }
    tracing::info!(segment = %path.display(), old_len, new_len, "cut the tail of a segment");
    Ok(TruncateInfo {
        path,
        old_len,
        new_len,
    })
}

/// The partition directories under `data_dir`: `<topic>-<number>`, not internal topics.
fn partition_dirs(data_dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let entries = std::fs::read_dir(data_dir).map_err(|e| VerifyError::io("read", data_dir, e))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VerifyError::io("read", data_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_partition_dir_name(name) {
            continue;
        }
        let is_dir = entry
            .file_type()
            .map_err(|e| VerifyError::io("stat", entry.path(), e))?
            .is_dir();
        if is_dir {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// `<topic>-<partition number>`, where the topic is not internal (`__...`).
fn is_partition_dir_name(name: &str) -> bool {
    match name.rsplit_once('-') {
        Some((topic, index)) => {
            !topic.is_empty()
                && !topic.starts_with("__")
                && !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The `.log` file with the highest base offset in `dir`, and its length.
fn active_segment(dir: &Path) -> Result<Option<(PathBuf, u64)>, VerifyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| VerifyError::io("read", dir, e))?;
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| VerifyError::io("read", dir, e))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(segment_base_offset) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(b, _)| base > *b) {
            newest = Some((base, entry.path()));
        }
    }
    let Some((_, path)) = newest else {
        return Ok(None);
    };
    let len = std::fs::metadata(&path)
        .map_err(|e| VerifyError::io("stat", &path, e))?
        .len();
    Ok(Some((path, len)))
}

/// The base offset in a segment file name `<20 digits>.log`.
fn segment_base_offset(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names() {
        assert!(is_partition_dir_name("orders-0"));
        assert!(is_partition_dir_name("a-b-12"));
        assert!(!is_partition_dir_name("meta"));
        assert!(!is_partition_dir_name("orders-"));
        assert!(!is_partition_dir_name("-3"));
        assert!(!is_partition_dir_name("__consumer_offsets-3"));
        assert_eq!(segment_base_offset("00000000000000000042.log"), Some(42));
        assert_eq!(segment_base_offset("00000000000000000042.index"), None);
        assert_eq!(segment_base_offset("42.log"), None);
    }

    #[test]
    fn cuts_only_the_active_segment_and_drops_the_clean_marker() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("t-0");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::create_dir_all(tmp.path().join("meta")).expect("mkdir");
        std::fs::write(p.join("00000000000000000000.log"), vec![1u8; 10_000]).expect("write");
        std::fs::write(p.join("00000000000000000100.log"), vec![1u8; 300]).expect("write");
        std::fs::write(p.join(CLEAN_SHUTDOWN_MARKER), b"").expect("write");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let info = truncate_tail(tmp.path(), &mut rng).expect("truncate");
        assert_eq!(info.path, p.join("00000000000000000100.log"));
        assert_eq!(info.old_len, 300);
        assert!(info.new_len < 300);
        let len = std::fs::metadata(&info.path).expect("stat").len();
        assert_eq!(len, info.new_len);
        assert!(!p.join(CLEAN_SHUTDOWN_MARKER).exists());
        let sealed = std::fs::metadata(p.join("00000000000000000000.log")).expect("stat");
        assert_eq!(sealed.len(), 10_000);
    }

    #[test]
    fn nothing_to_cut_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("t-0");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("00000000000000000000.log"), b"").expect("write");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let err = truncate_tail(tmp.path(), &mut rng).expect_err("empty");
        assert!(matches!(err, VerifyError::NothingToTruncate(_)), "{err}");
    }
}
