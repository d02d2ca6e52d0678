//! OCI hooks (config.json `hooks`): the six kinds, who runs them, when, in
//! which namespaces, with which state on stdin, and what a failure does.
//!
//! | hook | run by | namespaces | when | `status` on stdin | on failure |
//! |---|---|---|---|---|---|
//! | `prestart` | the parent (`create`, `run`) | keel's | on the init's `Hooks` message: mounts, devices, masking done, before pivot_root | creating | create fails: the init is killed, cgroup and state dir removed, poststop hooks run |
//! | `createRuntime` | the parent | keel's | right after prestart | creating | as prestart |
//! | `createContainer` | the init | the container's (before pivot_root: the path is a host path) | after the parent's `Go` | creating | as prestart (the init reports it as a child error) |
//! | `startContainer` | the init | the container's, after pivot_root, as the container's user | after `start` opened exec.fifo, before execve | created | the init prints it, tells `start` through exec.fifo and exits 1: `start` fails, the container is stopped |
//! | `poststart` | `start` (and `run`) | keel's | once the init has exec'd (exec.fifo reached EOF), with the state dir unlocked | running | a warning in the log; start succeeds |
//! | `poststop` | `delete` (and `run` after the exit) | keel's | after the cgroup and the state dir are gone | stopped | a warning in the log; delete succeeds |
//!
//! Each hook is forked and exec'd with `path`, `args` as argv (argv = [path]
//! when `args` is empty), exactly `env`, the OCI state document on stdin (a
//! pipe that already holds all of it, then EOF) and stdout/stderr captured
//! into the error. `timeout` is waited for on the hook's pidfd with poll, then
//! the hook gets SIGKILL. Hooks of one kind run in order; the first failure
//! stops the rest, except for poststart and poststop where every hook runs.

use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks};

use crate::child::Fail;
use crate::error::{At, SysError};
use crate::plan::Plan;
use crate::state::{self, State, Status};
use crate::sync::Channel;
use crate::{logging, process, sys};

/// The six kinds of hook, in lifecycle order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    /// The name as config.json spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// This kind's hooks in `h`.
    pub fn of(self, h: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => h.prestart(),
            Kind::CreateRuntime => h.create_runtime(),
            Kind::CreateContainer => h.create_container(),
            Kind::StartContainer => h.start_container(),
            Kind::Poststart => h.poststart(),
            Kind::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

fn list(hooks: Option<&Hooks>, kind: Kind) -> &[Hook] {
    hooks.map(|h| kind.of(h)).unwrap_or_default()
}

/// A hook that failed: `createRuntime hook #0 (/usr/bin/x) failed: exit status 1: <stderr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookError {
    pub kind: Kind,
    /// Position in its list, from 0.
    pub index: usize,
    pub path: String,
    /// "failed: exit status N: <stderr>", "timed out after Ns", ...
    pub reason: String,
}

impl HookError {
    /// Everything after the kind: `hook #0 (/usr/bin/x) failed: ...`.
    pub fn detail(&self) -> String {
        format!("hook #{} ({}) {}", self.index, self.path, self.reason)
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.detail())
    }
}

impl std::error::Error for HookError {}

/// Check config.json's hooks (absolute paths, positive timeouts, no NUL bytes)
/// and keep them for the plan; `None` when there is no hook at all.
pub fn validate(hooks: Option<&Hooks>) -> Result<Option<Hooks>, String> {
    let Some(h) = hooks else { return Ok(None) };
    for kind in Kind::ALL {
        for (i, hook) in kind.of(h).iter().enumerate() {
            let field = format!("hooks.{}[{i}]", kind.name());
            if !hook.path().is_absolute() {
                return Err(format!(
                    "{field}.path: {:?} is not an absolute path",
                    hook.path()
                ));
            }
            if hook.path().as_os_str().as_bytes().contains(&0) {
                return Err(format!("{field}.path: contains a NUL byte"));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(format!("{field}.timeout: must be greater than zero"));
            }
            for (name, v) in [("args", hook.args()), ("env", hook.env())] {
                if v.iter().flatten().any(|s| s.contains('\0')) {
                    return Err(format!("{field}.{name}: contains a NUL byte"));
                }
            }
        }
    }
    let any = Kind::ALL.iter().any(|k| !k.of(h).is_empty());
    Ok(any.then(|| h.clone()))
}

/// Whether the init must stop before pivot_root for hooks (and to learn the
/// state document): any prestart, createRuntime, createContainer or startContainer hook.
pub fn needs_sync(hooks: Option<&Hooks>) -> bool {
    [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
    ]
    .iter()
    .any(|k| !list(hooks, *k).is_empty())
}

/// What state.json keeps for later commands: the poststart and poststop hooks only.
pub fn kept(hooks: Option<&Hooks>) -> Option<Hooks> {
    let (start, stop) = (list(hooks, Kind::Poststart), list(hooks, Kind::Poststop));
    if start.is_empty() && stop.is_empty() {
        return None;
    }
    let mut h = Hooks::default();
    if !start.is_empty() {
        h.set_poststart(Some(start.to_vec()));
    }
    if !stop.is_empty() {
        h.set_poststop(Some(stop.to_vec()));
    }
    Some(h)
}

/// The OCI state document (what `keel state` prints) with `status`, as hooks read it.
pub fn state_doc(st: &State, status: Status) -> Vec<u8> {
    serde_json::to_vec(&state::oci_state(st, status)).expect("state serialises")
}

/// Run `kind`'s hooks in order; the first failure stops the rest.
pub fn run(kind: Kind, hooks: Option<&Hooks>, state: &[u8]) -> Result<(), HookError> {
    for (index, hook) in list(hooks, kind).iter().enumerate() {
        run_one(hook, state).map_err(|reason| HookError {
            kind,
            index,
            path: hook.path().display().to_string(),
            reason,
        })?;
    }
    Ok(())
}

/// Run every hook of `kind`; a failure is a warning in the log (poststart, poststop).
pub fn run_warn(kind: Kind, hooks: Option<&Hooks>, state: &[u8]) {
    for (index, hook) in list(hooks, kind).iter().enumerate() {
        if let Err(reason) = run_one(hook, state) {
            let e = HookError {
                kind,
                index,
                path: hook.path().display().to_string(),
                reason,
            };
            logging::warn(&e.to_string());
        }
    }
}

/// `start` and `run`: the poststart hooks of a container whose process has been exec'd.
pub fn poststart(st: &State) {
    if !list(st.hooks.as_ref(), Kind::Poststart).is_empty() {
        run_warn(
            Kind::Poststart,
            st.hooks.as_ref(),
            &state_doc(st, Status::Running),
        );
    }
}

/// `delete`, `run` and a create failed by a hook: the poststop hooks, after the container is gone.
pub fn poststop(st: &State) {
    if !list(st.hooks.as_ref(), Kind::Poststop).is_empty() {
        run_warn(
            Kind::Poststop,
            st.hooks.as_ref(),
            &state_doc(st, Status::Stopped),
        );
    }
}

// ---------------------------------------------------------------------------
// The container's init.

/// The state document the parent sent with `Go`, kept by the init for startContainer.
static INIT_STATE: OnceLock<Vec<u8>> = OnceLock::new();

/// In the init, with the rootfs ready and before pivot_root: send `Hooks`, wait
/// for the parent's prestart and createRuntime hooks (its `Go` carries the
/// state document), then run the createContainer hooks here.
pub fn init_create(plan: &Plan, chan: &Channel) -> Result<(), Fail> {
    if !needs_sync(plan.hooks.as_ref()) {
        return Ok(());
    }
    chan.send_hooks()
        .map_err(|e| Fail::new("sending hooks message to the parent", b"", e))?;
    let doc = chan
        .recv_go_state()
        .map_err(|e| Fail::new("waiting for the parent's hooks", b"", e))?;
    run(Kind::CreateContainer, plan.hooks.as_ref(), &doc).map_err(|e| Fail {
        op: e.kind.name(),
        path: e.detail().into_bytes(),
        errno: 0,
    })?;
    let _ = INIT_STATE.set(doc);
    Ok(())
}

/// In the init, after `start` opened exec.fifo and before execve: the
/// startContainer hooks. A failure is printed on the container's stderr and
/// written to exec.fifo (whose reader, `start`, reports it), and the init exits 1.
pub fn init_start(plan: &Plan, fifo: &OwnedFd) {
    if list(plan.hooks.as_ref(), Kind::StartContainer).is_empty() {
        return;
    }
    let mut doc: serde_json::Value = INIT_STATE
        .get()
        .and_then(|d| serde_json::from_slice(d).ok())
        .unwrap_or_default();
    if let Some(m) = doc.as_object_mut() {
        m.insert("status".into(), Status::Created.as_str().into());
    }
    let doc = serde_json::to_vec(&doc).unwrap_or_default();
    if let Err(e) = run(Kind::StartContainer, plan.hooks.as_ref(), &doc) {
        let msg = e.to_string();
        let _ = write_all(
            std::io::stderr().as_fd(),
            format!("keel: {msg}\n").as_bytes(),
        );
        let _ = write_all(fifo.as_fd(), msg.as_bytes());
        sys::exit_now(1);
    }
}

/// `start`, after reading the init's byte from exec.fifo: wait until the init
/// closes its end (close-on-exec: it has exec'd, or died). Returns what the
/// init wrote after the byte: a startContainer hook failure, or nothing.
pub fn wait_exec(fifo: &OwnedFd) -> Result<Option<String>, Errno> {
    let mut msg = Vec::new();
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fifo, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if msg.len() < MAX_CAPTURE {
                    msg.extend_from_slice(&buf[..n]);
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((!msg.is_empty()).then(|| String::from_utf8_lossy(&msg).into_owned()))
}

// ---------------------------------------------------------------------------
// Keel's own namespaces for hooks forked after the clone.

/// keel's pid/time namespaces for children, saved before the parent enters the
/// container's (`namespaces::enter_for_children`) and restored after the
/// clone, so that hooks forked later by this process run in keel's.
pub struct RuntimeNs(Vec<(OwnedFd, CloneFlags)>);

impl RuntimeNs {
    pub fn save(plan: &Plan) -> Result<RuntimeNs, SysError> {
        let h = plan.hooks.as_ref();
        let forks_hooks = [
            Kind::Prestart,
            Kind::CreateRuntime,
            Kind::Poststart,
            Kind::Poststop,
        ]
        .iter()
        .any(|k| !list(h, *k).is_empty());
        let mut saved = Vec::new();
        if !forks_hooks {
            return Ok(RuntimeNs(saved));
        }
        let time_flag = CloneFlags::from_bits_retain(sys::CLONE_NEWTIME);
        let joins = |f: CloneFlags| plan.ns.parent_joins.iter().any(|j| j.flag == f);
        let pid = joins(CloneFlags::CLONE_NEWPID);
        let time = joins(time_flag) || plan.ns.new_time.is_some();
        for (want, path, flag) in [
            (
                pid,
                "/proc/self/ns/pid_for_children",
                CloneFlags::CLONE_NEWPID,
            ),
            (time, "/proc/self/ns/time_for_children", time_flag),
        ] {
            if want {
                let f = File::open(path).at("opening", path)?;
                saved.push((OwnedFd::from(f), flag));
            }
        }
        Ok(RuntimeNs(saved))
    }

    pub fn restore(self) -> Result<(), SysError> {
        for (fd, flag) in &self.0 {
            setns(fd.as_fd(), *flag).op("returning to keel's namespace for hooks")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running one hook.

/// Bytes of stdout and stderr kept for the error message.
const MAX_CAPTURE: usize = 4096;

/// argv, envp and the path as C strings, made before the fork.
struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    timeout: Option<u64>,
}

fn prepare(hook: &Hook) -> Result<Prepared, String> {
    let c = |b: &[u8], what: &str| {
        CString::new(b).map_err(|_| format!("failed: {what} contains a NUL byte"))
    };
    let path = c(hook.path().as_os_str().as_bytes(), "path")?;
    let argv = match hook.args() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|s| c(s.as_bytes(), "args"))
            .collect::<Result<_, _>>()?,
        _ => vec![path.clone()],
    };
    let envp = hook
        .env()
        .iter()
        .flatten()
        .map(|s| c(s.as_bytes(), "env"))
        .collect::<Result<_, _>>()?;
    let timeout = hook.timeout().filter(|&t| t > 0).map(|t| t as u64);
    Ok(Prepared {
        path,
        argv,
        envp,
        timeout,
    })
}

/// Fork, exec and wait for one hook. Err is the reason ("failed: ...", "timed out after Ns").
fn run_one(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let cmd = prepare(hook)?;
    let sys_err = |op: &str, e: Errno| format!("failed: {op}: {e}");
    let stdin = state_pipe(state).map_err(|e| sys_err("passing the state on stdin", e))?;
    let (out_r, out_w) = pipe().map_err(|e| sys_err("pipe", e))?;
    let (err_r, err_w) = pipe().map_err(|e| sys_err("pipe", e))?;
    let (exec_r, exec_w) = pipe().map_err(|e| sys_err("pipe", e))?;
    for r in [&out_r, &err_r, &exec_r] {
        fcntl(r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| sys_err("fcntl", e))?;
    }
    let argv = process::ptrs(&cmd.argv);
    let envp = process::ptrs(&cmd.envp);
    let started = Instant::now();
    let child = match sys::clone3_fork(0, None) {
        Err(e) => return Err(sys_err("fork", e)),
        Ok(None) => exec_hook(&cmd.path, &argv, &envp, [&stdin, &out_w, &err_w], &exec_w),
        Ok(Some(c)) => c,
    };
    drop((stdin, out_w, err_w, exec_w));

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let timed_out = loop {
        let wait = match cmd.timeout {
            None => PollTimeout::NONE,
            Some(secs) => {
                let left = Duration::from_secs(secs).saturating_sub(started.elapsed());
                if left.is_zero() {
                    break true;
                }
                // Round up: waking a little early would only spin.
                PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(child.pidfd.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(out_r.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(err_r.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, wait) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
                let _ = waitpid(Pid::from_raw(child.pid), None);
                return Err(sys_err("poll", e));
            }
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 1;
        if out_open {
            if ready[i] {
                out_open = pump(&out_r, &mut out);
            }
            i += 1;
        }
        if err_open && ready[i] {
            err_open = pump(&err_r, &mut err);
        }
        if ready[0] {
            break false;
        }
    };
    if timed_out {
        let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
    }
    let status = loop {
        match waitpid(Pid::from_raw(child.pid), None) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    if timed_out {
        return Err(format!(
            "timed out after {}s",
            cmd.timeout.unwrap_or_default()
        ));
    }
    // What the hook wrote just before it exited (not waiting for EOF: a
    // daemon it left behind may keep the pipes open).
    if out_open {
        pump(&out_r, &mut out);
    }
    if err_open {
        pump(&err_r, &mut err);
    }
    let mut errno = [0u8; 4];
    if nix::unistd::read(&exec_r, &mut errno) == Ok(4) {
        let e = Errno::from_raw(i32::from_le_bytes(errno));
        return Err(format!("failed: exec: {e}"));
    }
    let why = match status {
        Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
        Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by signal {} ({sig})", sig as i32),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("wait: {e}"),
    };
    let mut msg = format!("failed: {why}");
    let show = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    if !show(&err).is_empty() {
        msg.push_str(&format!(": {}", show(&err)));
    }
    if !show(&out).is_empty() {
        msg.push_str(&format!(" (stdout: {})", show(&out)));
    }
    Err(msg)
}

/// The forked hook: stdio in place, every other fd close-on-exec, default
/// signals, execve. Only async-signal-safe calls: nothing here allocates.
fn exec_hook(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    stdio: [&OwnedFd; 3],
    exec_w: &OwnedFd,
) -> ! {
    let setup = || -> Result<(), Errno> {
        // Every pipe fd is >= 3 (see `high`), so none is overwritten here.
        for (target, fd) in stdio.iter().enumerate() {
            sys::dup_onto(fd.as_raw_fd(), target as RawFd)?;
        }
        sys::cloexec_from(3)
    };
    let e = match setup() {
        Err(e) => e,
        Ok(()) => {
            sys::reset_signals();
            sys::execve(path, argv, envp)
        }
    };
    let _ = nix::unistd::write(exec_w, &(e as i32).to_le_bytes());
    sys::exit_now(127)
}

/// Read what is there (at most a few chunks); false at EOF. Keeps the first MAX_CAPTURE bytes.
fn pump(fd: &OwnedFd, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                let keep = n.min(MAX_CAPTURE.saturating_sub(into.len()));
                into.extend_from_slice(&buf[..keep]);
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
    true
}

/// A close-on-exec pipe whose both ends are >= 3.
fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((high(r)?, high(w)?))
}

/// Move an fd that landed on 0, 1 or 2 (keel started with them closed) above them.
fn high(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // F_DUPFD_CLOEXEC with a minimum of 3.
    fd.try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE)))
}

/// The read end of a pipe that already holds the whole document, writer closed:
/// nothing to feed while the hook runs, and no SIGPIPE if the hook never reads.
fn state_pipe(doc: &[u8]) -> Result<OwnedFd, Errno> {
    let (r, w) = pipe()?;
    let size = fcntl(&w, FcntlArg::F_GETPIPE_SZ)? as usize;
    if doc.len() > size {
        let want = libc::c_int::try_from(doc.len()).map_err(|_| Errno::E2BIG)?;
        fcntl(&w, FcntlArg::F_SETPIPE_SZ(want))?;
    }
    write_all(w.as_fd(), doc)?;
    Ok(r)
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    fn hooks(json: serde_json::Value) -> Hooks {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn argv_env_and_stdin_are_exact() {
        let dir = std::env::temp_dir().join(format!("keel-unit-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = r#"{ tr '\0' ' ' < /proc/$$/cmdline; echo; echo "$0|$A"; env; cat; } > "$1""#;
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["my-argv0", "-c", script, "zero", out],
            "env": ["A=b c"]
        }));
        run_one(&h, b"{\"id\":\"x\"}").unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert!(lines[0].starts_with("my-argv0 -c "), "{got}");
        assert_eq!(lines[1], "zero|b c");
        // sh may export PWD and the like of its own; A is the only variable we passed.
        assert!(lines.contains(&"A=b c"), "{got}");
        assert!(!lines.iter().any(|l| l.starts_with("HOME=")), "{got}");
        assert!(got.ends_with("{\"id\":\"x\"}"), "{got}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_names_kind_index_path_status_and_stderr() {
        let h = hooks(serde_json::json!({"createRuntime": [
            {"path": "/bin/true"},
            {"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; echo out; exit 3"]}
        ]}));
        let e = run(Kind::CreateRuntime, Some(&h), b"{}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "createRuntime hook #1 (/bin/sh) failed: exit status 3: oops (stdout: out)"
        );
    }

    #[test]
    fn exec_failure_and_timeout() {
        let e = run_one(
            &hook(serde_json::json!({"path": "/nonexistent/hook"})),
            b"{}",
        )
        .unwrap_err();
        assert!(e.starts_with("failed: exec: ENOENT"), "{e}");
        let t0 = Instant::now();
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30"], "timeout": 1}),
        );
        assert_eq!(run_one(&h, b"{}").unwrap_err(), "timed out after 1s");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn large_state_documents_fit_on_stdin() {
        let doc = vec![b'x'; 300_000];
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "test $(wc -c) -eq 300000"]}),
        );
        run_one(&h, &doc).unwrap();
        // A hook that never reads its stdin still succeeds.
        run_one(&hook(serde_json::json!({"path": "/bin/true"})), &doc).unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |j| validate(Some(&hooks(j))).unwrap_err();
        assert_eq!(
            bad(serde_json::json!({"poststop": [{"path": "rel"}]})),
            "hooks.poststop[0].path: \"rel\" is not an absolute path"
        );
        assert_eq!(
            bad(serde_json::json!({"prestart": [{"path": "/x", "timeout": 0}]})),
            "hooks.prestart[0].timeout: must be greater than zero"
        );
        assert_eq!(validate(Some(&hooks(serde_json::json!({})))).unwrap(), None);
    }

    #[test]
    fn state_keeps_only_poststart_and_poststop() {
        let h = hooks(serde_json::json!({
            "createRuntime": [{"path": "/a"}], "poststop": [{"path": "/b"}]
        }));
        let k = kept(Some(&h)).unwrap();
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            serde_json::json!({"poststop": [{"path": "/b"}]})
        );
        assert!(needs_sync(Some(&h)));
        assert!(!needs_sync(Some(&k)));
        assert!(kept(Some(&hooks(
            serde_json::json!({"prestart": [{"path": "/a"}]})
        )))
        .is_none());
    }

    #[test]
    fn go_carries_the_state_document() {
        let (p, c) = crate::sync::pair().unwrap();
        let doc = vec![b'y'; 5000];
        c.send_hooks().unwrap();
        assert!(matches!(p.recv(), Ok(Some(crate::sync::Msg::Hooks))));
        p.send_go_state(&doc).unwrap();
        assert_eq!(c.recv_go_state().unwrap(), doc);
    }
}
