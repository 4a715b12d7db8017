//! The disk-full fault: the broker's data directory lives on a small tmpfs, and a ballast
//! file fills it until writes fail with ENOSPC.
//!
//! The tmpfs is mounted with `mount(2)` directly (libc, no `mount` command), which needs root
//! or CAP_SYS_ADMIN; without it [`DiskLimit::mount`] fails with a message saying so. Mount it
//! on the (empty) data directory before the broker starts: files written before the mount
//! would be hidden under it. Being memory, the tmpfs keeps its files across a broker kill or
//! restart, as a disk would, but not across [`DiskLimit`]'s drop, which unmounts it (lazily,
//! `MNT_DETACH`, so a broker still holding files open does not stop it).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::VerifyError;

/// Name of the ballast file at the root of the mount.
const BALLAST: &str = ".nemesis-ballast";
/// Write sizes used to fill the disk, largest first, so that the last few KiB fill up too.
const FILL_CHUNKS: [usize; 3] = [1 << 20, 64 << 10, 4 << 10];

/// A size-limited tmpfs mounted at a directory, with a ballast file to fill it. Dropping it
/// unmounts (errors ignored).
#[derive(Debug)]
pub struct DiskLimit {
    /// The mount point.
    dir: PathBuf,
    /// The tmpfs's size.
    size_mib: u64,
    /// Still mounted (false once [`DiskLimit::unmount`] ran).
    mounted: bool,
}

impl DiskLimit {
    /// Mounts a `size_mib` MiB tmpfs at `dir` (created if missing; it must be empty).
    pub fn mount(dir: impl Into<PathBuf>, size_mib: u64) -> Result<Self, VerifyError> {
        let dir = dir.into();
        if size_mib == 0 {
            // tmpfs reads size=0 as "no limit", which is the opposite of what is asked.
            return Err(VerifyError::Mount {
                dir,
                size_mib,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the size must be at least 1 MiB",
                ),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| VerifyError::io("create", &dir, e))?;
        let mut entries = std::fs::read_dir(&dir).map_err(|e| VerifyError::io("read", &dir, e))?;
        if entries.next().is_some() {
            return Err(VerifyError::DirNotEmpty(dir));
        }
        let target = c_path(&dir)?;
        let data = CString::new(format!("size={size_mib}m,mode=0755"))
            .map_err(|e| VerifyError::io("mount", &dir, std::io::Error::other(e)))?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    VerifyError::MountNotPermitted { dir, source }
                }
                _ => VerifyError::Mount {
                    dir,
                    size_mib,
                    source,
                },
            });
        }
        tracing::info!(dir = %dir.display(), size_mib, "mounted a size-limited tmpfs");
        Ok(Self {
            dir,
            size_mib,
            mounted: true,
        })
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The filesystem's size in MiB.
    pub fn size_mib(&self) -> u64 {
        self.size_mib
    }

    /// Grows the ballast file until the filesystem is full (a write fails with ENOSPC),
    /// leaving it full; returns the bytes added. Writes are bounded by the filesystem's size,
    /// so a mount that somehow is not limited is reported rather than filled forever.
    pub fn fill(&self) -> Result<u64, VerifyError> {
        let path = self.ballast_path();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| VerifyError::io("open", &path, e))?;
        let zeros = vec![0u8; FILL_CHUNKS[0]];
        let limit = (self.size_mib + 1) << 20;
        let mut written = 0u64;
        for chunk in FILL_CHUNKS {
            loop {
                match file.write(&zeros[..chunk]) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(VerifyError::io("fill", &path, e)),
                }
                if written > limit {
                    return Err(VerifyError::io(
                        "fill",
                        &path,
                        std::io::Error::other(format!(
                            "wrote {written} bytes without running out of space on a \
                             {} MiB filesystem",
                            self.size_mib
                        )),
                    ));
                }
            }
        }
        tracing::info!(dir = %self.dir.display(), written, "filled the disk");
        Ok(written)
    }

    /// Deletes the ballast, freeing the space [`fill`](Self::fill) took.
    pub fn release(&self) -> Result<(), VerifyError> {
        let path = self.ballast_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VerifyError::io("remove", path, e)),
        }
    }

    /// True while the ballast exists (between [`fill`](Self::fill) and
    /// [`release`](Self::release)).
    pub fn is_filled(&self) -> bool {
        self.ballast_path().exists()
    }

    /// Unmounts now (lazily), reporting errors that dropping would ignore.
    pub fn unmount(mut self) -> Result<(), VerifyError> {
        self.mounted = false;
        detach(&self.dir)
    }

    fn ballast_path(&self) -> PathBuf {
        self.dir.join(BALLAST)
    }
}

impl Drop for DiskLimit {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = detach(&self.dir) {
                tracing::warn!(error = %e, "cannot unmount the size-limited tmpfs");
            }
        }
    }
}

/// `umount2(dir, MNT_DETACH)`.
fn detach(dir: &Path) -> Result<(), VerifyError> {
    let target = c_path(dir)?;
    // SAFETY: `target` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(VerifyError::io(
            "unmount",
            dir,
            std::io::Error::last_os_error(),
        ))
    }
}

fn c_path(dir: &Path) -> Result<CString, VerifyError> {
    CString::new(dir.as_os_str().as_bytes()).map_err(|e| {
        VerifyError::io(
            "mount",
            dir,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        )
    })
}
