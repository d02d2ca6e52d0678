//! Harness for keel's integration tests: real containers, run as root.
//!
//! Every test file says `mod common;` and builds containers with [`Bundle`]:
//!
//! ```ignore
//! if !common::require_root() { return; }
//! let mut b = common::Bundle::new("echo");
//! let (code, out, _err) = b.run(&["echo", "hello"]);
//! ```
//!
//! * Bundles share one read-only busybox rootfs, built once under
//!   `$TMPDIR/keel-test-rootfs` (atomically: built aside, then renamed) and
//!   reused by later runs; [`Bundle::with_own_rootfs`] gives a bundle a
//!   writable copy of its own.
//! * Each bundle has a unique container id `keel-test-<name>-<pid>-<n>`, its
//!   own directory `$TMPDIR/<id>` and its own state root (`keel --root`), so
//!   tests run in parallel without seeing each other.
//! * keel's stdout and stderr go to files under `<dir>/io`, never to pipes: a
//!   container started by `create` or `run -d` inherits them, and a pipe would
//!   keep the reader waiting for as long as the container lives.
//! * Every keel command has a deadline (`KEEL_TEST_TIMEOUT` seconds, 60 by
//!   default); a hung keel is killed and the test fails instead of hanging.
//! * Dropping a [`Bundle`] (also while a test panics) force-deletes the
//!   container, kills its init by pid if keel left it behind, and removes the
//!   bundle directory (kept when `KEEL_TEST_KEEP=1`).
#![allow(dead_code)]

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// Marker in every id, directory and keel command line the harness makes;
/// `hack/leakcheck.sh` looks for it.
pub const MARKER: &str = "keel-test";

/// Written into the shared rootfs once it is complete; a different content
/// (an older layout) makes the harness build it again.
const ROOTFS_MARKER: &str = ".keel-test-rootfs-complete";
const ROOTFS_VERSION: &str = "keel-test-rootfs v1\n";

/// Path of the keel binary under test: cargo's build of this crate, or
/// `KEEL_TEST_BIN` (`make test` runs the suites again on the release build).
pub fn keel_bin() -> PathBuf {
    match std::env::var_os("KEEL_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_keel")),
    }
}

/// A `Command` for the keel binary, with nothing set.
pub fn keel_cmd() -> Command {
    Command::new(keel_bin())
}

/// Effective uid of this process (from /proc/self/status).
pub fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .expect("no effective uid in /proc/self/status")
}

/// True when running as root; otherwise prints "SKIP: needs root" and returns
/// false. Tests start with `if !common::require_root() { return; }`.
pub fn require_root() -> bool {
    if euid() == 0 {
        true
    } else {
        eprintln!("SKIP: needs root");
        false
    }
}

/// Deadline for one keel command: `KEEL_TEST_TIMEOUT` seconds, else 60.
pub fn command_timeout() -> Duration {
    let secs = std::env::var("KEEL_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Polls `f` every 10 ms until it returns true; panics naming `what` once
/// `deadline` has passed. Use a generous deadline: it only bounds failures.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Exit code as a shell reports it: the code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// Lossy UTF-8 text of captured output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// runc's default config.json (`runc spec`), with `"terminal": false` and
/// `root.path` "rootfs".
pub fn runc_spec() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
            ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "runc",
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc"
            },
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": {
            "resources": {
                "devices": [{ "allow": false, "access": "rwm" }]
            },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        }
    })
}

// ---------------------------------------------------------------------------
// The shared busybox rootfs.

/// The shared read-only busybox rootfs, `$TMPDIR/keel-test-rootfs`, built on
/// first use in this process (or by an earlier run) and never removed.
pub fn shared_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dest = std::env::temp_dir().join("keel-test-rootfs");
        ensure_rootfs(&dest).unwrap_or_else(|e| panic!("busybox rootfs {}: {e}", dest.display()));
        dest
    })
}

fn rootfs_complete(dir: &Path) -> bool {
    fs::read_to_string(dir.join(ROOTFS_MARKER)).is_ok_and(|v| v == ROOTFS_VERSION)
}

fn ensure_rootfs(dest: &Path) -> io::Result<()> {
    if rootfs_complete(dest) {
        return Ok(());
    }
    let parent = dest.parent().expect("rootfs has a parent directory");
    let base = dest
        .file_name()
        .expect("rootfs has a name")
        .to_string_lossy()
        .into_owned();
    remove_abandoned(parent, &base);

    let partial = parent.join(format!(
        "{base}.partial-{}-{}",
        std::process::id(),
        unique()
    ));
    if let Err(e) = build_rootfs(&partial) {
        let _ = remove_tree(&partial);
        return Err(e);
    }
    for _ in 0..5 {
        match fs::rename(&partial, dest) {
            Ok(()) => return Ok(()),
            Err(_) if rootfs_complete(dest) => {
                // Another test process got there first: use its rootfs.
                remove_tree(&partial)?;
                return Ok(());
            }
            Err(e) if fs::symlink_metadata(dest).is_err() => return Err(e),
            Err(_) => {
                // An old layout or a damaged copy: move it aside, then drop it.
                let stale =
                    parent.join(format!("{base}.stale-{}-{}", std::process::id(), unique()));
                if fs::rename(dest, &stale).is_ok() {
                    remove_tree(&stale)?;
                }
            }
        }
    }
    Err(io::Error::other(format!(
        "could not install {} as {}",
        partial.display(),
        dest.display()
    )))
}

/// Removes `<base>.partial-<pid>-*` and `<base>.stale-<pid>-*` left by test
/// processes that are gone.
fn remove_abandoned(parent: &Path, base: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let Some(rest) = rest
            .strip_prefix(".partial-")
            .or_else(|| rest.strip_prefix(".stale-"))
        else {
            continue;
        };
        let owner_gone = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if owner_gone {
            let _ = remove_tree(&entry.path());
        }
    }
}

fn find_busybox() -> io::Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::other("no /bin/busybox: install busybox-static (make deps)"))
}

/// Whether an ELF64 little-endian image asks for a dynamic loader (PT_INTERP).
fn elf_is_dynamic(image: &[u8]) -> bool {
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return false;
    }
    let u16_at = |off: usize| u16::from_le_bytes([image[off], image[off + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&image[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let off = phoff + i * phentsize;
        image
            .get(off..off + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3)
    })
}

fn build_rootfs(dir: &Path) -> io::Result<()> {
    let busybox = find_busybox()?;
    let image = fs::read(&busybox)?;
    if elf_is_dynamic(&image) {
        return Err(io::Error::other(format!(
            "{} is dynamically linked: install busybox-static (make deps)",
            busybox.display()
        )));
    }

    fs::create_dir(dir)?;
    for sub in ["bin", "proc", "sys", "dev", "tmp", "root", "etc"] {
        fs::create_dir(dir.join(sub))?;
    }
    let mode = |p: PathBuf, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    mode(dir.to_path_buf(), 0o755)?;
    mode(dir.join("tmp"), 0o1777)?;
    mode(dir.join("root"), 0o700)?;

    let bin = dir.join("bin/busybox");
    fs::write(&bin, &image)?;
    mode(bin.clone(), 0o755)?;

    let list = Command::new(&bin)
        .arg("--list")
        .stdin(Stdio::null())
        .output()?;
    if !list.status.success() {
        return Err(io::Error::other(format!(
            "{} --list failed: {}",
            bin.display(),
            text(&list.stderr)
        )));
    }
    for applet in text(&list.stdout).lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", dir.join("bin").join(applet))?;
    }
    if !dir.join("bin/sh").exists() {
        return Err(io::Error::other("busybox has no sh applet"));
    }

    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(dir.join("etc/hostname"), "keel\n")?;
    fs::write(dir.join(ROOTFS_MARKER), ROOTFS_VERSION)
}

/// Copies a tree: directories, regular files (with their mode) and symlinks.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        symlink(fs::read_link(src)?, dst)
    } else if kind.is_dir() {
        fs::create_dir(dst)?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        fs::set_permissions(dst, meta.permissions())
    } else if kind.is_file() {
        fs::copy(src, dst).map(drop)
    } else {
        Err(io::Error::other(format!("cannot copy {}", src.display())))
    }
}

// ---------------------------------------------------------------------------
// Host-safety helpers.

/// Mount points in this mount namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|mp| {
            PathBuf::from(
                mp.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|mp| mp.starts_with(dir))
        .collect()
}

/// `remove_dir_all`, refused when anything is mounted below `dir`: removing
/// through a leaked bind mount would delete host files.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        return Err(io::Error::other(format!(
            "not removing {}: mounts below it: {mounts:?}",
            dir.display()
        )));
    }
    fs::remove_dir_all(dir)
}

/// Process state letter and start time (clock ticks since boot) of `pid`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// A live (not zombie) process that is still the one that started at `start`.
fn same_process_alive(pid: i32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

/// SIGKILL to exactly `pid`, through the shell's kill builtin.
fn kill_pid(pid: i32) {
    let _ = Command::new("sh")
        .args(["-c", "kill -KILL \"$1\"", "sh", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// JSON pointer edits.

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn array_index(token: &str, len: usize, pointer: &str) -> usize {
    if token == "-" {
        return len;
    }
    token
        .parse()
        .unwrap_or_else(|_| panic!("{pointer}: {token:?} is not an array index"))
}

/// Sets `pointer` (RFC 6901) in `root` to `value`, creating missing objects
/// on the way. An array index equal to the length, or "-", appends.
pub fn pointer_set(root: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *root = value;
        return;
    }
    let tokens: Vec<String> = pointer
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("JSON pointer {pointer:?} must start with /"))
        .split('/')
        .map(unescape_token)
        .collect();
    let (last, parents) = tokens.split_last().expect("non-empty pointer");
    let mut cur = root;
    for token in parents {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(map) => map.entry(token.as_str()).or_insert(Value::Null),
            Value::Array(items) => {
                let i = array_index(token, items.len(), pointer);
                items
                    .get_mut(i)
                    .unwrap_or_else(|| panic!("{pointer}: index {i} out of range"))
            }
            other => panic!("{pointer}: cannot descend into {other}"),
        };
    }
    if cur.is_null() {
        *cur = Value::Object(Map::new());
    }
    match cur {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let i = array_index(last, items.len(), pointer);
            match i.cmp(&items.len()) {
                std::cmp::Ordering::Less => items[i] = value,
                std::cmp::Ordering::Equal => items.push(value),
                std::cmp::Ordering::Greater => panic!("{pointer}: index {i} out of range"),
            }
        }
        other => panic!("{pointer}: cannot set a member of {other}"),
    }
}

/// Removes what `pointer` names from `root`, returning it.
pub fn pointer_remove(root: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let last = unescape_token(last);
    match root.pointer_mut(parent)? {
        Value::Object(map) => map.remove(&last),
        Value::Array(items) => {
            let i: usize = last.parse().ok()?;
            (i < items.len()).then(|| items.remove(i))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Bundles.

/// What keel printed for one command: the output, plus the files that hold
/// it (a container started by the command keeps writing to them).
struct Capture {
    output: Output,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// One OCI bundle and the container made from it.
pub struct Bundle {
    /// Bundle directory, `$TMPDIR/<id>`; holds config.json.
    pub dir: PathBuf,
    /// keel's state root for this bundle (`keel --root`): `<dir>/state`.
    pub root: PathBuf,
    /// Container id, `keel-test-<name>-<pid>-<n>`.
    pub id: String,
    /// config.json to be written by [`Bundle::write`] (and by run/create).
    pub config: Value,
    /// Pid and start time of the container's init, recorded by create.
    init: Option<(i32, u64)>,
    /// stdout/stderr files of the create (or run -d) that started it.
    container_io: Option<(PathBuf, PathBuf)>,
    /// Command that every keel command runs through (see [`Bundle::wrapped`]).
    wrap: Vec<String>,
    seq: AtomicUsize,
}

impl Bundle {
    /// A bundle using the shared read-only busybox rootfs (absolute
    /// `root.path`, `root.readonly: true`) and runc's default config.
    pub fn new(name: &str) -> Bundle {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let id = format!("{MARKER}-{name}-{}-{}", std::process::id(), unique());
        let dir = std::env::temp_dir().join(&id);
        remove_tree(&dir).unwrap_or_else(|e| panic!("stale {}: {e}", dir.display()));
        let root = dir.join("state");
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        fs::create_dir_all(dir.join("io")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));

        let mut config = runc_spec();
        let rootfs = shared_rootfs().to_str().expect("UTF-8 temp dir").to_owned();
        pointer_set(&mut config, "/root/path", json!(rootfs));
        pointer_set(&mut config, "/root/readonly", json!(true));
        Bundle {
            dir,
            root,
            id,
            config,
            init: None,
            container_io: None,
            wrap: Vec::new(),
            seq: AtomicUsize::new(0),
        }
    }

    /// Gives the bundle a writable copy of the busybox rootfs in
    /// `<dir>/rootfs` (`root.path` "rootfs", `root.readonly: false`).
    pub fn with_own_rootfs(mut self) -> Bundle {
        let dst = self.dir.join("rootfs");
        remove_tree(&dst).unwrap_or_else(|e| panic!("{e}"));
        copy_tree(shared_rootfs(), &dst)
            .unwrap_or_else(|e| panic!("copy rootfs to {}: {e}", dst.display()));
        let _ = fs::remove_file(dst.join(ROOTFS_MARKER));
        self.set("/root/path", json!("rootfs"));
        self.set("/root/readonly", json!(false));
        self
    }

    /// Runs every keel command of this bundle, cleanup included, as
    /// `WRAP... keel ARGS...`: `setpriv` to run keel as another user, say.
    pub fn wrapped(mut self, wrap: &[&str]) -> Bundle {
        self.wrap = wrap.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The rootfs directory on the host that `root.path` names.
    pub fn rootfs(&self) -> PathBuf {
        let path = self.config["root"]["path"].as_str().unwrap_or("rootfs");
        self.dir.join(path)
    }

    /// Path of config.json.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// Sets a config value by JSON pointer, e.g. `set("/process/cwd", json!("/tmp"))`;
    /// missing objects on the way are created, "-" appends to an array.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        pointer_set(&mut self.config, pointer, value);
        self
    }

    /// Removes a config value by JSON pointer, returning it.
    pub fn unset(&mut self, pointer: &str) -> Option<Value> {
        pointer_remove(&mut self.config, pointer)
    }

    /// Writes `config` to `<dir>/config.json`.
    pub fn write(&self) {
        let body = serde_json::to_vec_pretty(&self.config).expect("config serializes");
        fs::write(self.config_path(), body)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config_path().display()));
    }

    /// Runs `keel --root <state> ARGS...` in the bundle directory with stdin
    /// null and output captured; panics only if keel outlives the deadline.
    pub fn keel(&self, args: &[&str]) -> Output {
        self.keel_timeout(args, command_timeout())
    }

    /// [`Bundle::keel`] with an explicit deadline.
    pub fn keel_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        self.exec(args, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
            .output
    }

    /// Sets `process.args` to `cmd` (unless empty), writes config.json and
    /// runs `keel run --bundle <dir> <id>` in the foreground. Returns the exit
    /// code (128 + signal if keel was killed), stdout and stderr.
    pub fn run(&mut self, cmd: &[&str]) -> (i32, String, String) {
        if !cmd.is_empty() {
            self.args(cmd);
        }
        self.write();
        let dir = self.dir_str();
        let out = self.keel(&["run", "--bundle", &dir, &self.id]);
        (exit_code(out.status), text(&out.stdout), text(&out.stderr))
    }

    /// Writes config.json and runs `keel run --detach`; panics on failure.
    pub fn run_detached(&mut self) {
        self.write();
        let dir = self.dir_str();
        let id = self.id.clone();
        self.started_by(&["run", "--detach", "--bundle", &dir, &id]);
    }

    /// Writes config.json and runs `keel create --bundle <dir> <id>`; panics
    /// on failure. The container's stdout/stderr go to the files read by
    /// [`Bundle::container_stdout`] and [`Bundle::container_stderr`].
    pub fn create(&mut self) {
        self.write();
        let dir = self.dir_str();
        let id = self.id.clone();
        self.started_by(&["create", "--bundle", &dir, &id]);
    }

    /// `keel start <id>`; panics on failure.
    pub fn start(&self) {
        self.expect_ok(&["start", &self.id]);
    }

    /// `keel state <id>` as JSON; panics on failure.
    pub fn state(&self) -> Value {
        let out = self.expect_ok(&["state", &self.id]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "keel state {}: not JSON ({e}): {}",
                self.id,
                text(&out.stdout)
            )
        })
    }

    /// `keel state <id>` as JSON, or None if keel fails.
    pub fn try_state(&self) -> Option<Value> {
        let cap = self.exec(&["state", &self.id], command_timeout()).ok()?;
        if !cap.output.status.success() {
            return None;
        }
        serde_json::from_slice(&cap.output.stdout).ok()
    }

    /// The `status` field of [`Bundle::state`].
    pub fn status(&self) -> String {
        let state = self.state();
        state["status"]
            .as_str()
            .unwrap_or_else(|| panic!("state without status: {state}"))
            .to_owned()
    }

    /// The `pid` field of [`Bundle::state`].
    pub fn pid(&self) -> i32 {
        let state = self.state();
        state["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_else(|| panic!("state without pid: {state}"))
    }

    /// Polls `keel state` until the status is `status` (created, running,
    /// stopped), within [`command_timeout`].
    pub fn wait_for_status(&self, status: &str) {
        wait_until(
            command_timeout(),
            &format!("container {} to be {status}", self.id),
            || self.try_state().is_some_and(|s| s["status"] == status),
        );
    }

    /// `keel kill <id> <signal>`; panics on failure.
    pub fn kill(&self, signal: &str) {
        self.expect_ok(&["kill", &self.id, signal]);
    }

    /// `keel delete <id>`; panics on failure.
    pub fn delete(&mut self) {
        self.expect_ok(&["delete", &self.id]);
        self.init = None;
    }

    /// What the container has written to its stdout so far (after `create`
    /// or `run_detached`).
    pub fn container_stdout(&self) -> String {
        let (out, _) = self.container_io.as_ref().expect("no container created");
        text(&fs::read(out).unwrap_or_default())
    }

    /// What the container has written to its stderr so far.
    pub fn container_stderr(&self) -> String {
        let (_, err) = self.container_io.as_ref().expect("no container created");
        text(&fs::read(err).unwrap_or_default())
    }

    /// The bundle directory as a string, for `--bundle`.
    pub fn dir_str(&self) -> String {
        self.dir.to_str().expect("UTF-8 bundle dir").to_owned()
    }

    /// An executable script at `name` in the bundle's rootfs (own rootfs only).
    pub fn write_script(&self, name: &str, body: &str) {
        let p = self.rootfs().join(name);
        fs::write(&p, body).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    }

    fn started_by(&mut self, args: &[&str]) {
        let cap = self
            .exec(args, command_timeout())
            .unwrap_or_else(|e| panic!("{e}"));
        self.container_io = Some((cap.stdout.clone(), cap.stderr.clone()));
        check_ok(args, &cap.output);
        let pid = self.pid();
        self.init = proc_stat(pid).map(|(_, start)| (pid, start));
    }

    fn expect_ok(&self, args: &[&str]) -> Output {
        let out = self.keel(args);
        check_ok(args, &out);
        out
    }

    /// Runs keel with output to fresh files under `<dir>/io`; Err when it
    /// did not finish by `timeout` (it is then killed).
    fn exec(&self, args: &[&str], timeout: Duration) -> Result<Capture, String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let verb = args.first().copied().unwrap_or("keel");
        let verb: String = verb.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let io_dir = self.dir.join("io");
        let stdout = io_dir.join(format!("{n:03}-{verb}.stdout"));
        let stderr = io_dir.join(format!("{n:03}-{verb}.stderr"));
        let what = format!("keel --root {} {}", self.root.display(), args.join(" "));
        let open = |p: &Path| File::create(p).map_err(|e| format!("{what}: {}: {e}", p.display()));
        let (out_file, err_file) = (open(&stdout)?, open(&stderr)?);

        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(keel_bin());
                c
            }
            None => keel_cmd(),
        };
        let mut child = cmd
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("{what}: spawn {}: {e}", keel_bin().display()))?;

        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{what}: still running after {timeout:?}, killed it\nstdout: {}\nstderr: {}",
                        text(&fs::read(&stdout).unwrap_or_default()),
                        text(&fs::read(&stderr).unwrap_or_default()),
                    ));
                }
                Err(e) => return Err(format!("{what}: wait: {e}")),
            }
        };
        let output = Output {
            status,
            stdout: fs::read(&stdout).unwrap_or_default(),
            stderr: fs::read(&stderr).unwrap_or_default(),
        };
        Ok(Capture {
            output,
            stdout,
            stderr,
        })
    }

    /// Pid and start time of the container's init if keel says it is not
    /// stopped and the process is alive.
    fn live_init(&self) -> Option<(i32, u64)> {
        let cap = self.exec(&["state", &self.id], CLEANUP_TIMEOUT).ok()?;
        let state: Value = serde_json::from_slice(&cap.output.stdout).ok()?;
        if !cap.output.status.success() || state["status"] == "stopped" {
            return None;
        }
        let pid = i32::try_from(state["pid"].as_i64()?).ok()?;
        if pid <= 1 {
            return None;
        }
        let (_, start) = proc_stat(pid)?;
        Some((pid, start))
    }
}

const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

fn check_ok(args: &[&str], out: &Output) {
    if !out.status.success() {
        panic!(
            "keel {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

impl Drop for Bundle {
    /// Best effort and never panics: `keel delete --force`, then SIGKILL to
    /// the init pid keel reported if that very process is still alive, then
    /// the bundle directory goes (unless KEEL_TEST_KEEP=1).
    fn drop(&mut self) {
        let live = self.live_init();
        let _ = self.exec(&["delete", "--force", &self.id], CLEANUP_TIMEOUT);

        for (pid, start) in [self.init, live].into_iter().flatten() {
            if pid > 1 && same_process_alive(pid, start) {
                eprintln!("keel-test: {}: killing leftover init {pid}", self.id);
                kill_pid(pid);
                let deadline = Instant::now() + CLEANUP_TIMEOUT;
                while same_process_alive(pid, start) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }

        if std::env::var_os("KEEL_TEST_KEEP").is_some_and(|v| v == "1") {
            eprintln!("keel-test: keeping {}", self.dir.display());
            return;
        }
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!("keel-test: {}: {e}", self.id);
        }
    }
}

/// Cgroup directories named after a test container (keel's default cgroupsPath
/// is `/<id>`), on every hierarchy (v1 and v2 alike).
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if !id.starts_with(MARKER) {
        return found;
    }
    let root = Path::new("/sys/fs/cgroup");
    let direct = root.join(id);
    if direct.exists() {
        found.push(direct);
    }
    for h in fs::read_dir(root).into_iter().flatten().flatten() {
        let p = h.path().join(id);
        if p.exists() {
            found.push(p);
        }
    }
    found
}

/// Wait for a child process with the harness's deadline; kill it and panic
/// with `what` if it outlives it.
pub fn wait_child(child: &mut std::process::Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > command_timeout() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after the deadline");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Docker's default seccomp profile in OCI form (tests/fixtures).
pub fn docker_profile() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seccomp-docker.json");
    serde_json::from_slice(&fs::read(&path).expect("read the Docker profile fixture"))
        .expect("the Docker profile fixture is JSON")
}
