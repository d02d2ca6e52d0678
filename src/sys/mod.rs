//! The only module allowed to say `unsafe`: thin wrappers over syscalls that
//! neither `nix` nor `std` cover. Each returns `Errno`; callers add the
//! operation and the path (see [`crate::error::At`]).

pub mod alloc;
pub mod attrs;
pub mod bpf;
pub mod exeseal;
pub mod seccomp;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `struct clone_args` of clone3(2) (kernel 5.3+), with the fields keel uses.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What a fork-style clone returned on the parent's side.
pub struct Cloned {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// Fork-style clone3 with `flags` (namespace flags; CLONE_PIDFD is added).
/// Returns `None` in the child. The caller must be single-threaded.
pub fn clone3_fork(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Option<Cloned>, Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size we pass; with stack == 0 the
    // child runs on a copy of our stack, like fork(2). The caller is single-threaded,
    // so no lock can be held by a thread that does not exist in the child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = Errno::result(rc)? as libc::pid_t;
    if pid == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel stored a new pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Some(Cloned { pid, pidfd }))
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
pub const CLONE_NEWTIME: libc::c_int = 0x80;

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) with `resolve` flags; always O_CLOEXEC.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the given size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match Errno::result(rc) {
            // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount that `fd` refers to (AT_EMPTY_PATH).
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clr: u64,
    userns_fd: Option<RawFd>,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: userns_fd.map(|f| f as u64).unwrap_or(0),
    };
    setattr(fd, recursive, &attr)
}

/// The mount_setattr(2) call itself, on the mount `fd` refers to (AT_EMPTY_PATH).
fn setattr(fd: BorrowedFd<'_>, recursive: bool, attr: &MountAttr) -> Result<(), Errno> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: the empty path is a valid C string, `attr` a valid mount_attr of the given size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// mount_setattr(2) that only changes propagation (MS_SLAVE, MS_PRIVATE...) of the mount `fd` refers to.
pub fn mount_setattr_propagation(
    fd: BorrowedFd<'_>,
    recursive: bool,
    propagation: u64,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    setattr(fd, recursive, &attr)
}

pub const OPEN_TREE_CLONE: libc::c_uint = 1;

/// open_tree(2) with OPEN_TREE_CLONE (and AT_RECURSIVE if `recursive`): a detached
/// copy of the mount at `path`, close-on-exec.
pub fn open_tree_clone(path: &CStr, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `path` is NUL-terminated; the other arguments are integers.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = Errno::result(rc)? as RawFd;
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// move_mount(2) of the (detached) mount `from` onto the file or directory `to`.
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: both paths are the empty C string; the fds are borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop)
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): every fd >= `first` is closed by execve.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: three integer arguments; no memory is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = Errno::result(rc)? as RawFd;
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: a null siginfo is allowed and means "as kill(2) would".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// Join (or create) the session keyring `name`, then add search permission
/// for the possessor's user (or others in a user namespace), as runc does.
pub fn join_session_keyring(name: &CStr, in_userns: bool) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    const KEYCTL_SETPERM: libc::c_int = 5;
    const KEYCTL_DESCRIBE: libc::c_int = 6;
    // SAFETY: `name` is NUL-terminated.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    let id = Errno::result(rc)? as libc::c_long;
    // The description is "type;uid;gid;perm;name"; the permission mask is field 4 in hex.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            id,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    let n = Errno::result(n)? as usize;
    let desc = &buf[..n.min(buf.len())];
    let perm = desc
        .split(|&b| b == b';')
        .nth(3)
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| u32::from_str_radix(p.trim_end_matches('\0'), 16).ok())
        .unwrap_or(0x3f3f_0000);
    let add = if in_userns { 0x8 } else { 0x8_0000 };
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, id, perm | add) };
    Errno::result(rc).map(drop)
}

/// setrlimit(2) with a raw resource number (covers every RLIMIT_* of the spec).
pub fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> Result<(), Errno> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit.
    let rc = unsafe { libc::setrlimit(resource as _, &lim) };
    Errno::result(rc).map(drop)
}

/// getrlimit(2) with a raw resource number.
pub fn getrlimit(resource: libc::c_int) -> Result<(u64, u64), Errno> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable.
    let rc = unsafe { libc::getrlimit(resource as _, &mut lim) };
    Errno::result(rc).map(|_| (lim.rlim_cur, lim.rlim_max))
}

/// setdomainname(2).
pub fn setdomainname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(rc).map(drop)
}

/// dup3(old, new, 0): make `new` (e.g. 0, 1, 2) refer to `old`, without close-on-exec.
pub fn dup_onto(old: RawFd, new: RawFd) -> Result<(), Errno> {
    if old == new {
        // dup3 refuses equal fds; clear close-on-exec instead.
        // SAFETY: fcntl on an integer fd.
        let rc = unsafe { libc::fcntl(old, libc::F_SETFD, 0) };
        return Errno::result(rc).map(drop);
    }
    // SAFETY: integer fds; `new` is closed first by the kernel if open.
    let rc = unsafe { libc::dup3(old, new, 0) };
    Errno::result(rc).map(drop)
}

/// close(2) of a raw fd number that the caller knows it owns.
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it afterwards.
    unsafe { libc::close(fd) };
}

/// ioctl(TIOCGPTPEER): open the pty peer of `master` (kernel 4.13+), without a path lookup.
pub fn open_pty_peer(master: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: the ioctl takes open(2) flags as its integer argument.
    let rc = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            // The request's C type differs between glibc and musl.
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(rc)?;
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// unlockpt(3) and the pty number (TIOCSPTLCK, TIOCGPTN).
pub fn unlock_pty(master: BorrowedFd<'_>) -> Result<u32, Errno> {
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) };
    Errno::result(rc)?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    Errno::result(rc)?;
    Ok(n)
}

/// ioctl(TIOCSCTTY): make the tty `fd` our controlling terminal.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(drop)
}

/// TIOCGWINSZ / TIOCSWINSZ.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(rc).map(|_| (ws.ws_row, ws.ws_col))
}

pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(rc).map(drop)
}

/// Reset every signal's disposition to default and unblock all signals: the
/// container's process must not inherit what keel set up for itself.
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors (invalid numbers) are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// execve(2) on prebuilt, NUL-terminated pointer arrays; returns only on failure.
pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: the arrays are NUL-terminated and point into CStrings that the caller keeps alive.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// statfs's f_type as an i64: a c_long on glibc, a c_ulong on musl.
#[allow(clippy::unnecessary_cast)]
pub fn fs_magic(st: &nix::sys::statfs::Statfs) -> i64 {
    st.filesystem_type().0 as i64
}

/// open(path, O_PATH | O_CLOEXEC | extra). Not through std's OpenOptions: on
/// musl O_ACCMODE includes O_PATH, so std masks it out of custom flags.
pub fn open_path(
    path: impl AsRef<std::path::Path>,
    extra: libc::c_int,
) -> std::io::Result<OwnedFd> {
    let flags = nix::fcntl::OFlag::from_bits_retain(libc::O_PATH | libc::O_CLOEXEC | extra);
    nix::fcntl::open(path.as_ref(), flags, nix::sys::stat::Mode::empty())
        .map_err(std::io::Error::from)
}

/// _exit(2): leave without running atexit handlers or flushing stdio copied from the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Take ownership of an fd that the kernel just handed us (SCM_RIGHTS).
pub fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the descriptor was installed in our table by recvmsg and nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// readlinkat(2) into a Vec.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` is writable for its length and `name` is NUL-terminated.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = Errno::result(n)? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// A small file (procfs, cgroupfs) read whole: open, read into a 4 KiB buffer
/// until EOF, close. fs::read_to_string also stats the file and, as procfs
/// reports a size of 0, grows its buffer from 32 bytes over several reads.
pub fn read_small(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
