//! Terminals: the pty is made inside the container's devpts (so `tty` and
//! /dev/console are right inside), its master goes to the parent, which sends it
//! to --console-socket or relays it to its own terminal in the foreground.

use std::ffi::CStr;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::child::{Ctx, Fail};
use crate::error::{At, SysError};
use crate::mounts::{fd_path, Rootfs};
use crate::sys;

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// The pty pair made in the child.
pub struct Console {
    pub master: OwnedFd,
    pub peer: OwnedFd,
}

/// A new pty pair from the devpts at `ptmx` under `root` (resolved in that
/// root, never through a symlink), checked to be a devpts by its filesystem
/// magic: a file the image left there cannot pose as the multiplexer. Used by
/// the init (before pivot_root) and by exec (chrooted into the container).
pub fn open_pty(
    root: BorrowedFd<'_>,
    ptmx: &CStr,
    show: &[u8],
    size: Option<(u16, u16)>,
) -> Result<Console, Fail> {
    let master = sys::openat2(
        root,
        ptmx,
        libc::O_RDWR | libc::O_NOCTTY,
        0,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx("opening", show)?;
    let fs = nix::sys::statfs::fstatfs(master.as_fd()).ctx("statfs", show)?;
    if sys::fs_magic(&fs) != DEVPTS_SUPER_MAGIC {
        return Err(Fail::new("not a devpts:", show, Errno::EINVAL));
    }
    sys::unlock_pty(master.as_fd()).ctx("unlockpt", show)?;
    let peer = sys::open_pty_peer(master.as_fd()).ctx("opening pty peer of", show)?;
    if let Some((rows, cols)) = size {
        sys::set_winsize(master.as_fd(), rows, cols).ctx("setting console size", show)?;
    }
    Ok(Console { master, peer })
}

/// Child, before pivot_root: a pty from the container's /dev/pts/ptmx, its
/// peer bound over /dev/console.
pub fn open_in_container(root: &Rootfs<'_>, size: Option<(u16, u16)>) -> Result<Console, Fail> {
    let c = open_pty(
        root.fd.as_fd(),
        c"dev/pts/ptmx",
        &root.show(c"dev/pts/ptmx"),
        size,
    )?;
    let console = console_target(root)?;
    mount(
        Some(fd_path(c.peer.as_fd()).as_path()),
        &fd_path(console.as_fd()),
        None::<&std::ffi::CStr>,
        MsFlags::MS_BIND,
        None::<&std::ffi::CStr>,
    )
    .ctx("bind mounting pty on", &root.show(c"dev/console"))?;
    Ok(c)
}

/// /dev/console as a mount target, never through a symlink (CVE-2025-52565):
/// with /dev from the image, `dev/console -> /etc/passwd` would put the pty
/// over the container's /etc/passwd. A symlink there is refused, as runc does.
fn console_target(root: &Rootfs<'_>) -> Result<OwnedFd, Fail> {
    let show = root.show(c"dev/console");
    // /dev itself must not be a symlink either; `ensure` (which resolves
    // in-root symlinks) only makes it when it is missing.
    let open_dev = || {
        sys::openat2(
            root.fd.as_fd(),
            c"dev",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS,
        )
    };
    let dev = match open_dev() {
        Err(Errno::ENOENT) => {
            drop(root.ensure(c"dev", true)?);
            open_dev()
        }
        r => r,
    }
    .ctx("opening (a symlink is refused)", &root.show(c"dev"))?;
    let beneath = sys::RESOLVE_BENEATH | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS;
    match sys::openat2(
        dev.as_fd(),
        c"console",
        libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_NOCTTY,
        0o644,
        beneath,
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(Fail::new("creating", &show, e)),
    }
    // O_PATH|O_NOFOLLOW opens a symlink itself: the type check below sees it.
    let fd = sys::openat2(
        dev.as_fd(),
        c"console",
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        beneath,
    )
    .ctx("opening", &show)?;
    let st = nix::sys::stat::fstat(fd.as_fd()).ctx("stat", &show)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFCHR => Ok(fd),
        libc::S_IFLNK => Err(Fail::new("refusing a symlink at", &show, Errno::ELOOP)),
        _ => Err(Fail::new("not a file or device:", &show, Errno::EINVAL)),
    }
}

/// Child, after setsid: the peer becomes the controlling terminal and stdio.
pub fn become_console(c: &Console) -> Result<(), Fail> {
    sys::set_controlling_tty(c.peer.as_fd()).ctx("ioctl(TIOCSCTTY)", b"/dev/console")?;
    for n in 0..3 {
        sys::dup_onto(c.peer.as_raw_fd(), n).ctx("dup3 of the pty onto stdio", b"")?;
    }
    Ok(())
}

/// Parent: send the master to a --console-socket, one message with the fd, as runc does.
pub fn send_to_socket(socket: &Path, master: BorrowedFd<'_>) -> Result<(), SysError> {
    let s = UnixStream::connect(socket).at("connecting to console socket", socket)?;
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .at("sending pty master to console socket", socket)?;
    Ok(())
}

/// Our own terminal in raw mode for as long as this lives (restored on drop).
pub struct RawMode {
    fd: OwnedFd,
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    /// `None` when stdin is not a terminal.
    pub fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let saved = tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(&self.fd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Copy the size of our terminal to the pty (SIGWINCH and at start).
pub fn sync_size(master: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = sys::set_winsize(master, rows, cols);
    }
}

/// Move what is readable on `from` to `to`; false at EOF or error (EIO: peer closed).
pub fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut off = 0;
            while off < n {
                match nix::unistd::write(to, &buf[off..n]) {
                    Ok(w) => off += w,
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
                    Err(_) => return false,
                }
            }
            true
        }
    }
}
