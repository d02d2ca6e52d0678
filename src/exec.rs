//! `exec`: start another process in a running container. The parent opens the
//! init's namespaces and root, joins the pid and time namespaces for its child
//! (setns only affects children there, so one clone is enough), clones into the
//! container's cgroup, and the child joins the rest, switches user and execs.
//! An unprivileged keel may not join the pid namespace of a container with its
//! own user namespace: then the child joins them all, user first, and forks
//! once more into the pid namespace ([`fork_into_pid_ns`]).
//!
//! | step | child                              | parent                                   |
//! |------|------------------------------------|------------------------------------------|
//! | 1    |                                 <- | `Go` once the child is in the cgroup (v1/hybrid; v2 clones into it) |
//! | 1b   | `Pid(pid, pidfd)` (second fork only; the intermediate exits) -> | reaps the intermediate; the exec'd process is its child from now on |
//! | 2    | `Console(fd)` (tty only) ->        | relays it, or sends it to --console-socket |
//! | 2b   | `SeccompFd(fd)` (NOTIFY rules, no no_new_privs) -> | sends it with the state to `listenerPath` |
//! | 3    | `Ready` ->                         |                                          |
//! | 3b   | `SeccompFd(fd)` (NOTIFY rules, no_new_privs) -> then execve | as 2b |
//! | 4    | EOF (exec succeeded) or `Error` -> | pid file (detach) or wait and return the status |

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilities, Process};

use crate::caps::{self, CapsPlan};
use crate::cgroups::Cgroup;
use crate::child::{Ctx, Fail};
use crate::error::{At, Stage};
use crate::launch::LaunchError;
use crate::process::{self, ProcessPlan};
use crate::state::{self, ContainerDir, Status};
use crate::sync::{self, Channel, Msg, SyncError};
use crate::{sys, terminal};

/// What the caller asked for beyond the process itself.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    /// Send a pidfd of the process to this unix socket (runc 1.2's `--pidfd-socket`).
    pub pidfd_socket: Option<PathBuf>,
}

/// Flags that build the process when no `--process` file is given (runc's rules:
/// the container's own process supplies what a flag does not).
#[derive(Debug, Default, Clone)]
pub struct ProcessFlags {
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    /// `--apparmor`: process.apparmorProfile.
    pub apparmor: Option<String>,
    /// `--process-label`: process.selinuxLabel.
    pub process_label: Option<String>,
}

/// Build the exec'd process from the flags and the container's saved process.
pub fn process_from_flags(base: &Process, f: &ProcessFlags) -> Result<Process, String> {
    if f.args.is_empty() {
        return Err("exec needs a command (or --process)".into());
    }
    let mut p = base.clone();
    p.set_args(Some(f.args.clone()));
    p.set_terminal(Some(f.tty));
    p.set_console_size(None);
    if let Some(cwd) = &f.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    let mut env = base.env().clone().unwrap_or_default();
    env.extend(f.env.iter().cloned());
    p.set_env(Some(env));
    let mut user = base.user().clone();
    if let Some(u) = &f.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        // u32::MAX is (uid_t)-1, "unchanged" to the kernel: refused with the rest.
        let id = |s: &str| s.parse::<u32>().ok().filter(|&n| n != u32::MAX);
        user.set_uid(id(uid).ok_or_else(|| format!("--user: invalid uid {uid:?}"))?);
        if let Some(g) = gid {
            user.set_gid(id(g).ok_or_else(|| format!("--user: invalid gid {g:?}"))?);
        }
    }
    if !f.additional_gids.is_empty() {
        // runc appends to the container's groups rather than replacing them.
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&f.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    // As runc, an empty value keeps the container's.
    if let Some(a) = f.apparmor.as_ref().filter(|s| !s.is_empty()) {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = f.process_label.as_ref().filter(|s| !s.is_empty()) {
        p.set_selinux_label(Some(l.clone()));
    }
    if !f.caps.is_empty() {
        let mut c = base.capabilities().clone().unwrap_or_default();
        let extra: Vec<String> = f.caps.clone();
        let add = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<oci_spec::runtime::Capabilities, String> {
            let mut s = set.clone().unwrap_or_default();
            for name in &extra {
                let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::from(name.as_str()))
                    .map_err(|_| format!("--cap: unknown capability {name:?}"))?;
                s.insert(cap);
            }
            Ok(s)
        };
        let new = LinuxCapabilities::default();
        let mut new = new;
        new.set_bounding(Some(add(c.bounding())?));
        new.set_effective(Some(add(c.effective())?));
        new.set_permitted(Some(add(c.permitted())?));
        new.set_inheritable(c.inheritable().clone());
        // runc 1.1.5: ambient only when the process has an inheritable set
        // (without it the raise fails), so `-u 1000 --cap X` still runs.
        new.set_ambient(match c.inheritable() {
            Some(_) => Some(add(c.ambient())?),
            None => c.ambient().clone(),
        });
        c = new;
        p.set_capabilities(Some(c));
    }
    if f.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// A namespace of the init to join (only those that differ from ours).
struct NsJoin {
    fd: OwnedFd,
    flag: nix::sched::CloneFlags,
    name: &'static str,
}

struct ExecPlan {
    process: ProcessPlan,
    caps: Option<CapsPlan>,
    joins: Vec<NsJoin>,
    root: OwnedFd,
    /// The container's seccomp filter (from the cache: compiled at create).
    seccomp: Option<crate::seccomp::Program>,
    cgroup_sync: bool,
    new_user: bool,
    /// The child joins pid and time too (after the user namespace) and forks
    /// once more: keel could not join them itself.
    fork_for_pid: bool,
    preserve_fds: u32,
    /// Scheduler, I/O priority, CPU affinity, AppArmor; the init's personality,
    /// the container's memory policy.
    attrs: crate::attrs::AttrsPlan,
}

const NS_ORDER: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("time", sys::CLONE_NEWTIME),
];

fn ns_differs(pid: i32, name: &str) -> bool {
    let theirs = fs::metadata(format!("/proc/{pid}/ns/{name}"));
    let ours = fs::metadata(format!("/proc/self/ns/{name}"));
    use std::os::unix::fs::MetadataExt;
    match (theirs, ours) {
        (Ok(t), Ok(o)) => (t.dev(), t.ino()) != (o.dev(), o.ino()),
        _ => false,
    }
}

/// `exec`: returns the exit code (foreground) or 0 (detached).
pub fn exec(dir: ContainerDir, process: &Process, o: &ExecOptions) -> Result<i32, LaunchError> {
    let st = dir.load()?;
    let status = dir.status(&st);
    match status {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => {
            return Err(LaunchError::Usage(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        _ => {
            return Err(LaunchError::Usage(
                "cannot exec in a stopped container".into(),
            ))
        }
    }
    let init =
        state::open_init(&st).ok_or_else(|| LaunchError::Usage("container not running".into()))?;
    let pplan = process::plan(process).map_err(LaunchError::Usage)?;
    if pplan.terminal && o.console_socket.is_none() && o.detach {
        return Err(LaunchError::Usage(
            "cannot allocate tty if keel will detach without setting console socket".into(),
        ));
    }
    // runc: the socket is only for a detached process with a tty.
    if (!pplan.terminal || !o.detach) && o.console_socket.is_some() {
        return Err(LaunchError::Usage(
            crate::launch::CONSOLE_SOCKET_UNUSED.into(),
        ));
    }
    let caps = match process.capabilities() {
        Some(c) => Some(caps::plan(c).map_err(LaunchError::Usage)?),
        None => None,
    };
    let mut joins = Vec::new();
    let mut parent_joins = Vec::new();
    for (name, flag) in NS_ORDER {
        if !ns_differs(st.pid, name) {
            continue;
        }
        let path = format!("/proc/{}/ns/{name}", st.pid);
        let fd: OwnedFd = fs::File::open(&path).at("opening namespace", &path)?.into();
        let j = NsJoin {
            fd,
            flag: nix::sched::CloneFlags::from_bits_retain(flag),
            name,
        };
        if name == "pid" || name == "time" {
            parent_joins.push(j);
        } else {
            joins.push(j);
        }
    }
    // Joining the pid (or time) namespace needs CAP_SYS_ADMIN over keel's own
    // user namespace too: an unprivileged keel has it only once inside the
    // container's (it owns it), so that is for the child, which forks again.
    let new_user = joins.iter().any(|j| j.name == "user");
    let fork_for_pid = new_user && !parent_joins.is_empty() && !nix::unistd::geteuid().is_root();
    if fork_for_pid {
        joins.append(&mut parent_joins);
    }
    let root_path = format!("/proc/{}/root", st.pid);
    let root = crate::sys::open_path(&root_path, libc::O_DIRECTORY).at("opening", &root_path)?;
    // The init must still be the same process now that we hold its namespaces.
    if !state::is_alive(st.pid, st.start_time) {
        return Err(LaunchError::Usage("container not running".into()));
    }
    let seccomp = load_seccomp(&dir)?;
    let attrs = crate::attrs::plan_exec(
        process,
        crate::attrs::read_personality(st.pid),
        st.memory_policy.as_ref(),
        crate::attrs::Host::probe(),
    )
    .map_err(LaunchError::Usage)?;
    let cg: Option<&Cgroup> = st.cgroup.as_ref();
    let plan = ExecPlan {
        new_user,
        fork_for_pid,
        process: pplan,
        caps,
        joins,
        root,
        seccomp,
        cgroup_sync: cg.is_some_and(|c| c.clone_into_fd().is_none()),
        preserve_fds: o.preserve_fds,
        attrs,
    };
    drop(init);
    // Holding the lock for the process's lifetime would block `kill`, `state`, `delete`.
    drop(dir);

    let mask = (!o.detach).then(crate::cli::block_forwarded_signals);
    let (parent_end, child_end) = sync::pair().op("socketpair")?;
    for j in &parent_joins {
        nix::sched::setns(j.fd.as_fd(), j.flag).at(
            "joining namespace",
            format!("/proc/{}/ns/{}", st.pid, j.name),
        )?;
    }
    if fork_for_pid && !o.detach {
        // The exec'd process is our grandchild: it must be reparented to us,
        // to be waited for, when the intermediate exits.
        nix::sys::prctl::set_child_subreaper(true).op("prctl(PR_SET_CHILD_SUBREAPER)")?;
    }
    let cgroup_fd = cg.and_then(|c| c.clone_into_fd());
    // The child is in the container's pid namespace from birth: it must never be
    // dumpable there (CVE-2016-9962), so it inherits non-dumpable from us.
    nix::sys::prctl::set_dumpable(false).op("prctl(PR_SET_DUMPABLE)")?;
    let cloned =
        match sys::clone3_fork(0, cgroup_fd.as_ref().map(|f| f.as_raw_fd())).op("clone3")? {
            None => {
                drop(parent_end);
                child(&plan, &child_end)
            }
            Some(c) => c,
        };
    drop(child_end);
    if plan.cgroup_sync {
        let kill = |e: LaunchError| killed(&cloned, e);
        if let Some(c) = cg {
            c.add_pid(cloned.pid).map_err(|e| kill(e.into()))?;
        }
        parent_end
            .send_go()
            .op("sync")
            .map_err(|e| kill(e.into()))?;
    }
    let cloned = match plan.fork_for_pid {
        true => grandchild(&parent_end, cloned)?,
        false => cloned,
    };
    let pid = cloned.pid;
    let kill = |e: LaunchError| killed(&cloned, e);
    // With NOTIFY rules the child hands us the listener for the agent, as runc's
    // setns process does: its pid, and the container's state.
    let agent = plan.seccomp.as_ref().filter(|p| p.notify).map(|p| {
        let state = crate::seccomp::AgentState {
            oci_version: &st.oci_version,
            id: &st.id,
            status: status.as_str(),
            pid: st.pid,
            bundle: &st.bundle,
            annotations: st
                .annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        (p, crate::seccomp::process_state(p, pid, &state))
    });
    let console = wait_started(&parent_end, o, agent).map_err(kill)?;
    if let Some(s) = &o.pidfd_socket {
        crate::launch::send_pidfd(s, cloned.pidfd.as_fd(), "setns").map_err(|e| kill(e.into()))?;
    }
    if o.detach {
        if let Some(p) = &o.pid_file {
            crate::launch::write_pid_file(p, pid).map_err(|e| kill(e.into()))?;
        }
        return Ok(0);
    }
    if let Some(p) = &o.pid_file {
        crate::launch::write_pid_file(p, pid).map_err(|e| kill(e.into()))?;
    }
    let mask = mask.expect("foreground blocks signals");
    crate::cli::forward_exec(pid, &cloned.pidfd, console, &mask)
        .map_err(|e| LaunchError::Usage(format!("{e:#}")))
}

/// Kill `p` and reap it when it is ours (a detached exec's grandchild is not).
fn killed(p: &sys::Cloned, e: LaunchError) -> LaunchError {
    let _ = sys::pidfd_send_signal(p.pidfd.as_fd(), libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid), None);
    e
}

/// After a second fork: the exec'd process as the intermediate names it
/// (its pid here, not in the container). The intermediate exits right after
/// sending it, or its error.
fn grandchild(ch: &Channel, intermediate: sys::Cloned) -> Result<sys::Cloned, LaunchError> {
    let r = ch.expect("pid");
    if !matches!(r, Ok(Msg::Pid(..)) | Err(SyncError::Child(_))) {
        // It would fork nothing that runs: see fork_into_pid_ns.
        let _ = sys::pidfd_send_signal(intermediate.pidfd.as_fd(), libc::SIGKILL);
    }
    // Once it is reaped, its child is reparented (to us in the foreground).
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(intermediate.pid), None);
    match r {
        Ok(Msg::Pid(pid, pidfd)) => Ok(sys::Cloned { pid, pidfd }),
        Ok(m) => Err(LaunchError::Sync(SyncError::Unexpected {
            got: m.name(),
            want: "pid",
        })),
        Err(SyncError::Died(_)) => Err(SyncError::Died("started").into()),
        Err(e) => Err(e.into()),
    }
}

/// The container's seccomp filter, from the program cache that create filled
/// (runtime-spec's `process` has no seccomp of its own: exec always gets the
/// container's, as with runc).
fn load_seccomp(dir: &ContainerDir) -> Result<Option<crate::seccomp::Program>, LaunchError> {
    if !dir.path.join(state::SECCOMP_FILE).exists() {
        return Ok(None);
    }
    let s: oci_spec::runtime::LinuxSeccomp = dir.load_json(state::SECCOMP_FILE)?;
    let cache = dir.path.parent().map(crate::seccomp::cache_dir);
    let p = crate::seccomp::compile_cached(&s, cache.as_deref())
        .map_err(|e| LaunchError::Usage(format!("seccomp: {e}")))?;
    Ok(Some(p))
}

/// Until the child has exec'd: console, the seccomp listener (NOTIFY rules:
/// sent with `agent`'s document), Ready, then EOF (success) or Error.
fn wait_started(
    ch: &Channel,
    o: &ExecOptions,
    agent: Option<(&crate::seccomp::Program, serde_json::Value)>,
) -> Result<Option<OwnedFd>, LaunchError> {
    let mut console = None;
    let mut ready = false;
    loop {
        match ch.recv().map_err(|e| LaunchError::Sync(SyncError::Io(e)))? {
            Some(Msg::Console(m)) => match &o.console_socket {
                Some(sock) => terminal::send_to_socket(sock, m.as_fd())?,
                None => console = Some(m),
            },
            Some(Msg::SeccompFd(fd)) => {
                let Some((p, doc)) = &agent else {
                    return Err(LaunchError::Sync(SyncError::Unexpected {
                        got: "seccomp-fd",
                        want: "ready",
                    }));
                };
                crate::seccomp::send_to_listener(p, fd.as_fd(), doc)?;
            }
            Some(Msg::Ready) => ready = true,
            Some(Msg::Error(e)) => return Err(SyncError::Child(e).into()),
            // The channel is close-on-exec: EOF after Ready means execve succeeded.
            None if ready => return Ok(console),
            None => return Err(SyncError::Died("started").into()),
            Some(_) => {
                return Err(LaunchError::Sync(SyncError::Unexpected {
                    got: "message",
                    want: "ready",
                }))
            }
        }
    }
}

/// The exec'd process between clone and execve. Never returns.
fn child(plan: &ExecPlan, ch: &Channel) -> ! {
    let _ = nix::sys::prctl::set_name(c"keel:[exec]");
    if let Err((stage, f)) = enter(plan, ch) {
        report(ch, stage, f);
    }
    if plan.fork_for_pid {
        fork_into_pid_ns(ch);
    }
    match child_setup(plan, ch) {
        Ok((exe, env)) => {
            if let Err(e) = sys::cloexec_from(3 + plan.preserve_fds) {
                report(ch, Stage::Exec, Fail::new("close_range", b"", e));
            }
            if ch.send_ready().is_err() {
                sys::exit_now(1);
            }
            sys::reset_signals();
            if let Err(e) = plan.attrs.apply_final() {
                report(
                    ch,
                    Stage::Exec,
                    Fail::new("sched_setaffinity (execCPUAffinity.final)", b"", e),
                );
            }
            if let Some(p) = plan.seccomp.as_ref().filter(|_| plan.process.no_new_privs) {
                // As late as possible: nothing of keel's runs after it but execve
                // (and, with NOTIFY rules, handing the listener to the parent,
                // which reads the channel until execve closes it).
                if let Err(f) = crate::child::load_seccomp(p, ch) {
                    report(ch, Stage::Exec, f);
                }
            }
            let argv = process::ptrs(&plan.process.args);
            let envp = process::ptrs(&env);
            let e = sys::execve(&exe, &argv, &envp);
            report(ch, Stage::Exec, Fail::new("exec", exe.as_bytes(), e))
        }
        Err((stage, f)) => report(ch, stage, f),
    }
}

fn report(ch: &Channel, stage: Stage, f: Fail) -> ! {
    ch.send_error(stage, f.op, &f.path, f.errno);
    sys::exit_now(1)
}

type Staged<T> = Result<T, (Stage, Fail)>;

fn at<T>(r: Result<T, Fail>, s: Stage) -> Staged<T> {
    r.map_err(|f| (s, f))
}

/// Join the container's namespaces (user first) and, on v1, its cgroup.
fn enter(plan: &ExecPlan, ch: &Channel) -> Staged<()> {
    use nix::sys::prctl;
    at(plan.attrs.apply_initial(), Stage::Process)?;
    at(
        prctl::set_dumpable(false).ctx("prctl(PR_SET_DUMPABLE)", b""),
        Stage::Namespaces,
    )?;
    for j in &plan.joins {
        at(
            nix::sched::setns(j.fd.as_fd(), j.flag).ctx("setns", j.name.as_bytes()),
            Stage::Namespaces,
        )?;
    }
    if plan.cgroup_sync {
        match ch.recv() {
            Ok(Some(Msg::Go)) => {}
            _ => {
                return Err((
                    Stage::Namespaces,
                    Fail::msg("waiting for the cgroup move", b""),
                ))
            }
        }
    }
    Ok(())
}

/// The intermediate of the second fork: it is in the pid namespace for its
/// children only, so the exec'd process is its child. It sends the parent
/// that child's pid and a pidfd, then exits; only then does the child go on
/// (a byte on a pipe), so `Pid` is the first message the parent gets after
/// the clone. Returns in the child.
fn fork_into_pid_ns(ch: &Channel) {
    let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => report(ch, Stage::Namespaces, Fail::new("pipe2", b"", e)),
    };
    match sys::clone3_fork(0, None) {
        Err(e) => report(
            ch,
            Stage::Namespaces,
            Fail::new("clone3 into the pid namespace", b"", e),
        ),
        Ok(None) => {
            drop(wr);
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(&rd, &mut b) {
                    Err(nix::errno::Errno::EINTR) => {}
                    Ok(1) => return,
                    // The intermediate died before the parent knew of us.
                    _ => sys::exit_now(1),
                }
            }
        }
        Ok(Some(c)) => {
            drop(rd);
            let sent = ch.send_pid(c.pid, c.pidfd.as_fd()).is_ok()
                && nix::unistd::write(&wr, &[1]) == Ok(1);
            if !sent {
                let _ = sys::pidfd_send_signal(c.pidfd.as_fd(), libc::SIGKILL);
                sys::exit_now(1);
            }
            sys::exit_now(0)
        }
    }
}

fn child_setup(plan: &ExecPlan, ch: &Channel) -> Staged<(CString, Vec<CString>)> {
    use nix::sys::prctl;
    // The init's root (also right for --no-pivot containers, which chroot).
    at(
        nix::unistd::fchdir(plan.root.as_fd()).ctx("chdir to the container's root", b""),
        Stage::PivotRoot,
    )?;
    at(
        nix::unistd::chroot(c".").ctx("chroot", b"."),
        Stage::PivotRoot,
    )?;
    at(
        nix::unistd::chdir(c"/").ctx("chdir", b"/"),
        Stage::PivotRoot,
    )?;
    at(
        nix::unistd::setsid().map(drop).ctx("setsid", b""),
        Stage::Terminal,
    )?;
    if plan.process.terminal {
        // A pty from the container's own devpts (we are chrooted into the container).
        let c = at(
            terminal::open_pty(
                nix::fcntl::AT_FDCWD,
                c"/dev/pts/ptmx",
                b"/dev/pts/ptmx",
                plan.process.console_size,
            ),
            Stage::Terminal,
        )?;
        at(terminal::become_console(&c), Stage::Terminal)?;
        at(
            ch.send_console(c.master.as_fd())
                .ctx("sending pty master", b""),
            Stage::Terminal,
        )?;
    }
    at(process::set_rlimits(&plan.process), Stage::Process)?;
    at(plan.attrs.apply_apparmor(), Stage::Process)?;
    if plan.process.no_new_privs {
        at(
            prctl::set_no_new_privs().ctx("prctl(PR_SET_NO_NEW_PRIVS)", b""),
            Stage::Identity,
        )?;
    }
    at(plan.attrs.apply(), Stage::Process)?;
    if let Some(p) = plan.seccomp.as_ref().filter(|_| !plan.process.no_new_privs) {
        // Without no_new_privs loading needs CAP_SYS_ADMIN: before the caps are dropped.
        at(crate::child::load_seccomp(p, ch), Stage::Identity)?;
    }
    if let Some(c) = &plan.caps {
        at(caps::drop_bounding(c), Stage::Identity)?;
        at(caps::keep_across_setuid(true), Stage::Identity)?;
    }
    let early_cwd = process::enter_cwd(&plan.process);
    at(
        process::switch_user(&plan.process, !plan.new_user),
        Stage::Identity,
    )?;
    if let Some(c) = &plan.caps {
        at(caps::keep_across_setuid(false), Stage::Identity)?;
        at(caps::apply(c), Stage::Identity)?;
    }
    at(
        prctl::set_dumpable(false).ctx("prctl(PR_SET_DUMPABLE)", b""),
        Stage::Identity,
    )?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        plan.process.umask as libc::mode_t,
    ));
    if early_cwd.is_err() {
        at(process::enter_cwd(&plan.process), Stage::Process)?;
    }
    let exe = at(process::find_executable(&plan.process), Stage::Exec)?.to_owned();
    let mut env = plan.process.env.clone();
    if plan.process.needs_home {
        env.push(process::home_env(plan.process.uid));
    }
    Ok((exe, env))
}

/// Load `--process FILE` (or `-` for stdin), naming the field on a type error.
pub fn load_process(path: &Path) -> Result<Process, String> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("reading stdin: {e}"))?;
        s
    } else {
        fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?
    };
    crate::spec::decode(text.as_bytes(), "scheduler.flags").map_err(|e| {
        if e.is_syntax() {
            format!("{}: {}", path.display(), e.err)
        } else {
            // The messages config.json gets, for the same fields of `process`.
            let msg = crate::spec::describe(&format!("process.{}", e.field), &e.err);
            format!("{}: {}: {msg}", path.display(), e.field)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, json: &str) -> Result<Process, String> {
        let dir =
            std::env::temp_dir().join(format!("keel-exec-unit-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, json).unwrap();
        let r = load_process(&path).map_err(|e| e.replace(&format!("{}/", dir.display()), ""));
        fs::remove_dir_all(&dir).unwrap();
        r
    }

    const BASE: &str = r#""cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}"#;

    #[test]
    fn flags_set_apparmor_label_and_append_gids() {
        let base = load(
            "base.json",
            r#"{"cwd": "/", "args": ["sh"], "apparmorProfile": "theirs",
                "user": {"uid": 0, "gid": 0, "additionalGids": [5, 6]}}"#,
        )
        .unwrap();
        let f = ProcessFlags {
            args: vec!["true".into()],
            additional_gids: vec![10, 20],
            apparmor: Some("mine".into()),
            process_label: Some("system_u:system_r:container_t:s0".into()),
            ..Default::default()
        };
        let p = process_from_flags(&base, &f).unwrap();
        assert_eq!(p.apparmor_profile().as_deref(), Some("mine"));
        assert_eq!(
            p.selinux_label().as_deref(),
            Some("system_u:system_r:container_t:s0")
        );
        assert_eq!(
            p.user().additional_gids().as_deref(),
            Some(&[5, 6, 10, 20][..])
        );
        // Without the flags (or empty, as runc) the container's own stay.
        let f = ProcessFlags {
            args: vec!["true".into()],
            apparmor: Some(String::new()),
            ..Default::default()
        };
        let p = process_from_flags(&base, &f).unwrap();
        assert_eq!(p.apparmor_profile().as_deref(), Some("theirs"));
        assert_eq!(p.selinux_label(), &None);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5, 6][..]));
    }

    #[test]
    fn process_file_takes_runtime_spec_scheduler_flags() {
        let p = load(
            "ok.json",
            &format!(
                r#"{{{BASE}, "scheduler": {{"policy": "SCHED_BATCH",
                    "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS"]}}}}"#
            ),
        )
        .unwrap();
        let s = crate::attrs::sched_attr(p.scheduler().as_ref().unwrap()).unwrap();
        assert_eq!(s.sched_flags, 0x01 | 0x10);
    }

    #[test]
    fn process_file_errors_name_the_file_and_field() {
        let bad = |name: &str, json: String| load(name, &json).unwrap_err();
        assert_eq!(
            bad(
                "f.json",
                format!(r#"{{{BASE}, "scheduler": {{"policy": "SCHED_OTHER", "flags": ["X"]}}}}"#)
            ),
            r#"f.json: scheduler.flags[0]: unknown flag "X""#
        );
        assert_eq!(
            bad(
                "g.json",
                format!(
                    r#"{{{BASE}, "scheduler": {{"policy": "SCHED_OTHER",
                        "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FOO"]}}}}"#
                )
            ),
            r#"g.json: scheduler.flags[1]: unknown flag "SCHED_FOO""#
        );
        assert_eq!(
            bad(
                "h.json",
                format!(r#"{{{BASE}, "capabilities": {{"bounding": ["CAP_FOO"]}}}}"#)
            ),
            r#"h.json: capabilities.bounding[0]: unknown capability "CAP_FOO""#
        );
        let e = bad("i.json", format!("{{{BASE}}} x"));
        assert!(
            e.starts_with("i.json: trailing characters at line 1"),
            "{e}"
        );
    }
}
