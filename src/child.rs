//! The container's init between clone and exec. It runs the [`Plan`] in
//! runc's order, reports the first failure to the parent as one message naming
//! the stage, the operation, the path and the errno, and `_exit`s. It never
//! returns and never unwinds.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::stat::{umask, Mode};

use crate::error::Stage;
use crate::mounts::Rootfs;
use crate::plan::Plan;
use crate::sync::{Channel, Msg};
use crate::{caps, devices, process, sys, terminal};

/// A failed step in the child: operation, path (bytes) and errno (0: not an errno).
#[derive(Debug)]
pub struct Fail {
    pub op: &'static str,
    pub path: Vec<u8>,
    pub errno: i32,
}

impl Fail {
    pub fn new(op: &'static str, path: &[u8], e: Errno) -> Self {
        Fail {
            op,
            path: path.to_vec(),
            errno: e as i32,
        }
    }
    pub fn msg(op: &'static str, path: &[u8]) -> Self {
        Fail {
            op,
            path: path.to_vec(),
            errno: 0,
        }
    }
    pub fn io(op: &'static str, path: &[u8], e: &std::io::Error) -> Self {
        Fail {
            op,
            path: path.to_vec(),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

pub trait Ctx<T> {
    fn ctx(self, op: &'static str, path: &[u8]) -> Result<T, Fail>;
    /// For mounts: "bind mounting <src> on <target>".
    fn ctx_mount(self, op: &'static str, src: &std::ffi::CStr, target: &[u8]) -> Result<T, Fail>;
}

impl<T> Ctx<T> for Result<T, Errno> {
    fn ctx(self, op: &'static str, path: &[u8]) -> Result<T, Fail> {
        self.map_err(|e| Fail::new(op, path, e))
    }
    fn ctx_mount(self, op: &'static str, src: &std::ffi::CStr, target: &[u8]) -> Result<T, Fail> {
        self.map_err(|e| {
            let mut p = src.to_bytes().to_vec();
            p.extend_from_slice(b" on ");
            p.extend_from_slice(target);
            Fail::new(op, &p, e)
        })
    }
}

/// Descriptors the child inherits by number (all close-on-exec).
pub struct Inherited<'a> {
    pub chan: &'a Channel,
    /// The exec.fifo, opened O_PATH by the parent.
    pub fifo: RawFd,
    /// The host's /proc, for reopening the fifo after pivot_root.
    pub host_proc: BorrowedFd<'a>,
    /// The state dir's lock: closed at once so that init never holds it.
    pub lock: RawFd,
}

/// Entry point after clone. Never returns.
pub fn run(plan: &Plan, fds: Inherited<'_>) -> ! {
    sys::close_raw(fds.lock);
    match setup(plan, &fds) {
        Ok((exe, env)) => exec(plan, &fds, exe, env),
        Err((stage, f)) => {
            fds.chan.send_error(stage, f.op, &f.path, f.errno);
            sys::exit_now(1)
        }
    }
}

type Staged<T> = Result<T, (Stage, Fail)>;

trait StageOf<T> {
    fn stage(self, s: Stage) -> Staged<T>;
}

impl<T> StageOf<T> for Result<T, Fail> {
    fn stage(self, s: Stage) -> Staged<T> {
        self.map_err(|f| (s, f))
    }
}

/// Everything up to the wait on exec.fifo. Returns the executable and the final env.
fn setup(plan: &Plan, fds: &Inherited<'_>) -> Staged<(CString, Vec<CString>)> {
    use nix::sys::prctl;
    let _ = prctl::set_name(c"keel:[init]");
    // execCPUAffinity.initial, before anything else runs here.
    plan.attrs.apply_initial().stage(Stage::Process)?;
    // Die with the parent while it still drives us; cleared before `Ready`.
    prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .ctx("prctl(PR_SET_PDEATHSIG)", b"")
        .stage(Stage::Namespaces)?;
    prctl::set_dumpable(false)
        .ctx("prctl(PR_SET_DUMPABLE)", b"")
        .stage(Stage::Namespaces)?;

    for j in &plan.ns.child_joins {
        nix::sched::setns(j.fd.as_fd(), j.flag)
            .ctx("setns", j.path.as_bytes())
            .stage(Stage::Namespaces)?;
    }
    // An unprivileged parent writes our maps, or has newuidmap write them,
    // only while /proc/<pid> is ours: a non-dumpable task's belongs to root.
    // Non-dumpable again after Go, before anything of the container runs (runc too).
    let open_proc = plan.ns.new_user && plan.unprivileged;
    if open_proc {
        prctl::set_dumpable(true)
            .ctx("prctl(PR_SET_DUMPABLE)", b"")
            .stage(Stage::Namespaces)?;
    }
    if plan.ns.new_user {
        fds.chan
            .send_userns()
            .ctx("sync", b"")
            .stage(Stage::Namespaces)?;
    }
    // With only the cgroup placement (v1) to wait for, the wait is deferred to
    // just before the device nodes: the parent's first write to cgroup.procs
    // can block for an RCU grace period (milliseconds), which the mounts overlap.
    // Bind sources the parent opens for us (user namespace or idmapped binds) come before Go.
    let needs_sources = crate::userns::needs_sources(plan);
    let defer_go =
        plan.cgroup_sync && !plan.ns.new_user && !plan.unshare_cgroupns && !needs_sources;
    let mut sources: Vec<Option<OwnedFd>> = Vec::new();
    if (plan.ns.new_user || plan.cgroup_sync || needs_sources) && !defer_go {
        // The parent writes our id maps and/or moves us into the container's cgroup.
        sources = wait_go_with_sources(plan, fds).stage(Stage::Namespaces)?;
    }
    if open_proc {
        prctl::set_dumpable(false)
            .ctx("prctl(PR_SET_DUMPABLE)", b"")
            .stage(Stage::Namespaces)?;
    }
    if plan.ns.new_user {
        // We still carry the host's ids, unmapped here: become the namespace's root
        // so that files we create (mount targets, devices) get a mapped owner.
        let root_g = nix::unistd::Gid::from_raw(0);
        let root_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(root_g, root_g, root_g)
            .ctx("setresgid to the user namespace's root", b"")
            .stage(Stage::Namespaces)?;
        nix::unistd::setresuid(root_u, root_u, root_u)
            .ctx("setresuid to the user namespace's root", b"")
            .stage(Stage::Namespaces)?;
    }
    if plan.unshare_cgroupns {
        // Now that we are in the container's cgroup, it becomes our namespace's root.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx("unshare cgroup namespace", b"")
            .stage(Stage::Namespaces)?;
    }
    if let Some(v) = plan.process.oom_score_adj {
        process::set_oom_score_adj(v).stage(Stage::Process)?;
    }
    if let Some(name) = &plan.keyring {
        // ENOSYS/EACCES: kernels or sandboxes without keyrings; the container still works.
        match sys::join_session_keyring(name, plan.ns.new_user) {
            Ok(()) | Err(Errno::ENOSYS) | Err(Errno::EACCES) => {}
            Err(e) => {
                return Err((
                    Stage::Process,
                    Fail::new("joining session keyring", name.as_bytes(), e),
                ))
            }
        }
    }

    // Before sysctls, as runc: a kernel.domainname sysctl wins over `domainname`.
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(std::ffi::OsStr::from_bytes(h))
            .ctx("sethostname", h)
            .stage(Stage::Process)?;
    }
    if let Some(d) = &plan.domainname {
        sys::setdomainname(d)
            .ctx("setdomainname", d)
            .stage(Stage::Process)?;
    }
    // The rootfs, all relative to one fd, then the switch.
    let root = Rootfs::prepare(&plan.rootfs, plan.root_propagation).stage(Stage::Rootfs)?;
    for (i, m) in plan.mounts.iter().enumerate() {
        let source = sources.get_mut(i).and_then(Option::take);
        root.mount_one_from(m, source.as_ref().map(|f| f.as_fd()))
            .stage(Stage::Rootfs)?;
    }
    if defer_go {
        // In the container's cgroup before mknod (the devices controller) and
        // before anything of the container runs.
        wait_go(fds).stage(Stage::Namespaces)?;
    }
    if plan.setup_dev {
        let old = umask(Mode::empty());
        devices::create(&root, &plan.devices, plan.ns.new_user).stage(Stage::Devices)?;
        devices::symlinks(&root, plan.kcore).stage(Stage::Devices)?;
        umask(old);
    }
    let console = if plan.process.terminal {
        Some(terminal::open_in_container(&root, plan.process.console_size).stage(Stage::Terminal)?)
    } else {
        None
    };
    for (rel, val) in &plan.sysctl {
        write_sysctl(&root, rel, val).stage(Stage::Rootfs)?;
    }
    // Like runc, create a missing cwd (0755, as root) while the rootfs is still writable.
    root.ensure(
        &crate::mounts::rel_cstring(crate::namespaces::cpath(&plan.process.cwd)),
        true,
    )
    .stage(Stage::Rootfs)?;
    if plan.root_readonly {
        root.make_root_readonly().stage(Stage::Rootfs)?;
    }
    for p in &plan.readonly {
        root.make_readonly(p).stage(Stage::Rootfs)?;
    }
    if !plan.masked.is_empty() {
        let null = root.devnull().stage(Stage::Rootfs)?;
        for p in &plan.masked {
            root.mask(p, null.as_fd()).stage(Stage::Rootfs)?;
        }
    }
    // Hooks: the parent runs prestart and createRuntime, then we run createContainer.
    crate::hooks::init_create(plan, fds.chan).stage(Stage::Hooks)?;
    root.switch(plan.no_pivot).stage(Stage::PivotRoot)?;
    drop(root);

    process::set_rlimits(&plan.process).stage(Stage::Process)?;

    nix::unistd::setsid()
        .ctx("setsid", b"")
        .stage(Stage::Terminal)?;
    if let Some(c) = console {
        terminal::become_console(&c).stage(Stage::Terminal)?;
        fds.chan
            .send_console(c.master.as_fd())
            .ctx("sending pty master", b"")
            .stage(Stage::Terminal)?;
    }

    // AppArmor takes effect at execve; as runc, set while still root and before NNP.
    plan.attrs.apply_apparmor().stage(Stage::Process)?;
    if plan.process.no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .ctx("prctl(PR_SET_NO_NEW_PRIVS)", b"")
            .stage(Stage::Identity)?;
    }
    // Scheduler, I/O priority, personality, memory policy: runc's order, with caps still held.
    plan.attrs.apply().stage(Stage::Process)?;
    let setgroups_ok = !plan.ns.new_user
        || std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "allow")
            .unwrap_or(true);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the switch
    // below may drop: load it here, as runc does. Every later step must be allowed.
    if let Some(p) = plan.seccomp.as_ref().filter(|_| !plan.process.no_new_privs) {
        load_seccomp(p, fds.chan).stage(Stage::Identity)?;
    }
    if let Some(c) = &plan.caps {
        caps::drop_bounding(c).stage(Stage::Identity)?;
        caps::keep_across_setuid(true).stage(Stage::Identity)?;
    }
    // chdir before dropping privileges (the user may not be able to reach cwd's parents),
    // and again after, as runc does, so that a cwd only the user can enter also works.
    let early_cwd = process::enter_cwd(&plan.process);
    process::switch_user(&plan.process, setgroups_ok).stage(Stage::Identity)?;
    if let Some(c) = &plan.caps {
        caps::keep_across_setuid(false).stage(Stage::Identity)?;
        caps::apply(c).stage(Stage::Identity)?;
    }
    // A credential change resets dumpable to fs.suid_dumpable: set it again.
    nix::sys::prctl::set_dumpable(false)
        .ctx("prctl(PR_SET_DUMPABLE)", b"")
        .stage(Stage::Identity)?;
    umask(Mode::from_bits_truncate(plan.process.umask as libc::mode_t));
    if early_cwd.is_err() {
        process::enter_cwd(&plan.process).stage(Stage::Process)?;
    }
    let exe = process::find_executable(&plan.process)
        .stage(Stage::Exec)?
        .to_owned();
    let mut env = plan.process.env.clone();
    if plan.process.needs_home {
        env.push(process::home_env(plan.process.uid));
    }
    Ok((exe, env))
}

/// The parent's `Go`: id maps written and/or placed in the container's cgroup.
fn wait_go(fds: &Inherited<'_>) -> Result<(), Fail> {
    match fds.chan.recv() {
        Ok(Some(Msg::Go)) => Ok(()),
        _ => Err(Fail::msg("waiting for the parent to place us", b"")),
    }
}

/// [`wait_go`], first taking the bind sources the parent opened: `MountFd(i, fd)`
/// messages, returned by mount index.
fn wait_go_with_sources(plan: &Plan, fds: &Inherited<'_>) -> Result<Vec<Option<OwnedFd>>, Fail> {
    let mut sources: Vec<Option<OwnedFd>> = Vec::new();
    loop {
        match fds.chan.recv() {
            Ok(Some(Msg::Go)) => return Ok(sources),
            Ok(Some(Msg::MountFd(i, fd))) if (i as usize) < plan.mounts.len() => {
                sources.resize_with(plan.mounts.len(), || None);
                sources[i as usize] = Some(fd);
            }
            _ => return Err(Fail::msg("waiting for the parent to place us", b"")),
        }
    }
}

/// Load the filter; with NOTIFY rules, hand the listener to the parent (which
/// sends it to the agent) and close our copy. `exec`'s child does the same.
pub fn load_seccomp(p: &crate::seccomp::Program, chan: &Channel) -> Result<(), Fail> {
    let listener = crate::seccomp::install(p).ctx("loading the seccomp filter", b"")?;
    if let Some(l) = listener {
        chan.send_seccomp_fd(l.as_fd())
            .ctx("sending the seccomp listener", b"")?;
    }
    Ok(())
}

fn write_sysctl(root: &Rootfs<'_>, rel: &CString, val: &[u8]) -> Result<(), Fail> {
    let fd: OwnedFd = sys::openat2(
        root.fd.as_fd(),
        rel,
        libc::O_WRONLY | libc::O_TRUNC,
        0,
        sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx("opening sysctl", &root.show(rel))?;
    nix::unistd::write(&fd, val).ctx("writing sysctl", &root.show(rel))?;
    Ok(())
}

/// Tell the parent we are ready, wait for `start` on exec.fifo, and exec.
fn exec(plan: &Plan, fds: &Inherited<'_>, exe: CString, env: Vec<CString>) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(None);
    // With no_new_privs the filter goes in as late as possible: just before execve,
    // after the fifo. A NOTIFY listener must reach the parent while it still reads
    // the channel, so such a filter goes in just before Ready instead.
    let mut seccomp = plan.seccomp.as_ref().filter(|_| plan.process.no_new_privs);
    if let Some(p) = seccomp.filter(|p| p.notify) {
        if let Err(f) = load_seccomp(p, fds.chan) {
            fds.chan.send_error(Stage::Exec, f.op, &f.path, f.errno);
            sys::exit_now(1);
        }
        seccomp = None;
    }
    if fds.chan.send_ready().is_err() {
        sys::exit_now(1);
    }
    // Blocks until `keel start` opens the fifo for reading.
    let path = CString::new(format!("self/fd/{}", fds.fifo)).unwrap_or_default();
    let fifo = match sys::openat2(fds.host_proc, &path, libc::O_WRONLY, 0, 0) {
        Ok(f) => f,
        Err(e) => die("opening exec.fifo", b"", e),
    };
    if let Err(e) = nix::unistd::write(&fifo, b"0") {
        die("writing exec.fifo", b"", e);
    }
    // The fifo stays open (close-on-exec) until execve: `start` waits for its EOF
    // before the poststart hooks, and reads a startContainer failure from it.
    crate::hooks::init_start(plan, &fifo);
    if let Err(e) = sys::cloexec_from(3 + plan.preserve_fds) {
        die("close_range", b"", e);
    }
    sys::reset_signals();
    let argv = process::ptrs(&plan.process.args);
    let envp = process::ptrs(&env);
    // execCPUAffinity.final, before a filter that might refuse sched_setaffinity.
    if let Err(e) = plan.attrs.apply_final() {
        die("sched_setaffinity (execCPUAffinity.final)", b"", e);
    }
    if let Some(p) = seccomp {
        if let Err(e) = crate::seccomp::install(p) {
            die("loading the seccomp filter", b"", e);
        }
    }
    let e = sys::execve(&exe, &argv, &envp);
    die("exec", exe.as_bytes(), e)
}

/// After `Ready` nobody reads the channel any more: say it on stderr, like runc's init.
fn die(op: &str, path: &[u8], e: Errno) -> ! {
    let mut msg = b"keel: ".to_vec();
    msg.extend_from_slice(op.as_bytes());
    if !path.is_empty() {
        msg.push(b' ');
        msg.extend_from_slice(path);
    }
    msg.extend_from_slice(format!(": {e}\n").as_bytes());
    let _ = nix::unistd::write(std::io::stderr(), &msg);
    sys::exit_now(127)
}
