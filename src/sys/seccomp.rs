//! seccomp(2) with a prebuilt classic-BPF program: the container's init loads
//! what the parent compiled, without calling libseccomp.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;

/// `SECCOMP_FILTER_FLAG_*` of linux/seccomp.h.
pub const FLAG_TSYNC: u32 = 1 << 0;
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// The kernel's limit on one program's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog). With [`FLAG_NEW_LISTENER`]
/// the kernel returns the notification listener (close-on-exec), which is
/// handed back; otherwise `None`. Without no_new_privs the caller needs
/// CAP_SYS_ADMIN in its user namespace.
pub fn set_mode_filter(filter: &[libc::sock_filter], flags: u32) -> Result<Option<OwnedFd>, Errno> {
    if filter.is_empty() || filter.len() > MAX_INSNS {
        return Err(Errno::EINVAL);
    }
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which outlives the call and holds exactly
    // `len` instructions; the kernel copies the program and never writes to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    let rc = Errno::result(rc)?;
    if flags & FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER the return value is a fresh fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) }))
}

/// Whether this kernel accepts the filter flags `flags` (for `keel features`):
/// seccomp(2) checks the flags before it reads the program, so with no program
/// it fails with EFAULT when they are accepted and EINVAL when they are not.
pub fn flags_supported(flags: u32) -> bool {
    // SAFETY: a null program pointer: the kernel either refuses the flags or fails
    // to copy the program (EFAULT); nothing is loaded and no memory is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc == -1 && Errno::last() == Errno::EFAULT
}

/// Debian's libseccomp.a is built against glibc with _FORTIFY_SOURCE, so its
/// text export (`seccomp_export_pfc`, which keel never calls) references
/// glibc's `__fprintf_chk`, which musl lacks. This stands in for it when keel
/// is linked against musl: it writes nothing and reports failure. It ignores
/// its (variadic) arguments, which the x86-64 calling convention allows.
#[cfg(target_env = "musl")]
#[no_mangle]
pub extern "C" fn __fprintf_chk() -> libc::c_int {
    -1
}
