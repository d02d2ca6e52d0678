//! Namespaces, hostname and domainname, sysctl, devices and the cgroup
//! namespace, as the container sees them and as the host is left afterwards.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Bundle;
use serde_json::json;

fn run_ok(b: &mut Bundle, cmd: &[&str]) -> String {
    let (code, out, err) = b.run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed\nstdout: {out}\nstderr: {err}");
    out
}

fn read_trim(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim_end()
        .to_owned()
}

/// The host's `/proc/self/ns/<ns>` link, e.g. "net:[4026531833]".
fn host_ns(ns: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/self/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn ns_of(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Lines `name=value` of the output, as a map.
fn kv(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A shell script printing `<ns>=<readlink /proc/self/ns/<ns>>` for each ns.
fn ns_script(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("echo {n}=$(readlink /proc/self/ns/{n}); "))
        .collect()
}

// ---------------------------------------------------------------------------
// hostname and domainname

#[test]
fn hostname_and_domainname() {
    if !common::require_root() {
        return;
    }
    let host_before = (
        read_trim("/proc/sys/kernel/hostname"),
        read_trim("/proc/sys/kernel/domainname"),
    );
    let mut b = Bundle::new("uts-names");
    b.set("/hostname", json!("keel-uts-test"));
    b.set("/domainname", json!("keel.example.org"));
    let out = run_ok(
        &mut b,
        &[
            "sh",
            "-c",
            "hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname",
        ],
    );
    assert_eq!(out, "keel-uts-test\nkeel-uts-test\nkeel.example.org\n");
    let host_after = (
        read_trim("/proc/sys/kernel/hostname"),
        read_trim("/proc/sys/kernel/domainname"),
    );
    assert_eq!(host_before, host_after, "the host's names changed");
    assert_ne!(host_after.0, "keel-uts-test");
}

// ---------------------------------------------------------------------------
// New namespaces

#[test]
fn every_namespace_type_is_new() {
    if !common::require_root() {
        return;
    }
    let kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "time"];
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIP: kernel without time namespaces");
        return;
    }
    let mut b = Bundle::new("ns-new");
    b.set("/linux/namespaces/-", json!({"type": "cgroup"}));
    b.set("/linux/namespaces/-", json!({"type": "time"}));
    let mut script_kinds = kinds.to_vec();
    script_kinds.push("user");
    let out = run_ok(&mut b, &["sh", "-c", &ns_script(&script_kinds)]);
    let seen = kv(&out);
    for k in kinds {
        let inside = seen
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in output: {out}"));
        assert!(inside.starts_with(&format!("{k}:[")), "{k}: {inside}");
        assert_ne!(*inside, host_ns(k), "{k}: the container shares the host's");
    }
    // The user namespace was not asked for: it is the host's.
    assert_eq!(seen["user"], host_ns("user"), "{out}");
}

#[test]
fn without_network_namespace_the_host_net_is_shared() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("ns-hostnet");
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]),
    );
    let out = run_ok(&mut b, &["sh", "-c", &ns_script(&["net", "ipc"])]);
    let seen = kv(&out);
    assert_eq!(seen["net"], host_ns("net"), "{out}");
    assert_ne!(seen["ipc"], host_ns("ipc"), "{out}");
}

// ---------------------------------------------------------------------------
// Namespaces joined by path

/// A config that joins another container's namespaces: no hostname (the uts
/// namespace may be joined) and no cgroup mount, which binds the host's
/// hierarchies by their paths that the other namespace does not show (runc's
/// getCgroupMounts would fail the same way).
fn for_a_joined_namespace(b: &mut Bundle) {
    b.unset("/hostname");
    let cg = b.unset("/mounts/6").unwrap();
    assert_eq!(cg["type"], "cgroup");
}

#[test]
fn namespaces_joined_by_path() {
    if !common::require_root() {
        return;
    }
    let mut a = Bundle::new("join-a");
    let a_name = format!("alpha-{}", std::process::id());
    a.set("/hostname", json!(a_name));
    a.args(&["sleep", "1000"]);
    a.run_detached();
    let pid = a.pid();
    let a_ns: BTreeMap<&str, String> = ["net", "ipc", "uts", "pid"]
        .into_iter()
        .map(|n| (n, ns_of(pid, n)))
        .collect();

    let mut b = Bundle::new("join-b");
    for_a_joined_namespace(&mut b);
    b.set(
        "/linux/namespaces",
        json!([
            {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
            {"type": "network", "path": format!("/proc/{pid}/ns/net")},
            {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
            {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
            {"type": "mount"}
        ]),
    );
    let script = format!(
        "echo hostname=$(hostname); echo self=$$; {} \
         echo one=$(tr '\\0' ' ' </proc/1/cmdline); \
         echo pids=$(ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' ')",
        ns_script(&["net", "ipc", "uts", "pid", "mnt"])
    );
    let out = run_ok(&mut b, &["sh", "-c", &script]);
    let seen = kv(&out);
    assert_eq!(seen["hostname"], a_name, "{out}");
    for n in ["net", "ipc", "uts", "pid"] {
        assert_eq!(seen[n], a_ns[n], "{n}: {out}");
    }
    assert_ne!(seen["mnt"], ns_of(pid, "mnt"), "mnt was not joined: {out}");
    // In A's pid namespace: A's init is pid 1, B is another pid.
    assert_ne!(seen["self"], "1", "{out}");
    assert_eq!(seen["one"].trim_end(), "sleep 1000", "{out}");
    let pids: Vec<&str> = seen["pids"].split_whitespace().collect();
    assert_eq!(pids.first(), Some(&"1"), "{out}");
    assert!(pids.contains(&seen["self"].as_str()), "{out}");

    // A is untouched and still running.
    assert_eq!(a.status(), "running");
    assert_eq!(ns_of(pid, "uts"), a_ns["uts"]);
}

// ---------------------------------------------------------------------------
// Time namespace

#[test]
fn time_namespace_offsets() {
    if !common::require_root() {
        return;
    }
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIP: kernel without time namespaces");
        return;
    }
    let uptime = |s: &str| -> f64 {
        s.split_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("bad uptime {s:?}"))
    };
    let mut b = Bundle::new("timens");
    b.set("/linux/namespaces/-", json!({"type": "time"}));
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 86400}, "boottime": {"secs": 172800}}),
    );
    let host_before = uptime(&read_trim("/proc/uptime"));
    let out = run_ok(
        &mut b,
        &[
            "sh",
            "-c",
            "cat /proc/uptime; cat /proc/self/timens_offsets",
        ],
    );
    let host_after = uptime(&read_trim("/proc/uptime"));
    let mut lines = out.lines();
    let inside = uptime(lines.next().unwrap_or_default());
    assert!(
        inside >= host_before + 172800.0 && inside <= host_after + 172800.0 + 1.0,
        "uptime inside {inside}, host {host_before}..{host_after}"
    );
    let offsets: Vec<String> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        offsets.contains(&"monotonic 86400 0".to_owned()),
        "{offsets:?}"
    );
    assert!(
        offsets.contains(&"boottime 172800 0".to_owned()),
        "{offsets:?}"
    );
    // The test process (keel's parent) is still in the host's time namespace.
    assert_eq!(
        fs::read_to_string("/proc/self/timens_offsets")
            .unwrap()
            .split_whitespace()
            .filter(|f| *f != "0" && *f != "monotonic" && *f != "boottime")
            .count(),
        0
    );
}

// ---------------------------------------------------------------------------
// linux.sysctl

#[test]
fn sysctl_values_land_inside_and_not_on_the_host() {
    if !common::require_root() {
        return;
    }
    let keys = [
        "/proc/sys/kernel/shmmax",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/domainname",
    ];
    let host_before: Vec<String> = keys.iter().map(|k| read_trim(k)).collect();
    let mut b = Bundle::new("sysctl");
    b.set(
        "/linux/sysctl",
        json!({
            "kernel.shmmax": "123456789",
            "net.ipv4.ip_forward": "1",
            "kernel.domainname": "sysctl.example"
        }),
    );
    let out = run_ok(&mut b, &["cat", keys[0], keys[1], keys[2]]);
    assert_eq!(out, "123456789\n1\nsysctl.example\n");
    assert_ne!(host_before[0], "123456789", "host already has the value");
    let host_after: Vec<String> = keys.iter().map(|k| read_trim(k)).collect();
    assert_eq!(host_before, host_after, "host sysctls changed");
}

// ---------------------------------------------------------------------------
// linux.devices and /dev

/// (type, major, minor, mode, uid, gid) of a host path.
fn node(p: &str) -> (bool, u64, u64, u32, u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let rdev = m.rdev();
    (
        m.file_type().is_char_device(),
        libc_major(rdev),
        libc_minor(rdev),
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
    )
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

#[test]
fn devices_default_listed_and_symlinks() {
    if !common::require_root() {
        return;
    }
    let host_nodes = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/fuse",
    ];
    let host_nodes: Vec<&str> = host_nodes
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let before: Vec<_> = host_nodes.iter().map(|p| node(p)).collect();

    let mut b = Bundle::new("devices");
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                "fileMode": 0o600, "uid": 1000, "gid": 1000}]),
    );
    let script = "stat -c '%n %F %t:%T %a %u:%g' /dev/null /dev/zero /dev/full \
                  /dev/random /dev/urandom /dev/tty /dev/fuse; \
                  for l in fd stdin stdout stderr ptmx core; do \
                  if [ -L /dev/$l ]; then echo \"/dev/$l -> $(readlink /dev/$l)\"; \
                  else echo \"/dev/$l absent\"; fi; done";
    let out = run_ok(&mut b, &["sh", "-c", script]);
    let mut want = String::new();
    for (name, ma, mi) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        want.push_str(&format!(
            "/dev/{name} character special file {ma:x}:{mi:x} 666 0:0\n"
        ));
    }
    want.push_str("/dev/fuse character special file a:e5 600 1000:1000\n");
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        want.push_str(&format!("/dev/{l} -> {t}\n"));
    }
    if Path::new("/proc/kcore").exists() {
        want.push_str("/dev/core -> /proc/kcore\n");
    } else {
        want.push_str("/dev/core absent\n");
    }
    assert_eq!(out, want);

    let after: Vec<_> = host_nodes.iter().map(|p| node(p)).collect();
    assert_eq!(before, after, "host device nodes changed: {host_nodes:?}");
    assert!(
        after[0].0 && after[0].3 == 0o666,
        "host /dev/null: {:?}",
        after[0]
    );
}

// ---------------------------------------------------------------------------
// Cgroup namespace

/// A v1 pids cgroup below the test's own, removed on drop (named with the
/// marker so that hack/leakcheck.sh reports it if it stays).
struct TempCgroup(PathBuf);

impl TempCgroup {
    fn new(tag: &str) -> TempCgroup {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                ctrl.split(',')
                    .any(|c| c == "pids")
                    .then(|| path.to_owned())
            })
            .expect("a v1 pids hierarchy");
        let dir = Path::new("/sys/fs/cgroup/pids")
            .join(rel.trim_start_matches('/'))
            .join(format!("{}-{tag}-{}", common::MARKER, std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempCgroup(dir)
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// `keel run` started from a shell that first moves itself into `cg`.
fn run_in_cgroup(b: &mut Bundle, cg: &TempCgroup, cmd: &[&str]) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    b.args(cmd);
    b.write();
    let out_path = b.dir.join("io").join(format!("cg-{n}.stdout"));
    let err_path = b.dir.join("io").join(format!("cg-{n}.stderr"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(&cg.0)
        .arg(common::keel_bin())
        .arg("--root")
        .arg(&b.root)
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&b.id)
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn sh");
    let status = common::wait_child(&mut child, "keel run in a cgroup");
    let out = common::text(&fs::read(&out_path).unwrap_or_default());
    let err = common::text(&fs::read(&err_path).unwrap_or_default());
    assert!(
        status.success(),
        "{cmd:?}: {status}\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn pids_line(cgroup: &str) -> String {
    cgroup
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "pids"))
        })
        .unwrap_or_else(|| panic!("no pids line in {cgroup}"))
        .to_owned()
}

#[test]
fn cgroup_namespace_shows_paths_from_its_root() {
    if !common::require_root() {
        return;
    }
    // keel runs in a non-root pids cgroup; the container gets its own cgroup
    // (`/<id>` by default), which it sees by its full path without a cgroup
    // namespace and as "/" with one.
    let cg = TempCgroup::new("cgns");

    let mut control = Bundle::new("cgns-without");
    let out = run_in_cgroup(&mut control, &cg, &["cat", "/proc/self/cgroup"]);
    let line = pids_line(&out);
    assert!(line.ends_with(&format!(":/{}", control.id)), "{out}");

    let mut b = Bundle::new("cgns-with");
    b.set("/linux/namespaces/-", json!({"type": "cgroup"}));
    let out = run_in_cgroup(&mut b, &cg, &["cat", "/proc/self/cgroup"]);
    assert!(!out.is_empty());
    for l in out.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        assert_eq!(path, "/", "{l} in:\n{out}");
    }
    assert!(pids_line(&out).ends_with(":/"), "{out}");
}

/// A joins nothing and has a time namespace with offsets and a cgroup
/// namespace; B joins both by path (with new namespaces of its own
/// otherwise) and sees A's offsets and namespace inodes.
#[test]
fn time_and_cgroup_namespaces_joined_by_path() {
    if !common::require_root() {
        return;
    }
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIP: kernel without time namespaces");
        return;
    }
    let mut a = Bundle::new("join-time-a");
    a.set("/linux/namespaces/-", json!({"type": "time"}));
    a.set("/linux/namespaces/-", json!({"type": "cgroup"}));
    a.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 86400}, "boottime": {"secs": 172800}}),
    );
    a.args(&["sleep", "1000"]);
    a.run_detached();
    let pid = a.pid();
    let a_time = ns_of(pid, "time");
    let a_cgroup = ns_of(pid, "cgroup");
    assert_ne!(a_time, host_ns("time"));
    assert_ne!(a_cgroup, host_ns("cgroup"));
    let a_offsets = read_trim(&format!("/proc/{pid}/timens_offsets"));
    assert!(a_offsets.contains("86400"), "{a_offsets}");

    let mut b = Bundle::new("join-time-b");
    b.set(
        "/linux/namespaces/-",
        json!({"type": "time", "path": format!("/proc/{pid}/ns/time")}),
    );
    b.set(
        "/linux/namespaces/-",
        json!({"type": "cgroup", "path": format!("/proc/{pid}/ns/cgroup")}),
    );
    let script = format!(
        "{} echo offsets=$(cat /proc/self/timens_offsets | tr '\\n' ' ')",
        ns_script(&["time", "cgroup", "mnt"])
    );
    let out = run_ok(&mut b, &["sh", "-c", &script]);
    let seen = kv(&out);
    assert_eq!(seen["time"], a_time, "{out}");
    assert_eq!(seen["cgroup"], a_cgroup, "{out}");
    // Only what was asked for is joined.
    assert_ne!(seen["mnt"], ns_of(pid, "mnt"), "{out}");
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(&seen["offsets"]), words(&a_offsets), "{out}");
    assert_eq!(a.status(), "running");
    assert_eq!(ns_of(pid, "time"), a_time);
}

/// B joins A's mount (and pid) namespace by path. As runc 1.1.5 does
/// (rootfs_linux.go prepareRootfs has no joined-namespace case), keel sets up
/// B's rootfs in A's namespace: `root.path` must name a directory there, so
/// A binds B's rootfs at the same path as on the host. B sees the mounts A
/// made (a tmpfs with a marker in it). The kernel's pivot_root moves every
/// process whose root was the old root, so A's init ends up in B's root too:
/// that is pivot_root's semantics, the same under runc.
#[test]
fn mount_namespace_joined_by_path() {
    if !common::require_root() {
        return;
    }
    // Declared first, dropped last: A's namespace holds a bind of B's rootfs.
    let mut b = Bundle::new("join-mnt-b").with_own_rootfs();
    let mut a = Bundle::new("join-mnt-a").with_own_rootfs();
    let b_root = b.rootfs();
    let b_root = b_root.to_str().expect("UTF-8 rootfs");
    fs::create_dir_all(b.rootfs().join("mnt")).unwrap();
    a.set(
        "/mounts/-",
        json!({"destination": b_root, "type": "bind", "source": b_root, "options": ["rbind"]}),
    );
    a.set(
        "/mounts/-",
        json!({"destination": format!("{b_root}/mnt"), "type": "tmpfs", "source": "tmpfs",
               "options": ["size=1m"]}),
    );
    a.args(&[
        "sh",
        "-c",
        &format!("echo from-a > {b_root}/mnt/marker && exec sleep 1000"),
    ]);
    a.run_detached();
    let pid = a.pid();
    let marker = format!("/proc/{pid}/root{b_root}/mnt/marker");
    common::wait_until(common::command_timeout(), "A's marker", || {
        fs::read_to_string(&marker).is_ok_and(|s| s == "from-a\n")
    });
    assert!(
        !b.rootfs().join("mnt/marker").exists(),
        "A's tmpfs reached the host"
    );
    let a_mnt = ns_of(pid, "mnt");

    for_a_joined_namespace(&mut b);
    b.set(
        "/linux/namespaces",
        json!([
            {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
            {"type": "mount", "path": format!("/proc/{pid}/ns/mnt")},
            {"type": "network"},
            {"type": "ipc"}
        ]),
    );
    let script = format!(
        "{} echo marker=$(cat /mnt/marker)",
        ns_script(&["mnt", "pid"])
    );
    let out = run_ok(&mut b, &["sh", "-c", &script]);
    let seen = kv(&out);
    assert_eq!(seen["mnt"], a_mnt, "{out}");
    assert_eq!(seen["pid"], ns_of(pid, "pid"), "{out}");
    assert_eq!(seen["marker"], "from-a", "{out}");
    assert_eq!(a.status(), "running");
    assert!(common::mounts_under(&a.dir).is_empty());
    assert!(common::mounts_under(&b.dir).is_empty());
}
