//! User namespaces (linux.uidMappings/gidMappings) and idmapped mounts
//! (`idmap`/`ridmap`, mount `uidMappings`/`gidMappings`), with runc's default
//! config otherwise: new pid, network, ipc, uts and mount namespaces and the
//! default mounts.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Bundle;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

/// Container ids 0..65535 are host ids 100000..165535.
const HOST_BASE: u32 = 100_000;

fn range(c: u32, h: u32, s: u32) -> Value {
    json!({"containerID": c, "hostID": h, "size": s})
}

/// Adds a new user namespace with the same uid and gid mappings.
fn with_userns(b: &mut Bundle, maps: Value) {
    b.set("/linux/namespaces/-", json!({"type": "user"}));
    b.set("/linux/uidMappings", maps.clone());
    b.set("/linux/gidMappings", maps);
}

fn default_userns(b: &mut Bundle) {
    with_userns(b, json!([range(0, HOST_BASE, 65536)]));
}

fn sh(b: &mut Bundle, script: &str) -> (i32, String, String) {
    b.run(&["sh", "-c", script])
}

/// lchown every entry of a tree (what a user does so that the container's root owns its rootfs).
fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Host mounts a test makes, unmounted on drop (before the bundle dir goes).
struct HostMounts(Vec<PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = umount2(p, MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn multiple_ranges_are_mapped_and_the_init_is_root_inside() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-ranges");
    with_userns(
        &mut b,
        json!([range(0, HOST_BASE, 1000), range(1000, 200_000, 10)]),
    );
    let (code, out, err) = sh(
        &mut b,
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
    );
    assert_eq!(code, 0, "{err}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&words[..2], ["0", "0"], "{out}");
    let maps = ["0", "100000", "1000", "1000", "200000", "10"];
    assert_eq!(&words[2..8], maps, "uid_map: {out}");
    assert_eq!(&words[8..14], maps, "gid_map: {out}");
    // keel runs as root: setgroups is left allowed (runc's rule).
    assert_eq!(words[14], "allow", "{out}");
}

#[test]
fn files_created_in_a_bind_belong_to_the_mapped_ids_on_the_host() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-bind-owner");
    default_userns(&mut b);
    let data = b.dir.join("data");
    fs::create_dir(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "bind", "source": data, "options": ["rbind"]}),
    );
    let (code, _, err) = sh(&mut b, "touch /tmp/plain");
    assert_eq!(code, 0, "{err}");
    let m = fs::metadata(data.join("plain")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST_BASE, HOST_BASE));
}

#[test]
fn the_containers_processes_run_as_the_mapped_uid_on_the_host() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-proc-owner");
    default_userns(&mut b);
    b.args(&["sleep", "100"]);
    b.run_detached();
    let status = fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
    let ids = |key: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(ids("Uid:"), vec![HOST_BASE.to_string(); 4], "{status}");
    assert_eq!(ids("Gid:"), vec![HOST_BASE.to_string(); 4], "{status}");
    b.kill("KILL");
    b.wait_for_status("stopped");
    b.delete();
}

#[test]
fn exec_joins_the_containers_user_namespace() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-exec");
    with_userns(&mut b, json!([range(0, HOST_BASE, 1000)]));
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let init = b.pid();
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_ne!(
        ns(&init.to_string()),
        ns("self"),
        "the container has its own"
    );
    let out = b.keel(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    assert!(out.status.success(), "exec: {}", common::text(&out.stderr));
    let out = common::text(&out.stdout);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().map(std::path::PathBuf::from),
        Some(ns(&init.to_string())),
        "the exec'd process is in the init's user namespace: {out}"
    );
    assert_eq!(lines.next(), Some("0"), "root inside: {out}");
    let words: Vec<&str> = lines.flat_map(str::split_whitespace).collect();
    assert_eq!(
        words,
        ["0", "100000", "1000", "0", "100000", "1000"],
        "{out}"
    );
    // And from the host: it runs as the mapped uid, like the init.
    let pid_file = b.dir.join("exec.pid");
    let out = b.keel(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "exec -d: {}",
        common::text(&out.stderr)
    );
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(ns(&pid), ns(&init.to_string()));
    let m = fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST_BASE, HOST_BASE));
}

#[test]
fn default_mounts_work_in_a_user_namespace() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-default-mounts");
    default_userns(&mut b);
    // runc's default config has a new network namespace: sysfs can be mounted.
    let (code, out, err) = sh(
        &mut b,
        "set -e; ls /sys/class/net; test -r /proc/self/status; echo x > /dev/null; \
         head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; \
         grep -E ' /(sys|proc|dev/null|dev/pts) ' /proc/self/mountinfo",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lo\n"), "{out}");
    assert!(out.contains(" /sys ") && out.contains(" - sysfs "), "{out}");
    assert!(out.contains(" /proc ") && out.contains(" - proc "), "{out}");
    // mknod is refused in a user namespace: /dev/null is the host's node, bound.
    let null = out
        .lines()
        .find(|l| l.contains(" /dev/null "))
        .unwrap_or("");
    assert!(null.contains(" /null /dev/null "), "{out}");
}

#[test]
fn notify_socket_bind_works_in_a_user_namespace() {
    if !common::require_root() {
        return;
    }
    // The state dir is 0700 and owned by root: the container's (mapped) root
    // cannot look it up; the parent opens the source for the child.
    let b = Bundle::new("userns-notify").with_own_rootfs();
    let mut b = b;
    fs::create_dir_all(b.rootfs().join("run")).unwrap();
    chown_tree(&b.rootfs(), HOST_BASE, HOST_BASE);
    default_userns(&mut b);
    b.args(&[
        "sh",
        "-c",
        "test -S /run/notify/notify.sock && echo $NOTIFY_SOCKET",
    ]);
    b.write();
    let host_sock = b.dir.join("host-notify.sock");
    let _listener = UnixDatagram::bind(&host_sock).unwrap();
    let io = b.dir.join("io");
    let out = common::keel_cmd()
        .arg("--root")
        .arg(&b.root)
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .env("NOTIFY_SOCKET", &host_sock)
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(io.join("notify.stdout")).unwrap())
        .stderr(fs::File::create(io.join("notify.stderr")).unwrap())
        .status()
        .unwrap();
    let stdout = fs::read_to_string(io.join("notify.stdout")).unwrap();
    let stderr = fs::read_to_string(io.join("notify.stderr")).unwrap();
    assert!(out.success(), "{stderr}");
    assert_eq!(stdout.trim(), "/run/notify/notify.sock", "{stderr}");
}

#[test]
fn rootfs_is_not_chowned_and_missing_targets_fail_with_eacces() {
    if !common::require_root() {
        return;
    }
    // The shared rootfs belongs to the host's root, which the container's root is not.
    let mut b = Bundle::new("userns-rootfs-owner");
    default_userns(&mut b);
    b.set(
        "/mounts/-",
        json!({"destination": "/no-such-dir", "type": "tmpfs", "source": "tmpfs"}),
    );
    let (code, _, err) = sh(&mut b, "true");
    assert_ne!(code, 0);
    assert!(
        err.contains("creating mount target")
            && err.contains("no-such-dir")
            && err.contains("EACCES"),
        "{err}"
    );
    let m = fs::metadata(common::shared_rootfs()).unwrap();
    assert_eq!(m.uid(), 0);
}

#[test]
fn idmapped_bind_shows_host_owner_as_mapped_id() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("userns-idmap");
    default_userns(&mut b);
    let src = b.dir.join("owned-by-1000");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    chown_tree(&src, 1000, 1000);
    // On-disk 1000 is shown as host id 100000, which is root in the container.
    let map = json!([range(1000, HOST_BASE, 1)]);
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "bind", "source": src, "options": ["bind", "idmap"],
               "uidMappings": map, "gidMappings": map}),
    );
    let (code, out, err) = sh(
        &mut b,
        "stat -c %u:%g /tmp/f; touch /tmp/new; grep ' /tmp ' /proc/self/mountinfo",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0:0\n"), "{out}");
    assert!(out.contains("idmapped"), "{out}");
    // And back: what the container's root creates is owned by 1000 on disk.
    let m = fs::metadata(src.join("new")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
}

#[test]
fn idmap_uses_the_containers_mapping_and_ridmap_reaches_submounts() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("userns-ridmap");
    let mut hm = HostMounts(Vec::new());
    let src = b.dir.join("tree");
    let sub = src.join("sub");
    fs::create_dir_all(&sub).unwrap();
    fs::write(src.join("top"), "x").unwrap();
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    hm.0.push(sub.clone());
    fs::write(sub.join("inner"), "x").unwrap();
    for (opt, inner) in [("idmap", "65534"), ("ridmap", "0")] {
        let mut b = Bundle::new(&format!("userns-{opt}"));
        default_userns(&mut b);
        // No mappings on the mount: the container's (0 -> 100000) are used.
        b.set(
            "/mounts/-",
            json!({"destination": "/tmp", "type": "bind", "source": src, "options": ["rbind", opt]}),
        );
        let (code, out, err) = sh(&mut b, "stat -c %u /tmp/top /tmp/sub/inner");
        assert_eq!(code, 0, "{opt}: {err}");
        // Host root's files show as root; a submount only with ridmap (else unmapped: nobody).
        assert_eq!(out, format!("0\n{inner}\n"), "{opt}");
    }
    drop(hm);
}

#[test]
fn mapping_errors_name_the_field() {
    if !common::require_root() {
        return;
    }
    type Case = (&'static str, Box<dyn Fn(&mut Bundle)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "no-userns",
            Box::new(|b: &mut Bundle| {
                b.set("/linux/uidMappings", json!([range(0, HOST_BASE, 10)]));
                b.set("/linux/gidMappings", json!([range(0, HOST_BASE, 10)]));
            }),
            "linux.uidMappings",
        ),
        (
            "size-0",
            Box::new(|b: &mut Bundle| with_userns(b, json!([range(0, HOST_BASE, 0)]))),
            "linux.uidMappings[0].size",
        ),
        (
            "overlap",
            Box::new(|b: &mut Bundle| {
                with_userns(b, json!([range(0, HOST_BASE, 10), range(5, 300_000, 10)]))
            }),
            "linux.uidMappings: writing",
        ),
        (
            "idmap-not-bind",
            Box::new(|b: &mut Bundle| {
                default_userns(b);
                b.set(
                    "/mounts/-",
                    json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
                );
            }),
            "must be bind mounts",
        ),
        (
            "idmap-no-mapping",
            Box::new(|b: &mut Bundle| {
                b.set(
                    "/mounts/-",
                    json!({"destination": "/tmp", "type": "bind", "source": "/tmp", "options": ["bind", "idmap"]}),
                );
            }),
            "needs uidMappings and gidMappings",
        ),
    ];
    for (name, setup, want) in cases {
        let mut b = Bundle::new(&format!("userns-err-{name}"));
        setup(&mut b);
        let (code, _, err) = sh(&mut b, "true");
        assert_ne!(code, 0, "{name} was accepted");
        assert!(err.contains(want), "{name}: {err}");
    }
}

/// (mode, uid, gid, rdev) of a host node.
fn node_meta(p: &str) -> (u32, u32, u32, u64) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.mode(), m.uid(), m.gid(), m.rdev())
}

/// `linux.devices` in a user namespace: mknod is refused there, so keel binds
/// the host's node at the same path (as runc). The node keeps the host's mode
/// and owner (fileMode, uid and gid cannot apply to a bind, and the host's
/// node is never chowned or chmodded), and it is the host's device: /dev/full
/// reads zeros and refuses writes with ENOSPC.
#[test]
fn listed_devices_are_bound_from_the_host_in_a_user_namespace() {
    if !common::require_root() {
        return;
    }
    let nodes = ["/dev/full", "/dev/fuse"];
    if let Some(missing) = nodes.iter().find(|p| !Path::new(p).exists()) {
        eprintln!("SKIP: no {missing} on this host");
        return;
    }
    let before: Vec<_> = nodes.iter().map(|p| node_meta(p)).collect();
    let mut b = Bundle::new("userns-devices");
    default_userns(&mut b);
    b.set(
        "/linux/devices",
        json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 0o666, "uid": 1000, "gid": 1000},
            {"path": "/dev/full", "type": "c", "major": 1, "minor": 7,
             "fileMode": 0o600, "uid": 1000, "gid": 1000}
        ]),
    );
    let (code, out, err) = sh(
        &mut b,
        "stat -c '%n %F %t:%T %a %u' /dev/fuse /dev/full; \
         echo \"read: $(head -c 4 /dev/full | od -An -tx1 | xargs)\"; \
         echo \"write: $( (echo x > /dev/full) 2>&1)\"; \
         echo \"fuse: $( (exec 3<>/dev/fuse && echo opened) 2>&1)\"",
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    // The host's root is not mapped: its nodes show the overflow uid.
    assert_eq!(
        lines.next(),
        Some("/dev/fuse character special file a:e5 600 65534"),
        "{out}"
    );
    assert_eq!(
        lines.next(),
        Some("/dev/full character special file 1:7 666 65534"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("read: 00 00 00 00"), "{out}");
    let write = lines.next().unwrap_or_default();
    assert!(
        write.starts_with("write: ") && write.contains("No space left on device"),
        "{out}"
    );
    // The container's root is host uid 100000: the host's 0600 root node stays closed.
    let fuse = lines.next().unwrap_or_default();
    assert!(fuse.contains("Permission denied"), "{out}");
    let after: Vec<_> = nodes.iter().map(|p| node_meta(p)).collect();
    assert_eq!(before, after, "host device nodes changed: {nodes:?}");
}
