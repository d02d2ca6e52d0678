//! cgroups with real containers, checked from the host side: the init is in
//! its cgroup, `linux.resources` lands in the cgroup files, the kernel enforces
//! the limits (OOM kill, pids, devices), and the cgroup commands (pause,
//! resume, update, ps, kill --all, delete --force, events) act on the files.
//!
//! Mode-agnostic: keel::cgroups::detect() says whether the host is cgroup v1
//! (legacy, hybrid) or v2 (unified), and every assertion reads the v1 or the
//! v2 file accordingly. hack/test-v2.sh runs this binary in a cgroup-v2-only
//! guest, so every test keeps its number of containers small.
//!
//! Each container gets an explicit, unique `linux.cgroupsPath` (`/<id>`), and
//! its directories come from `Cgroup::plan` with that path: the same
//! computation keel makes.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{text, Bundle};
use keel::cgroups::{Cgroup, Mode};
use serde_json::{json, Value};

/// Deadline for anything a test waits for: only bounds failures.
const DEADLINE: Duration = Duration::from_secs(60);

const MIB: i64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers: a bundle with its own cgroup.

/// A bundle whose container has the cgroup `/<id>` on every hierarchy.
/// Fields drop in order: the bundle (keel delete --force) first, then the
/// guard that removes whatever keel left of the cgroup.
struct Ctr {
    b: Bundle,
    cg: Cgroup,
    /// The container's cgroup, then (nested paths) the parent keel made.
    _leftovers: Vec<Leftovers>,
}

impl Ctr {
    fn new(name: &str) -> Ctr {
        Ctr::at(name, |id| format!("/{id}"))
    }

    /// A container whose `linux.cgroupsPath` is `path(id)`; a nested path's
    /// first component is a parent keel makes, and the guard removes it too.
    fn at(name: &str, path: impl Fn(&str) -> String) -> Ctr {
        let mut b = Bundle::new(name);
        let path = path(&b.id);
        b.set("/linux/cgroupsPath", json!(path));
        let plan =
            |p: &str| Cgroup::plan(Some(p), &b.id).unwrap_or_else(|e| panic!("plan {p}: {e}"));
        let cg = plan(&path);
        let mut leftovers = vec![Leftovers(cg.clone())];
        let p = Path::new(&path);
        let top: PathBuf = p
            .components()
            .take(1 + usize::from(p.is_absolute()))
            .collect();
        if top != p {
            leftovers.push(Leftovers(plan(top.to_str().expect("UTF-8 path"))));
        }
        Ctr {
            _leftovers: leftovers,
            cg,
            b,
        }
    }

    fn unified(&self) -> bool {
        self.cg.mode == Mode::Unified
    }

    /// The directory holding a controller's files: its v1 hierarchy, or the
    /// unified directory on v2.
    fn dir(&self, ctrl: &str) -> PathBuf {
        match self.cg.mode {
            Mode::Unified => self
                .cg
                .unified
                .clone()
                .expect("unified mode has a unified dir"),
            _ => self
                .cg
                .v1_dir(ctrl)
                .unwrap_or_else(|| panic!("the host has no v1 {ctrl} hierarchy"))
                .to_path_buf(),
        }
    }

    /// `v1` in the controller's v1 directory, or `v2` in the unified one.
    fn file(&self, ctrl: &str, v1: &str, v2: &str) -> PathBuf {
        self.dir(ctrl).join(if self.unified() { v2 } else { v1 })
    }

    /// Trimmed content of [`Ctr::file`].
    fn read(&self, ctrl: &str, v1: &str, v2: &str) -> String {
        read_trim(&self.file(ctrl, v1, v2))
    }

    /// Pids in the container's cgroup.procs (pids hierarchy on v1).
    fn procs(&self) -> Vec<i32> {
        let p = self.dir("pids").join("cgroup.procs");
        let mut v: Vec<i32> = fs::read_to_string(&p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    fn bundle_dir(&self) -> String {
        self.b.dir.to_str().expect("UTF-8 bundle dir").to_owned()
    }

    /// keel's state directory of this container.
    fn state_dir(&self) -> PathBuf {
        self.b.root.join(&self.b.id)
    }

    /// `keel ARGS` must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.b.keel(args);
        assert!(
            out.status.success(),
            "keel {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `keel ps --format json` as pids.
    fn ps_json(&self) -> Vec<i32> {
        let out = self.ok(&["ps", "--format", "json", &self.b.id]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("ps json {out:?}: {e}"))
    }

    /// Kill and delete the container: nothing of it is left, nor the parent
    /// cgroup its create made.
    fn kill_delete_and_check_parent(&mut self, parent: &str) {
        self.b.keel(&["kill", &self.b.id, "KILL"]);
        self.b.wait_for_status("stopped");
        self.ok(&["delete", &self.b.id]);
        self.assert_nothing_left();
        for d in dirs_of(parent) {
            assert!(!d.exists(), "parent {} left behind", d.display());
        }
    }

    /// No cgroup directory and no state directory is left.
    fn assert_nothing_left(&self) {
        assert!(
            !self.state_dir().exists(),
            "state dir {} left behind",
            self.state_dir().display()
        );
        for d in self.cg.dirs() {
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
    }
}

/// Removes the container's cgroup directories if keel left any (killing
/// what is still in them): tests must not leak cgroups even when they fail.
struct Leftovers(Cgroup);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self.0.dirs().map(Path::to_path_buf).collect();
        if dirs.iter().all(|d| !d.exists()) {
            return;
        }
        eprintln!(
            "keel-test: removing leftover cgroup {}",
            self.0.rel.display()
        );
        let _ = self.0.freeze(false);
        for d in &dirs {
            for pid in fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .filter(|&p| p > 1)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for d in &dirs {
            let end = Instant::now() + Duration::from_secs(10);
            while d.exists() && rmdir_tree(d).is_err() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// `key N` from a flat-keyed cgroup file (memory.events, oom_control, pids.events).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// cgroup v2's cpu.weight for v1 cpu.shares (runc's and crun's formula).
fn weight_of_shares(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262_142
}

/// Process state letter, parent pid and start time of `pid`.
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(1)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn start_time(pid: i32) -> u64 {
    proc_stat(pid)
        .unwrap_or_else(|| panic!("pid {pid} is gone"))
        .2
}

fn alive(pid: i32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((s, _, t)) if t == start && s != 'Z' && s != 'X')
}

/// Live children of `pid` on the host.
fn children(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&p| matches!(proc_stat(p), Some((s, pp, _)) if pp == pid && s != 'Z'))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Whether `pid` has an open fd whose link ends with `suffix`.
fn has_fd(pid: i32, suffix: &str) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten().any(|e| {
                fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().ends_with(suffix))
            })
        })
        .unwrap_or(false)
}

/// A tmpfs on /tmp: the shared rootfs is read-only.
fn tmpfs_tmp(b: &mut Bundle) {
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", "size=16m"]}),
    );
}

/// Drops the namespace `kind` from linux.namespaces.
fn without_ns(b: &mut Bundle, kind: &str) {
    let list = b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces array");
    list.retain(|n| n["type"] != kind);
}

/// swap accounting: v1 memsw files at the memory hierarchy's root; v2
/// memory.swap.max next to memory.max in some cgroup we can see (assumed on
/// when there is none to look at, unless the kernel was told swapaccount=0).
fn swap_accounting(c: &Ctr) -> bool {
    if !c.unified() {
        let mem = c.dir("memory");
        let root = mem.parent().expect("memory hierarchy root");
        return root.join("memory.memsw.limit_in_bytes").exists();
    }
    let root = Path::new(keel::cgroups::CGROUP_ROOT);
    let own = fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("0::")
                .map(|p| p.trim_start_matches('/').to_owned())
        });
    let mut candidates: Vec<PathBuf> = own
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| root.join(p))
        .collect();
    if let Ok(rd) = fs::read_dir(root) {
        candidates.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    if let Some(d) = candidates.iter().find(|d| d.join("memory.max").exists()) {
        return d.join("memory.swap.max").exists();
    }
    !fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|w| w == "swapaccount=0")
}

// ---------------------------------------------------------------------------
// keel in the background (run in the foreground, events, update -r -).

static BG: AtomicUsize = AtomicUsize::new(0);

/// A keel process that outlives the call that started it; killed on drop.
struct BgKeel {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    what: String,
}

impl BgKeel {
    fn spawn(b: &Bundle, args: &[&str], stdin: Stdio) -> BgKeel {
        let n = BG.fetch_add(1, Ordering::Relaxed);
        let verb: String = args[0]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let io = b.dir.join("io");
        let stdout = io.join(format!("bg{n:02}-{verb}.stdout"));
        let stderr = io.join(format!("bg{n:02}-{verb}.stderr"));
        let what = format!("keel {}", args.join(" "));
        let child = common::keel_cmd()
            .arg("--root")
            .arg(&b.root)
            .args(args)
            .current_dir(&b.dir)
            .stdin(stdin)
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        BgKeel {
            child,
            stdout,
            stderr,
            what,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        text(&fs::read(&self.stdout).unwrap_or_default())
    }

    fn stderr(&self) -> String {
        text(&fs::read(&self.stderr).unwrap_or_default())
    }

    /// Waits for the process to exit (within [`DEADLINE`]).
    fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        let what = format!("{} to exit", self.what);
        let child = &mut self.child;
        common::wait_until(DEADLINE, &what, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }
}

impl Drop for BgKeel {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `keel ARGS` with `input` on its stdin.
fn keel_with_stdin(b: &Bundle, args: &[&str], input: &str) -> Output {
    let mut k = BgKeel::spawn(b, args, Stdio::piped());
    {
        let mut stdin = k.child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let status = k.wait();
    Output {
        status,
        stdout: k.stdout().into_bytes(),
        stderr: k.stderr().into_bytes(),
    }
}

// ---------------------------------------------------------------------------
// The tests.

/// The init is in its cgroup on every hierarchy (and, on a hybrid host, on
/// the unified one too); with a cgroup namespace it sees its cgroup as "/".
#[test]
fn init_is_in_its_cgroup_and_cgroupns_shows_root() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-init");
    c.b.set("/linux/namespaces/-", json!({"type": "cgroup"}));
    c.b.args(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo END; exec sleep 1000",
    ]);
    c.b.run_detached();
    let pid = c.b.pid();

    let host = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/<pid>/cgroup");
    let rel = c.cg.rel.to_str().expect("UTF-8 cgroup path").to_owned();
    let lines: Vec<(String, String)> = host
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect();
    let set = |s: &str| {
        let mut v: Vec<String> = s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    for d in &c.cg.v1 {
        let want = set(&d.controllers.join(","));
        let line = lines
            .iter()
            .find(|(ctrls, _)| !ctrls.is_empty() && set(ctrls) == want)
            .unwrap_or_else(|| {
                panic!("no {:?} line in /proc/{pid}/cgroup:\n{host}", d.controllers)
            });
        assert_eq!(line.1, rel, "{:?} hierarchy:\n{host}", d.controllers);
        let procs = fs::read_to_string(d.path.join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "init {pid} not in {}/cgroup.procs: {procs:?}",
            d.path.display()
        );
    }
    if let Some(u) = &c.cg.unified {
        let line = lines
            .iter()
            .find(|(ctrls, _)| ctrls.is_empty())
            .unwrap_or_else(|| panic!("no 0:: line in /proc/{pid}/cgroup:\n{host}"));
        assert_eq!(
            line.1, rel,
            "unified hierarchy ({:?} mode):\n{host}",
            c.cg.mode
        );
        let procs = fs::read_to_string(u.join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "init {pid} not in {}/cgroup.procs: {procs:?}",
            u.display()
        );
    }
    match c.cg.mode {
        Mode::Unified => assert!(c.cg.v1.is_empty()),
        Mode::Hybrid => assert!(!c.cg.v1.is_empty() && c.cg.unified.is_some()),
        Mode::Legacy => assert!(c.cg.unified.is_none()),
    }

    common::wait_until(DEADLINE, "the container's /proc/self/cgroup", || {
        c.b.container_stdout().contains("END\n")
    });
    let inside = c.b.container_stdout();
    let inside: Vec<&str> = inside.lines().take_while(|l| *l != "END").collect();
    assert_eq!(
        inside.len(),
        lines.len(),
        "inside:\n{inside:#?}\nhost:\n{host}"
    );
    for l in &inside {
        assert!(
            l.ends_with(":/"),
            "inside the cgroup namespace {l:?} is not \"/\":\n{inside:#?}"
        );
    }
}

/// Every supported `linux.resources` field ends up in its file (checked on a
/// created container: limits are in place before the process runs).
#[test]
fn limits_land_in_the_cgroup_files() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-limits");
    let swap = swap_accounting(&c);
    let mut memory = json!({"limit": 64 * MIB, "reservation": 32 * MIB});
    if swap {
        memory["swap"] = json!(96 * MIB);
    } else {
        eprintln!("SKIP swap limit: the host has no swap accounting");
    }
    c.b.set("/linux/resources/memory", memory);
    c.b.set(
        "/linux/resources/cpu",
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}),
    );
    c.b.set("/linux/resources/pids", json!({"limit": 42}));
    c.b.args(&["sleep", "1000"]);
    c.b.create();
    let pid = c.b.pid();
    assert_eq!(c.b.status(), "created");
    // The init is in the cgroup before any user code runs.
    for d in c.cg.dirs() {
        let procs = read_trim(&d.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "created init {pid} not in {}: {procs:?}",
            d.display()
        );
    }

    let mem = |v1: &str, v2: &str| c.read("memory", v1, v2);
    assert_eq!(
        mem("memory.limit_in_bytes", "memory.max"),
        (64 * MIB).to_string()
    );
    assert_eq!(
        mem("memory.soft_limit_in_bytes", "memory.low"),
        (32 * MIB).to_string()
    );
    if swap {
        if c.unified() {
            assert_eq!(
                mem("", "memory.swap.max"),
                (32 * MIB).to_string(),
                "swap - limit"
            );
        } else {
            assert_eq!(
                mem("memory.memsw.limit_in_bytes", ""),
                (96 * MIB).to_string()
            );
        }
    }
    if c.unified() {
        assert_eq!(
            c.read("cpu", "", "cpu.weight"),
            weight_of_shares(512).to_string()
        );
        assert_eq!(c.read("cpu", "", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(c.read("cpu", "cpu.shares", ""), "512");
        assert_eq!(c.read("cpu", "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(c.read("cpu", "cpu.cfs_period_us", ""), "100000");
    }
    assert_eq!(c.read("cpuset", "cpuset.cpus", "cpuset.cpus"), "0");
    assert_eq!(c.read("pids", "pids.max", "pids.max"), "42");

    // blkio weight, where the kernel has a weight file (BFQ or iocost).
    let blk = if c.unified() {
        let u = c.dir("io");
        ["io.bfq.weight", "io.weight"]
            .into_iter()
            .find(|f| u.join(f).exists())
            .map(|f| {
                (
                    f,
                    if f == "io.bfq.weight" {
                        500
                    } else {
                        1 + (500 - 10) * 9999 / 990
                    },
                )
            })
    } else {
        c.cg.v1_dir("blkio").and_then(|d| {
            ["blkio.weight", "blkio.bfq.weight"]
                .into_iter()
                .find(|f| d.join(f).exists())
                .map(|f| (f, 500))
        })
    };
    drop(c);
    let Some((file, want)) = blk else {
        eprintln!("SKIP blkio weight: no blkio.weight/blkio.bfq.weight (v1) or io.weight/io.bfq.weight (v2) here");
        return;
    };
    let mut c = Ctr::new("cg-blkio");
    c.b.set("/linux/resources/blockIO", json!({"weight": 500}));
    c.b.args(&["sleep", "1000"]);
    c.b.create();
    let got = read_trim(&c.dir(if c.unified() { "io" } else { "blkio" }).join(file));
    assert!(
        got.split_whitespace().any(|t| t == want.to_string()),
        "{file}: {got:?}, want {want}"
    );
}

/// A value the kernel refuses fails create with the field and the file
/// named, and leaves no cgroup and no state; so does a create that fails in
/// the child.
#[test]
fn failed_create_names_the_field_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-invalid");
    c.b.set("/linux/resources/cpu", json!({"cpus": "999"}));
    c.b.args(&["true"]);
    c.b.write();
    let dir = c.bundle_dir();
    let out = c.b.keel(&["create", "--bundle", &dir, &c.b.id]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "create with cpus 999 succeeded");
    assert!(
        err.contains("linux.resources.cpu.cpus"),
        "field not named: {err}"
    );
    assert!(err.contains("cpuset.cpus"), "file not named: {err}");
    c.assert_nothing_left();

    let mut c = Ctr::new("cg-badexec");
    c.b.args(&["/no/such/binary"]);
    c.b.write();
    let dir = c.bundle_dir();
    let out = c.b.keel(&["create", "--bundle", &dir, &c.b.id]);
    assert!(
        !out.status.success(),
        "create of a missing binary succeeded"
    );
    c.assert_nothing_left();
}

/// A memory hog over its 32 MiB limit (swap = limit) is OOM-killed: `run`
/// exits with 137, `events` reports `{"type":"oom"}`, the OOM counter moves.
#[test]
fn memory_hog_is_oom_killed_and_reported() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-oom");
    let mut memory = json!({"limit": 32 * MIB});
    if swap_accounting(&c) {
        memory["swap"] = json!(32 * MIB);
    }
    c.b.set("/linux/resources/memory", memory);
    tmpfs_tmp(&mut c.b);
    // It starts eating only once /tmp/go exists, after `events` is watching.
    c.b.args(&[
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do usleep 10000; done; x=a; while true; do x=$x$x; done",
    ]);
    c.b.write();
    let dir = c.bundle_dir();
    let id = c.b.id.clone();
    let mut run = BgKeel::spawn(
        &c.b,
        &["run", "--keep", "--bundle", &dir, &id],
        Stdio::null(),
    );
    common::wait_until(DEADLINE, "the container to run", || {
        c.b.try_state().is_some_and(|s| s["status"] == "running")
    });
    let pid = c.b.pid();

    let mut events = BgKeel::spawn(&c.b, &["events", "--interval", "10m", &id], Stdio::null());
    let watched: &[&str] = if c.unified() {
        &["memory.events"]
    } else {
        &["memory.oom_control", "anon_inode:[eventfd]"]
    };
    common::wait_until(DEADLINE, "keel events to watch for OOM", || {
        watched.iter().all(|f| has_fd(events.pid(), f))
    });

    fs::write(format!("/proc/{pid}/root/tmp/go"), "").expect("write /tmp/go in the container");
    let status = run.wait();
    assert_eq!(
        common::exit_code(status),
        137,
        "run: stdout {}\nstderr {}",
        run.stdout(),
        run.stderr()
    );

    let (file, key) = if c.unified() {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    let counters = read_trim(&c.dir("memory").join(file));
    assert!(
        keyed(&counters, key).is_some_and(|n| n >= 1),
        "{file} after the OOM kill: {counters:?}"
    );

    // events stops once the container is gone.
    let st = events.wait();
    let out = events.stdout();
    assert!(
        st.success(),
        "events failed ({st}): {out}\nstderr: {}",
        events.stderr()
    );
    let oom = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v == json!({"type": "oom", "id": id}));
    assert!(
        oom,
        "no oom event from keel events:\n{out}\nstderr: {}",
        events.stderr()
    );
}

/// A fork bomb stops at pids.limit: forks fail with EAGAIN and the cgroup
/// never holds more than the limit.
#[test]
fn fork_bomb_stops_at_pids_limit() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-pids");
    c.b.set("/linux/resources/pids", json!({"limit": 10}));
    // The loop runs in a subshell: busybox sh exits when a fork fails, and the
    // init must survive it to be looked at.
    c.b.args(&[
        "sh",
        "-c",
        "(for i in $(seq 20); do sleep 100 & done; wait); echo done; exec sleep 1000",
    ]);
    c.b.run_detached();
    common::wait_until(DEADLINE, "the fork loop to give up", || {
        c.b.container_stdout().contains("done")
    });
    let err = c.b.container_stderr();
    assert!(
        err.contains("Resource temporarily unavailable"),
        "no EAGAIN from fork in the container: {err:?}"
    );
    assert_eq!(c.read("pids", "pids.max", "pids.max"), "10");
    let pids = c.ps_json();
    assert!(
        (2..=10).contains(&pids.len()),
        "ps --format json: {pids:?} (limit 10)"
    );
    let events = c.dir("pids").join("pids.events");
    if events.exists() {
        let t = read_trim(&events);
        assert!(
            keyed(&t, "max").is_some_and(|n| n >= 1),
            "pids.events: {t:?}"
        );
    }
}

/// Runs the device probe script with `extra` device rules after the
/// default deny-all; returns the container's stdout.
fn device_probe(name: &str, extra: &[Value]) -> String {
    let mut c = Ctr::new(name);
    for set in ["bounding", "effective", "permitted"] {
        c.b.set(
            &format!("/process/capabilities/{set}/-"),
            json!("CAP_MKNOD"),
        );
    }
    for r in extra {
        c.b.set("/linux/resources/devices/-", r.clone());
    }
    let script = "echo zero=$(head -c1 /dev/zero | wc -c)\n\
        mknod /dev/kx c 1 11 || echo mknod-kx-failed\n\
        if out=$( (: > /dev/kx) 2>&1); then echo kmsg=ok; else echo \"kmsg=fail:$out\"; fi\n\
        mknod /dev/sdx b 8 0 || echo mknod-sdx-failed\n\
        if out=$(head -c1 /dev/sdx 2>&1 >/dev/null); then echo sdx=ok; else echo \"sdx=fail:$out\"; fi\n";
    let (code, out, err) = c.b.run(&["sh", "-c", script]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        !out.contains("mknod-"),
        "mknod failed: {out}\nstderr: {err}"
    );
    out
}

fn probe_line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

/// The default deny-all device rules still allow the standard devices, and
/// refuse a node the container makes for another device (EPERM); an explicit
/// allow rule opens it (v1 devices cgroup, v2 eBPF).
#[test]
fn devices_deny_by_default_and_allow_by_rule() {
    if !common::require_root() {
        return;
    }
    // kmsg (c 1:11) opens write-only without privileges unless printk_devkmsg=off.
    let kmsg = fs::read_to_string("/proc/sys/kernel/printk_devkmsg")
        .map(|s| s.trim() != "off")
        .unwrap_or(true);

    let out = device_probe("cg-dev-deny", &[]);
    assert_eq!(probe_line(&out, "zero="), "1", "{out}");
    for key in ["kmsg=", "sdx="] {
        let l = probe_line(&out, key);
        assert!(
            l.starts_with("fail:") && l.contains("Operation not permitted"),
            "{key}{l}: want EPERM from the device cgroup\n{out}"
        );
    }

    let out = device_probe(
        "cg-dev-allow",
        &[
            json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"}),
            json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "r"}),
        ],
    );
    assert_eq!(probe_line(&out, "zero="), "1", "{out}");
    if kmsg {
        assert_eq!(probe_line(&out, "kmsg="), "ok", "{out}");
    } else {
        eprintln!("SKIP kmsg open: printk_devkmsg is off");
    }
    // 8:0 may not exist (ENXIO): the cgroup just must not be what refuses it.
    let l = probe_line(&out, "sdx=");
    assert!(!l.contains("Operation not permitted"), "sdx={l}\n{out}");
}

/// pause freezes every process (a counter stops), state says "paused",
/// resume thaws it; pausing a stopped container fails.
#[test]
fn pause_freezes_and_resume_thaws() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-pause");
    tmpfs_tmp(&mut c.b);
    c.b.args(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; done",
    ]);
    c.b.run_detached();
    let pid = c.b.pid();
    let counter = PathBuf::from(format!("/proc/{pid}/root/tmp/c"));
    let raw = || fs::read_to_string(&counter).unwrap_or_default();
    let num = || raw().trim().parse::<u64>().ok();

    let mut first = None;
    common::wait_until(DEADLINE, "the counter to advance", || {
        match (first, num()) {
            (None, Some(n)) => {
                first = Some(n);
                false
            }
            (Some(a), Some(b)) => b > a,
            _ => false,
        }
    });

    let id = c.b.id.clone();
    c.ok(&["pause", &id]);
    assert_eq!(c.b.status(), "paused");
    if c.unified() {
        let ev = read_trim(&c.dir("freezer").join("cgroup.events"));
        assert!(ev.lines().any(|l| l == "frozen 1"), "cgroup.events: {ev:?}");
    } else {
        assert_eq!(c.read("freezer", "freezer.state", ""), "FROZEN");
    }
    let frozen = raw();
    let mut same = 0;
    common::wait_until(DEADLINE, "ten equal reads of the paused counter", || {
        let now = raw();
        assert_eq!(now, frozen, "the counter moved while paused");
        same += 1;
        same >= 10
    });

    c.ok(&["resume", &id]);
    assert_eq!(c.b.status(), "running");
    let paused_at = frozen.trim().parse::<u64>().unwrap_or(0);
    common::wait_until(DEADLINE, "the counter to advance after resume", || {
        num().is_some_and(|n| n > paused_at)
    });

    c.b.kill("KILL");
    c.b.wait_for_status("stopped");
    let out = c.b.keel(&["pause", &id]);
    assert!(
        !out.status.success(),
        "pause of a stopped container succeeded"
    );
    let out = c.b.keel(&["resume", &id]);
    assert!(
        !out.status.success(),
        "resume of a stopped container succeeded"
    );
}

/// `update` rewrites a running container's files, from flags and from
/// JSON on stdin (`update -r -`, containerd's form).
#[test]
fn update_changes_running_container_limits() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-update");
    c.b.set("/linux/resources/memory", json!({"limit": 128 * MIB}));
    c.b.set("/linux/resources/pids", json!({"limit": 50}));
    c.b.set(
        "/linux/resources/cpu",
        json!({"shares": 1024, "quota": 10000, "period": 100000}),
    );
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let id = c.b.id.clone();
    let mem = || c.read("memory", "memory.limit_in_bytes", "memory.max");
    let pids = || c.read("pids", "pids.max", "pids.max");
    let cpu = || {
        if c.unified() {
            c.read("cpu", "", "cpu.max")
        } else {
            format!(
                "{} {}",
                c.read("cpu", "cpu.cfs_quota_us", ""),
                c.read("cpu", "cpu.cfs_period_us", "")
            )
        }
    };
    let shares = || c.read("cpu", "cpu.shares", "cpu.weight");
    assert_eq!(mem(), (128 * MIB).to_string());
    assert_eq!(pids(), "50");
    assert_eq!(cpu(), "10000 100000");

    c.ok(&["update", "--memory", "64m", &id]);
    assert_eq!(mem(), (64 * MIB).to_string());
    c.ok(&["update", "--pids-limit", "20", &id]);
    assert_eq!(pids(), "20");
    c.ok(&[
        "update",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        &id,
    ]);
    assert_eq!(cpu(), "20000 50000");
    assert_eq!(mem(), (64 * MIB).to_string(), "untouched by a cpu update");

    let body = json!({
        "memory": {"limit": 48 * MIB},
        "cpu": {"shares": 256, "quota": 30000, "period": 60000},
        "pids": {"limit": 25}
    })
    .to_string();
    let out = keel_with_stdin(&c.b, &["update", "-r", "-", &id], &body);
    assert!(
        out.status.success(),
        "update -r -: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(mem(), (48 * MIB).to_string());
    assert_eq!(pids(), "25");
    assert_eq!(cpu(), "30000 60000");
    let want = if c.unified() {
        weight_of_shares(256)
    } else {
        256
    };
    assert_eq!(shares(), want.to_string());
    assert_eq!(c.b.status(), "running");
}

/// `ps --format json` lists exactly the init and its child; the table has
/// ps(1)'s header and the init's line.
#[test]
fn ps_lists_the_containers_processes() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-ps");
    c.b.args(&["sh", "-c", "sleep 1000 & wait"]);
    c.b.run_detached();
    let init = c.b.pid();
    let mut kids = Vec::new();
    common::wait_until(DEADLINE, "the init's background child", || {
        kids = children(init);
        !kids.is_empty()
    });
    assert_eq!(kids.len(), 1, "children of {init}: {kids:?}");
    let mut want = vec![init, kids[0]];
    want.sort_unstable();
    assert_eq!(c.ps_json(), want);
    assert_eq!(c.procs(), want, "cgroup.procs");

    let table = c.ok(&["ps", &c.b.id]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column: {table}"));
    let rows: Vec<i32> = lines
        .filter_map(|l| l.split_whitespace().nth(col)?.parse().ok())
        .collect();
    assert!(
        rows.contains(&init),
        "init {init} not in the table:\n{table}"
    );
    assert!(
        rows.iter().all(|p| want.contains(p)),
        "foreign pids in the table:\n{table}"
    );
}

/// Without a pid namespace the init's death does not take the rest along:
/// `kill --all KILL` signals every process in the cgroup.
#[test]
fn kill_all_signals_every_process() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-killall");
    without_ns(&mut c.b, "pid");
    c.b.args(&["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    c.b.run_detached();
    common::wait_until(DEADLINE, "the init and two sleeps", || c.procs().len() == 3);
    let procs: Vec<(i32, u64)> = c.procs().into_iter().map(|p| (p, start_time(p))).collect();
    assert_eq!(c.ps_json(), procs.iter().map(|p| p.0).collect::<Vec<_>>());

    c.ok(&["kill", "--all", &c.b.id, "KILL"]);
    for &(pid, start) in &procs {
        common::wait_until(DEADLINE, &format!("pid {pid} to die"), || {
            !alive(pid, start)
        });
    }
    c.b.wait_for_status("stopped");
    common::wait_until(DEADLINE, "an empty cgroup", || c.procs().is_empty());
}

/// runc 1.1's Signal(all) on a stopped container: without a pid namespace
/// the init's exit leaves its child in the cgroup, and `kill --all` (what
/// containerd's KillAll sends then) must reach it.
#[test]
fn kill_all_reaches_what_a_stopped_init_left_behind() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-killall-stopped");
    without_ns(&mut c.b, "pid");
    // Without a pid namespace $! is the host pid.
    c.b.args(&["sh", "-c", "sleep 1000 & echo $!"]);
    c.b.run_detached();
    c.b.wait_for_status("stopped");
    common::wait_until(DEADLINE, "the child's pid", || {
        c.b.container_stdout().ends_with('\n')
    });
    let child: i32 = c.b.container_stdout().trim().parse().expect("a pid");
    let start = start_time(child);
    common::wait_until(DEADLINE, "the child alone in the cgroup", || {
        c.procs() == [child]
    });

    c.ok(&["kill", "--all", &c.b.id, "KILL"]);
    common::wait_until(DEADLINE, &format!("the child {child} to die"), || {
        !alive(child, start)
    });
    common::wait_until(DEADLINE, "an empty cgroup", || c.procs().is_empty());
    // Nothing left to signal is no error either.
    c.ok(&["kill", "--all", &c.b.id, "KILL"]);
    c.ok(&["delete", &c.b.id]);
    c.assert_nothing_left();
}

/// `delete --force` of a running container kills everything and removes its
/// cgroup on every hierarchy, and its state.
#[test]
fn delete_force_removes_processes_and_cgroups() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-delete");
    c.b.args(&["sh", "-c", "sleep 1000 & exec sleep 1001"]);
    c.b.run_detached();
    common::wait_until(DEADLINE, "the init and its child", || c.procs().len() == 2);
    let procs: Vec<(i32, u64)> = c.procs().into_iter().map(|p| (p, start_time(p))).collect();
    for d in c.cg.dirs() {
        assert!(d.is_dir(), "{} missing while running", d.display());
    }
    c.ok(&["delete", "--force", &c.b.id]);
    for &(pid, start) in &procs {
        common::wait_until(DEADLINE, &format!("pid {pid} to die"), || {
            !alive(pid, start)
        });
    }
    c.assert_nothing_left();
}

/// Child cgroups made under the container's (as a nested runtime or systemd
/// inside would) go with it on delete.
#[test]
fn delete_removes_child_cgroups_too() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-delete-nested");
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    for d in c.cg.dirs() {
        std::fs::create_dir_all(d.join("sub/leaf"))
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    c.ok(&["delete", "--force", &c.b.id]);
    c.assert_nothing_left();
}

/// `events --stats` prints one runc-shaped stats line.
#[test]
fn events_stats_prints_one_stats_line() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-stats");
    c.b.args(&["sh", "-c", "sleep 1000 & wait"]);
    c.b.run_detached();
    let init = c.b.pid();
    common::wait_until(DEADLINE, "the init's child", || !children(init).is_empty());
    let out = c.ok(&["events", "--stats", &c.b.id]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "events --stats:\n{out}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.b.id.as_str(), "{v}");
    let usage = v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 0, "memory.usage.usage: {v}");
    let pids = v["data"]["pids"]["current"].as_u64().unwrap_or(0);
    assert!(pids >= 2, "pids.current: {v}");
}

/// Every `(controllers, path)` line of /proc/<pid>/cgroup.
fn proc_cgroup(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"))
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// The directories of `path` (cgroupsPath syntax) on every hierarchy.
fn dirs_of(path: &str) -> Vec<PathBuf> {
    Cgroup::plan(Some(path), "x")
        .unwrap_or_else(|e| panic!("plan {path}: {e}"))
        .dirs()
        .map(Path::to_path_buf)
        .collect()
}

/// A nested path: keel makes the parent too, and delete removes both (a
/// parent that keel made goes once empty; one it found stays).
#[test]
fn nested_cgroups_path_leaves_nothing_after_delete() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::at("cg-nested", |id| format!("/keel-test-{id}/c1"));
    let parent = format!("/keel-test-{}", c.b.id);
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let pid = c.b.pid();
    let want = format!("{parent}/c1");
    for (ctrls, path) in proc_cgroup(pid) {
        assert_eq!(path, want, "init's cgroup on {ctrls:?}");
    }
    c.kill_delete_and_check_parent(&parent);
}

/// A create that fails at a later hierarchy removes what it made on every
/// hierarchy, parents included. `cgroup.controllers` is a file in every
/// cgroup2 directory, so mkdir of a cgroup by that name fails there: on a
/// hybrid host after the v1 directories exist, on v2 after the parent.
#[test]
fn create_failing_at_a_later_hierarchy_leaves_no_directory() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::at("cg-late", |id| {
        format!("/keel-test-{id}/cgroup.controllers")
    });
    if c.cg.unified.is_none() {
        eprintln!("SKIP later-hierarchy failure: no cgroup2 hierarchy on this host");
        return;
    }
    let parent = format!("/keel-test-{}", c.b.id);
    c.b.args(&["true"]);
    c.b.write();
    let dir = c.bundle_dir();
    let out = c.b.keel(&["create", "--bundle", &dir, &c.b.id]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "create succeeded");
    assert!(
        err.contains("creating cgroup") && err.contains("cgroup.controllers"),
        "directory not named: {err}"
    );
    for d in dirs_of(&parent) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!c.state_dir().exists(), "state dir left behind");
}

/// A relative cgroupsPath is below the caller's cgroup on every hierarchy
/// (keel runs in the test's cgroups), and delete removes it.
#[test]
fn relative_cgroups_path_is_below_the_callers_cgroup() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::at("cg-relative", |id| format!("keel-test-{id}/c1"));
    let parent = format!("keel-test-{}", c.b.id);
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let pid = c.b.pid();
    let own = proc_cgroup(std::process::id() as i32);
    let init = proc_cgroup(pid);
    assert_eq!(init.len(), own.len(), "{init:?} vs {own:?}");
    for (ctrls, path) in &init {
        let (_, base) = own
            .iter()
            .find(|(c, _)| c == ctrls)
            .unwrap_or_else(|| panic!("the test has no {ctrls:?} line"));
        let want = Path::new(base).join(&parent).join("c1");
        assert_eq!(Path::new(path), want, "init's cgroup on {ctrls:?}");
    }
    c.kill_delete_and_check_parent(&parent);
}

/// `linux.resources.unified` lands as written on v2, and is refused on v1
/// with the field named.
#[test]
fn unified_keys_land_on_v2_and_are_refused_on_v1() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-unified");
    c.b.set("/linux/resources/unified", json!({"pids.max": "17"}));
    c.b.args(&["sleep", "1000"]);
    if c.unified() {
        c.b.create();
        assert_eq!(read_trim(&c.dir("pids").join("pids.max")), "17");
        return;
    }
    c.b.write();
    let dir = c.bundle_dir();
    let out = c.b.keel(&["create", "--bundle", &dir, &c.b.id]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "unified accepted on v1");
    assert!(
        err.contains("linux.resources.unified"),
        "field not named: {err}"
    );
    c.assert_nothing_left();
}

/// A field the host cannot take (net_cls classID: v1 without a net_cls
/// hierarchy, or v2, which has none) fails create naming the field, and
/// leaves nothing.
#[test]
fn a_field_the_host_cannot_take_fails_create_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-classid");
    if c.cg.v1_dir("net_cls").is_some() {
        eprintln!("SKIP classID refusal: this host has a net_cls hierarchy");
        return;
    }
    c.b.set("/linux/resources/network", json!({"classID": 0x100001}));
    c.b.args(&["true"]);
    c.b.write();
    let dir = c.bundle_dir();
    let out = c.b.keel(&["create", "--bundle", &dir, &c.b.id]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "classID accepted");
    assert!(
        err.contains("linux.resources.network.classID"),
        "field not named: {err}"
    );
    assert!(err.contains("net_cls"), "controller not named: {err}");
    c.assert_nothing_left();
}

/// runc's other update flags and `-r FILE` land in the files (each skipped,
/// with SKIP, only where the host lacks the file).
#[test]
fn update_flags_and_resources_file() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-update-flags");
    c.b.set("/linux/resources/memory", json!({"limit": 128 * MIB}));
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let id = c.b.id.clone();

    c.ok(&["update", "--memory-reservation", "32m", &id]);
    assert_eq!(
        c.read("memory", "memory.soft_limit_in_bytes", "memory.low"),
        (32 * MIB).to_string()
    );
    if swap_accounting(&c) {
        c.ok(&["update", "--memory", "64m", "--memory-swap", "96m", &id]);
        let (file, want) = if c.unified() {
            ("memory.swap.max", 32 * MIB)
        } else {
            ("memory.memsw.limit_in_bytes", 96 * MIB)
        };
        assert_eq!(read_trim(&c.dir("memory").join(file)), want.to_string());
    } else {
        eprintln!("SKIP --memory-swap: no swap accounting here");
    }
    c.ok(&["update", "--cpu-shares", "512", &id]);
    let want = if c.unified() {
        weight_of_shares(512)
    } else {
        512
    };
    assert_eq!(c.read("cpu", "cpu.shares", "cpu.weight"), want.to_string());
    if c.file("cpuset", "cpuset.cpus", "cpuset.cpus").exists() {
        c.ok(&["update", "--cpuset-cpus", "0", &id]);
        assert_eq!(c.read("cpuset", "cpuset.cpus", "cpuset.cpus"), "0");
    } else {
        eprintln!("SKIP --cpuset-cpus: no cpuset.cpus here");
    }
    // (file, value written for 300): v2's io.weight is the converted one.
    let blk = if c.unified() {
        let d = c.dir("io");
        [
            ("io.bfq.weight", 300),
            ("io.weight", 1 + (300 - 10) * 9999 / 990),
        ]
        .into_iter()
        .map(|(f, v)| (d.join(f), v))
        .find(|(f, _)| f.exists())
    } else {
        c.cg.v1_dir("blkio").and_then(|d| {
            ["blkio.weight", "blkio.bfq.weight"]
                .into_iter()
                .map(|f| (d.join(f), 300))
                .find(|(f, _)| f.exists())
        })
    };
    match blk {
        Some((f, want)) => {
            c.ok(&["update", "--blkio-weight", "300", &id]);
            let got = read_trim(&f);
            assert!(
                got.split_whitespace().any(|t| t == want.to_string()),
                "{}: {got:?}, want {want}",
                f.display()
            );
        }
        None => eprintln!("SKIP --blkio-weight: no blkio.weight/blkio.bfq.weight (v1) or io.weight/io.bfq.weight (v2) here"),
    }

    let file = c.b.dir.join("resources.json");
    fs::write(&file, json!({"pids": {"limit": 33}}).to_string()).expect("write resources");
    c.ok(&["update", "-r", file.to_str().expect("UTF-8 path"), &id]);
    assert_eq!(c.read("pids", "pids.max", "pids.max"), "33");

    let out = c.b.keel(&["update", "--l3-cache-schema", "L3:0=f", &id]);
    assert!(!out.status.success(), "--l3-cache-schema accepted");
    let err = text(&out.stderr);
    assert!(err.contains("intelRdt"), "{err}");
    assert_eq!(c.b.status(), "running");
}

/// `ps <id> ps-args...`: the args go to ps(1), the rows are the container's.
#[test]
fn ps_passes_extra_args_to_ps() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-ps-args");
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let init = c.b.pid();
    let table = c.ok(&["ps", &c.b.id, "-o", "pid,comm"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["PID", "COMMAND"], "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{table}");
    let row: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(row, [init.to_string().as_str(), "sleep"], "{table}");
}

/// containerd passes --systemd-cgroup on every call: only create and run,
/// which would need the systemd driver, refuse it (naming the unit, or the
/// field of a malformed path); every other command works on a container
/// made without it.
#[test]
fn systemd_cgroup_flag_is_refused_only_where_a_cgroup_is_made() {
    if !common::require_root() {
        return;
    }
    let mut c = Ctr::new("cg-systemd");
    c.b.args(&["sleep", "1000"]);
    c.b.run_detached();
    let id = c.b.id.clone();
    let sd = |args: &[&str]| -> String {
        let mut all = vec!["--systemd-cgroup"];
        all.extend_from_slice(args);
        c.ok(&all)
    };
    assert!(sd(&["state", &id]).contains("\"running\""));
    assert!(sd(&["list"]).contains(&id));
    assert_eq!(
        sd(&["ps", "--format", "json", &id]).trim(),
        format!("[{}]", c.b.pid())
    );
    sd(&["pause", &id]);
    sd(&["resume", &id]);
    sd(&["update", "--pids-limit", "40", &id]);
    assert_eq!(c.read("pids", "pids.max", "pids.max"), "40");
    assert!(sd(&["events", "--stats", &id]).contains("\"type\":\"stats\""));
    sd(&["exec", &id, "true"]);
    sd(&["features"]);
    sd(&["kill", &id, "KILL"]);
    c.b.wait_for_status("stopped");
    sd(&["delete", &id]);
    c.assert_nothing_left();

    for (path, want) in [
        (
            "user-1000.slice:crio:abc",
            "linux.cgroupsPath \"user-1000.slice:crio:abc\" would be unit crio-abc.scope in user-1000.slice",
        ),
        ("/keel/c1", "linux.cgroupsPath: \"/keel/c1\": with --systemd-cgroup it must be \"slice:prefix:name\""),
        ("system:keel:c1", "linux.cgroupsPath: \"system:keel:c1\": slice \"system\""),
    ] {
        let mut b = Bundle::new("cg-systemd-run");
        b.set("/linux/cgroupsPath", json!(path));
        b.args(&["true"]);
        b.write();
        let dir = b.dir.to_str().expect("UTF-8 bundle dir").to_owned();
        let out = b.keel(&["--systemd-cgroup", "create", "--bundle", &dir, &b.id]);
        assert!(!out.status.success(), "{path}: create accepted");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{path}: {err}");
        assert!(!b.root.join(&b.id).exists(), "{path}: state dir made");
    }
}
