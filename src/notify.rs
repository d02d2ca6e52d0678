//! The sd_notify relay (runc's notify_socket.go). When keel itself runs with
//! `NOTIFY_SOCKET` (a systemd `Type=notify` service), `create` makes
//! `<state>/notify/`, which the container sees read-only at `/run/notify`, and
//! sets the container's `NOTIFY_SOCKET=/run/notify/notify.sock`. `start` (and
//! `run`) bind that socket before the init may exec, pass what the container
//! sends on to keel's own `NOTIFY_SOCKET`, and once `READY=1` has gone by send
//! `MAINPID=` and a `BARRIER=1`, as runc does. Nothing happens without
//! `NOTIFY_SOCKET`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::error::{At, SysError};

/// The directory in the container's state dir, and the socket in it.
pub const DIR: &str = "notify";
pub const SOCKET: &str = "notify.sock";
/// Where the container sees the directory, and its `NOTIFY_SOCKET`.
pub const CONTAINER_DIR: &str = "/run/notify";
pub const CONTAINER_SOCKET: &str = "/run/notify/notify.sock";

/// systemd reads at most this much of one notification (NOTIFY_BUFFER_MAX).
const MAX_DATAGRAM: usize = 4096;
/// How long to wait for the host to acknowledge BARRIER=1 (runc: 30s, then a warning).
const BARRIER_TIMEOUT_MS: u16 = 30_000;

/// keel's own `NOTIFY_SOCKET`, when set and not empty.
pub fn host_socket() -> Option<OsString> {
    std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty())
}

/// `create`: with `NOTIFY_SOCKET` set, make `<state>/notify` (0755) and
/// return its path, the source of the container's bind mount.
pub fn prepare_dir(state_dir: &Path) -> Result<Option<PathBuf>, SysError> {
    if host_socket().is_none() {
        return Ok(None);
    }
    let dir = state_dir.join(DIR);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .at("creating", &dir)?;
    // Exactly 0755 whatever keel's umask: a non-root container user must reach the socket.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).at("chmod", &dir)?;
    Ok(Some(dir))
}

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    crate::sys::open_path(dir, libc::O_DIRECTORY)
}

/// A path through `/proc/self/fd` of `dir`: short whatever the directory's
/// path (a socket address holds at most 107 bytes).
fn via_fd(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    crate::mounts::fd_path(dir).join(name)
}

/// The container's socket, bound, and where to pass on what it receives.
pub struct Relay {
    sock: OwnedFd,
    host: OsString,
    path: PathBuf,
}

impl Relay {
    /// `start`/`run`, before the init may exec: bind `<state>/notify/notify.sock`
    /// (mode 0777, so any container user may send). None without
    /// `NOTIFY_SOCKET`, or when the container was created without it.
    pub fn bind(state_dir: &Path) -> Result<Option<Relay>, SysError> {
        let Some(host) = host_socket() else {
            return Ok(None);
        };
        let dir = state_dir.join(DIR);
        let dfd = match open_dir(&dir) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("opening", &dir),
        };
        let path = dir.join(SOCKET);
        let short = via_fd(dfd.as_fd(), OsStr::new(SOCKET));
        let sock = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .op("socket")?;
        // A socket file left by an earlier, failed start would make bind fail.
        match fs::remove_file(&short) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at("removing", &path),
        }
        let addr = UnixAddr::new(&short).at("binding", &path)?;
        socket::bind(sock.as_raw_fd(), &addr).at("binding", &path)?;
        fs::set_permissions(&short, fs::Permissions::from_mode(0o777)).at("chmod", &path)?;
        Ok(Some(Relay { sock, host, path }))
    }

    /// The socket, readable when the container has sent something.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Pass on everything queued, without blocking. True once `READY=1` went by
    /// and `MAINPID=<mainpid>` and the barrier followed it: the relay is done.
    pub fn pump(&self, mainpid: i32) -> Result<bool, SysError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let n = match socket::recv(
                self.sock.as_raw_fd(),
                &mut buf,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SysError::new("receiving on", Some(&self.path), e)),
            };
            if n > buf.len() {
                crate::logging::warn(&format!(
                    "sd_notify: dropped a {n}-byte message from the container (limit {MAX_DATAGRAM})"
                ));
                continue;
            }
            let (fwd, ready) = filter(&buf[..n]);
            if !fwd.is_empty() {
                self.send(&fwd)?;
            }
            if ready {
                self.send(format!("MAINPID={mainpid}\n").as_bytes())?;
                self.barrier()?;
                return Ok(true);
            }
        }
    }

    /// `start` and `run -d`: wait until the container has said `READY=1` (and
    /// pass it on with `MAINPID=<mainpid>`) or its init, `init`, has exited.
    /// None for `init`: it has exited already.
    pub fn wait(&self, init: Option<BorrowedFd<'_>>, mainpid: i32) -> Result<(), SysError> {
        let Some(init) = init else {
            return self.pump(mainpid).map(drop);
        };
        loop {
            let mut fds = [
                PollFd::new(self.sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(init, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SysError::new("poll", Some(&self.path), e)),
                Ok(_) => {}
            }
            let init_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
            // What the container sent before it exited still counts.
            if self.pump(mainpid)? || init_gone {
                return Ok(());
            }
        }
    }

    /// `start` and `run -d`, after the poststart hooks and with the state dir
    /// unlocked (`keel state`/`kill` must not wait for the container): relay
    /// until READY=1 with `MAINPID=` the init's, or until the init exits.
    pub fn wait_ready(&self, st: &crate::state::State) -> Result<(), SysError> {
        let pidfd = crate::state::open_init(st);
        self.wait(pidfd.as_ref().map(|p| p.as_fd()), st.pid)
    }

    fn host_addr(&self) -> Result<(UnixAddr, Option<OwnedFd>), SysError> {
        let host = Path::new(&self.host);
        let bytes = self.host.as_bytes();
        let err = |e| SysError::new("NOTIFY_SOCKET", Some(host), e);
        if let Some(name) = bytes.strip_prefix(b"@") {
            return Ok((UnixAddr::new_abstract(name).map_err(err)?, None));
        }
        if let Ok(a) = UnixAddr::new(host) {
            return Ok((a, None));
        }
        // Too long for an address: name it through its directory's fd.
        let (Some(parent), Some(name)) = (host.parent(), host.file_name()) else {
            return Err(err(Errno::EINVAL));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let dfd = open_dir(parent).at("opening", parent)?;
        let a = UnixAddr::new(&via_fd(dfd.as_fd(), name)).map_err(err)?;
        Ok((a, Some(dfd)))
    }

    fn sender(&self) -> Result<OwnedFd, SysError> {
        socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .op("socket")
    }

    fn send(&self, msg: &[u8]) -> Result<(), SysError> {
        let (addr, _dir) = self.host_addr()?;
        let s = self.sender()?;
        socket::sendto(s.as_raw_fd(), msg, &addr, MsgFlags::empty())
            .at("sd_notify: sending to", Path::new(&self.host))?;
        Ok(())
    }

    /// sd_notify_barrier: send `BARRIER=1` with the write end of a pipe and wait
    /// until the host closes it, so that it has read everything before keel
    /// exits (runc waits 30s, then goes on with a warning).
    fn barrier(&self) -> Result<(), SysError> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe2")?;
        let (addr, _dir) = self.host_addr()?;
        let s = self.sender()?;
        let fds = [w.as_raw_fd()];
        socket::sendmsg(
            s.as_raw_fd(),
            &[IoSlice::new(b"BARRIER=1")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )
        .at("sd_notify: sending BARRIER=1 to", Path::new(&self.host))?;
        drop(w);
        loop {
            let mut pfd = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, PollTimeout::from(BARRIER_TIMEOUT_MS)) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SysError::new("poll", None, e)),
                Ok(0) => {
                    crate::logging::warn("Timeout after waiting 30s for barrier. Ignored.");
                    return Ok(());
                }
                Ok(_) => {}
            }
            let mut b = [0u8; 1];
            return match nix::unistd::read(&r, &mut b) {
                Ok(0) => Ok(()),
                Ok(_) => Err(SysError::new(
                    "sd_notify: unexpected read from the barrier pipe",
                    None,
                    Errno::EPROTO,
                )),
                Err(Errno::EINTR) => continue,
                Err(e) => Err(SysError::new("reading the barrier pipe", None, e)),
            };
        }
    }
}

/// One datagram from the container: what to pass on (every line but `MAINPID=`,
/// which names a pid of the container's namespace, and `BARRIER=1`, whose fd is
/// not relayed), and whether it says `READY=1`.
fn filter(msg: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(msg.len());
    let mut ready = false;
    for line in msg.split(|&b| b == b'\n') {
        if line.is_empty() || line.starts_with(b"MAINPID=") || line == b"BARRIER=1" {
            continue;
        }
        ready |= line == b"READY=1";
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    (out, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_the_rest_and_drops_the_containers_mainpid() {
        let (out, ready) = filter(b"STATUS=up\nMAINPID=1\nREADY=1\n");
        assert_eq!(out, b"STATUS=up\nREADY=1\n");
        assert!(ready);
        let (out, ready) = filter(b"STATUS=starting");
        assert_eq!(out, b"STATUS=starting\n");
        assert!(!ready);
        let (out, ready) = filter(b"BARRIER=1");
        assert!(out.is_empty());
        assert!(!ready);
        assert!(!filter(b"READY=10").1);
    }
}
