//! A full disk does not break the log: an append refused with ENOSPC writes nothing (the
//! segment is cut back), the log stays writable, and once there is room appends continue at
//! the next offset, every record readable — also after a reopen.
//!
//! The small file system is a tmpfs mounted for the test, which needs root (CAP_SYS_ADMIN);
//! without it the test says so and checks only that the mount was refused.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bytes::Bytes;
use courier_storage::batch::validate_batches;
use courier_storage::batch_builder::{batch, NewRecord};
use courier_storage::{Log, LogConfig, StorageError};

struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// `mount -t tmpfs -o size=<size> [remount]` at `dir`.
fn tmpfs(dir: &Path, size: &str, flags: libc::c_ulong) -> std::io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes()).expect("path");
    let fstype = CString::new("tmpfs").expect("fstype");
    let options = CString::new(format!("size={size}")).expect("options");
    // SAFETY: valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn mount_tmpfs<'a>(dir: &'a Path, size: &str) -> std::io::Result<Tmpfs<'a>> {
    tmpfs(dir, size, 0)?;
    Ok(Tmpfs(dir))
}

fn record_batch(i: usize) -> Bytes {
    let value = vec![b'x'; 4000];
    let records = [NewRecord::new(
        1_700_000_000_000,
        format!("k{i}").as_bytes(),
        &value,
    )];
    Bytes::from(batch(&records))
}

#[test]
fn an_append_refused_for_space_leaves_the_log_writable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fs = tmp.path().join("fs");
    std::fs::create_dir(&fs).expect("mkdir");
    let _mount = match mount_tmpfs(&fs, "2m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipping: mounting a tmpfs needs root (CAP_SYS_ADMIN): {e}");
            assert!(
                matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)),
                "unexpected mount failure: {e}"
            );
            return;
        }
    };
    let dir = fs.join("orders-0");
    std::fs::create_dir(&dir).expect("partition dir");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(&dir, config.clone(), 0).expect("open");

    // Fill the file system with appends until one is refused.
    let mut appended = 0u64;
    let refused = loop {
        match log.append(&record_batch(appended as usize), 0) {
            Ok(info) => {
                assert_eq!(info.base_offset, appended);
                appended += 1;
            }
            Err(e) => break e,
        }
        assert!(appended < 10_000, "the 2 MiB file system never filled");
    };
    assert!(
        matches!(refused, StorageError::OutOfSpace { .. }),
        "expected OutOfSpace, got {refused}"
    );
    assert!(appended > 10, "only {appended} appends fit");
    assert_eq!(
        log.log_end_offset(),
        appended,
        "nothing of the refused append counts"
    );

    // Still full: refused again, and still not poisoned.
    let again = log.append(&record_batch(0), 0).expect_err("still full");
    assert!(matches!(again, StorageError::OutOfSpace { .. }), "{again}");

    // Make room: an operator frees space outside the log; for a tmpfs, growing it with
    // `remount,size=` is the stand-in.
    tmpfs(&fs, "8m", libc::MS_REMOUNT).expect("growing the tmpfs");
    let info = log.append(&record_batch(9_999), 0).expect("writable again");
    assert_eq!(
        info.base_offset, appended,
        "the next offset follows the last good one"
    );
    log.sync_target().sync().expect("fsync");
    drop(log);

    // Reopen: every record is there, and nothing was cut by recovery.
    let (log, report) = Log::open(&dir, config, 0).expect("reopen");
    assert_eq!(log.log_end_offset(), appended + 1);
    assert_eq!(report.truncated_bytes, 0, "no torn tail: {report:?}");
    let data = log.read(0, u32::MAX, u64::MAX).expect("read");
    let headers = validate_batches(&data.records, u32::MAX).expect("valid batches");
    let offsets: Vec<i64> = headers.iter().map(|h| h.base_offset).collect();
    let expected: Vec<i64> = (0..=appended as i64).collect();
    assert_eq!(offsets, expected);
}
