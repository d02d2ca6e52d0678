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

/// A rootless container running `sleep 100`, with its init's pid.
fn sleeping(name: &str) -> (Bundle, i32) {
    let mut b = nobodys(as_nobody(name));
    b.args(&["sleep", "100"]);
    b.run_detached();
    let pid = b.pid();
    (b, pid)
}

/// `keel exec <id> CMD...` as nobody: (exit code, stdout, stderr).
fn exec(b: &Bundle, flags: &[&str], cmd: &[&str]) -> (i32, String, String) {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&b.id);
    args.extend_from_slice(cmd);
    let out = b.keel(&args);
    (
        common::exit_code(out.status),
        common::text(&out.stdout),
        common::text(&out.stderr),
    )
}

const NAMESPACES: [&str; 5] = ["user", "pid", "mnt", "uts", "ipc"];

/// (dev, ino) of a namespace link on the host.
fn ns_ident(pid: i32, name: &str) -> (u64, u64) {
    let path = format!("/proc/{pid}/ns/{name}");
    let m = fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.dev(), m.ino())
}

#[test]
fn exec_joins_every_namespace_of_a_rootless_container() {
    if !common::require_root() {
        return;
    }
    let (b, init) = sleeping("rootless-exec-ns");
    // /proc/self and /proc/1 resolve in the container's own /proc: both only
    // work when the process is in the init's pid namespace.
    let script = format!(
        "id -u; for n in {}; do echo $n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n); done",
        NAMESPACES.join(" ")
    );
    let (code, out, err) = exec(&b, &[], &["sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    for name in NAMESPACES {
        let w = words(lines.next().unwrap_or_else(|| panic!("no {name}: {out}")));
        assert_eq!(w.len(), 3, "{name}: {out}");
        assert_eq!(w[0], name);
        assert!(w[1].starts_with(&format!("{name}:[")), "{out}");
        assert_eq!(w[1], w[2], "{name} differs from the init's: {out}");
    }
    // And they are the container's own, not the host's.
    let me = std::process::id() as i32;
    assert_ne!(ns_ident(init, "user"), ns_ident(me, "user"));
    assert_ne!(ns_ident(init, "pid"), ns_ident(me, "pid"));
}

#[test]
fn rootless_exec_returns_the_process_status_and_255_for_keels_errors() {
    if !common::require_root() {
        return;
    }
    let (b, _) = sleeping("rootless-exec-status");
    assert_eq!(exec(&b, &[], &["true"]).0, 0);
    assert_eq!(exec(&b, &[], &["sh", "-c", "exit 3"]).0, 3);
    assert_eq!(exec(&b, &[], &["sh", "-c", "kill -9 $$"]).0, 128 + 9);
    let (code, _, err) = exec(&b, &[], &["no-such-program-keel"]);
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    assert_eq!(b.status(), "running", "the container is unaffected");
}

#[test]
fn rootless_exec_detached_writes_the_host_pid_of_the_process() {
    if !common::require_root() {
        return;
    }
    let (mut b, init) = sleeping("rootless-exec-detach");
    let pid_file = b.dir.join("exec.pid");
    let pf = pid_file.to_str().unwrap().to_owned();
    let (code, _, err) = exec(&b, &["-d", "--pid-file", &pf], &["sleep", "100"]);
    assert_eq!(code, 0, "{err}");
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("exec'd process {pid}: {e}"));
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .split_whitespace()
            .map(|x| x.parse::<i64>().unwrap())
            .collect::<Vec<_>>()
    };
    // Its host pid first, then its pid in the container's namespace (not 1).
    let nspid = field("NSpid:");
    assert_eq!(nspid.len(), 2, "{status}");
    assert_eq!(nspid[0], pid as i64);
    assert!(nspid[1] > 1, "{status}");
    assert!(status.contains("State:\tS"), "not a live sleep: {status}");
    assert_eq!(ids(pid, "Uid:"), [NOBODY; 4]);
    for name in NAMESPACES {
        assert_eq!(ns_ident(pid, name), ns_ident(init, name), "{name}");
    }
    // The container's end takes the exec'd process with it (it is in the pid ns).
    b.kill("KILL");
    b.wait_for_status("stopped");
    common::wait_until(
        common::command_timeout(),
        "the exec'd process to go",
        || {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .map_or(true, |s| s.contains("State:\tZ"))
        },
    );
    b.delete();
}

#[test]
fn rootless_foreground_exec_forwards_signals_to_the_process() {
    if !common::require_root() {
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let (b, _) = sleeping("rootless-exec-signal");
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; \
                  while :; do sleep 1; done";
    // setpriv execs keel: the child's pid is keel's.
    let mut child = Command::new(AS_NOBODY[0])
        .args(&AS_NOBODY[1..])
        .arg(common::keel_bin())
        .arg("--root")
        .arg(&b.root)
        .args(["exec", &b.id, "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keel exec");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(common::command_timeout());
    if first.as_deref() != Ok("ready") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the process did not say it is ready: {first:?}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut st = None;
    common::wait_until(common::command_timeout(), "keel exec to exit", || {
        st = child.try_wait().unwrap();
        st.is_some()
    });
    // The rest of its output, up to EOF (every writer is gone).
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(common::command_timeout()) {
        rest.push(line);
    }
    assert_eq!(st.unwrap().code(), Some(7), "stdout {rest:?}");
    assert_eq!(rest, ["got-term"], "the process got SIGTERM");
    assert_eq!(b.status(), "running", "the init did not get it");
}
