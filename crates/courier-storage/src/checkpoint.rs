//! Small durable files in a partition directory: the log start offset checkpoint, the
//! clean-shutdown marker, and the write-tmp-fsync-rename / directory-fsync steps they and the
//! index files rely on.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// File holding the log start offset, as `"<version>\n<offset>\n"` (Kafka's checkpoint style).
pub(crate) const LOG_START_CHECKPOINT: &str = "log-start-offset.checkpoint";

/// File whose presence means the log was closed cleanly, so recovery can skip the tail scan.
pub(crate) const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";

/// Version written in the checkpoint's first line.
const CHECKPOINT_VERSION: u32 = 0;

/// Suffix of temporary files; leftovers are removed when the log opens.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `fsync` of a directory, making file creations, renames and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync it, rename over `path`.
/// The caller fsyncs the directory to make the rename durable.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", path, e))
}

/// Reads the log start offset checkpoint of `dir`; `None` if there is none.
pub(crate) fn read_log_start_offset(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(LOG_START_CHECKPOINT);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read checkpoint", &path, e)),
    };
    let corrupt = |reason: &str| StorageError::CorruptCheckpoint {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing version line"))?;
    if version != CHECKPOINT_VERSION {
        return Err(corrupt("unknown version"));
    }
    let offset = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing offset line"))?;
    Ok(Some(offset))
}

/// Durably records `offset` as the log start offset of `dir`.
pub(crate) fn write_log_start_offset(dir: &Path, offset: u64) -> Result<()> {
    let text = format!("{CHECKPOINT_VERSION}\n{offset}\n");
    write_file_atomically(&dir.join(LOG_START_CHECKPOINT), text.as_bytes())?;
    sync_dir(dir)
}

/// Whether the clean-shutdown marker exists; removes it (durably) so that a crash after this
/// open is not mistaken for a clean shutdown.
pub(crate) fn take_clean_shutdown_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("remove clean-shutdown marker", &path, e)),
    }
}

/// Writes the clean-shutdown marker durably; the last step of a clean close.
pub(crate) fn write_clean_shutdown_marker(dir: &Path) -> Result<()> {
    write_file_atomically(&dir.join(CLEAN_SHUTDOWN_MARKER), b"")?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), None);
        write_log_start_offset(dir.path(), 1234).expect("write");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), Some(1234));
        assert!(!dir.path().join("log-start-offset.checkpoint.tmp").exists());
    }

    #[test]
    fn garbage_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LOG_START_CHECKPOINT), "0\nabc\n").expect("write");
        assert!(matches!(
            read_log_start_offset(dir.path()),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
    }

    #[test]
    fn marker_is_consumed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!take_clean_shutdown_marker(dir.path()).expect("take"));
        write_clean_shutdown_marker(dir.path()).expect("write");
        assert!(take_clean_shutdown_marker(dir.path()).expect("take"));
        assert!(!take_clean_shutdown_marker(dir.path()).expect("take"));
    }
}
