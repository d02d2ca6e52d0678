//! The receiving end of `--console-socket` and `--pidfd-socket`, as runc's
//! `recvtty` is for the console: a unix socket that accepts one connection
//! and takes one message with one descriptor (SCM_RIGHTS) from it; the
//! sender must then close the connection with nothing more sent.
//!
//! ```ignore
//! mod recvfd;
//! let r = recvfd::Receiver::bind(&b.dir.join("console.sock"));
//! // keel create --console-socket <r.path()> ...
//! let (payload, master) = r.recv();
//! ```
#![allow(dead_code)]

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver as Channel, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// What one connection brought: the message's bytes and its descriptor.
pub type Received = (Vec<u8>, OwnedFd);

/// A listening socket and the thread that accepts from it.
pub struct Receiver {
    path: PathBuf,
    got: Channel<io::Result<Received>>,
}

impl Receiver {
    /// Binds `path` (removed first if it exists) and accepts one connection
    /// in a thread, for at most the harness's command deadline.
    pub fn bind(path: &Path) -> Receiver {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (tx, got) = mpsc::channel();
        let deadline = Instant::now() + crate::common::command_timeout();
        thread::spawn(move || {
            let _ = tx.send(accept_one(&listener, deadline));
        });
        Receiver {
            path: path.to_path_buf(),
            got,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a `&str`, for keel's command line.
    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("UTF-8 socket path")
    }

    /// Waits (up to the harness's deadline) for the message; panics if none came.
    pub fn recv(&self) -> Received {
        match self.got.recv_timeout(crate::common::command_timeout()) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("{}: {e}", self.path.display()),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                panic!("nothing arrived on {}", self.path.display())
            }
        }
    }

    /// The message if one has arrived by now (without waiting).
    pub fn try_recv(&self) -> Option<io::Result<Received>> {
        self.got.try_recv().ok()
    }
}

fn accept_one(listener: &UnixListener, deadline: Instant) -> io::Result<Received> {
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "nobody connected"));
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ))?;
    let got = recv_fd(stream.as_raw_fd())?;
    // The sender closes after its one message: anything more before EOF is an error.
    let mut rest = Vec::new();
    io::Read::read_to_end(&mut &stream, &mut rest)?;
    if !rest.is_empty() {
        return Err(io::Error::other(format!(
            "more than one message: {:?} after {:?}",
            String::from_utf8_lossy(&rest),
            String::from_utf8_lossy(&got.0)
        )));
    }
    Ok(got)
}

/// One message with exactly one descriptor attached.
pub fn recv_fd(sock: RawFd) -> io::Result<Received> {
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (bytes, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        (msg.bytes, fds)
    };
    // Owned at once, so that none leaks whatever happens next.
    let mut owned: Vec<OwnedFd> = fds.into_iter().map(keel::sys::own_fd).collect();
    if owned.len() != 1 {
        return Err(io::Error::other(format!(
            "want one descriptor with the message, got {}",
            owned.len()
        )));
    }
    buf.truncate(bytes);
    Ok((buf, owned.remove(0)))
}
