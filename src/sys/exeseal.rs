//! Raw syscalls for sealing keel's own binary (CVE-2019-5736): the new mount
//! API (fsopen, fsconfig, fsmount) and execveat. See `crate::exeseal`.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
pub const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
pub const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
pub const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

/// fsopen(2) with FSOPEN_CLOEXEC.
pub fn fsopen(fstype: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: a NUL-terminated string and a flag; the kernel returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), 1 as libc::c_uint) };
    let fd = Errno::result(fd)?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// fsconfig(2) FSCONFIG_SET_STRING.
pub fn fsconfig_string(fs: BorrowedFd<'_>, key: &CStr, value: &CStr) -> Result<(), Errno> {
    // SAFETY: two NUL-terminated strings that outlive the call; aux is 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// fsconfig(2) FSCONFIG_CMD_CREATE.
pub fn fsconfig_create(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: integer arguments and null pointers, as the command requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// fsmount(2) with FSMOUNT_CLOEXEC: a detached mount, as an fd.
pub fn fsmount(fs: BorrowedFd<'_>, attrs: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: integer arguments only; the kernel returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1 as libc::c_uint, attrs) };
    let fd = Errno::result(fd)?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): returns only on failure.
/// `argv` and `envp` are NULL-terminated arrays of NUL-terminated strings.
pub fn execveat_fd(
    fd: BorrowedFd<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Errno {
    assert!(argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: argv and envp are NULL-terminated (checked above) and their strings
    // are kept alive by the caller for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}
