//! The one parent↔child protocol: a SOCK_SEQPACKET socketpair, one datagram a
//! message, close-on-exec on both ends.
//!
//! | step | child (keel:[init])                  | parent (keel create / run)                     |
//! |------|--------------------------------------|------------------------------------------------|
//! | 1    | `UserNs` (only with a new userns) -> | writes uid_map / gid_map                       |
//! | 1b   |                                   <- | `MountFd(i, fd)` per bind source opened by the parent (userns or idmapped binds) |
//! | 2    |                                   <- | `Go`                                           |
//! | 2b   | `Hooks` (prestart..startContainer hooks only; mounts done, before pivot_root) -> | runs prestart and createRuntime hooks (a failure kills the child), replies `Go` + the state JSON (status "creating", host pid); the child runs createContainer |
//! | 3    | `Console(fd)` (terminal only) ->     | sends the pty master to --console-socket or keeps it for the relay |
//! | 3b   | `SeccompFd(fd)` (NOTIFY rules only) -> | sends the listener with the state to `linux.seccomp.listenerPath` |
//! | 4    | `Ready` ->                           | writes state.json and the pid file; create returns |
//! | any  | `Error(stage, op, path, errno)` ->   | kills and reaps the child, cleans up, reports  |
//! | any  | EOF                                  | the child died: reaps it, reports its status   |
//!
//! After `Ready` the child blocks on `exec.fifo` until `keel start`.
//! `exec` with a second fork (docs/processes.md) adds `Pid(pid, pidfd)`: the
//! intermediate child names the exec'd process before anything else is sent.
//! Unknown or out-of-order messages are errors, never ignored.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use crate::error::{ChildError, Stage};

const K_USERNS: u8 = 1;
const K_GO: u8 = 2;
const K_CONSOLE: u8 = 3;
const K_READY: u8 = 4;
const K_ERROR: u8 = 5;
const K_SECCOMP_FD: u8 = 6;
const K_HOOKS: u8 = 7;
const K_MOUNT_FD: u8 = 8;
const K_PID: u8 = 9;

/// Largest datagram: an error with its op and path.
const MAX_MSG: usize = 1024;

#[derive(Debug)]
pub enum Msg {
    UserNs,
    Go,
    Console(OwnedFd),
    Ready,
    Error(ChildError),
    SeccompFd(OwnedFd),
    Hooks,
    /// Parent → child before `Go`: the source of `mounts[index]`, opened by the parent.
    MountFd(u32, OwnedFd),
    /// exec's intermediate child → parent: the exec'd process's pid in the
    /// parent's pid namespace, and a pidfd of it.
    Pid(i32, OwnedFd),
}

impl Msg {
    pub fn name(&self) -> &'static str {
        match self {
            Msg::UserNs => "userns",
            Msg::Go => "go",
            Msg::Console(_) => "console",
            Msg::Ready => "ready",
            Msg::Error(_) => "error",
            Msg::SeccompFd(_) => "seccomp-fd",
            Msg::Hooks => "hooks",
            Msg::MountFd(..) => "mount-fd",
            Msg::Pid(..) => "pid",
        }
    }
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Create the pair: (parent end, child end).
pub fn pair() -> Result<(Channel, Channel), Errno> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn send_raw(&self, data: &[u8], fd: Option<RawFd>) -> Result<(), Errno> {
        let iov = [IoSlice::new(data)];
        let fds;
        let cmsg: &[ControlMessage] = match fd {
            Some(f) => {
                fds = [f];
                &[ControlMessage::ScmRights(&fds)]
            }
            None => &[],
        };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    }

    pub fn send_go(&self) -> Result<(), Errno> {
        self.send_raw(&[K_GO], None)
    }

    pub fn send_userns(&self) -> Result<(), Errno> {
        self.send_raw(&[K_USERNS], None)
    }

    pub fn send_ready(&self) -> Result<(), Errno> {
        self.send_raw(&[K_READY], None)
    }

    pub fn send_console(&self, master: BorrowedFd<'_>) -> Result<(), Errno> {
        self.send_raw(&[K_CONSOLE], Some(master.as_raw_fd()))
    }

    pub fn send_seccomp_fd(&self, listener: BorrowedFd<'_>) -> Result<(), Errno> {
        self.send_raw(&[K_SECCOMP_FD], Some(listener.as_raw_fd()))
    }

    pub fn send_mount_fd(&self, index: u32, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        let i = index.to_le_bytes();
        self.send_raw(&[K_MOUNT_FD, i[0], i[1], i[2], i[3]], Some(fd.as_raw_fd()))
    }

    pub fn send_pid(&self, pid: i32, pidfd: BorrowedFd<'_>) -> Result<(), Errno> {
        let p = pid.to_le_bytes();
        self.send_raw(&[K_PID, p[0], p[1], p[2], p[3]], Some(pidfd.as_raw_fd()))
    }

    pub fn send_hooks(&self) -> Result<(), Errno> {
        self.send_raw(&[K_HOOKS], None)
    }

    /// The `Go` that answers `Hooks`: the kind byte, then the state document.
    pub fn send_go_state(&self, state: &[u8]) -> Result<(), Errno> {
        let mut m = Vec::with_capacity(1 + state.len());
        m.push(K_GO);
        m.extend_from_slice(state);
        self.send_raw(&m, None)
    }

    /// Receive the `Go` that answers `Hooks` and return its state document
    /// (of any size: the datagram's length is peeked first).
    pub fn recv_go_state(&self) -> Result<Vec<u8>, Errno> {
        let recv = |buf: &mut [u8], flags: MsgFlags| {
            retrying(|| nix::sys::socket::recv(self.fd.as_raw_fd(), buf, flags))
        };
        let len = recv(&mut [0u8; 1], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
        let mut buf = vec![0u8; len.max(1)];
        let n = recv(&mut buf, MsgFlags::empty())?;
        match buf.first() {
            _ if n == 0 => Err(Errno::EPIPE),
            Some(&K_GO) => Ok(buf[1..n].to_vec()),
            _ => Err(Errno::EBADMSG),
        }
    }

    /// Send an error from the child without allocating: op and path are copied
    /// (truncated) into a stack buffer.
    pub fn send_error(&self, stage: Stage, op: &str, path: &[u8], errno: i32) {
        let mut buf = [0u8; MAX_MSG];
        buf[0] = K_ERROR;
        buf[1] = stage as u8;
        buf[2..6].copy_from_slice(&errno.to_le_bytes());
        let op = &op.as_bytes()[..op.len().min(200)];
        buf[6] = op.len() as u8;
        buf[7..7 + op.len()].copy_from_slice(op);
        let start = 7 + op.len();
        let n = path.len().min(MAX_MSG - start);
        buf[start..start + n].copy_from_slice(&path[..n]);
        let _ = self.send_raw(&buf[..start + n], None);
    }

    /// Receive one message; `Ok(None)` on EOF (the peer is gone).
    pub fn recv(&self) -> Result<Option<Msg>, Errno> {
        let mut buf = [0u8; MAX_MSG];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = retrying(|| {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let m = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            let mut fd = None;
            for c in m.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    fd = fds.first().copied();
                }
            }
            Ok((m.bytes, fd))
        })?;
        let fd = fd.map(crate::sys::own_fd);
        if n == 0 {
            return Ok(None);
        }
        let msg = match buf[0] {
            K_USERNS => Msg::UserNs,
            K_GO => Msg::Go,
            K_READY => Msg::Ready,
            K_CONSOLE => Msg::Console(fd.ok_or(Errno::EBADMSG)?),
            K_SECCOMP_FD => Msg::SeccompFd(fd.ok_or(Errno::EBADMSG)?),
            K_HOOKS => Msg::Hooks,
            K_MOUNT_FD if n == 5 => Msg::MountFd(
                u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]),
                fd.ok_or(Errno::EBADMSG)?,
            ),
            K_PID if n == 5 => Msg::Pid(
                i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]),
                fd.ok_or(Errno::EBADMSG)?,
            ),
            K_ERROR if n >= 7 => {
                let stage = Stage::from_u8(buf[1]).ok_or(Errno::EBADMSG)?;
                let errno = i32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]);
                let oplen = buf[6] as usize;
                let op_end = (7 + oplen).min(n);
                Msg::Error(ChildError {
                    stage,
                    op: String::from_utf8_lossy(&buf[7..op_end]).into_owned(),
                    path: String::from_utf8_lossy(&buf[op_end..n]).into_owned(),
                    errno,
                })
            }
            _ => return Err(Errno::EBADMSG),
        };
        Ok(Some(msg))
    }
}

/// What the parent got when it waited for a particular message.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Child(ChildError),
    #[error("container init exited before it was {0}")]
    Died(&'static str),
    #[error("unexpected message {got:?} from container init while waiting for {want}")]
    Unexpected {
        got: &'static str,
        want: &'static str,
    },
    #[error("sync socket: {0}")]
    Io(Errno),
}

impl Channel {
    /// Wait for the message named `want`; an error message, EOF or another message fail.
    pub fn expect(&self, want: &'static str) -> Result<Msg, SyncError> {
        match self.recv().map_err(SyncError::Io)? {
            None => Err(SyncError::Died(want)),
            Some(Msg::Error(e)) => Err(SyncError::Child(e)),
            Some(m) if m.name() == want => Ok(m),
            Some(m) => Err(SyncError::Unexpected {
                got: m.name(),
                want,
            }),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<OwnedFd> for Channel {
    fn from(fd: OwnedFd) -> Self {
        Channel { fd }
    }
}

/// A receive, again on EINTR, and once more after ECONNRESET: a peer that
/// exits with a message of ours unread resets the connection, and the kernel
/// reports that before the messages still queued for us (its last one is
/// usually its Error). The reset is reported only once.
fn retrying<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut reset_seen = false;
    loop {
        match f() {
            Err(Errno::EINTR) => {}
            Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let (p, c) = pair().unwrap();
        c.send_error(
            Stage::Rootfs,
            "mount proc on",
            b"/b/rootfs/proc",
            libc::EPERM,
        );
        match p.expect("ready") {
            Err(SyncError::Child(e)) => {
                assert_eq!(e.stage, Stage::Rootfs);
                assert_eq!(
                    e.to_string(),
                    "preparing the rootfs: mount proc on /b/rootfs/proc: EPERM: Operation not permitted"
                );
            }
            other => panic!("got {other:?}"),
        }
    }

    #[test]
    fn eof_is_death_and_order_is_checked() {
        let (p, c) = pair().unwrap();
        c.send_ready().unwrap();
        assert!(matches!(
            p.expect("go"),
            Err(SyncError::Unexpected {
                got: "ready",
                want: "go"
            })
        ));
        drop(c);
        assert!(matches!(p.expect("ready"), Err(SyncError::Died("ready"))));
    }

    #[test]
    fn pid_passes_the_pid_and_a_pidfd() {
        let (p, c) = pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        c.send_pid(1234, f.as_fd()).unwrap();
        match p.expect("pid").unwrap() {
            Msg::Pid(pid, fd) => assert!(pid == 1234 && fd.as_raw_fd() > 2),
            m => panic!("got {m:?}"),
        }
    }

    #[test]
    fn console_passes_an_fd() {
        let (p, c) = pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        c.send_console(f.as_fd()).unwrap();
        match p.expect("console").unwrap() {
            Msg::Console(fd) => assert!(fd.as_raw_fd() > 2),
            m => panic!("got {m:?}"),
        }
    }
}
