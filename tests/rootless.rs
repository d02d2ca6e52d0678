//! keel run by an unprivileged user: `nobody` (65534), through `setpriv`.
//! The tests themselves run as root, to give that user a bundle and, for the
//! multi-range case, subordinate ids. Those come from temp files bound over
//! /etc/subuid and /etc/subgid in a private mount namespace that only the
//! keel command (and the newuidmap it runs) lives in: the host's files are
//! never touched.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::Bundle;
use serde_json::{json, Value};

const NOBODY: u32 = 65534;
/// The first of the subordinate ids the multi-range test grants nobody.
const SUB_BASE: u32 = 200_000;

/// `setpriv` with nobody's ids and no supplementary groups.
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// lchown every entry of a tree.
fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// `b` (with its own rootfs, and keel wrapped to run as nobody) made
/// nobody's: its dir, state root and rootfs, and the config.json that
/// `keel spec --rootless` writes when nobody runs it (a user namespace mapping
/// nobody to root, no network namespace, no resources), without a terminal.
fn nobodys(mut b: Bundle) -> Bundle {
    for p in [&b.dir, &b.root] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    chown_tree(&b.rootfs(), NOBODY);
    let dir = b.dir.to_str().unwrap().to_owned();
    let out = b.keel(&["spec", "--rootless", "--bundle", &dir]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let spec = fs::read(b.config_path()).unwrap();
    b.config = serde_json::from_slice(&spec).unwrap();
    b.set("/process/terminal", json!(false));
    b
}

/// A bundle with its own rootfs whose keel commands run as nobody.
fn as_nobody(name: &str) -> Bundle {
    Bundle::new(name).with_own_rootfs().wrapped(&AS_NOBODY)
}

/// The four ids of a `Uid:` or `Gid:` line of /proc/<pid>/status.
fn ids(pid: i32, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

#[test]
fn a_single_mapping_of_the_caller_is_written_directly() {
    if !common::require_root() {
        return;
    }
    let mut b = nobodys(as_nobody("rootless-single"));
    assert_eq!(b.config["linux"]["uidMappings"][0]["hostID"], NOBODY);
    let (code, out, err) = b.run(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
    ]);
    assert_eq!(code, 0, "{err}");
    let w = words(&out);
    assert_eq!(&w[..2], ["0", "0"], "{out}");
    assert_eq!(&w[2..8], ["0", "65534", "1", "0", "65534", "1"], "{out}");
    // Unprivileged and written directly: the kernel requires setgroups "deny".
    assert_eq!(w[8], "deny", "{out}");
    // No cgroup of its own: nobody may not create one, and none was asked for.
    assert!(common::cgroups_named(&b.id).is_empty());
}

#[test]
fn the_containers_processes_belong_to_the_caller_on_the_host() {
    if !common::require_root() {
        return;
    }
    let mut b = nobodys(as_nobody("rootless-owner"));
    b.args(&["sleep", "100"]);
    b.run_detached();
    let pid = b.pid();
    assert_eq!(ids(pid, "Uid:"), [NOBODY; 4]);
    assert_eq!(ids(pid, "Gid:"), [NOBODY; 4]);
    // keel's own state is nobody's too.
    assert_eq!(fs::metadata(b.root.join(&b.id)).unwrap().uid(), NOBODY);
    assert_eq!(b.status(), "running");
    b.kill("KILL");
    b.wait_for_status("stopped");
    b.delete();
    assert!(!b.root.join(&b.id).exists());
}

#[test]
fn more_ranges_go_through_newuidmap_with_the_callers_subordinate_ids() {
    if !common::require_root() {
        return;
    }
    if !Path::new("/usr/bin/newuidmap").exists() && !Path::new("/bin/newuidmap").exists() {
        eprintln!("SKIP: no newuidmap: install uidmap (make deps)");
        return;
    }
    // Subordinate ids for nobody, in files that only keel's private mount
    // namespace sees at /etc/subuid and /etc/subgid.
    let b = Bundle::new("rootless-ranges").with_own_rootfs();
    let grant = b.dir.join("subids");
    fs::write(&grant, format!("{NOBODY}:{SUB_BASE}:65536\n")).unwrap();
    let grant = grant.to_str().unwrap().to_owned();
    let bind_then_setpriv = format!(
        "mount --bind \"$1\" /etc/subuid && mount --bind \"$1\" /etc/subgid && shift && \
         exec {} \"$@\"",
        AS_NOBODY.join(" ")
    );
    let wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &bind_then_setpriv,
        "sh",
        &grant,
    ];
    let mut b = nobodys(b.wrapped(&wrap));
    let maps = json!([
        {"containerID": 0, "hostID": NOBODY, "size": 1},
        {"containerID": 1, "hostID": SUB_BASE, "size": 65536},
    ]);
    b.set("/linux/uidMappings", maps.clone());
    b.set("/linux/gidMappings", maps);
    // Container uid 1000 is the 1000th subordinate id: host uid 200999.
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.args(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
         exec sleep 100",
    ]);
    b.run_detached();
    common::wait_until(common::command_timeout(), "the container's output", || {
        words(&b.container_stdout()).len() >= 15
    });
    let out = b.container_stdout();
    let w = words(&out);
    assert_eq!(&w[..2], ["1000", "1000"], "{out}");
    let ranges = ["0", "65534", "1", "1", "200000", "65536"];
    assert_eq!(&w[2..8], ranges, "uid_map: {out}");
    assert_eq!(&w[8..14], ranges, "gid_map: {out}");
    // Written by newgidmap: setgroups stays allowed.
    assert_eq!(w[14], "allow", "{out}");
    let pid = b.pid();
    assert_eq!(ids(pid, "Uid:"), [SUB_BASE + 999; 4]);
    assert_eq!(ids(pid, "Gid:"), [SUB_BASE + 999; 4]);
    b.kill("KILL");
    b.wait_for_status("stopped");
    b.delete();
}

#[test]
fn limits_need_a_cgroup_that_an_unprivileged_keel_cannot_create() {
    if !common::require_root() {
        return;
    }
    // Device rules alone are no limit (runc ignores them when rootless).
    let mut b = nobodys(as_nobody("rootless-devices"));
    b.set(
        "/linux/resources",
        json!({"devices": [{"allow": false, "access": "rwm"}]}),
    );
    let (code, _, err) = b.run(&["true"]);
    assert_eq!(code, 0, "{err}");

    // A memory limit would be silently lost: refused, naming the field.
    let mut b = nobodys(as_nobody("rootless-limit"));
    b.set("/linux/resources", json!({"memory": {"limit": 64 << 20}}));
    let (code, _, err) = b.run(&["true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.resources.memory.limit") && err.contains("not root"),
        "{err}"
    );
    assert!(!b.root.join(&b.id).exists(), "state left behind");

    // An explicit cgroupsPath must be created (runc): nobody may not.
    let mut b = nobodys(as_nobody("rootless-path"));
    let path = format!("/{}", b.id);
    b.set("/linux/cgroupsPath", Value::from(path));
    let (code, _, err) = b.run(&["true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("creating cgroup") && err.contains("EACCES"),
        "{err}"
    );
    assert!(common::cgroups_named(&b.id).is_empty());
}
