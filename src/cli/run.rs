//! `run`: create + start, then (in the foreground) forward signals, relay the
//! terminal, reap what the container leaves, and exit with the init's status.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::CreateArgs;
use crate::launch;
use crate::state::{self, Root};
use crate::{sys, terminal};

pub fn run(root: &Root, a: &CreateArgs, detach: bool, keep: bool, subreaper: bool) -> Result<i32> {
    if detach {
        let c = super::create(root, a, false)?;
        let started = crate::notify::Relay::bind(&c.dir.path)
            .map_err(launch::LaunchError::from)
            .and_then(|relay| launch::start(&c.dir).map(|st| (st, relay)))
            .with_context(|| format!("starting container {:?}", a.id));
        let (st, relay) = match started {
            Ok(s) => s,
            Err(e) => {
                discard(c.dir, &c.state, &c.pidfd, a);
                return Err(e);
            }
        };
        drop(c);
        crate::hooks::poststart(&st);
        if let Some(r) = relay {
            // As runc's `run -d`: a failed relay does not fail the run.
            if let Err(e) = r.wait_ready(&st) {
                crate::logging::warn(&format!("sd_notify relay: {e}"));
            }
        }
        return Ok(0);
    }
    let (mask, old) = block_forwarded_signals();
    if subreaper {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }

    let created = super::create(root, a, true);
    let c = match created {
        Ok(c) => c,
        Err(e) => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            return Err(e);
        }
    };
    // The sd_notify relay, if any, is bound before the init may exec; the loop below runs it.
    let started = crate::notify::Relay::bind(&c.dir.path)
        .map_err(launch::LaunchError::from)
        .and_then(|relay| launch::start(&c.dir).map(|_| relay))
        .with_context(|| format!("starting container {:?}", a.id));
    let launch::Created {
        dir,
        state,
        pidfd,
        console,
    } = c;
    if let Err(e) = started {
        discard(dir, &state, &pidfd, a);
        return Err(e);
    }
    // Let `keel state` and `keel kill` from other processes in while we wait.
    drop(dir);
    crate::hooks::poststart(&state);
    let pid = state.pid;

    let code = forward_notify(pid, &pidfd, console, &mask, started.ok().flatten())?;
    if !keep {
        if let Ok(dir) = root.open(&a.id) {
            if let Ok(st) = dir.load() {
                launch::destroy(dir, &st)?;
            }
        }
    }
    Ok(code)
}

/// After a failed start, leave nothing, as runc's destroy does: the init
/// killed and reaped, what else is in its cgroup, the cgroup, the state dir
/// (poststop hooks run), and the pid file that create wrote (never left on
/// failure). Best effort: the start's error is the one reported.
fn discard(dir: state::ContainerDir, st: &state::State, pidfd: &OwnedFd, a: &CreateArgs) {
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    let _ = waitpid(Pid::from_raw(st.pid), None);
    let path = dir.path.clone();
    if let Err(e) = launch::destroy(dir, st) {
        crate::logging::warn(&format!("removing container {:?}: {e}", st.id));
        let _ = std::fs::remove_dir_all(&path);
    }
    if let Some(p) = &a.pid_file {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::logging::warn(&format!("removing pid file {}: {e}", p.display()));
            }
        }
    }
}

/// Block the signals we forward before the clone, so none is lost; the child
/// unblocks everything just before exec. Returns (blocked, previous mask).
pub(crate) fn block_forwarded_signals() -> (SigSet, SigSet) {
    let mut mask = SigSet::all();
    mask.remove(Signal::SIGKILL);
    mask.remove(Signal::SIGSTOP);
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
    ] {
        mask.remove(s);
    }
    let mut old = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old));
    (mask, old)
}

/// The foreground loop: returns the exit code (128+signal when signalled).
pub(crate) fn forward(
    pid: i32,
    pidfd: &OwnedFd,
    console: Option<OwnedFd>,
    mask: &SigSet,
) -> Result<i32> {
    forward_notify(pid, pidfd, console, mask, None)
}

/// [`forward`], also relaying the container's sd_notify messages until READY=1,
/// with `MAINPID=` keel's own pid: keel is the process that stays and exits
/// with the container's status (runc's `run` in the foreground does the same).
fn forward_notify(
    pid: i32,
    pidfd: &OwnedFd,
    console: Option<OwnedFd>,
    mask: &SigSet,
    mut relay: Option<crate::notify::Relay>,
) -> Result<i32> {
    // The container runs from here on, for as long as it likes.
    crate::logging::flush_warnings();
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC)?;
    let _raw = console.as_ref().and_then(|_| terminal::RawMode::enter());
    if let Some(m) = &console {
        terminal::sync_size(m.as_fd());
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &console {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        let relay_at = relay.as_ref().map(|r| {
            fds.push(PollFd::new(r.fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if let Some(m) = &console {
            let mut i = 1;
            if master_open {
                if ready[i] && !terminal::pump(m.as_fd(), stdout.as_fd()) {
                    master_open = false;
                }
                i += 1;
            }
            if stdin_open && ready[i] && !terminal::pump(stdin.as_fd(), m.as_fd()) {
                stdin_open = false;
            }
        }
        if let (Some(r), Some(i)) = (&relay, relay_at) {
            let done = ready[i]
                && r.pump(std::process::id() as i32).unwrap_or_else(|e| {
                    crate::logging::warn(&format!("sd_notify relay: {e}"));
                    true
                });
            if done {
                relay = None;
            }
        }
        if !ready[0] {
            continue;
        }
        let Some(info) = sfd.read_signal()? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(pid) {
                if let Some(r) = &relay {
                    // What the container sent just before it exited.
                    let _ = r.pump(std::process::id() as i32);
                }
                if let Some(m) = &console {
                    drain(m, &stdout);
                }
                return Ok(code);
            }
        } else if sig == libc::SIGWINCH {
            if let Some(m) = &console {
                terminal::sync_size(m.as_fd());
            }
        } else {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
        }
    }
}

/// Reap every exited child (we are a subreaper); the init's status when it is among them.
fn reap(init: i32) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == init => code = Some(c),
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == init => code = Some(128 + s as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// What the container wrote just before it exited is still in the pty.
fn drain(master: &OwnedFd, stdout: &std::io::Stdout) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while terminal::pump(master.as_fd(), stdout.as_fd()) {}
}
