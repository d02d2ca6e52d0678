//! Reproductions of known container-runtime vulnerabilities against keel
//! (/work/shared/reference/security.md §2 and §7: T-xx, B-xx). Each test
//! runs the attack with real busybox containers and asserts keel is not
//! vulnerable. Tests that could damage the runtime binary use a private copy.
mod common;

use std::fs::{self, File};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{exit_code, text, Bundle};
use serde_json::json;

// ---------------------------------------------------------------------------
// Helpers.

/// A private copy of keel in the bundle directory (CVE-2019-5736 tests try to
/// corrupt the binary they attack).
fn private_keel(b: &Bundle) -> PathBuf {
    let dst = b.dir.join("keel-private");
    fs::copy(common::keel_bin(), &dst).expect("copy keel");
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod");
    dst
}

fn file_digest(p: &Path) -> Vec<u8> {
    fs::read(p).expect("read binary")
}

fn dev_ino(p: &Path) -> (u64, u64) {
    let m = fs::metadata(p).expect("stat");
    (m.dev(), m.ino())
}

/// Spawns `exe --root <root> args...` with output to files in the bundle dir.
fn spawn_with(b: &Bundle, exe: &Path, args: &[&str], tag: &str) -> Child {
    let out = File::create(b.dir.join(format!("{tag}.out"))).unwrap();
    let err = File::create(b.dir.join(format!("{tag}.err"))).unwrap();
    Command::new(exe)
        .arg("--root")
        .arg(&b.root)
        .args(args)
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn keel")
}

/// Runs `exe --root <root> args...` to completion (60 s deadline).
fn run_with(b: &Bundle, exe: &Path, args: &[&str], tag: &str) -> Output {
    let mut c = spawn_with(b, exe, args, tag);
    let status = wait_child(&mut c, Duration::from_secs(60));
    Output {
        status,
        stdout: fs::read(b.dir.join(format!("{tag}.out"))).unwrap_or_default(),
        stderr: fs::read(b.dir.join(format!("{tag}.err"))).unwrap_or_default(),
    }
}

fn wait_child(c: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            return c.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Waits for a file written by the container (in its own rootfs).
fn wait_file(p: &Path, limit: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(s) = fs::read_to_string(p) {
            if !s.is_empty() {
                return Some(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn own(name: &str) -> Bundle {
    let mut b = Bundle::new(name).with_own_rootfs();
    b.set("/process/noNewPrivileges", json!(true));
    b
}

const ALL_CAPS_PTRACE: &[&str] = &[
    "CAP_SYS_PTRACE",
    "CAP_DAC_OVERRIDE",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

// ---------------------------------------------------------------------------
// T-01: CVE-2019-5736.

/// The attacker holds CAP_SYS_PTRACE (which defeats non-dumpable) and joins
/// the container while its init still runs keel (created, not started): it
/// keeps a reference to /proc/1/exe and, after start, tries to reopen it for
/// writing through /proc/self/fd.
#[test]
fn t01_cve_2019_5736_proc_self_exe_is_not_writable() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t01a");
    let rt = private_keel(&b);
    let (h0, i0) = (file_digest(&rt), dev_ino(&rt));
    for set in ["bounding", "effective", "permitted"] {
        b.set(
            &format!("/process/capabilities/{set}"),
            json!(ALL_CAPS_PTRACE),
        );
    }
    b.args(&["sleep", "60"]);
    b.write_script(
        "attack.sh",
        "exec 7</proc/1/exe || { echo NOOPEN >/res; exit 0; }\n\
         stat -L -c %d:%i /proc/self/fd/7 >/ino\n\
         while [ ! -e /go ]; do sleep 0.05; done\n\
         i=0; while [ $i -lt 50 ]; do\n\
           if (: >>/proc/self/fd/7); then echo WROTE >/res; exit 0; fi\n\
           i=$((i+1)); sleep 0.1\n\
         done 2>/err\n\
         echo DENIED >/res\n",
    );
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    ok(
        &run_with(&b, &rt, &["create", "--bundle", &dir, &b.id], "create"),
        "create",
    );
    let pid = b.pid();
    let out = run_with(
        &b,
        &rt,
        &[
            "exec",
            "-d",
            "--cap",
            "CAP_SYS_PTRACE",
            &b.id,
            "sh",
            "/attack.sh",
        ],
        "exec",
    );
    ok(&out, "exec into the created container");
    let r = b.rootfs();
    let ino = wait_file(&r.join("ino"), Duration::from_secs(10));
    let early = fs::read_to_string(r.join("res")).unwrap_or_default();
    ok(&run_with(&b, &rt, &["start", &b.id], "start"), "start");
    fs::write(r.join("go"), "").unwrap();
    let res = wait_file(&r.join("res"), Duration::from_secs(20)).unwrap_or_default();
    let _ = run_with(&b, &rt, &["delete", "-f", &b.id], "delete");
    assert_ne!(
        res.trim(),
        "WROTE",
        "container reopened keel's binary for writing"
    );
    assert_eq!(file_digest(&rt), h0, "runtime binary modified");
    if let Some(ino) = ino {
        assert_ne!(
            ino.trim(),
            format!("{}:{}", i0.0, i0.1),
            "the init (pid {pid}) runs the on-disk binary"
        );
        assert_eq!(res.trim(), "DENIED", "the attacker did not finish");
    } else {
        assert!(early.contains("NOOPEN"), "attacker did not report: {early}");
    }
}

/// What the watcher in [`shebang_attack`] saw.
struct Caught {
    /// dev:ino of the binary it held (None: it never caught a process).
    ino: Option<String>,
    /// WROTE or DENIED: its attempt to reopen that binary for writing.
    res: String,
}

/// The classic exploit: a container process execs `/evil`, a
/// `#!/proc/self/exe` script, so the process keel execs is the runtime
/// itself, dumpable, inside the container. The watcher (pid 1) grabs its
/// /proc/<pid>/exe and, once it exited, reopens it for writing.
/// `seal: false` runs keel with its defence off (`_KEEL_EXESEAL=1`).
fn shebang_attack(name: &str, seal: bool) -> (Caught, (u64, u64), bool) {
    let mut b = own(name);
    let rt = private_keel(&b);
    let (h0, i0) = (file_digest(&rt), dev_ino(&rt));
    b.write_script("evil", "#!/proc/self/exe\n");
    b.write_script(
        "w.sh",
        "while :; do for p in /proc/[0-9]*; do\n\
           l=$(readlink $p/exe 2>/dev/null) || continue\n\
           case \"$l\" in /bin/busybox) continue ;; esac\n\
           exec 7<$p/exe || continue\n\
           echo \"$l\" >/seen\n\
           stat -L -c %d:%i /proc/self/fd/7 >/ino\n\
           kill -9 ${p#/proc/}\n\
           while [ ! -e /go ]; do sleep 0.05; done\n\
           i=0; while [ $i -lt 50 ]; do\n\
             if (: >>/proc/self/fd/7); then echo WROTE >/res; exit 0; fi\n\
             i=$((i+1)); sleep 0.1\n\
           done 2>/err\n\
           echo DENIED >/res; exit 0\n\
         done; done\n",
    );
    b.args(&["sh", "/w.sh"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    ok(
        &run_with(&b, &rt, &["run", "-d", "--bundle", &dir, &b.id], "run"),
        "run -d",
    );
    let r = b.rootfs();
    // `keel exec <id> /evil`: the exec'd process is keel (`keel /evil`, a
    // usage error); its stderr is a full pipe nobody reads, so it blocks
    // there, alive for the watcher.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let _ = nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096));
    let fl = nix::fcntl::OFlag::from_bits_truncate(
        nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_GETFL).unwrap(),
    );
    nix::fcntl::fcntl(
        &wr,
        nix::fcntl::FcntlArg::F_SETFL(fl | nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while nix::unistd::write(&wr, &[0u8; 512]).is_ok() {}
    nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_SETFL(fl)).unwrap();
    let mut cmd = Command::new(&rt);
    if !seal {
        cmd.env("_KEEL_EXESEAL", "1");
    }
    let mut c = cmd
        .arg("--root")
        .arg(&b.root)
        .arg("--log")
        .arg(b.dir.join("exec.log"))
        .args(["exec", &b.id, "/evil"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr.try_clone().unwrap()))
        .stderr(Stdio::from(wr))
        .spawn()
        .unwrap();
    // Either the watcher has the process (it wrote /ino), or the kernel
    // refused /evil and keel exec logged that (then blocks on its stderr).
    let log = b.dir.join("exec.log");
    common::wait_until(
        Duration::from_secs(30),
        "the watcher or exec's error",
        || r.join("ino").exists() || fs::read_to_string(&log).is_ok_and(|l| l.contains("/evil")),
    );
    let ino = if r.join("ino").exists() {
        wait_file(&r.join("ino"), Duration::from_secs(10))
    } else {
        None
    };
    drop(rd);
    wait_child(&mut c, Duration::from_secs(10));
    fs::write(r.join("go"), "").unwrap();
    let res = if ino.is_some() {
        wait_file(&r.join("res"), Duration::from_secs(20)).unwrap_or_default()
    } else {
        String::new()
    };
    let _ = run_with(&b, &rt, &["delete", "-f", &b.id], "delete");
    let unchanged = file_digest(&rt) == h0;
    (
        Caught {
            ino,
            res: res.trim().to_owned(),
        },
        i0,
        unchanged,
    )
}

/// The shebang attack, first with keel's defence off as the control (it must
/// reach the on-disk binary, or the kernel must refuse the exec outright),
/// then with it on (the watcher must never hold the on-disk binary).
#[test]
fn t01_cve_2019_5736_exec_shebang_proc_self_exe() {
    if !common::require_root() {
        return;
    }
    let (control, i0, _) = shebang_attack("t01c-off", false);
    let on_disk = format!("{}:{}", i0.0, i0.1);
    let live = match control.ino.as_deref().map(str::trim) {
        Some(ino) => {
            assert_eq!(
                ino, on_disk,
                "control: without the seal the watcher must hold keel's on-disk binary"
            );
            assert_eq!(
                control.res, "WROTE",
                "control: the unsealed binary is writable"
            );
            true
        }
        // Some kernels refuse to exec a /proc/<pid>/exe that lies outside the
        // caller's root (ENOENT); then the vector is closed below keel.
        None => {
            eprintln!("t01c: this kernel refuses exec of /proc/self/exe outside the root");
            false
        }
    };
    let (caught, i0, unchanged) = shebang_attack("t01c-on", true);
    assert!(unchanged, "runtime binary modified");
    assert_ne!(
        caught.res, "WROTE",
        "container reopened keel's binary for writing"
    );
    if let Some(ino) = caught.ino {
        assert_ne!(
            ino.trim(),
            format!("{}:{}", i0.0, i0.1),
            "the exec'd /evil ran the on-disk keel binary"
        );
        assert_eq!(caught.res, "DENIED", "the watcher did not finish");
    } else {
        assert!(
            !live,
            "the watcher caught the control but not the sealed run"
        );
    }
}

// ---------------------------------------------------------------------------
// T-02: CVE-2016-9962 — keel's processes in the container are not inspectable.
// (Listing the *names* in /proc/<pid>/fd of a non-dumpable root process is
// allowed to container root by the directory's mode; following them is not.)

#[test]
fn t02_cve_2016_9962_exec_process_not_inspectable() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t02");
    b.write_script(
        "w.sh",
        "while :; do for p in /proc/[0-9]*; do\n\
           [ \"$p\" = /proc/1 ] && continue\n\
           c=$(cat $p/comm 2>/dev/null) || continue\n\
           case \"$c\" in sh|cat|ls|readlink|true|sleep|busybox) continue ;; esac\n\
           r=\n\
           for f in $p/fd/*; do readlink $f >/dev/null 2>&1 && r=\"$r fd\"; done\n\
           cat $p/environ >/dev/null 2>&1 && r=\"$r env\"\n\
           readlink $p/exe >/dev/null 2>&1 && r=\"$r exe\"\n\
           # Still keel (not already exec'd into the payload, which is dumpable)?\n\
           [ -n \"$r\" ] && [ \"$(cat $p/comm 2>/dev/null)\" = \"$c\" ] && \
             [ \"$(readlink $p/exe 2>/dev/null)\" != /bin/busybox ] && echo \"$c:$r\" >>/seen\n\
         done; done\n",
    );
    b.args(&["sh", "/w.sh"]);
    b.run_detached();
    for _ in 0..50 {
        let out = b.keel(&["exec", &b.id, "true"]);
        assert!(out.status.success(), "exec true: {}", text(&out.stderr));
    }
    let seen = fs::read_to_string(b.rootfs().join("seen")).unwrap_or_default();
    assert!(seen.is_empty(), "keel's process was inspectable: {seen}");
}

// ---------------------------------------------------------------------------
// T-03 / GHSA-xr7r-f8xq-vfvv (T-04e): no fd leaks into the container.

fn fds_of(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn t03_ghsa_xr7r_f8xq_vfvv_no_fd_leak_to_init_or_exec() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t03");
    b.args(&["sleep", "60"]);
    // A deliberate caller leak (not close-on-exec) into keel itself.
    let leak = File::open("/").unwrap();
    let leak_fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
    nix::fcntl::fcntl(
        &leak,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    b.run_detached();
    let pid = b.pid();
    assert_eq!(
        fds_of(pid),
        ["0", "1", "2"],
        "init fds (leaked fd {leak_fd})"
    );
    let out = b.keel(&["exec", "-d", &b.id, "sleep", "31"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = b.keel(&["exec", &b.id, "ls", "/proc/self/fd"]);
    let fds: Vec<&str> = text(&out.stdout).leak().split_whitespace().collect();
    // ls itself opens one fd for the directory it lists.
    assert!(fds.len() <= 4, "exec'd process fds: {fds:?}");
    let out = b.keel(&["exec", &b.id, "sh", "-c", "ls -l /proc/*/fd/ 2>/dev/null"]);
    let all = text(&out.stdout);
    for l in all.lines().filter(|l| l.contains("->")) {
        let target = l.split("->").nth(1).unwrap().trim();
        assert!(
            target.starts_with("/dev/")
                || target.starts_with("pipe:")
                || target.starts_with("/proc/")
                || target.contains(&*b.dir.to_string_lossy()) && target.contains("/io/")
                || target == "/",
            "container sees a host fd: {l}"
        );
    }
    drop(leak);
}

// ---------------------------------------------------------------------------
// T-04: CVE-2024-21626 — leaked fds as cwd / args[0].

const WALK: &str =
    "while [ \"$(stat -c %d:%i .)\" != \"$(stat -c %d:%i ..)\" ]; do cd -P .. || exit 3; done\n\
                    [ -e ./canary-t04 ] || { echo ESCAPED; exit 42; }\n\
                    echo INSIDE\n";

#[test]
fn t04_cve_2024_21626_cwd_proc_self_fd_is_refused() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t04a");
    fs::write(b.rootfs().join("canary-t04"), "").unwrap();
    b.write_script("walk.sh", WALK);
    for n in 3..16 {
        symlink(
            format!("/proc/self/fd/{n}"),
            b.rootfs().join(format!("work{n}")),
        )
        .unwrap();
        for cwd in [format!("/proc/self/fd/{n}"), format!("/work{n}")] {
            b.set("/process/cwd", json!(cwd));
            let (code, out, err) = b.run(&["sh", "/walk.sh"]);
            assert!(!out.contains("ESCAPED"), "cwd {cwd} escaped: {out} {err}");
            assert!(
                code != 0 || out.contains("INSIDE"),
                "cwd {cwd}: {code} {out} {err}"
            );
            let _ = b.keel(&["delete", "-f", &b.id]);
        }
    }
}

#[test]
fn t04_cve_2024_21626_args0_through_internal_fd_never_runs_host_file() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t04c");
    // A host-only script: its interpreter (/bin/sh) would be the container's.
    let host = b.dir.join("hostonly.sh");
    fs::write(&host, "#!/bin/sh\necho PWNED\n").unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o755)).unwrap();
    let host = host.to_str().unwrap().to_owned();
    for n in 3..16 {
        let ups = "../".repeat(40);
        for arg0 in [
            format!("/proc/self/fd/{n}/{ups}{}", host.trim_start_matches('/')),
            format!("/proc/self/fd/{n}/1/root{host}"),
        ] {
            let (_, out, err) = b.run(&[&arg0]);
            assert!(!out.contains("PWNED"), "ran a host file via {arg0}: {err}");
            let _ = b.keel(&["delete", "-f", &b.id]);
        }
    }
}

#[test]
fn t04_cve_2024_21626_exec_cwd_symlink_to_fd_is_refused() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t04d");
    fs::write(b.rootfs().join("canary-t04"), "").unwrap();
    b.write_script("walk.sh", WALK);
    b.args(&["sleep", "60"]);
    b.run_detached();
    for n in 3..16 {
        let w = b.rootfs().join("work");
        let _ = fs::remove_file(&w);
        symlink(format!("/proc/self/fd/{n}"), &w).unwrap();
        for cwd in ["/work", &format!("/proc/self/fd/{n}")] {
            let out = b.keel(&["exec", "--cwd", cwd, &b.id, "sh", "/walk.sh"]);
            let o = text(&out.stdout);
            assert!(!o.contains("ESCAPED"), "exec --cwd {cwd} (fd {n}) escaped");
            assert!(!out.status.success() || o.contains("INSIDE"), "{o}");
        }
    }
}

// ---------------------------------------------------------------------------
// T-05a: CVE-2021-30465 / CVE-2024-45310 — mount targets through symlinks.

#[test]
fn t05_cve_2021_30465_mount_target_symlink_stays_in_rootfs() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t05");
    let victim = b.dir.join("victim");
    let src = b.dir.join("src");
    fs::create_dir(&victim).unwrap();
    fs::create_dir(&src).unwrap();
    fs::write(src.join("marker"), "LEGIT").unwrap();
    let v = victim.to_str().unwrap().to_owned();
    symlink(&v, b.rootfs().join("abs")).unwrap();
    symlink(format!("{}{v}", "../".repeat(20)), b.rootfs().join("rel")).unwrap();
    // A symlink to /proc/self/root: magic links must not be followed either.
    symlink("/proc/self/root/tmp", b.rootfs().join("magic")).unwrap();
    for (i, m) in [
        json!({"destination":"/abs/m1","type":"tmpfs","source":"tmpfs"}),
        json!({"destination":"/rel/m2","type":"bind","source":src,"options":["rbind","ro"]}),
        json!({"destination":"/abs/new/deep/m3","type":"tmpfs","source":"tmpfs"}),
    ]
    .into_iter()
    .enumerate()
    {
        b.set("/mounts/-", m);
        let _ = i;
    }
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (code, out, err) = b.run(&["cat", &format!("{v}/m2/marker")]);
    let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        fs::read_dir(&victim).unwrap().next().is_none(),
        "host inode created in the victim dir"
    );
    assert!(
        !common::mounts_under(&victim).iter().any(|_| true),
        "host victim mounted on"
    );
    assert_eq!(
        before.lines().filter(|l| l.contains(&v)).count(),
        after.lines().filter(|l| l.contains(&v)).count(),
        "host mount table changed"
    );
    if code == 0 {
        assert_eq!(out.trim(), "LEGIT", "{err}");
        assert!(b
            .rootfs()
            .join(v.trim_start_matches('/'))
            .join("m1")
            .is_dir());
    }
}

/// The GHSA-c3xm-pvg7-gh7r chain without the race: the first mount's target
/// is a symlink to the host (as after a won exchange); the second mount's
/// source lies under it. Host `/` must never appear in the container.
#[test]
fn t05_cve_2021_30465_two_mount_chain_never_exposes_host_root() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t05b");
    let att = b.dir.join("att");
    let victim = b.dir.join("victim");
    fs::create_dir_all(&att).unwrap();
    fs::create_dir_all(victim.join("x")).unwrap();
    fs::write(victim.join("x/marker"), "LEGIT").unwrap();
    symlink("/", att.join("x")).unwrap();
    // /vol/d is the shared volume; "swapped" by a symlink to the victim dir.
    fs::create_dir_all(b.rootfs().join("vol")).unwrap();
    symlink(&victim, b.rootfs().join("vol/d")).unwrap();
    b.set(
        "/mounts/-",
        json!({"destination":"/vol/d","type":"bind","source":att,"options":["rbind"]}),
    );
    b.set(
        "/mounts/-",
        json!({"destination":"/data","type":"bind","source":victim.join("x"),"options":["rbind"]}),
    );
    let (_, out, _) = b.run(&[
        "sh",
        "-c",
        "cat /data/marker; ls /data/etc/hostname 2>/dev/null",
    ]);
    assert!(!out.contains("/data/etc"), "host root exposed: {out}");
    assert!(
        fs::read_link(att.join("x")).is_ok(),
        "attacker symlink replaced"
    );
    assert!(victim.join("x/marker").is_file() && !victim.join("x").is_symlink());
}

// ---------------------------------------------------------------------------
// T-06: CVE-2019-16884 — only procfs on /proc, nothing inside /proc.

#[test]
fn t06_cve_2019_16884_procfs_cannot_be_covered() {
    if !common::require_root() {
        return;
    }
    let fake = std::env::temp_dir().join(format!("keel-test-fakeproc-{}", std::process::id()));
    fs::create_dir_all(&fake).unwrap();
    for m in [
        json!({"destination":"/proc","type":"bind","source":fake,"options":["rbind"]}),
        json!({"destination":"/proc","type":"tmpfs","source":"tmpfs"}),
        json!({"destination":"/proc/self/attr","type":"tmpfs","source":"tmpfs"}),
        json!({"destination":"/proc/sys/kernel","type":"tmpfs","source":"tmpfs"}),
    ] {
        let mut b = Bundle::new("t06");
        b.set("/mounts/-", m.clone());
        let (code, out, err) = b.run(&["cat", "/proc/self/stat"]);
        assert_ne!(code, 0, "accepted {m}: {out}");
        assert!(!err.is_empty());
    }
    let _ = fs::remove_dir(&fake);
}

// ---------------------------------------------------------------------------
// T-07: CVE-2019-19921 / CVE-2023-27561 / CVE-2023-28642 — /proc, /sys symlinks.

#[test]
fn t07_cve_2023_27561_proc_and_sys_symlinks_are_refused() {
    if !common::require_root() {
        return;
    }
    for d in ["proc", "sys"] {
        for kind in ["abs", "rel", "host"] {
            let mut b = own("t07");
            let victim = b.dir.join("victim");
            fs::create_dir_all(&victim).unwrap();
            fs::create_dir_all(b.rootfs().join(format!("bad-{d}"))).unwrap();
            let tgt = match kind {
                "abs" => format!("/bad-{d}"),
                "rel" => format!("bad-{d}"),
                _ => victim.to_str().unwrap().to_owned(),
            };
            fs::remove_dir(b.rootfs().join(d)).unwrap();
            symlink(&tgt, b.rootfs().join(d)).unwrap();
            let (code, out, _) = b.run(&["true"]);
            assert_ne!(code, 0, "/{d} -> {tgt} accepted: {out}");
            assert!(
                fs::read_dir(&victim).unwrap().next().is_none(),
                "host dir touched"
            );
            assert!(
                common::mounts_under(&victim).is_empty(),
                "host dir mounted on"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// T-08 CVE-2025-31133 (masking with an attacker /dev/null), T-09
// CVE-2025-52565 (/dev/console), T-11 CVE-2026-41579 (/dev symlink).

#[test]
fn t08_cve_2025_31133_masked_path_with_fake_dev_null() {
    if !common::require_root() {
        return;
    }
    for kind in ["file", "symlink", "missing"] {
        let mut b = own("t08");
        let mounts: Vec<_> = b.config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["destination"].as_str().unwrap().starts_with("/dev"))
            .cloned()
            .collect();
        b.set("/mounts", json!(mounts));
        let r = b.rootfs();
        fs::write(r.join("etc/secret"), "SECRET").unwrap();
        match kind {
            "file" => fs::write(r.join("dev/null"), "FAKE").unwrap(),
            "symlink" => symlink("/etc/passwd", r.join("dev/null")).unwrap(),
            _ => {}
        }
        b.set("/linux/maskedPaths/-", json!("/etc/secret"));
        // /proc/sys/kernel/core_pattern would be the real target of the attack.
        b.set(
            "/linux/maskedPaths/-",
            json!("/proc/sys/kernel/core_pattern"),
        );
        b.write_script(
            "m.sh",
            "stat -c %F:%t:%T /dev/null; cat /etc/secret; \
             grep -c ' /etc/passwd ' /proc/self/mountinfo; \
             cat /proc/sys/kernel/core_pattern\n",
        );
        let (code, out, err) = b.run(&["sh", "/m.sh"]);
        assert!(
            !out.contains("SECRET") && !out.contains("FAKE") && !out.contains("root:x:"),
            "{kind}: mask bypassed: {out}"
        );
        if code == 0 {
            assert!(
                out.starts_with("character special file:1:3\n"),
                "{kind}: {out}"
            );
            assert_eq!(out.lines().nth(1), Some("0"), "{kind}: {out} {err}");
            assert!(
                out.lines().nth(2).is_none(),
                "{kind}: core_pattern readable: {out}"
            );
        }
        assert_eq!(fs::read_to_string(r.join("etc/secret")).unwrap(), "SECRET");
    }
}

#[test]
fn t11_cve_2026_41579_dev_symlink_does_not_populate_host() {
    if !common::require_root() {
        return;
    }
    let mut b = own("t11");
    let out_dir = b.dir.join("outdev");
    fs::create_dir(&out_dir).unwrap();
    fs::write(out_dir.join("ptmx"), "outside marker").unwrap();
    fs::remove_dir(b.rootfs().join("dev")).unwrap();
    symlink(&out_dir, b.rootfs().join("dev")).unwrap();
    let mounts: Vec<_> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["destination"].as_str().unwrap().starts_with("/dev"))
        .cloned()
        .collect();
    b.set("/mounts", json!(mounts));
    let _ = b.run(&["true"]);
    let names: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["ptmx"], "populated outside the rootfs");
    assert!(!out_dir.join("ptmx").is_symlink());
    assert_eq!(
        fs::read_to_string(out_dir.join("ptmx")).unwrap(),
        "outside marker"
    );
}

// ---------------------------------------------------------------------------
// T-10: CVE-2025-52881 — sysctl writes cannot be redirected to global files.

#[test]
fn t10_cve_2025_52881_sysctl_writes_stay_namespaced() {
    if !common::require_root() {
        return;
    }
    let cp = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let rb = fs::read_to_string("/proc/sys/kernel/printk_ratelimit_burst").unwrap();
    let rb_n: u32 = rb.trim().parse().unwrap();
    for (sysctl, val) in [
        ("kernel.core_pattern", cp.trim_end_matches('\n').to_owned()),
        ("kernel.printk_ratelimit_burst", (rb_n + 1).to_string()),
        ("kernel/printk_ratelimit_burst", "99".to_owned()),
        (
            "net.ipv4/../../kernel/printk_ratelimit_burst",
            "99".to_owned(),
        ),
        (
            "kernel.shm_rmid_forced/../printk_ratelimit_burst",
            "99".to_owned(),
        ),
    ] {
        let mut b = Bundle::new("t10");
        b.set("/linux/sysctl", json!({ sysctl: val }));
        let _ = b.run(&["true"]);
        let now = fs::read_to_string("/proc/sys/kernel/printk_ratelimit_burst").unwrap();
        if now != rb {
            let _ = fs::write("/proc/sys/kernel/printk_ratelimit_burst", &rb);
            panic!("{sysctl} changed the host's printk_ratelimit_burst");
        }
        assert_eq!(
            fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            cp
        );
    }
    // Positive control: an IPC-namespaced sysctl works.
    let mut b = Bundle::new("t10ok");
    b.set("/linux/sysctl", json!({"kernel.shm_rmid_forced": "1"}));
    let (code, out, err) = b.run(&["cat", "/proc/sys/kernel/shm_rmid_forced"]);
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
}

// ---------------------------------------------------------------------------
// T-12: CVE-2022-29162 (/24769/27650) — no inheritable caps unless asked.

fn cap_line(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn t12_cve_2022_29162_inheritable_caps_empty_unless_asked() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("t12");
    b.set(
        "/process/capabilities",
        json!({"bounding":["CAP_KILL","CAP_NET_BIND_SERVICE"],"permitted":["CAP_KILL"],"effective":["CAP_KILL"]}),
    );
    b.args(&["sleep", "60"]);
    b.run_detached();
    let s = text(&b.keel(&["exec", &b.id, "cat", "/proc/self/status"]).stdout);
    assert_eq!(cap_line(&s, "CapInh:"), "0000000000000000", "{s}");
    assert_eq!(cap_line(&s, "CapAmb:"), "0000000000000000", "{s}");
    assert_eq!(cap_line(&s, "CapBnd:"), "0000000000000420", "{s}");
    assert_eq!(cap_line(&s, "CapEff:"), "0000000000000020", "{s}");
    let out = b.keel(&[
        "exec",
        "--cap",
        "CAP_NET_ADMIN",
        &b.id,
        "cat",
        "/proc/self/status",
    ]);
    let s = text(&out.stdout);
    assert_eq!(
        cap_line(&s, "CapInh:"),
        "0000000000000000",
        "exec --cap: {s}"
    );
    assert_eq!(
        cap_line(&s, "CapAmb:"),
        "0000000000000000",
        "exec --cap: {s}"
    );
    // The init too.
    let s = fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
    assert_eq!(cap_line(&s, "CapInh:"), "0000000000000000", "init: {s}");
}

// ---------------------------------------------------------------------------
// T-13 CVE-2023-25809 and H-02 (CVE-2023-27561 class): /proc, /sys masks.

#[test]
fn t13_cve_2023_25809_cgroupfs_read_only_with_and_without_cgroupns() {
    if !common::require_root() {
        return;
    }
    for cgroupns in [true, false] {
        let mut b = Bundle::new("t13");
        if cgroupns {
            b.set("/linux/namespaces/-", json!({"type": "cgroup"}));
        }
        let (_, out, err) = b.run(&[
            "sh",
            "-c",
            "grep ' /sys/fs/cgroup' /proc/self/mountinfo; mkdir /sys/fs/cgroup/x && echo WRITABLE; \
             mkdir /sys/fs/cgroup/memory/x 2>/dev/null && echo WRITABLE; true",
        ]);
        assert!(
            !out.contains("WRITABLE"),
            "cgroupns={cgroupns}: {out} {err}"
        );
        for l in out.lines().filter(|l| l.contains(" /sys/fs/cgroup")) {
            let opts = l.split_whitespace().nth(5).unwrap_or("");
            assert!(opts.split(',').any(|o| o == "ro"), "rw cgroup mount: {l}");
        }
    }
}

#[test]
fn h02_cve_2023_27561_masked_and_readonly_proc_sys() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("h02");
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list; do \
                    [ -z \"$(head -c1 $f 2>/dev/null)\" ] || echo LEAK:$f; done\n\
                  for d in /proc/acpi /sys/firmware; do [ -z \"$(ls -A $d 2>/dev/null)\" ] || echo LEAK:$d; done\n\
                  touch /proc/acpi/x 2>/dev/null && echo WRITABLE:acpi\n\
                  umount /proc/kcore 2>/dev/null && echo UMOUNTED\n\
                  (echo x >/proc/sys/kernel/hostname) 2>/dev/null && echo WRITABLE:procsys\n\
                  (echo c >/proc/sysrq-trigger) 2>/dev/null && echo WRITABLE:sysrq\n\
                  touch /sys/kernel/x 2>/dev/null && echo WRITABLE:sys\n\
                  grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/self/mountinfo | grep -v ' ro[, ]' && echo RW:procro\n\
                  echo DONE\n";
    let (code, out, err) = b.run(&["sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DONE"), "{out}");
    for bad in ["LEAK", "WRITABLE", "UMOUNTED", "RW:"] {
        assert!(!out.contains(bad), "{out}");
    }
}

// ---------------------------------------------------------------------------
// B-13..B-17: bad inputs.

fn no_panic(out: &Output, what: &str) {
    let c = exit_code(out.status);
    assert_ne!(c, 101, "{what} panicked: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{what}: {}",
        text(&out.stderr)
    );
}

#[test]
fn b13_invalid_container_ids_touch_nothing() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("b13");
    b.args(&["sleep", "30"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let long = "a".repeat(300);
    for id in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "x y",
        &long,
        "é",
        "a\nb",
        "../../../tmp/keel-b13",
    ] {
        let mut cmds = vec![
            vec!["create", "--bundle", &dir, "--", id],
            vec!["run", "-d", "--bundle", &dir, "--", id],
            vec!["delete", "-f", "--", id],
            vec!["kill", "--", id, "KILL"],
            vec!["state", "--", id],
            vec!["start", "--", id],
            vec!["exec", "--", id, "true"],
        ];
        if id == long {
            // runc's character set: only a missing container (delete -f succeeds).
            cmds.retain(|c| c[0] != "delete");
        }
        for cmd in cmds {
            let out = b.keel(&cmd);
            no_panic(&out, &format!("{cmd:?}"));
            assert!(!out.status.success(), "{cmd:?} accepted id {id:?}");
        }
    }
    assert!(
        fs::read_dir(&b.root).unwrap().next().is_none(),
        "state root touched by a bad id"
    );
    assert!(!b.dir.join("x").exists() && !Path::new("/tmp/keel-b13").exists());
    // Valid but tricky ids work and stay inside the root.
    for id in ["-rf", "...", "a.b+c_d"] {
        let out = b.keel(&["create", "--bundle", &dir, "--", id]);
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
        assert!(b.root.join(id).is_dir());
        let out = b.keel(&["delete", "-f", "--", id]);
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
    }
}

#[test]
fn b14_concurrent_create_of_one_id_has_one_winner() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("b14");
    b.args(&["sleep", "30"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let exe = common::keel_bin();
    let mut kids: Vec<Child> = (0..10)
        .map(|i| {
            spawn_with(
                &b,
                &exe,
                &["create", "--bundle", &dir, &b.id],
                &format!("c{i}"),
            )
        })
        .collect();
    let wins = kids
        .iter_mut()
        .map(|c| wait_child(c, Duration::from_secs(60)).success())
        .filter(|&w| w)
        .count();
    assert_eq!(wins, 1, "winners of a concurrent create");
    let st = b.state();
    assert_eq!(st["status"], "created");
    // Exactly one init: count processes whose cmdline names this id's sleep.
    let pid = b.pid();
    let inits = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| c.contains(&b.id))
                && fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.starts_with("keel"))
        })
        .collect::<Vec<_>>();
    assert_eq!(inits, [pid], "inits left by the losers");
    for (i, _) in kids.iter().enumerate() {
        no_panic(
            &Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(0),
                stdout: vec![],
                stderr: fs::read(b.dir.join(format!("c{i}.err"))).unwrap_or_default(),
            },
            "create",
        );
    }
}

#[test]
fn b15_corrupt_state_json_no_panic() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("b15");
    b.args(&["sleep", "30"]);
    b.create();
    let st = b.root.join(&b.id).join("state.json");
    let good = fs::read(&st).unwrap();
    for bad in [
        &b""[..],
        b"{",
        b"null",
        b"{\"pid\": \"x\"}",
        &[0xff, 0xfe, 0],
        &good[..good.len() / 2],
    ] {
        fs::write(&st, bad).unwrap();
        for cmd in [
            vec!["state", &b.id],
            vec!["kill", &b.id, "KILL"],
            vec!["delete", &b.id],
            vec!["start", &b.id],
            vec!["exec", &b.id, "true"],
            vec!["list"],
            vec!["ps", &b.id],
        ] {
            let out = b.keel(&cmd);
            no_panic(&out, &format!("{cmd:?} with {bad:?}"));
            if cmd[0] != "list" {
                assert!(
                    !out.status.success(),
                    "{cmd:?} succeeded on a corrupt state"
                );
            }
        }
    }
    // The init was not signalled by any of it.
    fs::write(&st, &good).unwrap();
    assert_eq!(b.status(), "created");
    let out = b.keel(&["delete", "-f", &b.id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn b16_reused_pid_is_never_signalled() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("b16");
    b.args(&["sleep", "30"]);
    b.create();
    let mut victim = Command::new("sleep").arg("100").spawn().unwrap();
    let vpid = victim.id() as i64;
    let st = b.root.join(&b.id).join("state.json");
    let good = fs::read_to_string(&st).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["pid"] = json!(vpid);
    fs::write(&st, serde_json::to_vec(&v).unwrap()).unwrap();
    for cmd in [
        vec!["kill", &b.id, "KILL"],
        vec!["kill", "--all", &b.id, "KILL"],
        vec!["delete", "-f", &b.id],
    ] {
        let out = b.keel(&cmd);
        no_panic(&out, &format!("{cmd:?}"));
        assert!(
            victim.try_wait().unwrap().is_none(),
            "{cmd:?} signalled an unrelated pid"
        );
    }
    let _ = victim.kill();
    let _ = victim.wait();
    if b.root.join(&b.id).exists() {
        fs::write(&st, good).unwrap();
    }
}

#[test]
fn b17_half_created_container_is_cleaned_up() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("b17");
    let ghost = b.root.join("ghost");
    fs::create_dir_all(&ghost).unwrap();
    let out = b.keel(&["delete", "-f", "ghost"]);
    no_panic(&out, "delete -f ghost");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!ghost.exists(), "ghost not removed");
    // And a state dir with a fifo but no state.json (crash before Ready).
    fs::create_dir_all(&ghost).unwrap();
    nix::unistd::mkfifo(
        &ghost.join("exec.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o622),
    )
    .unwrap();
    for cmd in [vec!["state", "ghost"], vec!["start", "ghost"]] {
        let out = b.keel_timeout(&cmd, Duration::from_secs(10));
        no_panic(&out, &format!("{cmd:?}"));
        assert!(!out.status.success());
    }
    let out = b.keel(&["delete", "-f", "ghost"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!ghost.exists());
}
