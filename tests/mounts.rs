//! Mounts as the container sees them, in real containers: runc's default set
//! (and the same config under runc itself), `root.readonly`, bind mounts
//! (ro/rw, files, missing targets, rbind, relative sources, nosuid/nodev/
//! noexec), propagation and `rootfsPropagation`, recursive attributes, tmpfs
//! options and tmpcopyup, mqueue and extra proc/sysfs instances,
//! maskedPaths/readonlyPaths, symlinked destinations (security.md §4, T-05a,
//! T-06, T-07) and `--no-pivot`.
//!
//! Every test reads `/proc/self/mountinfo` inside the container, parses it
//! and asserts on mount points, per-mount options, optional fields (shared:,
//! master:), filesystem types and super options; afterwards it checks that the
//! host's mount table mentions nothing under the bundle directory.
//!
//! Tests that create mount targets use a private rootfs copy
//! (`Bundle::with_own_rootfs`): the shared busybox rootfs must stay untouched.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Bundle;
use serde_json::json;

// ---------------------------------------------------------------------------
// mountinfo

/// One line of `/proc/<pid>/mountinfo` (proc(5)).
#[derive(Debug, Clone)]
struct Mount {
    id: u32,
    parent: u32,
    /// Field 4: the root of the mount within its filesystem.
    root: String,
    /// Field 5: the mount point, relative to the reader's root.
    point: String,
    /// Field 6: per-mount options (ro/rw, nosuid, nodev, noexec, atime).
    opts: Vec<String>,
    /// Optional fields: shared:N, master:N, propagate_from:N, unbindable.
    optional: Vec<String>,
    fstype: String,
    source: String,
    /// Super-block options (size=, mode=, gid=...).
    super_opts: Vec<String>,
}

impl Mount {
    fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }

    fn has_super(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }

    fn is_ro(&self) -> bool {
        self.has_opt("ro")
    }

    fn tag(&self, prefix: &str) -> Option<String> {
        self.optional
            .iter()
            .find_map(|f| f.strip_prefix(prefix).map(str::to_owned))
    }

    fn shared(&self) -> Option<String> {
        self.tag("shared:")
    }

    fn master(&self) -> Option<String> {
        self.tag("master:")
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (pre, post) = line
                .split_once(" - ")
                .unwrap_or_else(|| panic!("mountinfo line without separator: {line:?}"));
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            assert!(
                pre.len() >= 6 && post.len() >= 3,
                "short mountinfo line: {line:?}"
            );
            let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
            Mount {
                id: pre[0].parse().expect("mount id"),
                parent: pre[1].parse().expect("parent id"),
                root: unescape(pre[3]),
                point: unescape(pre[4]),
                opts: list(pre[5]),
                optional: pre[6..].iter().map(|s| s.to_string()).collect(),
                fstype: post[0].to_owned(),
                source: unescape(post[1]),
                super_opts: list(post[2]),
            }
        })
        .collect()
}

/// The topmost mount at `point` (the last one listed), or a panic listing the table.
fn at<'a>(mounts: &'a [Mount], point: &str) -> &'a Mount {
    mounts
        .iter()
        .rev()
        .find(|m| m.point == point)
        .unwrap_or_else(|| panic!("no mount at {point} in:\n{}", show(mounts)))
}

fn has_mount(mounts: &[Mount], point: &str) -> bool {
    mounts.iter().any(|m| m.point == point)
}

fn show(mounts: &[Mount]) -> String {
    mounts
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {} {} {} - {} {} {}",
                m.id,
                m.parent,
                m.root,
                m.point,
                m.opts.join(","),
                m.optional.join(" "),
                m.fstype,
                m.source,
                m.super_opts.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// Running containers

const MARK: &str = "==keel-mountinfo==";

/// What a container printed before the mountinfo marker, and its mount table.
struct Seen {
    out: String,
    mounts: Vec<Mount>,
}

impl Seen {
    /// The value of the line `key: value` the script printed.
    fn get(&self, key: &str) -> String {
        let prefix = format!("{key}:");
        self.out
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key:?} line in output:\n{}", self.out))
    }
}

/// `sh -c SCRIPT; cat /proc/self/mountinfo` in the container with `keel run`
/// (plus `extra` flags); asserts exit 0, then that the host is clean.
fn run_seen_with(b: &mut Bundle, extra: &[&str], script: &str) -> Seen {
    let full = format!("{script}\necho {MARK}\ncat /proc/self/mountinfo\n");
    b.args(&["sh", "-c", &full]);
    b.write();
    let dir = b.dir.to_str().expect("UTF-8 bundle dir").to_owned();
    let id = b.id.clone();
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--bundle", &dir, &id]);
    let out = b.keel(&args);
    let (code, stdout, stderr) = (
        common::exit_code(out.status),
        common::text(&out.stdout),
        common::text(&out.stderr),
    );
    assert_eq!(
        code, 0,
        "keel {args:?}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_host_clean(b);
    split_seen(&stdout)
}

fn run_seen(b: &mut Bundle, script: &str) -> Seen {
    run_seen_with(b, &[], script)
}

fn split_seen(stdout: &str) -> Seen {
    let (out, info) = stdout
        .split_once(&format!("{MARK}\n"))
        .unwrap_or_else(|| panic!("no mountinfo in output:\n{stdout}"));
    Seen {
        out: out.to_owned(),
        mounts: parse_mountinfo(info),
    }
}

/// `keel run` that is expected to fail: returns (exit code, stderr).
fn run_failing(b: &mut Bundle) -> (i32, String) {
    let (code, stdout, stderr) = b.run(&["true"]);
    assert_ne!(code, 0, "keel run succeeded:\n{stdout}\n{stderr}");
    assert_host_clean(b);
    (code, stderr)
}

/// The host's mount table has no line naming the bundle directory or
/// anything below it (container mount namespaces are private and gone).
fn assert_host_clean(b: &Bundle) {
    let dir = b.dir.to_str().expect("UTF-8 bundle dir");
    assert_no_host_mount_mentions(dir);
}

fn assert_no_host_mount_mentions(path: &str) {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("host mountinfo");
    let below = format!("{path}/");
    for line in info.lines() {
        for field in line.split(' ') {
            let f = unescape(field);
            assert!(
                f != path && !f.starts_with(&below),
                "host mount table mentions {path}: {line}"
            );
        }
    }
    assert!(
        common::mounts_under(Path::new(path)).is_empty(),
        "host mounts under {path}"
    );
}

fn add_mount(b: &mut Bundle, dest: &str, typ: &str, source: &str, options: &[&str]) {
    b.set(
        "/mounts/-",
        json!({"destination": dest, "type": typ, "source": source, "options": options}),
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A host directory inside the bundle dir (bind sources), created empty.
fn host_dir(b: &Bundle, name: &str) -> PathBuf {
    let d = b.dir.join(name);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// runc, if installed.
fn runc_bin() -> Option<PathBuf> {
    ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Deletes the runc container on drop (also when the test panics).
struct RuncGuard {
    runc: PathBuf,
    root: PathBuf,
    id: String,
}

impl Drop for RuncGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `b`'s config (already written) under runc with `sh -c SCRIPT;
/// cat /proc/self/mountinfo`. Its state root and output files live in the
/// bundle dir; the container id is `<keel id>-runc`.
fn runc_seen(runc: &Path, b: &mut Bundle, script: &str) -> Seen {
    let full = format!("{script}\necho {MARK}\ncat /proc/self/mountinfo\n");
    b.args(&["sh", "-c", &full]);
    b.write();
    let root = b.dir.join("runc-state");
    let id = format!("{}-runc", b.id);
    let _guard = RuncGuard {
        runc: runc.to_path_buf(),
        root: root.clone(),
        id: id.clone(),
    };
    let out_path = b.dir.join("io/runc.stdout");
    let err_path = b.dir.join("io/runc.stderr");
    let mut child = Command::new(runc)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", path_str(&b.dir), &id])
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn runc");
    let status = common::wait_child(&mut child, &format!("runc run {id}"));
    let stdout = common::text(&fs::read(&out_path).unwrap_or_default());
    let stderr = common::text(&fs::read(&err_path).unwrap_or_default());
    assert!(status.success(), "runc run: {status}\n{stdout}\n{stderr}");
    assert_host_clean(b);
    split_seen(&stdout)
}

/// Names of the host's cgroup hierarchies under /sys/fs/cgroup (v1 and hybrid).
fn host_cgroup_hierarchies() -> Vec<(String, String)> {
    let host = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    host.iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .filter_map(|m| {
            m.point
                .strip_prefix("/sys/fs/cgroup/")
                .map(|n| (n.to_owned(), m.fstype.clone()))
        })
        .collect()
}

const EROFS: &str = "Read-only file system";

// ---------------------------------------------------------------------------
// runc's default mounts

#[test]
fn default_mounts_have_runc_options() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-defaults");
    let seen = run_seen(
        &mut b,
        "echo \"memlimit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1)\"\n\
         echo \"cgmkdir: $(mkdir /sys/fs/cgroup/x 2>&1; echo rc=$?)\"\n\
         echo \"ptmx: $(stat -c %a /dev/pts/ptmx)\"\n\
         echo \"devmode: $(stat -c %a /dev)\"\n\
         echo \"shmmode: $(stat -c %a /dev/shm)\"",
    );
    let m = &seen.mounts;

    let root = at(m, "/");
    assert!(root.is_ro(), "root.readonly: {root:?}");

    let proc = at(m, "/proc");
    assert_eq!(proc.fstype, "proc");
    assert!(!proc.is_ro(), "{proc:?}");

    let dev = at(m, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has_opt("nosuid") && !dev.is_ro(), "{dev:?}");
    assert!(
        dev.has_super("mode=755") && dev.has_super("size=65536k"),
        "{dev:?}"
    );
    assert_eq!(seen.get("devmode"), "755");

    let pts = at(m, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(pts.has_opt("nosuid") && pts.has_opt("noexec"), "{pts:?}");
    for o in ["ptmxmode=666", "gid=5", "mode=620"] {
        assert!(pts.has_super(o), "/dev/pts lacks {o}: {pts:?}");
    }
    // newinstance: a devpts of its own, whose ptmx has ptmxmode (the
    // host's instance here has ptmxmode=000).
    assert_eq!(seen.get("ptmx"), "666");

    let shm = at(m, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(shm.has_opt(o), "/dev/shm lacks {o}: {shm:?}");
    }
    assert!(shm.has_super("size=65536k"), "{shm:?}");
    assert_eq!(seen.get("shmmode"), "1777");

    let mq = at(m, "/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(mq.has_opt(o), "/dev/mqueue lacks {o}: {mq:?}");
    }

    let sys = at(m, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "noexec", "nodev"] {
        assert!(sys.has_opt(o), "/sys lacks {o}: {sys:?}");
    }

    // /sys/fs/cgroup: read-only, with every host hierarchy (v1/hybrid) under
    // its host name, each read-only too.
    let cg = at(m, "/sys/fs/cgroup");
    assert!(cg.is_ro(), "{cg:?}");
    assert!(
        seen.get("cgmkdir").contains(EROFS),
        "{}",
        seen.get("cgmkdir")
    );
    let hier = host_cgroup_hierarchies();
    if hier.is_empty() {
        // Pure cgroup v2: the mount is a cgroup2 itself.
        assert_eq!(cg.fstype, "cgroup2", "{cg:?}");
    }
    for (name, fstype) in &hier {
        let sub = at(m, &format!("/sys/fs/cgroup/{name}"));
        assert_eq!(&sub.fstype, fstype, "{sub:?}");
        assert!(sub.is_ro(), "{sub:?}");
        for o in ["nosuid", "noexec", "nodev"] {
            assert!(sub.has_opt(o), "{} lacks {o}: {sub:?}", sub.point);
        }
    }
    if hier.iter().any(|(n, _)| n == "memory") {
        let limit = seen.get("memlimit");
        assert!(
            limit.parse::<u64>().is_ok(),
            "memory.limit_in_bytes: {limit:?}"
        );
    }
}

/// (mount point, per-mount options, optional fields, fs type, super options)
/// of each mount, with the differences between keel and runc 1.1.5 that are
/// known and intended normalised away (see `default_mounts_same_as_runc`).
/// Peer group numbers become their order of first appearance.
fn normalise(mounts: &[Mount], masked_dirs: &[&str]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    let mut group = |id: &str| -> usize {
        match groups.iter().position(|g| g == id) {
            Some(i) => i,
            None => {
                groups.push(id.to_owned());
                groups.len() - 1
            }
        }
    };
    mounts
        .iter()
        // keel also binds the hybrid hierarchy's cgroup2 ("unified"); runc 1.1.5 does not.
        .filter(|m| m.point != "/sys/fs/cgroup/unified")
        .map(|m| {
            let mut opts = m.opts.clone();
            let mut sup = m.super_opts.clone();
            if m.point == "/sys/fs/cgroup" {
                // keel makes the cgroup tmpfs read-only; runc 1.1.5 leaves it rw.
                opts.retain(|o| o != "ro" && o != "rw");
                sup.retain(|o| o != "ro" && o != "rw");
            }
            if masked_dirs.contains(&m.point.as_str()) {
                // keel's masking tmpfs is size=4k,nr_inodes=1; runc's has no limits.
                sup.retain(|o| o == "ro" || o == "rw");
            }
            let optional: Vec<String> = m
                .optional
                .iter()
                .map(|f| match f.split_once(':') {
                    Some((k, id)) => format!("{k}:#{}", group(id)),
                    None => f.clone(),
                })
                .collect();
            format!(
                "{} {} [{}] - {} {}",
                m.point,
                opts.join(","),
                optional.join(" "),
                m.fstype,
                sup.join(",")
            )
        })
        .collect()
}

/// The harness config (runc's `spec`) under keel and under runc: the same
/// mount points in the same order with the same options. Known differences,
/// all intended and normalised by [`normalise`]:
/// * /sys/fs/cgroup tmpfs: keel remounts it read-only, runc 1.1.5 leaves it
///   rw (only the hierarchies inside are ro).
/// * keel also binds the hybrid layout's cgroup2 hierarchy (`unified`).
/// * runc binds its own per-container cgroup (`/<id>`) of each hierarchy,
///   keel the caller's (the root field, not compared).
/// * masked directories: keel's read-only tmpfs has `size=4k,nr_inodes=1`.
#[test]
fn default_mounts_same_as_runc() {
    if !common::require_root() {
        return;
    }
    let Some(runc) = runc_bin() else {
        eprintln!("SKIP: no runc");
        return;
    };
    let mut b = Bundle::new("mnt-vs-runc");
    let keel = run_seen(&mut b, "true");
    let runc = runc_seen(&runc, &mut b, "true");
    let masked = ["/proc/acpi", "/sys/firmware", "/proc/asound", "/proc/scsi"];
    let (k, r) = (
        normalise(&keel.mounts, &masked),
        normalise(&runc.mounts, &masked),
    );
    assert_eq!(
        k,
        r,
        "keel:\n{}\nrunc:\n{}",
        show(&keel.mounts),
        show(&runc.mounts)
    );
    // The hierarchies runc shows are exactly the host's v1 ones.
    let runc_cg: Vec<&str> = runc
        .mounts
        .iter()
        .filter_map(|m| m.point.strip_prefix("/sys/fs/cgroup/"))
        .collect();
    let host_v1: Vec<String> = host_cgroup_hierarchies()
        .into_iter()
        .filter(|(_, t)| t == "cgroup")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(runc_cg, host_v1);
}

/// A config with binds, tmpfs options, propagation, recursive attributes
/// and tmpcopyup, under keel and under runc in one private rootfs: the same
/// mount table (same normalisation as `default_mounts_same_as_runc`).
#[test]
fn custom_mounts_same_as_runc() {
    if !common::require_root() {
        return;
    }
    let Some(runc) = runc_bin() else {
        eprintln!("SKIP: no runc");
        return;
    };
    let mut b = Bundle::new("mnt-custom-vs-runc").with_own_rootfs();
    b.set("/root/readonly", json!(true));
    let r = b.rootfs();
    for d in ["mnt/s", "mnt/a"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    let (s, a) = (r.join("mnt/s"), r.join("mnt/a"));
    let (s, a) = (path_str(&s).to_owned(), path_str(&a).to_owned());
    let src = host_dir(&b, "src");
    fs::write(src.join("f"), "host\n").unwrap();
    let src = path_str(&src).to_owned();
    add_mount(&mut b, "/mnt/s", "tmpfs", "tmpfs", &["shared", "size=1m"]);
    add_mount(&mut b, "/mnt/peer", "bind", &s, &["bind"]);
    add_mount(&mut b, "/mnt/slave", "bind", &s, &["bind", "slave"]);
    add_mount(&mut b, "/mnt/priv", "bind", &s, &["rbind", "rprivate"]);
    add_mount(
        &mut b,
        "/mnt/t",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "size=2m", "mode=700"],
    );
    add_mount(
        &mut b,
        "/mnt/ro",
        "bind",
        &src,
        &["rbind", "ro", "nodev", "noexec"],
    );
    add_mount(&mut b, "/mnt/rw", "bind", &src, &["bind", "rw", "nosuid"]);
    add_mount(&mut b, "/mnt/a", "tmpfs", "tmpfs", &[]);
    add_mount(&mut b, "/mnt/a/sub", "tmpfs", "tmpfs", &["size=3m"]);
    add_mount(&mut b, "/mnt/rro", "bind", &a, &["rbind", "rro"]);
    add_mount(
        &mut b,
        "/mnt/rflags",
        "bind",
        &a,
        &["rbind", "rnosuid", "rnoexec"],
    );
    add_mount(&mut b, "/etc", "tmpfs", "tmpfs", &["tmpcopyup", "mode=755"]);
    add_mount(
        &mut b,
        "/mnt/mq",
        "mqueue",
        "mqueue",
        &["nosuid", "nodev", "noexec"],
    );
    let script = "echo \"passwd: $(grep -c ^root: /etc/passwd)\"";
    let keel = run_seen(&mut b, script);
    let runc = runc_seen(&runc, &mut b, script);
    assert_eq!(keel.get("passwd"), "1");
    assert_eq!(runc.get("passwd"), "1");
    let masked = ["/proc/acpi", "/sys/firmware", "/proc/asound", "/proc/scsi"];
    let (k, r) = (
        normalise(&keel.mounts, &masked),
        normalise(&runc.mounts, &masked),
    );
    assert_eq!(
        k,
        r,
        "keel:\n{}\nrunc:\n{}",
        show(&keel.mounts),
        show(&runc.mounts)
    );
}

// ---------------------------------------------------------------------------
// root.readonly

#[test]
fn readonly_root_refuses_writes() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-ro-root");
    let seen = run_seen(
        &mut b,
        "echo \"touch: $(touch /x 2>&1; echo rc=$?)\"\n\
         echo \"shm: $(touch /dev/shm/x 2>&1; echo rc=$?)\"",
    );
    let touch = seen.get("touch");
    assert!(touch.contains(EROFS) && !touch.ends_with("rc=0"), "{touch}");
    // Mounts on top of the read-only root stay writable.
    assert_eq!(seen.get("shm"), "rc=0");
    assert!(at(&seen.mounts, "/").is_ro());
    assert!(!b.rootfs().join("x").exists());
}

#[test]
fn writable_root_when_not_readonly() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-rw-root").with_own_rootfs();
    assert_eq!(b.config["root"]["readonly"], json!(false));
    let seen = run_seen(
        &mut b,
        "echo \"touch: $(echo inside > /x 2>&1; echo rc=$?)\"",
    );
    assert_eq!(seen.get("touch"), "rc=0");
    let root = at(&seen.mounts, "/");
    assert!(!root.is_ro(), "{root:?}");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("x")).unwrap(),
        "inside\n"
    );
}

// ---------------------------------------------------------------------------
// Bind mounts

#[test]
fn bind_host_dir_rw_and_ro() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-bind-dir");
    let rw = host_dir(&b, "rw-src");
    let ro = host_dir(&b, "ro-src");
    fs::write(ro.join("keep"), "host\n").unwrap();
    // Destinations that exist in the shared rootfs: nothing is created there.
    add_mount(&mut b, "/tmp", "bind", path_str(&rw), &["bind", "rw"]);
    add_mount(&mut b, "/root", "bind", path_str(&ro), &["rbind", "ro"]);
    let seen = run_seen(
        &mut b,
        "echo \"rw: $(echo from-container > /tmp/new 2>&1; echo rc=$?)\"\n\
         echo \"ro: $( (echo x > /root/keep) 2>&1; echo rc=$?)\"\n\
         echo \"rocat: $(cat /root/keep)\"",
    );
    assert_eq!(seen.get("rw"), "rc=0");
    assert_eq!(
        fs::read_to_string(rw.join("new")).unwrap(),
        "from-container\n"
    );
    let ro_out = seen.get("ro");
    assert!(ro_out.contains(EROFS), "{ro_out}");
    assert_eq!(seen.get("rocat"), "host");
    assert_eq!(fs::read_to_string(ro.join("keep")).unwrap(), "host\n");

    let t = at(&seen.mounts, "/tmp");
    assert!(!t.is_ro(), "{t:?}");
    assert!(t.root.ends_with("/rw-src"), "{t:?}");
    let r = at(&seen.mounts, "/root");
    assert!(r.is_ro(), "{r:?}");
    assert!(r.root.ends_with("/ro-src"), "{r:?}");
}

#[test]
fn bind_file_onto_missing_file_target() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-bind-file").with_own_rootfs();
    let src = b.dir.join("host.conf");
    fs::write(&src, "from the host\n").unwrap();
    add_mount(
        &mut b,
        "/etc/keel/new.conf",
        "bind",
        path_str(&src),
        &["bind", "ro"],
    );
    let seen = run_seen(
        &mut b,
        "echo \"kind: $(stat -c %F /etc/keel/new.conf)\"\n\
         echo \"content: $(cat /etc/keel/new.conf)\"",
    );
    assert_eq!(seen.get("kind"), "regular file");
    assert_eq!(seen.get("content"), "from the host");
    let m = at(&seen.mounts, "/etc/keel/new.conf");
    assert!(m.is_ro(), "{m:?}");
    // The target was created inside the rootfs: an empty regular file.
    let target = b.rootfs().join("etc/keel/new.conf");
    let meta = fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.len(), 0);
    assert_eq!(fs::read_to_string(&src).unwrap(), "from the host\n");
}

#[test]
fn bind_dir_onto_missing_nested_target() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-bind-deep").with_own_rootfs();
    let src = host_dir(&b, "deep-src");
    fs::write(src.join("f"), "deep\n").unwrap();
    add_mount(&mut b, "/opt/a/b/c", "bind", path_str(&src), &["bind"]);
    let seen = run_seen(
        &mut b,
        "echo \"kind: $(stat -c %F /opt/a/b/c)\"\n\
         echo \"content: $(cat /opt/a/b/c/f)\"",
    );
    assert_eq!(seen.get("kind"), "directory");
    assert_eq!(seen.get("content"), "deep");
    at(&seen.mounts, "/opt/a/b/c");
    for p in ["opt", "opt/a", "opt/a/b", "opt/a/b/c"] {
        let meta = fs::symlink_metadata(b.rootfs().join(p)).unwrap();
        assert!(meta.is_dir(), "{p} in the rootfs is not a directory");
    }
    // The parents are ordinary directories, not mounts.
    assert!(!has_mount(&seen.mounts, "/opt/a/b"));
}

#[test]
fn bind_relative_source_is_relative_to_bundle() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-bind-rel");
    let src = host_dir(&b, "reldata");
    fs::write(src.join("marker"), "relative\n").unwrap();
    add_mount(&mut b, "/tmp", "bind", "reldata", &["rbind", "rw"]);
    let seen = run_seen(
        &mut b,
        "echo \"marker: $(cat /tmp/marker)\"\necho written > /tmp/back",
    );
    assert_eq!(seen.get("marker"), "relative");
    assert_eq!(fs::read_to_string(src.join("back")).unwrap(), "written\n");
    assert!(at(&seen.mounts, "/tmp").root.ends_with("/reldata"));
}

#[test]
fn bind_nosuid_nodev_noexec() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-bind-flags");
    let src = host_dir(&b, "flags-src");
    // A static busybox to try to execute from the binds.
    fs::copy(
        common::shared_rootfs().join("bin/busybox"),
        src.join("busybox"),
    )
    .unwrap();
    add_mount(
        &mut b,
        "/tmp",
        "bind",
        path_str(&src),
        &["bind", "nosuid", "nodev", "noexec"],
    );
    add_mount(&mut b, "/root", "bind", path_str(&src), &["rbind", "ro"]);
    let seen = run_seen(
        &mut b,
        "echo \"noexec: $(/tmp/busybox true 2>&1; echo rc=$?)\"\n\
         echo \"exec: $(/root/busybox true 2>&1; echo rc=$?)\"",
    );
    let t = at(&seen.mounts, "/tmp");
    for o in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(t.has_opt(o), "/tmp lacks {o}: {t:?}");
    }
    let noexec = seen.get("noexec");
    assert!(noexec.contains("Permission denied"), "{noexec}");
    // bind vs rbind of a directory without submounts: only the flags asked for.
    let r = at(&seen.mounts, "/root");
    assert!(r.is_ro(), "{r:?}");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(!r.has_opt(o), "/root has {o}: {r:?}");
    }
    assert_eq!(seen.get("exec"), "rc=0");
}

/// Two tmpfs mounts inside the rootfs (/mnt/a and /mnt/a/sub), then binds of
/// the first by its host path: `bind` brings /mnt/a alone, `rbind` its
/// submount too.
#[test]
fn rbind_brings_submounts_bind_does_not() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-rbind").with_own_rootfs();
    fs::create_dir_all(b.rootfs().join("mnt/a")).unwrap();
    let a = b.rootfs().join("mnt/a");
    let a = path_str(&a).to_owned();
    add_mount(&mut b, "/mnt/a", "tmpfs", "tmpfs", &["size=1m"]);
    add_mount(&mut b, "/mnt/a/sub", "tmpfs", "tmpfs", &["size=2m"]);
    add_mount(&mut b, "/mnt/bind", "bind", &a, &["bind"]);
    add_mount(&mut b, "/mnt/rbind", "bind", &a, &["rbind"]);
    let seen = run_seen(
        &mut b,
        "echo hi > /mnt/a/sub/f\n\
         echo \"rbind: $(cat /mnt/rbind/sub/f 2>&1)\"\n\
         echo \"bind: $(cat /mnt/bind/sub/f 2>&1)\"",
    );
    assert_eq!(seen.get("rbind"), "hi");
    assert!(
        seen.get("bind").contains("No such file"),
        "{}",
        seen.get("bind")
    );
    let m = &seen.mounts;
    assert!(has_mount(m, "/mnt/rbind/sub"), "{}", show(m));
    assert!(!has_mount(m, "/mnt/bind/sub"), "{}", show(m));
    assert!(at(m, "/mnt/rbind/sub").has_super("size=2048k"));
    assert!(at(m, "/mnt/bind").has_super("size=1024k"));
}

// ---------------------------------------------------------------------------
// Propagation

#[test]
fn propagation_options_in_mountinfo() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-propagation").with_own_rootfs();
    fs::create_dir_all(b.rootfs().join("mnt/s")).unwrap();
    let s = b.rootfs().join("mnt/s");
    let s = path_str(&s).to_owned();
    add_mount(&mut b, "/mnt/s", "tmpfs", "tmpfs", &["shared"]);
    add_mount(&mut b, "/mnt/peer", "bind", &s, &["bind"]);
    add_mount(&mut b, "/mnt/slave", "bind", &s, &["bind", "slave"]);
    add_mount(&mut b, "/mnt/private", "bind", &s, &["rbind", "rprivate"]);
    add_mount(&mut b, "/mnt/p", "tmpfs", "tmpfs", &["rprivate"]);
    add_mount(&mut b, "/mnt/u", "tmpfs", "tmpfs", &["unbindable"]);
    let seen = run_seen(&mut b, "true");
    let m = &seen.mounts;
    let shared = at(m, "/mnt/s");
    let group = shared
        .shared()
        .unwrap_or_else(|| panic!("/mnt/s not shared: {shared:?}"));
    // A bind of a shared mount joins its peer group.
    assert_eq!(at(m, "/mnt/peer").shared(), Some(group.clone()));
    let slave = at(m, "/mnt/slave");
    assert_eq!(slave.master(), Some(group.clone()), "{slave:?}");
    assert_eq!(slave.shared(), None, "{slave:?}");
    for p in ["/mnt/private", "/mnt/p"] {
        let x = at(m, p);
        assert!(x.optional.is_empty(), "{p} not private: {x:?}");
    }
    let u = at(m, "/mnt/u");
    assert_eq!(u.optional, vec!["unbindable".to_owned()], "{u:?}");
}

/// `linux.rootfsPropagation`: the container starts with each value, its root
/// is not a peer of anything on the host, and the host's mounts keep their
/// propagation. On this host every mount is private, so "slave" has no
/// master to show. Like runc 1.1.5, keel makes the rootfs's parent mount
/// private before binding the rootfs (pivot_root refuses a shared parent
/// with EINVAL), so with "shared" the container's `/` ends up private in
/// both (runc#1755); that is not asserted here, only that "shared" works.
#[test]
fn rootfs_propagation_values() {
    if !common::require_root() {
        return;
    }
    let host_root_before = at(
        &parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap()),
        "/",
    )
    .optional
    .clone();
    for p in [
        "private", "rprivate", "slave", "rslave", "shared", "rshared",
    ] {
        let mut b = Bundle::new(&format!("mnt-rootprop-{p}"));
        b.set("/linux/rootfsPropagation", json!(p));
        let seen = run_seen(&mut b, "true");
        let root = at(&seen.mounts, "/");
        if !p.contains("shared") {
            assert_eq!(root.shared(), None, "{p}: {root:?}");
        }
        assert!(root.is_ro(), "{p}: {root:?}");
        // The container's mounts are in the container's namespace only.
        for m in &seen.mounts {
            if let Some(g) = m.shared() {
                let host = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap());
                assert!(
                    host.iter().all(|h| h.shared().as_ref() != Some(&g)),
                    "{p}: {} is a peer of a host mount ({g})",
                    m.point
                );
            }
        }
    }
    let host_root_after = at(
        &parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap()),
        "/",
    )
    .optional
    .clone();
    assert_eq!(host_root_before, host_root_after);
}

// ---------------------------------------------------------------------------
// Recursive attributes

#[test]
fn recursive_attributes_reach_submounts() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-rro").with_own_rootfs();
    fs::create_dir_all(b.rootfs().join("mnt/a")).unwrap();
    let a = b.rootfs().join("mnt/a");
    let a = path_str(&a).to_owned();
    add_mount(&mut b, "/mnt/a", "tmpfs", "tmpfs", &[]);
    add_mount(&mut b, "/mnt/a/sub", "tmpfs", "tmpfs", &[]);
    add_mount(&mut b, "/mnt/rro", "bind", &a, &["rbind", "rro"]);
    add_mount(&mut b, "/mnt/ro", "bind", &a, &["rbind", "ro"]);
    add_mount(
        &mut b,
        "/mnt/rflags",
        "bind",
        &a,
        &["rbind", "rnosuid", "rnoexec", "rnodev"],
    );
    let seen = run_seen(
        &mut b,
        "echo \"rro-sub: $(touch /mnt/rro/sub/x 2>&1; echo rc=$?)\"\n\
         echo \"ro-sub: $(touch /mnt/ro/sub/y 2>&1; echo rc=$?)\"\n\
         echo \"ro-top: $(touch /mnt/ro/z 2>&1; echo rc=$?)\"\n\
         echo \"orig: $(touch /mnt/a/sub/w 2>&1; echo rc=$?)\"",
    );
    let m = &seen.mounts;
    assert!(at(m, "/mnt/rro").is_ro());
    assert!(at(m, "/mnt/rro/sub").is_ro(), "{}", show(m));
    assert!(
        seen.get("rro-sub").contains(EROFS),
        "{}",
        seen.get("rro-sub")
    );
    // Plain "ro" on an rbind makes only the top mount read-only.
    assert!(at(m, "/mnt/ro").is_ro());
    assert!(!at(m, "/mnt/ro/sub").is_ro(), "{}", show(m));
    assert_eq!(seen.get("ro-sub"), "rc=0");
    assert!(seen.get("ro-top").contains(EROFS));
    // The originals are untouched.
    assert!(!at(m, "/mnt/a").is_ro() && !at(m, "/mnt/a/sub").is_ro());
    assert_eq!(seen.get("orig"), "rc=0");
    for p in ["/mnt/rflags", "/mnt/rflags/sub"] {
        let x = at(m, p);
        for o in ["nosuid", "noexec", "nodev"] {
            assert!(x.has_opt(o), "{p} lacks {o}: {x:?}");
        }
        assert!(!x.is_ro(), "{x:?}");
    }
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(!at(m, "/mnt/a/sub").has_opt(o));
    }
}

// ---------------------------------------------------------------------------
// tmpfs, tmpcopyup, mqueue, proc, sysfs

#[test]
fn tmpfs_options_in_super_options() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-tmpfs").with_own_rootfs();
    add_mount(
        &mut b,
        "/mnt/t",
        "tmpfs",
        "tmpfs",
        &["size=1m", "mode=1777"],
    );
    add_mount(
        &mut b,
        "/mnt/u",
        "tmpfs",
        "tmpfs",
        &[
            "nosuid",
            "nodev",
            "noexec",
            "size=2m",
            "mode=700",
            "nr_inodes=100",
        ],
    );
    let seen = run_seen(
        &mut b,
        "echo \"tmode: $(stat -c %a /mnt/t)\"\necho \"umode: $(stat -c %a /mnt/u)\"",
    );
    let t = at(&seen.mounts, "/mnt/t");
    assert_eq!(t.fstype, "tmpfs");
    assert!(t.has_super("size=1024k"), "{t:?}");
    // 1777 is tmpfs's default mode, which mountinfo leaves out.
    assert_eq!(seen.get("tmode"), "1777");
    let u = at(&seen.mounts, "/mnt/u");
    for o in ["size=2048k", "mode=700", "nr_inodes=100"] {
        assert!(u.has_super(o), "/mnt/u lacks {o}: {u:?}");
    }
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(u.has_opt(o), "/mnt/u lacks {o}: {u:?}");
    }
    assert_eq!(seen.get("umode"), "700");
}

#[test]
fn tmpcopyup_keeps_contents_and_spares_the_rootfs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-tmpcopyup").with_own_rootfs();
    b.set("/root/readonly", json!(true));
    let passwd_before = fs::read_to_string(b.rootfs().join("etc/passwd")).unwrap();
    add_mount(
        &mut b,
        "/etc",
        "tmpfs",
        "tmpfs",
        &["tmpcopyup", "mode=755", "nosuid"],
    );
    let seen = run_seen(
        &mut b,
        "echo \"passwd: $(grep ^root: /etc/passwd)\"\n\
         echo \"new: $(echo fresh > /etc/new 2>&1; cat /etc/new)\"\n\
         echo \"append: $(echo extra >> /etc/passwd 2>&1; echo rc=$?)\"\n\
         echo \"root: $(touch /x 2>&1; echo rc=$?)\"",
    );
    assert_eq!(seen.get("passwd"), "root:x:0:0:root:/root:/bin/sh");
    assert_eq!(seen.get("new"), "fresh");
    assert_eq!(seen.get("append"), "rc=0");
    assert!(seen.get("root").contains(EROFS));
    let etc = at(&seen.mounts, "/etc");
    assert_eq!(etc.fstype, "tmpfs");
    assert!(etc.has_opt("nosuid") && !etc.is_ro(), "{etc:?}");
    // The writes stayed in the tmpfs.
    assert!(!b.rootfs().join("etc/new").exists());
    assert_eq!(
        fs::read_to_string(b.rootfs().join("etc/passwd")).unwrap(),
        passwd_before
    );
}

#[test]
fn mqueue_and_extra_proc_and_sysfs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-extra-fs").with_own_rootfs();
    b.set("/root/readonly", json!(true));
    add_mount(
        &mut b,
        "/mnt/mq",
        "mqueue",
        "mqueue",
        &["nosuid", "nodev", "noexec"],
    );
    add_mount(
        &mut b,
        "/mnt/proc2",
        "proc",
        "proc",
        &["nosuid", "nodev", "noexec"],
    );
    add_mount(
        &mut b,
        "/mnt/sys2",
        "sysfs",
        "sysfs",
        &["ro", "nosuid", "nodev", "noexec"],
    );
    let seen = run_seen(
        &mut b,
        "echo \"pid: $(cat /mnt/proc2/self/stat | cut -d' ' -f1)\"\n\
         echo \"sys: $(touch /mnt/sys2/x 2>&1; echo rc=$?)\"\n\
         echo \"kernel: $(ls /mnt/sys2 | grep -c kernel)\"",
    );
    let m = &seen.mounts;
    let mq = at(m, "/mnt/mq");
    assert_eq!(mq.fstype, "mqueue");
    let p2 = at(m, "/mnt/proc2");
    assert_eq!(p2.fstype, "proc");
    assert!(p2.has_opt("noexec") && p2.has_opt("nosuid"), "{p2:?}");
    // The same pid namespace as /proc: the shell sees itself... as a child of init.
    assert!(seen.get("pid").parse::<u32>().is_ok());
    let s2 = at(m, "/mnt/sys2");
    assert_eq!(s2.fstype, "sysfs");
    assert!(s2.is_ro(), "{s2:?}");
    let sys = seen.get("sys");
    assert!(
        sys.contains(EROFS) || sys.contains("Permission denied"),
        "{sys}"
    );
    assert_eq!(seen.get("kernel"), "1");
}

// ---------------------------------------------------------------------------
// maskedPaths and readonlyPaths

#[test]
fn masked_paths_are_empty_and_read_only() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-masked");
    b.set("/linux/maskedPaths/-", json!("/proc/keel-no-such-file"));
    b.set("/linux/maskedPaths/-", json!("/no/such/dir"));
    let seen = run_seen(
        &mut b,
        "for f in /proc/kcore /proc/keys /proc/timer_list; do\n\
           if [ -e $f ]; then echo \"$f: $(head -c 64 $f | wc -c) $(stat -c %t:%T $f)\"; fi\n\
         done\n\
         for d in /proc/acpi /sys/firmware; do\n\
           if [ -e $d ]; then echo \"$d: [$(ls -A $d)] $(touch $d/x 2>&1; echo rc=$?)\"; fi\n\
         done\n\
         echo \"nosuch: $(ls /no 2>&1)\"",
    );
    let m = &seen.mounts;
    for f in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        if !Path::new(f).exists() {
            continue;
        }
        // Bound from the container's /dev/null: reads nothing, char device 1:3.
        assert_eq!(seen.get(f), "0 1:3", "{f}");
        assert!(has_mount(m, f), "{f} not masked:\n{}", show(m));
    }
    for d in ["/proc/acpi", "/sys/firmware"] {
        if !Path::new(d).exists() {
            continue;
        }
        let v = seen.get(d);
        assert!(v.starts_with("[] "), "{d} not empty: {v}");
        assert!(v.contains(EROFS), "{d} writable: {v}");
        let x = at(m, d);
        assert_eq!(x.fstype, "tmpfs", "{x:?}");
        assert!(x.is_ro(), "{x:?}");
    }
    // Missing masked paths are skipped, and nothing is created for them.
    assert!(seen.get("nosuch").contains("No such file"));
    assert!(!has_mount(m, "/proc/keel-no-such-file"));
}

#[test]
fn readonly_paths_are_read_only() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-readonly-paths");
    b.set("/linux/readonlyPaths/-", json!("/proc/keel-no-such-file"));
    let seen = run_seen(
        &mut b,
        "echo \"hostname: $( (echo x > /proc/sys/kernel/hostname) 2>&1; echo rc=$?)\"\n\
         echo \"uts: $(hostname)\"",
    );
    let m = &seen.mounts;
    for p in [
        "/proc/sys",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sysrq-trigger",
    ] {
        if !Path::new(p).exists() {
            continue;
        }
        let x = at(m, p);
        assert!(x.is_ro(), "{p} not read-only: {x:?}");
        assert_eq!(x.fstype, "proc", "{x:?}");
    }
    let h = seen.get("hostname");
    assert!(h.contains(EROFS) && !h.ends_with("rc=0"), "{h}");
    assert_eq!(seen.get("uts"), "runc");
    assert!(!has_mount(m, "/proc/keel-no-such-file"));
}

// ---------------------------------------------------------------------------
// Destinations through symlinks (security.md §4, T-05a, T-07)

/// Symlinks in the rootfs that point at host paths (absolute, climbing with
/// "..", relative) used as mount destinations: every mount lands inside the
/// rootfs, the host canary stays empty and unmounted, and the missing host
/// path is not created.
#[test]
fn symlinked_destinations_stay_in_rootfs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-symlink-escape").with_own_rootfs();
    let victim = host_dir(&b, "victim");
    let missing = b.dir.join("victim-missing");
    let src = host_dir(&b, "legit");
    fs::write(src.join("marker"), "LEGIT\n").unwrap();
    let r = b.rootfs();
    let v = path_str(&victim).to_owned();
    let mi = path_str(&missing).to_owned();
    symlink(format!("/../../../../../../..{v}"), r.join("evil")).unwrap();
    symlink(&v, r.join("abs")).unwrap();
    symlink(format!("../../../../../../../..{mi}"), r.join("rel")).unwrap();
    add_mount(&mut b, "/evil/m1", "tmpfs", "tmpfs", &["size=1m"]);
    add_mount(&mut b, "/abs/new/deep/m2", "tmpfs", "tmpfs", &["size=2m"]);
    add_mount(&mut b, "/rel/m3", "bind", path_str(&src), &["rbind", "ro"]);
    let seen = run_seen(
        &mut b,
        "echo \"marker: $(cat /rel/m3/marker)\"\n\
         echo \"m1: $(ls -d /evil/m1)\"",
    );
    assert_eq!(seen.get("marker"), "LEGIT");
    // Inside the container the mounts sit at the symlinks' targets, read as
    // paths inside the rootfs.
    let m = &seen.mounts;
    assert!(
        at(m, &format!("{v}/m1")).has_super("size=1024k"),
        "{}",
        show(m)
    );
    assert!(at(m, &format!("{v}/new/deep/m2")).has_super("size=2048k"));
    assert!(at(m, &format!("{mi}/m3")).is_ro());
    // On the host: the canary is empty, the missing path still missing, and
    // the targets were made inside the rootfs.
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "host canary touched"
    );
    assert!(
        !missing.exists(),
        "{} created on the host",
        missing.display()
    );
    let inside = |p: &str| r.join(p.trim_start_matches('/'));
    assert!(inside(&format!("{v}/m1")).is_dir());
    assert!(inside(&format!("{v}/new/deep/m2")).is_dir());
    assert!(inside(&format!("{mi}/m3")).is_dir());
    assert_no_host_mount_mentions(&v);
    assert_no_host_mount_mentions(&mi);
}

/// A dangling symlink as a destination (/etc/resolv.conf -> ../run/resolv.conf
/// with no /run): its target is created inside the rootfs, as runc does.
#[test]
fn dangling_symlink_destination_is_created_inside() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-dangling").with_own_rootfs();
    let r = b.rootfs();
    symlink("../run/resolv.conf", r.join("etc/resolv.conf")).unwrap();
    let missing = b.dir.join("hosts-missing");
    symlink(
        format!("/../../..{}", path_str(&missing)),
        r.join("etc/hosts"),
    )
    .unwrap();
    let src = b.dir.join("resolv.conf");
    fs::write(&src, "nameserver 192.0.2.53\n").unwrap();
    add_mount(
        &mut b,
        "/etc/resolv.conf",
        "bind",
        path_str(&src),
        &["bind", "ro"],
    );
    add_mount(
        &mut b,
        "/etc/hosts",
        "bind",
        path_str(&src),
        &["bind", "ro"],
    );
    let seen = run_seen(
        &mut b,
        "echo \"resolv: $(cat /etc/resolv.conf)\"\necho \"hosts: $(cat /etc/hosts)\"",
    );
    assert_eq!(seen.get("resolv"), "nameserver 192.0.2.53");
    assert_eq!(seen.get("hosts"), "nameserver 192.0.2.53");
    assert!(
        has_mount(&seen.mounts, "/run/resolv.conf"),
        "{}",
        show(&seen.mounts)
    );
    let made = fs::symlink_metadata(r.join("run/resolv.conf")).unwrap();
    assert!(made.file_type().is_file(), "{made:?}");
    assert!(fs::symlink_metadata(r.join("etc/resolv.conf"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        !missing.exists(),
        "{} created on the host",
        missing.display()
    );
    assert!(r.join(path_str(&missing).trim_start_matches('/')).is_file());
}

/// /proc or /sys as a symlink (to a directory in the rootfs, or to a host
/// directory) is refused with an error naming the symlink; nothing is
/// mounted or created at the symlink's target.
#[test]
fn proc_and_sys_symlink_destinations_refused() {
    if !common::require_root() {
        return;
    }
    for (d, absolute) in [
        ("proc", false),
        ("proc", true),
        ("sys", false),
        ("sys", true),
    ] {
        let mut b = Bundle::new(&format!("mnt-symlink-{d}")).with_own_rootfs();
        let victim = host_dir(&b, "victim");
        let r = b.rootfs();
        let bad = r.join(format!("bad-{d}"));
        fs::create_dir(&bad).unwrap();
        fs::remove_dir(r.join(d)).unwrap();
        let target = if absolute {
            path_str(&victim).to_owned()
        } else {
            format!("bad-{d}")
        };
        symlink(&target, r.join(d)).unwrap();
        let (_, err) = run_failing(&mut b);
        assert!(
            err.contains("symlink") && err.contains(&format!("/{d}")),
            "/{d} -> {target}: unclear error: {err}"
        );
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&bad).unwrap().count(), 0);
        assert_no_host_mount_mentions(path_str(&victim));
    }
}

/// Only procfs may cover /proc (CVE-2019-16884, security.md T-06): a bind
/// of a host directory, a tmpfs on "/proc/", and a tmpfs reaching /proc
/// through a symlink are all refused. runc 1.1.5 refuses the bind ("not of
/// type proc"); its tmpfs cases fail later, for lack of /proc/self/fd.
/// Mounts *inside* /proc are refused too, except runc's lxcfs list (CVE-2019-16884).
#[test]
fn only_procfs_may_cover_proc() {
    if !common::require_root() {
        return;
    }
    for case in ["bind", "tmpfs-trailing-slash", "tmpfs-via-symlink"] {
        let mut b = Bundle::new(&format!("mnt-fakeproc-{case}")).with_own_rootfs();
        b.set("/root/readonly", json!(true));
        let fake = host_dir(&b, "fakeproc");
        fs::write(fake.join("cpuinfo"), "fake\n").unwrap();
        match case {
            "bind" => add_mount(&mut b, "/proc", "bind", path_str(&fake), &["rbind"]),
            "tmpfs-trailing-slash" => add_mount(&mut b, "/proc/", "tmpfs", "tmpfs", &[]),
            _ => {
                symlink("/proc", b.rootfs().join("myproc")).unwrap();
                add_mount(&mut b, "/myproc", "tmpfs", "tmpfs", &[]);
            }
        }
        let (_, err) = run_failing(&mut b);
        // Either check may catch it: a mount landing on the procfs already at /proc is
        // refused before it is made; one that replaces /proc fails the procfs check.
        assert!(
            (err.contains("not procfs") || err.contains("refusing a mount inside /proc"))
                && err.contains("/proc"),
            "{case}: unclear error: {err}"
        );
        assert_eq!(fs::read_dir(&fake).unwrap().count(), 1);
    }
}

// ---------------------------------------------------------------------------
// --no-pivot

#[test]
fn no_pivot_sees_rootfs_as_root() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("mnt-no-pivot").with_own_rootfs();
    b.set("/root/readonly", json!(true));
    fs::write(b.rootfs().join("rootfs-marker"), "mine\n").unwrap();
    let seen = run_seen_with(
        &mut b,
        &["--no-pivot"],
        "echo \"marker: $(cat /rootfs-marker)\"\n\
         echo \"ls: $(ls / | tr '\\n' ' ')\"\n\
         echo \"touch: $(touch /x 2>&1; echo rc=$?)\"\n\
         echo \"keys: $(wc -c < /proc/keys)\"",
    );
    assert_eq!(seen.get("marker"), "mine");
    let ls = seen.get("ls");
    for d in ["bin", "dev", "etc", "proc", "sys", "rootfs-marker"] {
        assert!(ls.split(' ').any(|x| x == d), "/ lacks {d}: {ls}");
    }
    assert!(seen.get("touch").contains(EROFS));
    assert_eq!(seen.get("keys"), "0");
    let m = &seen.mounts;
    let root = at(m, "/");
    assert!(root.is_ro(), "{root:?}");
    assert!(at(m, "/proc").fstype == "proc");
    assert!(at(m, "/dev/pts").fstype == "devpts");
}

/// T-19: under --no-pivot the old root's mounts stay in the container's mount
/// namespace. A full host procfs among them would let the kernel allow a fresh,
/// unmasked procfs in a user namespace inside the container (runc's
/// no_pivot.bats); keel detaches them, so the mount fails as with pivot_root.
#[test]
fn t19_no_pivot_does_not_allow_an_unmasked_procfs() {
    if !common::require_root() {
        return;
    }
    let probe = "unshare -U -r -m -p -f sh -c 'mount -t proc proc /proc && echo MOUNTED'; \
                 echo \"done: yes\"";
    for (name, flags) in [
        ("mnt-t19-pivot", &[][..]),
        ("mnt-t19-nopivot", &["--no-pivot"][..]),
    ] {
        let mut b = Bundle::new(name);
        // Mapping uid 0 in a user namespace needs CAP_SETFCAP (Docker's
        // default set has it); nothing here gives CAP_SYS_ADMIN.
        for set in ["bounding", "effective", "permitted"] {
            let mut caps = b.config["process"]["capabilities"][set].clone();
            caps.as_array_mut().unwrap().push(json!("CAP_SETFCAP"));
            b.set(&format!("/process/capabilities/{set}"), caps);
        }
        b.args(&["sh", "-c", probe]).write();
        let dir = b.dir.to_str().unwrap().to_owned();
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--bundle", &dir, &b.id]);
        let o = b.keel(&args);
        let (code, out, err) = (
            common::exit_code(o.status),
            common::text(&o.stdout),
            common::text(&o.stderr),
        );
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains("done: yes"), "{name}: {out}{err}");
        assert!(
            !out.contains("MOUNTED"),
            "{name}: a fresh procfs was allowed: {out}"
        );
    }
}

/// Sets up a chroot whose "/" is a tmpfs mounted on a shared mount and runs
/// keel there. Everything happens in a private mount namespace that dies with
/// `unshare`.
const CHROOT_SCRIPT: &str = r#"set -e
T=$1; KEEL=$2; BUNDLE=$3; ID=$4
mount -t tmpfs keel-test-chroot "$T"
mount --make-shared "$T"
R=$T/root
mkdir "$R"
mount -t tmpfs keel-test-root "$R"
mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R/usr" "$R/b" "$R/state"
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d";
  elif [ -d "/$d" ]; then mkdir "$R/$d"; mount --rbind "/$d" "$R/$d"; fi
done
for d in usr proc sys dev; do mount --rbind "/$d" "$R/$d"; done
touch "$R/keel"; mount --bind "$KEEL" "$R/keel"
mount --bind "$BUNDLE" "$R/b"
set +e
chroot "$R" /keel --root /state run --bundle /b "$ID-pivot" \
  >"$BUNDLE/io/chroot-pivot.out" 2>"$BUNDLE/io/chroot-pivot.err"
echo "pivot: $?"
chroot "$R" /keel --root /state run --no-pivot --bundle /b "$ID-nopivot" \
  >"$BUNDLE/io/chroot-nopivot.out" 2>"$BUNDLE/io/chroot-nopivot.err"
echo "nopivot: $?"
"#;

/// `--no-pivot` where pivot_root(2) cannot work: keel itself runs chrooted
/// into a mount whose parent is shared. Making "/" a recursive slave (runc's
/// default rootfsPropagation) only reaches "/" and below, so pivot_root fails
/// with EINVAL, as it does on a ramfs root. (A chroot into a plain directory
/// fails earlier, for runc 1.1.5 too: "/" is not a mount, so its propagation
/// cannot be set.) Without the flag, create fails naming pivot_root; with
/// it, the container runs and sees its rootfs as "/".
#[test]
fn no_pivot_works_where_pivot_root_cannot() {
    if !common::require_root() {
        return;
    }
    let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIP: no unshare(1)");
        return;
    };
    let mut b = Bundle::new("mnt-no-pivot-chroot").with_own_rootfs();
    fs::write(b.rootfs().join("rootfs-marker"), "mine\n").unwrap();
    b.args(&[
        "sh",
        "-c",
        "echo \"marker: $(cat /rootfs-marker)\"; echo \"ls: $(ls / | tr '\\n' ' ')\"",
    ]);
    b.write();
    let t = host_dir(&b, "chroot");
    let out_path = b.dir.join("io/unshare.out");
    let err_path = b.dir.join("io/unshare.err");
    let mut child = Command::new(unshare)
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            CHROOT_SCRIPT,
            "sh",
        ])
        .arg(&t)
        .arg(common::keel_bin())
        .arg(&b.dir)
        .arg(&b.id)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn unshare");
    let status = common::wait_child(&mut child, "keel in a chroot");
    let read =
        |name: &str| common::text(&fs::read(b.dir.join("io").join(name)).unwrap_or_default());
    let (out, err) = (read("unshare.out"), read("unshare.err"));
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert_host_clean(&b);
    for id in [format!("{}-pivot", b.id), format!("{}-nopivot", b.id)] {
        assert!(common::cgroups_named(&id).is_empty(), "{id}: cgroup left");
    }

    let pivot_err = read("chroot-pivot.err");
    assert!(
        out.contains("pivot: 1") || out.contains("pivot: 255"),
        "{out}\n{pivot_err}"
    );
    assert!(
        pivot_err.contains("pivot_root") && pivot_err.contains("EINVAL"),
        "{pivot_err}"
    );
    assert_eq!(read("chroot-pivot.out"), "", "the container ran");

    let (nopivot_out, nopivot_err) = (read("chroot-nopivot.out"), read("chroot-nopivot.err"));
    assert!(out.contains("nopivot: 0"), "{out}\n{nopivot_err}");
    let seen = split_seen(&format!("{nopivot_out}{MARK}\n"));
    assert_eq!(seen.get("marker"), "mine", "{nopivot_out}");
    let ls = seen.get("ls");
    for d in ["bin", "dev", "etc", "proc", "rootfs-marker"] {
        assert!(ls.split(' ').any(|x| x == d), "/ lacks {d}: {ls}");
    }
    assert!(!ls.split(' ').any(|x| x == "keel" || x == "state"), "{ls}");
}
