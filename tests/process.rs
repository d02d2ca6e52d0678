//! `process`: user and groups, umask, env, cwd, args lookup, rlimits,
//! oomScoreAdj, noNewPrivileges, capabilities, pid 1 and session, inherited
//! fds and /proc/1/exe, as the container sees them (compared with runc 1.1.5).

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Bundle;
use serde_json::json;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `cmd` in the container with `keel run`; panics unless it exits 0.
fn run_ok(b: &mut Bundle, cmd: &[&str]) -> String {
    let (code, out, err) = b.run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed\nstdout: {out}\nstderr: {err}");
    out
}

/// Runs `keel --root <state> ARGS...` through `sh -c '<prelude>; exec "$@"'`
/// (so the prelude can open fds, set oom_score_adj or umask for keel), with
/// `envs` added to keel's environment. Output goes to files under `<dir>/io`.
/// Returns exit code, stdout, stderr.
fn keel_via_sh(
    b: &Bundle,
    prelude: &str,
    envs: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let out_path = b.dir.join("io").join(format!("sh-{n}.stdout"));
    let err_path = b.dir.join("io").join(format!("sh-{n}.stderr"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{prelude}\nexec \"$@\""))
        .arg("sh")
        .arg(common::keel_bin())
        .arg("--root")
        .arg(&b.root)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn sh");
    let status = common::wait_child(&mut child, &format!("keel {args:?} via sh"));
    (
        common::exit_code(status),
        common::text(&fs::read(&out_path).unwrap_or_default()),
        common::text(&fs::read(&err_path).unwrap_or_default()),
    )
}

/// `keel run --bundle <dir> <id>` (plus `extra` flags) through [`keel_via_sh`].
fn run_via_sh(
    b: &mut Bundle,
    prelude: &str,
    envs: &[(&str, &str)],
    extra: &[&str],
    cmd: &[&str],
) -> String {
    b.args(cmd);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let id = b.id.clone();
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--bundle", &dir, &id]);
    let (code, out, err) = keel_via_sh(b, prelude, envs, &args);
    assert_eq!(code, 0, "{cmd:?} failed\nstdout: {out}\nstderr: {err}");
    out
}

/// The value of `Name:` in /proc/<pid>/status text, whitespace-normalised.
fn field(status: &str, name: &str) -> String {
    let prefix = format!("{name}:");
    let line = status
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"));
    line[prefix.len()..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Capability numbers set in a /proc/self/status hex mask.
fn cap_bits(hex: &str) -> BTreeSet<u32> {
    let v = u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{hex}: {e}"));
    (0..64).filter(|i| v & (1 << i) != 0).collect()
}

fn caps(names: &[&str]) -> BTreeSet<u32> {
    names
        .iter()
        .map(|n| match *n {
            "CAP_CHOWN" => 0,
            "CAP_KILL" => 5,
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_ADMIN" => 21,
            "CAP_AUDIT_WRITE" => 29,
            other => panic!("add {other} to the table"),
        })
        .collect()
}

fn lines_set(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// process.user

#[test]
fn user_uid_gid_additional_gids_and_umask() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("user-ids");
    b.set(
        "/process/user",
        json!({"uid": 1234, "gid": 1235, "additionalGids": [5, 7, 1000], "umask": 63}),
    );
    let out = run_ok(
        &mut b,
        &["sh", "-c", "id; cat /proc/self/status; echo umask=$(umask)"],
    );
    assert_eq!(
        out.lines().next(),
        Some("uid=1234 gid=1235 groups=5,7,1000"),
        "{out}"
    );
    assert_eq!(field(&out, "Uid"), "1234 1234 1234 1234", "{out}");
    assert_eq!(field(&out, "Gid"), "1235 1235 1235 1235", "{out}");
    assert_eq!(field(&out, "Groups"), "5 7 1000", "{out}");
    assert_eq!(field(&out, "Umask"), "0077", "{out}");
    assert!(out.contains("umask=0077"), "{out}");
}

#[test]
fn root_user_has_no_groups_and_umask_0022() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("user-root");
    // keel itself runs with umask 077: the container must get runc's 0022, not keel's.
    let out = run_via_sh(
        &mut b,
        "umask 077",
        &[],
        &[],
        &["sh", "-c", "id; cat /proc/self/status"],
    );
    assert_eq!(out.lines().next(), Some("uid=0(root) gid=0(root)"), "{out}");
    assert_eq!(field(&out, "Uid"), "0 0 0 0", "{out}");
    assert_eq!(field(&out, "Gid"), "0 0 0 0", "{out}");
    assert_eq!(field(&out, "Groups"), "", "{out}");
    assert_eq!(field(&out, "Umask"), "0022", "{out}");
}

// ---------------------------------------------------------------------------
// process.env

#[test]
fn env_is_the_config_plus_home_and_nothing_from_the_host() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("env-exact");
    b.set(
        "/process/env",
        json!([
            format!("PATH={DEFAULT_PATH}"),
            "TERM=xterm",
            "FOO=bar baz",
            "EQ=a=b"
        ]),
    );
    // busybox env as the init: no shell adds PWD or SHLVL.
    let out = run_via_sh(&mut b, "", &[("KEEL_HOST_SECRET", "1")], &[], &["env"]);
    let want: BTreeSet<String> = [
        format!("PATH={DEFAULT_PATH}"),
        "TERM=xterm".into(),
        "FOO=bar baz".into(),
        "EQ=a=b".into(),
        "HOME=/root".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(lines_set(&out), want, "{out}");
    assert_eq!(out.lines().count(), want.len(), "duplicates: {out}");
    assert!(!out.contains("KEEL_HOST_SECRET"), "{out}");
}

#[test]
fn env_home_comes_from_the_rootfs_passwd() {
    if !common::require_root() {
        return;
    }
    // uid -> HOME: root's and nobody's from the rootfs's /etc/passwd, "/" without an entry.
    for (uid, home) in [(0, "/root"), (65534, "/nonexistent"), (4242, "/")] {
        let mut b = Bundle::new("env-home");
        b.set("/process/user", json!({"uid": uid, "gid": uid}));
        let out = run_ok(&mut b, &["env"]);
        let homes: Vec<&str> = out.lines().filter(|l| l.starts_with("HOME=")).collect();
        assert_eq!(homes, vec![format!("HOME={home}")], "uid {uid}: {out}");
    }
    // A HOME in the config is kept as it is.
    let mut b = Bundle::new("env-home-set");
    b.set("/process/user", json!({"uid": 4242, "gid": 4242}));
    b.set("/process/env/-", json!("HOME=/custom"));
    let out = run_ok(&mut b, &["env"]);
    let homes: Vec<&str> = out.lines().filter(|l| l.starts_with("HOME=")).collect();
    assert_eq!(homes, vec!["HOME=/custom"], "{out}");
}

#[test]
fn env_duplicate_keys_last_wins() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("env-dup");
    b.set(
        "/process/env",
        json!([
            format!("PATH={DEFAULT_PATH}"),
            "A=1",
            "B=2",
            "A=3",
            "PATH=/bin"
        ]),
    );
    let out = run_ok(&mut b, &["env"]);
    let want: BTreeSet<String> = ["PATH=/bin", "A=3", "B=2", "HOME=/root"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(lines_set(&out), want, "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");
}

// ---------------------------------------------------------------------------
// process.cwd and args

#[test]
fn cwd_existing_directory() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("cwd-exists");
    b.set("/process/cwd", json!("/etc"));
    let out = run_ok(&mut b, &["sh", "-c", "pwd; ls"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/etc"), "{out}");
    assert!(out.lines().any(|l| l == "passwd"), "{out}");
}

#[test]
fn cwd_missing_is_created_like_runc() {
    if !common::require_root() {
        return;
    }
    // runc creates a missing cwd (MkdirAll 0755) before making the root read-only.
    let mut b = Bundle::new("cwd-missing").with_own_rootfs();
    b.set("/root/readonly", json!(true));
    b.set("/process/cwd", json!("/work/sub"));
    let out = run_ok(
        &mut b,
        &["sh", "-c", "pwd; stat -c '%a %u' /work /work/sub"],
    );
    assert_eq!(out, "/work/sub\n755 0\n755 0\n");
    let meta = fs::metadata(b.rootfs().join("work/sub")).expect("cwd created in the rootfs");
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(meta.uid(), 0);
}

#[test]
fn args_resolved_through_the_container_path() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("args-path").with_own_rootfs();
    let rootfs = b.rootfs();
    for (dir, mode, text) in [("opt/a", 0o644, "not executable"), ("opt/b", 0o755, "b")] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
        let tool = rootfs.join(dir).join("keeltool");
        fs::write(&tool, format!("#!/bin/sh\necho {text} \"$0\" \"$@\"\n")).unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(mode)).unwrap();
    }
    // /opt/a/keeltool is not executable: the lookup goes on to /opt/b.
    b.set(
        "/process/env/0",
        json!("PATH=/nonexistent:/opt/a:/opt/b:/bin"),
    );
    let out = run_ok(&mut b, &["keeltool", "x", "y"]);
    assert_eq!(out, "b /opt/b/keeltool x y\n");

    // Without /opt/b in the container's PATH the same args fail at create.
    b.set("/process/env/0", json!("PATH=/opt/a:/bin"));
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let id = b.id.clone();
    let out = b.keel(&["create", "--bundle", &dir, &id]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {err}");
    assert!(
        err.contains("executable file not found in $PATH"),
        "stderr: {err}"
    );
}

#[test]
fn absolute_args0_ignores_path() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("args-abs");
    b.set("/process/env/0", json!("PATH=/nonexistent"));
    let out = run_ok(&mut b, &["/bin/echo", "absolute"]);
    assert_eq!(out, "absolute\n");
}

#[test]
fn args0_not_found_fails_create() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("args-missing");
    b.args(&["keel-no-such-command"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let id = b.id.clone();
    let out = b.keel(&["create", "--bundle", &dir, &id]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {err}");
    assert!(
        err.contains("executable file not found in $PATH"),
        "stderr: {err}"
    );
    assert!(err.contains("keel-no-such-command"), "stderr: {err}");
    // Nothing is left behind: the id is unknown.
    let state = b.keel(&["state", &id]);
    assert!(
        !state.status.success(),
        "state after failed create succeeded"
    );
}

// ---------------------------------------------------------------------------
// rlimits, oomScoreAdj, noNewPrivileges

/// (soft, hard) of a /proc/self/limits row.
fn limit(limits: &str, name: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{limits}"));
    let f: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (f[0].to_owned(), f[1].to_owned())
}

#[test]
fn rlimits_seen_in_proc_limits() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("rlimits");
    b.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NPROC", "soft": 256, "hard": 512}
        ]),
    );
    let out = run_ok(&mut b, &["cat", "/proc/self/limits"]);
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(limit(&out, "Max open files"), s("1024", "1024"), "{out}");
    assert_eq!(limit(&out, "Max core file size"), s("0", "0"), "{out}");
    assert_eq!(limit(&out, "Max processes"), s("256", "512"), "{out}");
}

#[test]
fn oom_score_adj_configured() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("oom-set");
    b.set("/process/oomScoreAdj", json!(500));
    let out = run_ok(&mut b, &["cat", "/proc/self/oom_score_adj"]);
    assert_eq!(out, "500\n");
}

#[test]
fn oom_score_adj_unset_is_inherited_from_keels_parent() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("oom-unset");
    let out = run_via_sh(
        &mut b,
        "echo 123 > /proc/self/oom_score_adj",
        &[],
        &[],
        &["cat", "/proc/self/oom_score_adj"],
    );
    assert_eq!(out, "123\n");
}

#[test]
fn no_new_privileges_true_and_false() {
    if !common::require_root() {
        return;
    }
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::new("nnp");
        b.set("/process/noNewPrivileges", json!(nnp));
        let out = run_ok(&mut b, &["cat", "/proc/self/status"]);
        assert_eq!(field(&out, "NoNewPrivs"), want, "noNewPrivileges {nnp}");
    }
}

// ---------------------------------------------------------------------------
// capabilities

#[test]
fn default_capabilities_are_runcs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("caps-default");
    let out = run_ok(&mut b, &["cat", "/proc/self/status"]);
    let want = caps(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(field(&out, set), "0000000020000420", "{set}");
        assert_eq!(cap_bits(&field(&out, set)), want, "{set}");
    }
    assert_eq!(field(&out, "CapInh"), "0000000000000000");
    assert_eq!(field(&out, "CapAmb"), "0000000000000000");
}

#[test]
fn larger_capability_set_for_root() {
    if !common::require_root() {
        return;
    }
    let set = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_KILL"];
    let mut b = Bundle::new("caps-root");
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    let out = run_ok(&mut b, &["cat", "/proc/self/status"]);
    for s in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(cap_bits(&field(&out, s)), caps(&set), "{s}: {out}");
    }
    assert_eq!(field(&out, "CapInh"), "0000000000000000");
    assert_eq!(field(&out, "CapAmb"), "0000000000000000");
}

#[test]
fn ambient_capabilities_for_non_root_user() {
    if !common::require_root() {
        return;
    }
    let set = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_KILL"];
    let ambient = ["CAP_NET_RAW", "CAP_KILL"];
    let mut b = Bundle::new("caps-ambient");
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set("/process/noNewPrivileges", json!(false));
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set,
               "inheritable": set, "ambient": ambient}),
    );
    let out = run_ok(&mut b, &["cat", "/proc/self/status"]);
    // Same as runc 1.1.5: a non-root exec keeps only the ambient set in
    // permitted and effective.
    assert_eq!(cap_bits(&field(&out, "CapAmb")), caps(&ambient), "{out}");
    assert_eq!(cap_bits(&field(&out, "CapPrm")), caps(&ambient), "{out}");
    assert_eq!(cap_bits(&field(&out, "CapEff")), caps(&ambient), "{out}");
    assert_eq!(cap_bits(&field(&out, "CapInh")), caps(&set), "{out}");
    assert_eq!(cap_bits(&field(&out, "CapBnd")), caps(&set), "{out}");
    assert_eq!(field(&out, "Uid"), "1000 1000 1000 1000");
}

// ---------------------------------------------------------------------------
// pid 1, session, fds, /proc/1/exe

/// (pid, ppid, pgrp, session) from /proc/<pid>/stat text.
fn stat_ids(stat: &str) -> (i64, i64, i64, i64) {
    let pid = stat.split_whitespace().next().unwrap().parse().unwrap();
    let rest: Vec<i64> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|f| f.parse().unwrap())
        .collect();
    (pid, rest[0], rest[1], rest[2])
}

#[test]
fn init_is_pid_1_and_session_leader() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pid1");
    let out = run_ok(&mut b, &["cat", "/proc/self/stat"]);
    // pid 1, no parent in the namespace, its own process group and session.
    assert_eq!(stat_ids(&out), (1, 0, 1, 1), "{out}");

    // The same through create + start.
    let mut b = Bundle::new("pid1-created");
    b.args(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; exec cat /proc/self/stat",
    ]);
    b.create();
    b.start();
    b.wait_for_status("stopped");
    let out = b.container_stdout();
    let first = out.lines().nth(1).unwrap_or_default();
    assert_eq!(stat_ids(first).0, 1, "{out}");
    assert_eq!(stat_ids(first).3, 1, "{out}");
    let host_pidns = fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        out.lines().next().unwrap_or_default(),
        host_pidns.to_str().unwrap(),
        "container shares the host's pid namespace"
    );
}

#[test]
fn only_stdio_fds_reach_the_container() {
    if !common::require_root() {
        return;
    }
    // keel inherits fd 7 (no CLOEXEC) from its parent shell.
    let mut b = Bundle::new("fds-closed");
    let out = run_via_sh(
        &mut b,
        "exec 7</etc/hostname",
        &[],
        &[],
        &["ls", "/proc/self/fd"],
    );
    assert_eq!(out, "0\n1\n2\n3\n", "3 is ls's own directory fd");

    // Control: with --preserve-fds 5 (fds 3..7) the same fd 7 gets through.
    let mut b = Bundle::new("fds-control");
    let out = run_via_sh(
        &mut b,
        "exec 7</etc/hostname",
        &[],
        &["--preserve-fds", "5"],
        &["ls", "/proc/self/fd"],
    );
    assert!(out.lines().any(|l| l == "7"), "{out}");
}

#[test]
fn preserve_fds_passes_fd_3() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("fds-preserve");
    let file = b.dir.join("fd3-content");
    fs::write(&file, format!("secret of {}\n", b.id)).unwrap();
    let prelude = format!("exec 3<'{}'", file.display());
    let out = run_via_sh(
        &mut b,
        &prelude,
        &[],
        &["--preserve-fds", "1"],
        &["sh", "-c", "ls /proc/self/fd; cat <&3"],
    );
    assert_eq!(out, format!("0\n1\n2\n3\n4\nsecret of {}\n", b.id));

    // Without the flag fd 3 is closed.
    let mut b = Bundle::new("fds-nopreserve");
    let file = b.dir.join("fd3-content");
    fs::write(&file, "x\n").unwrap();
    b.args(&["sh", "-c", "cat <&3"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let id = b.id.clone();
    let (code, out, err) = keel_via_sh(
        &b,
        &format!("exec 3<'{}'", file.display()),
        &[],
        &["run", "--bundle", &dir, &id],
    );
    assert_ne!(code, 0, "fd 3 readable without --preserve-fds: {out}");
    assert!(!out.contains('x'), "{out}");
    assert!(err.to_lowercase().contains("bad file descriptor"), "{err}");
}

#[test]
fn proc_1_exe_is_the_container_binary() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("exe");
    let out = run_ok(
        &mut b,
        &["sh", "-c", "readlink /proc/1/exe; readlink /proc/self/exe"],
    );
    assert_eq!(out, "/bin/busybox\n/bin/busybox\n");

    // While created (still keel's code, before exec), the init is not
    // dumpable: a container joining its pid namespace cannot read or open
    // /proc/1/exe, so keel's binary stays out of reach.
    let mut a = Bundle::new("exe-created");
    a.args(&["sleep", "1000"]);
    a.create();
    let pid = a.pid();
    // keel's code, run from the sealed read-only copy (docs/security.md, CVE-2019-5736).
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe == common::keel_bin() || exe == std::path::Path::new("/keel"),
        "host view of the created init: {}",
        exe.display()
    );
    let mut b = Bundle::new("exe-joiner");
    b.set(
        "/linux/namespaces",
        json!([{"type": "pid", "path": format!("/proc/{pid}/ns/pid")}, {"type": "mount"}]),
    );
    b.unset("/hostname");
    let out = run_ok(
        &mut b,
        &[
            "sh",
            "-c",
            "readlink /proc/1/exe || echo no-link; \
             head -c 4 /proc/1/exe >/dev/null 2>&1 && echo opened || echo refused",
        ],
    );
    let keel = common::keel_bin();
    assert!(!out.contains(keel.to_str().unwrap()), "{out}");
    assert!(out.lines().any(|l| l == "no-link"), "{out}");
    assert!(out.lines().any(|l| l == "refused"), "{out}");
    assert_eq!(a.status(), "created");
}
