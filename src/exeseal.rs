//! CVE-2019-5736: the container must never get a writable reference to
//! keel's binary. The container's init and `exec`'s child are clones of keel
//! and run keel's code until execve, so `/proc/<pid>/exe` of each is keel's
//! binary (and `#!/proc/self/exe` makes the container's payload *be* keel).
//!
//! `create`, `run` and `exec` call [`ensure_sealed`] first. If the binary is
//! already unwritable through that reference (its mount is read-only, or it is
//! a sealed memfd) nothing happens. Otherwise keel re-executes itself once
//! from a detached read-only overlayfs mount whose only lower layers are the
//! binary's directory and an unrelated one (runc's zero-copy "exeseal"); if the new mount API or
//! overlayfs is unavailable, from a sealed memfd copy. docs/security.md,
//! "Runtime binary".

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag};

use crate::sys::exeseal as raw;

/// Set in the environment of the re-executed keel: never re-exec twice.
const MARK: &str = "_KEEL_EXESEAL";

const SEALS: SealFlag = SealFlag::from_bits_truncate(
    SealFlag::F_SEAL_SEAL.bits()
        | SealFlag::F_SEAL_SHRINK.bits()
        | SealFlag::F_SEAL_GROW.bits()
        | SealFlag::F_SEAL_WRITE.bits(),
);

/// Re-executes keel from a sealed copy of itself unless the running binary
/// already cannot be written through `/proc/self/exe`. Returns (only) when
/// keel may go on: sealed, or sealing failed (then a warning is logged).
pub fn ensure_sealed() {
    if std::env::var_os(MARK).is_some() {
        crate::logging::debug("exeseal: running from a sealed binary");
        return;
    }
    let Ok(exe) = File::open("/proc/self/exe") else {
        return;
    };
    if is_sealed(&exe) {
        return;
    }
    let why = match overlay_copy(&exe) {
        Ok(fd) => reexec(&fd),
        Err(e) => e,
    };
    let why2 = match memfd_copy(&exe) {
        Ok(fd) => reexec(&fd),
        Err(e) => e,
    };
    crate::logging::warn(&format!(
        "could not seal keel's binary against CVE-2019-5736 (overlayfs: {why}, memfd: {why2}); \
         install keel on a read-only mount"
    ));
}

/// True when writes through this reference are impossible: a read-only mount
/// (EROFS on reopen, and a container cannot remount a mount of another
/// namespace), or a memfd with F_SEAL_WRITE.
fn is_sealed(exe: &File) -> bool {
    if nix::sys::statvfs::fstatvfs(exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return true;
    }
    nix::fcntl::fcntl(exe, FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
}

/// The binary, opened O_PATH in a detached read-only overlayfs whose lower
/// layers are its own directory and an unrelated one: no copy, no way to write.
fn overlay_copy(exe: &File) -> Result<OwnedFd, Errno> {
    let path = std::fs::read_link("/proc/self/exe").map_err(|_| Errno::ENOENT)?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::ENOENT);
    };
    if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(Errno::ENOENT);
    }
    // A second lower layer (overlayfs needs two without an upper one) that
    // neither contains nor is inside the first: overlapping layers are ELOOP.
    let unrelated = |o: &Path| !dir.starts_with(o) && !o.starts_with(dir) && o.is_dir();
    let other = ["/dev", "/run", "/tmp", "/etc"]
        .iter()
        .map(Path::new)
        .find(|o| unrelated(o))
        .ok_or(Errno::ELOOP)?;
    let other = CString::new(other.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let cs = |b: &[u8]| CString::new(b).map_err(|_| Errno::EINVAL);
    let fs = raw::fsopen(c"overlay")?;
    let lower = cs(dir.as_os_str().as_bytes())?;
    // "lowerdir+" (6.8+) needs no escaping; else the classic list (`:` and `,`
    // in the path would need escaping: refuse those).
    if raw::fsconfig_string(fs.as_fd(), c"lowerdir+", &lower).is_ok() {
        raw::fsconfig_string(fs.as_fd(), c"lowerdir+", &other)?;
    } else {
        let b = lower.as_bytes();
        if b.iter().any(|c| matches!(c, b':' | b',' | b'\\')) {
            return Err(Errno::EINVAL);
        }
        let mut list = b.to_vec();
        list.push(b':');
        list.extend_from_slice(other.as_bytes());
        raw::fsconfig_string(fs.as_fd(), c"lowerdir", &cs(&list)?)?;
    }
    let _ = raw::fsconfig_string(fs.as_fd(), c"xino", c"off");
    raw::fsconfig_create(fs.as_fd())?;
    let mnt = raw::fsmount(
        fs.as_fd(),
        raw::MOUNT_ATTR_RDONLY | raw::MOUNT_ATTR_NODEV | raw::MOUNT_ATTR_NOSUID,
    )?;
    let file = crate::sys::open_path(
        Path::new(&format!("/proc/self/fd/{}", mnt.as_raw_fd())).join(name),
        libc::O_NOFOLLOW,
    )
    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // The same file (not one swapped in meanwhile): inode and size.
    let a = exe.metadata().map_err(|_| Errno::EIO)?;
    let b = File::from(file.try_clone().map_err(|_| Errno::EIO)?)
        .metadata()
        .map_err(|_| Errno::EIO)?;
    if a.ino() != b.ino() || a.size() != b.size() {
        return Err(Errno::ESTALE);
    }
    Ok(file)
}

/// A sealed memfd copy of the binary (costs a copy: only the fallback).
fn memfd_copy(exe: &File) -> Result<OwnedFd, Errno> {
    let fd = nix::sys::memfd::memfd_create(
        c"keel:exe",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut out = File::from(fd);
    let mut src = exe.try_clone().map_err(|_| Errno::EIO)?;
    std::io::copy(&mut src, &mut out).map_err(|_| Errno::EIO)?;
    nix::fcntl::fcntl(&out, FcntlArg::F_ADD_SEALS(SEALS))?;
    Ok(out.into())
}

/// execveat(fd) with keel's own argv and environment plus [`MARK`].
fn reexec(fd: &OwnedFd) -> Errno {
    let to_c = |s: OsString| CString::new(s.as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = std::env::args_os().map(to_c).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect();
    envp.push(CString::new(format!("{MARK}=1")).unwrap_or_default());
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    raw::execveat_fd(fd.as_fd(), &ptrs(&argv), &ptrs(&envp))
}
