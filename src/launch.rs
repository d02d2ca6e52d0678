//! The parent's half of the lifecycle: create (claim the id, clone once, drive
//! the child through the sync protocol, record the state), start, kill, delete.
//! A failed create leaves nothing behind: the child is killed and reaped and
//! the state dir removed.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::error::{At, SysError};
use crate::plan::{self, Plan};
use crate::state::{self, ContainerDir, Root, State, StateError, Status};
use crate::sync::{self, Msg, SyncError};
use crate::{child, namespaces, sys, terminal};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub plan: plan::Options,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `run` in the foreground: keel stays and relays the pty itself, so no
    /// `--console-socket` (runc's rule: a socket only when detaching with a tty).
    pub foreground: bool,
    /// Send a pidfd of the init to this unix socket (runc 1.2's `--pidfd-socket`).
    pub pidfd_socket: Option<PathBuf>,
}

/// runc's rule for `--console-socket` (create, run, exec), naming the flag.
pub const CONSOLE_SOCKET_UNUSED: &str =
    "cannot use --console-socket if keel will not detach or allocate tty";

/// A created container, as the creating process sees it.
pub struct Created {
    pub dir: ContainerDir,
    pub state: State,
    pub pidfd: OwnedFd,
    pub console: Option<OwnedFd>,
}

/// `create`: everything up to the child blocking on exec.fifo.
pub fn create(
    root: &Root,
    id: &str,
    bundle: &Path,
    rootfs: &Path,
    spec: &Spec,
    o: &CreateOptions,
) -> Result<Created, LaunchError> {
    let mut plan = plan::build(spec, bundle, rootfs, id, &o.plan)?;
    if plan.process.terminal && o.console_socket.is_none() && !o.foreground {
        return Err(LaunchError::Usage(
            "cannot allocate tty if keel will detach without setting console socket".into(),
        ));
    }
    // Checked before the id is claimed: a refused run leaves nothing behind.
    if (o.foreground || !plan.process.terminal) && o.console_socket.is_some() {
        return Err(LaunchError::Usage(CONSOLE_SOCKET_UNUSED.into()));
    }
    let dir = root.claim(id)?;
    // With NOTIFY_SOCKET set, the state dir's `notify` becomes the container's /run/notify.
    let spawned = crate::notify::prepare_dir(&dir.path)
        .map_err(LaunchError::from)
        .and_then(|notify| {
            if let Some(d) = &notify {
                plan.add_notify_mount(d);
            }
            spawn(&dir, &plan, spec, o)
        });
    match spawned {
        Ok((state, pidfd, console)) => Ok(Created {
            dir,
            state,
            pidfd,
            console,
        }),
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

fn spawn(
    dir: &ContainerDir,
    plan: &Plan,
    spec: &Spec,
    o: &CreateOptions,
) -> Result<(State, OwnedFd, Option<OwnedFd>), LaunchError> {
    let fifo_path = dir.fifo();
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).at("mkfifo", &fifo_path)?;
    // Exactly 0622 whatever keel's umask (runc sets umask 0 around mkfifo): a
    // non-root init opens it for writing after its uid switch.
    fs::set_permissions(
        &fifo_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .at("chmod", &fifo_path)?;
    let fifo = crate::sys::open_path(&fifo_path, 0).at("opening", &fifo_path)?;
    // The cgroup as made: it records the parents create made, for destroy.
    let cg = plan.cgroup.as_ref().map(|c| c.create()).transpose()?;
    let r = spawn_in_cgroup(dir, plan, cg.as_ref(), spec, o, &fifo);
    if let (Err(_), Some(cg)) = (&r, &cg) {
        let _ = cg.destroy();
    }
    r
}

/// Everything after the cgroup exists (if the container has one): resources,
/// clone, the sync steps, state.
fn spawn_in_cgroup(
    dir: &ContainerDir,
    plan: &Plan,
    cg: Option<&crate::cgroups::Cgroup>,
    spec: &Spec,
    o: &CreateOptions,
    fifo: &OwnedFd,
) -> Result<(State, OwnedFd, Option<OwnedFd>), LaunchError> {
    if let Some(cg) = cg {
        let none = oci_spec::runtime::LinuxResources::default();
        // Unprivileged, device rules cannot be written (runc ignores them too).
        cg.apply(plan.resources.as_ref().unwrap_or(&none), !plan.unprivileged)?;
    }
    let host_proc = crate::sys::open_path("/proc", libc::O_DIRECTORY).at("opening", "/proc")?;
    let (parent_end, child_end) = sync::pair().op("socketpair")?;
    // Hooks forked later by this process must not land in the container's pid/time namespaces.
    let runtime_ns = crate::hooks::RuntimeNs::save(plan)?;
    namespaces::enter_for_children(&plan.ns)?;
    // On cgroup v2 the init is born in its cgroup; elsewhere the parent moves it.
    let cgroup_fd = cg.and_then(|c| c.clone_into_fd());
    // Non-dumpable from birth (CVE-2016-9962): the child inherits it from us.
    nix::sys::prctl::set_dumpable(false).op("prctl(PR_SET_DUMPABLE)")?;

    let cloned = match sys::clone3_fork(
        plan.ns.clone_flags,
        cgroup_fd.as_ref().map(|f| f.as_raw_fd()),
    )
    .op("clone3")?
    {
        None => {
            drop(parent_end);
            child::run(
                plan,
                child::Inherited {
                    chan: &child_end,
                    fifo: fifo.as_raw_fd(),
                    host_proc: host_proc.as_fd(),
                    lock: dir.lock_fd().as_raw_fd(),
                },
            )
        }
        Some(c) => c,
    };
    drop(child_end);
    let pid = cloned.pid;
    let fail = |e: LaunchError| {
        let _ = sys::pidfd_send_signal(cloned.pidfd.as_fd(), libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        e
    };
    runtime_ns.restore().map_err(|e| fail(e.into()))?;
    // A hook failed: clean up as for any failure, and run the poststop hooks once
    // the container is gone (its state dir goes when `create` returns).
    let hook_fail = |e: LaunchError, st: &State| {
        let e = fail(e);
        if let Some(cg) = cg {
            let _ = cg.destroy();
        }
        crate::hooks::poststop(st);
        e
    };
    let mut hook_state: Option<State> = None;
    // Step 2 of the protocol: maps (after the child's UserNs) and the cgroup move, then Go.
    let sources = crate::userns::needs_sources(plan);
    let go = |maps: bool| -> Result<(), LaunchError> {
        if maps {
            namespaces::write_id_maps(pid, &plan.ns)?;
        }
        if sources {
            // Bind sources opened in the child's mount namespace with our credentials.
            for (i, fd) in crate::userns::open_sources(pid, plan)? {
                parent_end.send_mount_fd(i, fd.as_fd()).op("sync")?;
            }
        }
        if let Some(cg) = cg.filter(|_| plan.cgroup_sync) {
            cg.add_pid(pid)?;
        }
        parent_end.send_go().op("sync")?;
        Ok(())
    };
    if (plan.cgroup_sync || sources) && !plan.ns.new_user {
        if let Err(e) = go(false) {
            // The init does not wait for Go before its mounts (child.rs): if it
            // failed first, its own error is queued on the channel; after the
            // kill the channel reaches EOF, so this recv cannot block.
            let e = fail(e);
            return Err(match parent_end.recv() {
                Ok(Some(Msg::Error(ce))) => SyncError::Child(ce).into(),
                _ => e,
            });
        }
    }

    let mut console = None;
    loop {
        match parent_end.recv() {
            Ok(Some(Msg::UserNs)) => go(true).map_err(fail)?,
            Ok(Some(Msg::Console(m))) => {
                if let Some(sock) = &o.console_socket {
                    terminal::send_to_socket(sock, m.as_fd()).map_err(|e| fail(e.into()))?;
                } else {
                    console = Some(m);
                }
            }
            Ok(Some(Msg::SeccompFd(fd))) => {
                if let Some(p) = &plan.seccomp {
                    let state = crate::seccomp::AgentState {
                        oci_version: spec.version(),
                        id: &plan.id,
                        status: Status::Creating.as_str(),
                        pid,
                        bundle: &plan.bundle,
                        annotations: spec
                            .annotations()
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect(),
                    };
                    let doc = crate::seccomp::process_state(p, pid, &state);
                    crate::seccomp::send_to_listener(p, fd.as_fd(), &doc)
                        .map_err(|e| fail(e.into()))?;
                }
            }
            Ok(Some(Msg::Hooks)) => {
                // Mounts are done, pivot_root is not: prestart and createRuntime
                // here, then Go with the state for createContainer in the init.
                let st = new_state(plan, cg, spec, pid).map_err(|e| fail(e.into()))?;
                let doc = crate::hooks::state_doc(&st, Status::Creating);
                for kind in [
                    crate::hooks::Kind::Prestart,
                    crate::hooks::Kind::CreateRuntime,
                ] {
                    if let Err(e) = crate::hooks::run(kind, plan.hooks.as_ref(), &doc) {
                        return Err(hook_fail(e.into(), &st));
                    }
                }
                parent_end
                    .send_go_state(&doc)
                    .op("sync")
                    .map_err(|e| fail(e.into()))?;
                hook_state = Some(st);
            }
            Ok(Some(Msg::Ready)) => break,
            Ok(Some(Msg::Error(e))) => {
                return Err(match &hook_state {
                    Some(st) if e.stage == crate::error::Stage::Hooks => {
                        hook_fail(SyncError::Child(e).into(), st)
                    }
                    _ => fail(SyncError::Child(e).into()),
                })
            }
            Ok(Some(m @ (Msg::MountFd(..) | Msg::Pid(..)))) => {
                return Err(fail(
                    SyncError::Unexpected {
                        got: m.name(),
                        want: "ready",
                    }
                    .into(),
                ))
            }
            Ok(Some(Msg::Go)) => {
                return Err(fail(
                    SyncError::Unexpected {
                        got: "go",
                        want: "ready",
                    }
                    .into(),
                ))
            }
            Ok(None) => {
                let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Err(LaunchError::Usage(format!(
                    "container init exited before it was ready ({status:?})"
                )));
            }
            Err(e) => return Err(fail(SyncError::Io(e).into())),
        }
    }
    if let Some(s) = &o.pidfd_socket {
        send_pidfd(s, cloned.pidfd.as_fd(), "standard").map_err(|e| fail(e.into()))?;
    }
    let st = match hook_state {
        Some(st) => st,
        None => new_state(plan, cg, spec, pid).map_err(|e| fail(e.into()))?,
    };
    // `exec` takes its defaults (user, caps, env, rlimits...) from the container's process.
    if let Some(p) = spec.process() {
        dir.save_json(state::PROCESS_FILE, p)
            .map_err(|e| fail(e.into()))?;
    }
    if let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        dir.save_json(state::SECCOMP_FILE, sc)
            .map_err(|e| fail(e.into()))?;
    }
    dir.save(&st).map_err(|e| fail(e.into()))?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid).map_err(|e| fail(e.into()))?;
    }
    Ok((st, cloned.pidfd, console))
}

/// The state of the container whose init is `pid` (its start time is read now).
fn new_state(
    plan: &Plan,
    cg: Option<&crate::cgroups::Cgroup>,
    spec: &Spec,
    pid: i32,
) -> Result<State, SysError> {
    let (start_time, _) = state::proc_start_time(pid).op("reading start time of init")?;
    Ok(State {
        oci_version: spec.version().clone(),
        id: plan.id.clone(),
        pid,
        start_time,
        bundle: plan.bundle.clone(),
        rootfs: crate::mounts::host_path(&plan.rootfs),
        created: state::rfc3339(SystemTime::now()),
        owner: owner_name(),
        annotations: spec
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        shared_pidns: !plan.ns.has_pid,
        cgroup: cg.cloned(),
        hooks: crate::hooks::kept(plan.hooks.as_ref()),
        memory_policy: spec
            .linux()
            .as_ref()
            .and_then(|l| l.memory_policy().clone()),
    })
}

/// The effective user's name from /etc/passwd, else the uid as a number. Not
/// getpwuid: NSS cannot be used from a statically linked glibc binary.
fn owner_name() -> String {
    let uid = nix::unistd::geteuid().as_raw();
    fs::read("/etc/passwd")
        .ok()
        .and_then(|p| passwd_name(&p, uid).map(str::to_owned))
        .unwrap_or_else(|| uid.to_string())
}

/// The name of the first entry of a passwd(5) file whose uid is `uid`.
fn passwd_name(passwd: &[u8], uid: u32) -> Option<&str> {
    passwd.split(|&b| b == b'\n').find_map(|line| {
        let mut f = line.split(|&b| b == b':');
        let (name, _pw, u) = (f.next()?, f.next()?, f.next()?);
        let u: u32 = std::str::from_utf8(u).ok()?.parse().ok()?;
        (u == uid && !name.is_empty())
            .then(|| std::str::from_utf8(name).ok())
            .flatten()
    })
}

/// `--pidfd-socket` (runc 1.2): one message to the unix socket at `socket`, the
/// payload naming the process ("standard": a container's init, "setns": an
/// exec'd process) and the pidfd as SCM_RIGHTS.
pub fn send_pidfd(
    socket: &Path,
    pidfd: std::os::fd::BorrowedFd<'_>,
    kind: &str,
) -> Result<(), SysError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let s =
        std::os::unix::net::UnixStream::connect(socket).at("connecting to pidfd socket", socket)?;
    let iov = [std::io::IoSlice::new(kind.as_bytes())];
    let fds = [pidfd.as_raw_fd()];
    sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .at("sending pidfd to", socket)?;
    Ok(())
}

/// Decimal pid, no newline, written atomically (temp file + rename in the same dir).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), SysError> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().op("getcwd")?.join(path)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, pid.to_string()).at("writing pid file", &tmp)?;
    fs::rename(&tmp, &path).at("renaming pid file to", &path)?;
    Ok(())
}

/// `start`: let the created init exec. Returns once it has (after its
/// startContainer hooks); the caller runs the poststart hooks
/// ([`crate::hooks::poststart`]) after it has dropped `dir`'s lock.
pub fn start(dir: &ContainerDir) -> Result<State, LaunchError> {
    let st = dir.load()?;
    match dir.status(&st) {
        Status::Created => {}
        Status::Stopped => {
            return Err(LaunchError::Usage(
                "cannot start a container that has stopped".into(),
            ))
        }
        Status::Running | Status::Paused => {
            return Err(LaunchError::Usage(
                "cannot start an already running container".into(),
            ))
        }
        Status::Creating => {
            return Err(LaunchError::Usage(
                "cannot start a container that is being created".into(),
            ))
        }
    }
    let pidfd = state::open_init(&st)
        .ok_or_else(|| LaunchError::Usage("container init is not running".into()))?;
    let fifo_path = dir.fifo();
    let fifo: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo_path)
        .at("opening", &fifo_path)?
        .into();
    // Opening for reading releases the init's blocking open; its byte says it got there.
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::new("poll", Some(&fifo_path), e).into()),
            Ok(_) => {}
        }
        let fifo_ready = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let init_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        if fifo_ready {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => break,
                Ok(_) | Err(Errno::EAGAIN) => {}
                Err(e) => return Err(SysError::new("reading", Some(&fifo_path), e).into()),
            }
        }
        if init_gone {
            return Err(LaunchError::Usage(
                "container init exited before start".into(),
            ));
        }
    }
    // The init holds its end until execve (close-on-exec): EOF says it has exec'd
    // (or died); bytes before the EOF are a startContainer hook failure.
    let failed = crate::hooks::wait_exec(&fifo).at("reading", &fifo_path)?;
    fs::remove_file(&fifo_path).at("removing", &fifo_path)?;
    if let Some(msg) = failed {
        return Err(LaunchError::Usage(msg));
    }
    Ok(st)
}

/// Parse a signal as runc does: a number, or a name with or without "SIG".
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        return Err(format!("unknown signal \"{s}\""));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal \"{s}\""))
}

/// `kill`: signal the init through a pidfd (a recycled pid is never signalled);
/// with `all`, every process in the container's cgroup.
pub fn kill(dir: &ContainerDir, sig: i32, all: bool) -> Result<(), LaunchError> {
    let st = dir.load()?;
    let stopped = dir.status(&st) == Status::Stopped;
    if all && stopped {
        // runc 1.1's Signal(all): without a pid namespace the init's death
        // leaves the rest in the cgroup (containerd's KillAll reaches them
        // here); done when there is no cgroup left.
        return match st.cgroup.as_ref().filter(|c| c.dirs().any(Path::is_dir)) {
            Some(cg) => Ok(cg.signal_all(sig)?),
            None => Ok(()),
        };
    }
    let pidfd = if stopped { None } else { state::open_init(&st) };
    let pidfd = pidfd.ok_or_else(|| LaunchError::Usage("container not running".into()))?;
    if all {
        if let Some(cg) = &st.cgroup {
            cg.signal_all(sig)?;
            return Ok(());
        }
    }
    sys::pidfd_send_signal(pidfd.as_fd(), sig).at("kill", format!("pid {}", st.pid))?;
    Ok(())
}

/// `delete`: refuse a running container unless forced; kill a created one; remove
/// the cgroup and the state.
pub fn delete(dir: ContainerDir, force: bool) -> Result<(), LaunchError> {
    let st = match dir.load() {
        Ok(st) => st,
        // A half-written container (no or corrupt state.json) can only be removed.
        Err(StateError::Corrupt { .. }) if force => return Ok(dir.remove()?),
        Err(e) => return Err(e.into()),
    };
    let status = dir.status(&st);
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(LaunchError::Usage(format!(
            "cannot delete container {} that is not stopped: {}",
            st.id,
            status.as_str()
        )));
    }
    if status != Status::Stopped {
        if let Some(pidfd) = state::open_init(&st) {
            if let Some(cg) = st.cgroup.as_ref().filter(|_| st.shared_pidns) {
                // Without a pid namespace the init's death does not take the rest along.
                cg.signal_all(libc::SIGKILL)?;
            }
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            if status == Status::Paused {
                if let Some(cg) = &st.cgroup {
                    cg.freeze(false)?;
                }
            }
            wait_exit(&pidfd, Duration::from_secs(10)).map_err(|_| {
                LaunchError::Usage(format!(
                    "container {} did not die within 10s of SIGKILL",
                    st.id
                ))
            })?;
        }
    }
    destroy(dir, &st)
}

/// Remove what a stopped container still has: leftover processes (shared pid
/// namespace), its cgroup, its state dir.
pub fn destroy(dir: ContainerDir, st: &State) -> Result<(), LaunchError> {
    if let Some(cg) = &st.cgroup {
        if st.shared_pidns && cg.pids().is_ok_and(|p| !p.is_empty()) {
            cg.signal_all(libc::SIGKILL)?;
        }
        cg.destroy()?;
    }
    dir.remove()?;
    crate::hooks::poststop(st);
    Ok(())
}

/// Wait until the process behind `pidfd` has exited (a pidfd polls readable then).
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> Result<(), Errno> {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Errno::ETIMEDOUT);
        }
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::passwd_name;

    #[test]
    fn passwd_name_finds_the_uid() {
        let p = b"root:x:0:0:root:/root:/bin/bash\n\
                  # comment\n\
                  \n\
                  broken\n\
                  daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                  dup:x:1:1::/:/bin/sh\n\
                  :x:7:7::/:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin";
        assert_eq!(passwd_name(p, 0), Some("root"));
        assert_eq!(passwd_name(p, 1), Some("daemon"));
        assert_eq!(passwd_name(p, 65534), Some("nobody"));
        assert_eq!(passwd_name(p, 7), None);
        assert_eq!(passwd_name(p, 42), None);
        assert_eq!(passwd_name(b"", 0), None);
        assert_eq!(passwd_name(b"a:x:notanumber:0::/:", 0), None);
    }
}
