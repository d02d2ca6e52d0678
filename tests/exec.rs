//! `keel exec`: a process started in a running busybox container (`sleep
//! 1000`). Each flag is checked from inside the process; namespaces, cgroup
//! and root from the host; then exit statuses, `--detach --pid-file`, stopped
//! and paused containers, `-t` under script(1) and signal forwarding. runc
//! 1.1.5 is the reference for every behaviour.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{text, Bundle};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A running container whose init is `sleep 1000`; `edit` changes the config first.
fn running_with(name: &str, edit: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = Bundle::new(name);
    b.args(&["sleep", "1000"]);
    edit(&mut b);
    b.run_detached();
    b
}

fn running(name: &str) -> Bundle {
    running_with(name, |_| {})
}

/// What one keel command printed, and how it ended.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self, what: &str) -> &str {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        &self.stdout
    }
}

fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `keel --root <state> ARGS`, after `setup` (shell, e.g. `exec 3<file`) when
/// it is not empty: then `sh -c '<setup>; exec keel ...'`, so keel inherits what
/// the shell opened. Output goes to files under `<dir>/io`.
fn keel(b: &Bundle, setup: &str, args: &[&str]) -> (Command, PathBuf, PathBuf) {
    let mut c = if setup.is_empty() {
        common::keel_cmd()
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("{setup}\nexec \"$@\""))
            .arg("sh")
            .arg(common::keel_bin());
        c
    };
    c.arg("--root").arg(&b.root).args(args).current_dir(&b.dir);
    let n = unique();
    let out = b.dir.join("io").join(format!("x{n:03}.stdout"));
    let err = b.dir.join("io").join(format!("x{n:03}.stderr"));
    c.stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"));
    (c, out, err)
}

/// Waits for `child` until the harness's deadline (then kills it and panics).
fn wait_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let timeout = common::command_timeout();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs keel (see [`keel`]) with `input` on its stdin (null when None).
fn run_keel(b: &Bundle, setup: &str, args: &[&str], input: Option<&[u8]>) -> Out {
    let (mut c, out, err) = keel(b, setup, args);
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("spawn keel");
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(data).expect("write keel's stdin");
    }
    let st = wait_deadline(&mut child, &format!("keel {}", args.join(" ")));
    Out {
        code: common::exit_code(st),
        stdout: text(&fs::read(out).unwrap_or_default()),
        stderr: text(&fs::read(err).unwrap_or_default()),
    }
}

/// `keel exec FLAGS <id> CMD...` in the foreground.
fn exec(b: &Bundle, flags: &[&str], cmd: &[&str]) -> Out {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&b.id);
    args.extend_from_slice(cmd);
    run_keel(b, "", &args, None)
}

/// `sh -c SCRIPT` through exec; panics unless it exits 0; returns stdout.
fn sh(b: &Bundle, flags: &[&str], script: &str) -> String {
    exec(b, flags, &["sh", "-c", script])
        .ok(&format!("exec {flags:?} sh -c {script:?}"))
        .to_owned()
}

/// The field `name` of /proc/self/status as the process sees it.
fn status_field(b: &Bundle, flags: &[&str], name: &str) -> String {
    let out = sh(b, flags, "cat /proc/self/status");
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .trim()
        .to_owned()
}

fn cap_bit(hex: &str, bit: u32) -> bool {
    u64::from_str_radix(hex, 16).expect("hex capability set") & (1 << bit) != 0
}

const CAP_KILL: u32 = 5;
const CAP_SYS_ADMIN: u32 = 21;

/// The pid in a pid file: decimal, no newline (as runc writes it).
fn read_pid_file(path: &Path) -> i32 {
    let s = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!s.ends_with('\n'), "pid file ends with a newline: {s:?}");
    s.parse()
        .unwrap_or_else(|_| panic!("pid file holds no pid: {s:?}"))
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// (dev, ino) of a /proc/<pid>/... file (a namespace, the root).
fn ident(path: &str) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.dev(), m.ino())
}

/// `exec -d --pid-file F CMD`: the pid of the detached process.
fn exec_detached(b: &Bundle, flags: &[&str], cmd: &[&str]) -> i32 {
    let pid_file = b.dir.join(format!("exec-{}.pid", unique()));
    let mut f = vec!["-d", "--pid-file", pid_file.to_str().unwrap()];
    f.extend_from_slice(flags);
    exec(b, &f, cmd).ok("exec -d");
    read_pid_file(&pid_file)
}

// ---------------------------------------------------------------------------
// Each flag, seen from inside.

#[test]
fn cwd_flag_sets_the_working_directory() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-cwd");
    assert_eq!(sh(&b, &[], "pwd"), "/\n", "the container's cwd by default");
    assert_eq!(sh(&b, &["--cwd", "/tmp"], "pwd"), "/tmp\n");
}

#[test]
fn env_flag_adds_to_the_containers_env() {
    if !common::require_root() {
        return;
    }
    let b = running_with("exec-env", |b| {
        b.set("/process/env/-", serde_json::json!("FROM_CONFIG=yes"));
    });
    let out = sh(
        &b,
        &["-e", "FOO=bar", "-e", "TERM=dumb"],
        "echo \"$FOO|$FROM_CONFIG|$TERM|$PATH\"; env | grep -c '^TERM='",
    );
    assert_eq!(
        out,
        format!("bar|yes|dumb|{PATH}\n1\n"),
        "added, the container's kept, a repeated name overridden once"
    );
    let out = sh(&b, &[], "echo \"${FOO-unset}|$TERM\"");
    assert_eq!(out, "unset|xterm\n", "-e is for that process only");
}

#[test]
fn user_flag_sets_uid_and_gid() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-user");
    assert_eq!(sh(&b, &[], "id -u; id -g"), "0\n0\n");
    assert_eq!(sh(&b, &["-u", "1000:1000"], "id -u; id -g"), "1000\n1000\n");
    assert_eq!(
        sh(&b, &["--user", "1000"], "id -u; id -g"),
        "1000\n0\n",
        "the gid stays the container's"
    );
}

#[test]
fn additional_gids_flag() {
    if !common::require_root() {
        return;
    }
    // runc appends -g to the container's own additionalGids.
    let b = running_with("exec-gids", |b| {
        b.set("/process/user/additionalGids", serde_json::json!([30]));
    });
    let out = sh(&b, &["-u", "1000:1000", "-g", "10", "-g", "20"], "id -G");
    assert_eq!(out, "1000 10 20 30\n");
    let out = sh(&b, &["-u", "1000:1000"], "id -G");
    assert_eq!(out, "1000 30\n", "the container's groups without -g");
}

#[test]
fn apparmor_and_process_label_flags_reach_the_process() {
    if !common::require_root() {
        return;
    }
    // This host has neither AppArmor nor SELinux: the flags are taken (as
    // runc's) and the process's fields are refused as config.json's would be.
    let host = |p: &str| Path::new(p).exists();
    if host("/sys/kernel/security/apparmor") || host("/sys/fs/selinux/enforce") {
        eprintln!("skipped: AppArmor or SELinux is enabled here");
        return;
    }
    let b = running("exec-lsm");
    let out = exec(&b, &["--apparmor", "keel-test"], &["true"]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            r#"process.apparmorProfile: AppArmor is not enabled on this host (profile "keel-test")"#
        ),
        "{}",
        out.stderr
    );
    let out = exec(
        &b,
        &["--process-label", "system_u:system_r:container_t:s0"],
        &["true"],
    );
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "process.selinuxLabel: a SELinux label is set, but SELinux is disabled or not supported on this host"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(b.status(), "running");
}

#[test]
fn cap_flag_adds_a_capability() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-cap");
    let eff = status_field(&b, &[], "CapEff");
    assert!(
        cap_bit(&eff, CAP_KILL) && !cap_bit(&eff, CAP_SYS_ADMIN),
        "{eff}"
    );
    let eff = status_field(&b, &["--cap", "CAP_SYS_ADMIN"], "CapEff");
    assert!(
        cap_bit(&eff, CAP_SYS_ADMIN) && cap_bit(&eff, CAP_KILL),
        "added to the container's: {eff}"
    );
    // As runc 1.1.5: no ambient set without an inheritable one, so a non-root
    // user gets it in its bounding set only, and the process still runs.
    let out = sh(
        &b,
        &["-u", "1000:1000", "--cap", "CAP_SYS_ADMIN"],
        "cat /proc/self/status",
    );
    let field = |n: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{n}:")))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert!(cap_bit(&field("CapBnd"), CAP_SYS_ADMIN), "{out}");
    assert_eq!(field("CapEff"), "0000000000000000", "{out}");
}

#[test]
fn no_new_privs_flag() {
    if !common::require_root() {
        return;
    }
    let b = running_with("exec-nnp", |b| {
        b.set("/process/noNewPrivileges", serde_json::json!(false));
    });
    assert_eq!(status_field(&b, &[], "NoNewPrivs"), "0");
    assert_eq!(status_field(&b, &["--no-new-privs"], "NoNewPrivs"), "1");
}

const PROCESS_JSON: &str = r#"{
    "terminal": false,
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [30]},
    "args": ["sh", "-c", "echo \"$(id -u) $(id -G) $(pwd) $FROM_FILE ${FROM_CONFIG-unset}\""],
    "env": ["PATH=/bin", "FROM_FILE=1"],
    "cwd": "/tmp"
}"#;

#[test]
fn process_file_replaces_the_whole_process() {
    if !common::require_root() {
        return;
    }
    let b = running_with("exec-procfile", |b| {
        b.set("/process/env/-", serde_json::json!("FROM_CONFIG=yes"));
    });
    let path = b.dir.join("process.json");
    fs::write(&path, PROCESS_JSON).unwrap();
    let out = exec(&b, &["--process", path.to_str().unwrap()], &[]);
    assert_eq!(out.ok("exec --process FILE"), "1000 1000 30 /tmp 1 unset\n");
}

#[test]
fn process_from_stdin_as_containerd_passes_it() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-procstdin");
    let out = run_keel(
        &b,
        "",
        &["exec", "--process", "-", &b.id],
        Some(PROCESS_JSON.as_bytes()),
    );
    assert_eq!(out.ok("exec --process -"), "1000 1000 30 /tmp 1 unset\n");
}

#[test]
fn preserve_fds_passes_exactly_n_more_fds() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-fds");
    let f3 = b.dir.join("fd3");
    let f4 = b.dir.join("fd4");
    fs::write(&f3, "from fd 3\n").unwrap();
    fs::write(&f4, "from fd 4\n").unwrap();
    let setup = format!("exec 3<'{}' 4<'{}'", f3.display(), f4.display());
    let script = "cat <&3; [ -e /proc/$$/fd/4 ] && echo fd4-open || echo fd4-closed";
    let out = run_keel(
        &b,
        &setup,
        &["exec", "--preserve-fds", "1", &b.id, "sh", "-c", script],
        None,
    );
    assert_eq!(out.ok("exec --preserve-fds 1"), "from fd 3\nfd4-closed\n");
    let script = "[ -e /proc/$$/fd/3 ] && echo fd3-open || echo fd3-closed";
    let out = run_keel(&b, &setup, &["exec", &b.id, "sh", "-c", script], None);
    assert_eq!(
        out.ok("exec"),
        "fd3-closed\n",
        "none without --preserve-fds"
    );
}

// ---------------------------------------------------------------------------
// Where the process is, seen from the host.

#[test]
fn process_is_in_the_containers_namespaces_cgroup_and_root() {
    if !common::require_root() {
        return;
    }
    let b = running_with("exec-where", |b| {
        b.set("/linux/namespaces/-", serde_json::json!({"type": "cgroup"}));
        b.set("/linux/namespaces/-", serde_json::json!({"type": "time"}));
    });
    let init = b.pid();
    let pid = exec_detached(&b, &[], &["sleep", "1000"]);
    assert!(alive(pid), "exec'd process {pid} is alive");
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup", "time"] {
        assert_eq!(
            ident(&format!("/proc/{pid}/ns/{ns}")),
            ident(&format!("/proc/{init}/ns/{ns}")),
            "{ns} namespace of the exec'd process is the init's"
        );
        assert_ne!(
            ident(&format!("/proc/{pid}/ns/{ns}")),
            ident(&format!("/proc/self/ns/{ns}")),
            "{ns}: the container has its own"
        );
    }
    let cg = |p: i32| fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    let (mine, its) = (cg(pid), cg(init));
    assert!(!its.is_empty());
    assert_eq!(
        mine.lines().collect::<Vec<_>>(),
        its.lines().collect::<Vec<_>>(),
        "same cgroup as the init on every line"
    );
    assert_eq!(
        ident(&format!("/proc/{pid}/root")),
        ident(&format!("/proc/{init}/root")),
        "same root as the init"
    );
    // And from inside: the container's rootfs, hostname and pid 1.
    let out = sh(
        &b,
        &[],
        "cat /.keel-test-rootfs-complete; hostname; cat /proc/1/comm",
    );
    assert_eq!(out, "keel-test-rootfs v1\nrunc\nsleep\n");
}

// ---------------------------------------------------------------------------
// Exit statuses.

#[test]
fn exit_status_is_the_processes() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-status");
    assert_eq!(exec(&b, &[], &["true"]).code, 0);
    assert_eq!(exec(&b, &[], &["sh", "-c", "exit 5"]).code, 5);
    assert_eq!(
        exec(&b, &[], &["sh", "-c", "kill -9 $$"]).code,
        128 + 9,
        "killed by a signal: 128+N"
    );
    let out = exec(&b, &[], &["no-such-program-keel"]);
    assert_eq!(out.code, 255, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("executable file not found"),
        "{}",
        out.stderr
    );
    assert_eq!(b.status(), "running", "the container is unaffected");
}

// ---------------------------------------------------------------------------
// --detach and --pid-file.

#[test]
fn detach_writes_the_pid_of_a_live_process_in_the_container() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-detach");
    let init = b.pid();
    let pid = exec_detached(&b, &[], &["sleep", "1000"]);
    assert_ne!(pid, init);
    assert!(alive(pid), "{pid} is alive after keel returned");
    assert_eq!(
        ident(&format!("/proc/{pid}/ns/pid")),
        ident(&format!("/proc/{init}/ns/pid")),
        "{pid} is in the container"
    );
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x001000\x00");
}

#[test]
fn failed_detached_exec_writes_no_pid_file() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-detach-fail");
    let pid_file = b.dir.join("never.pid");
    let out = exec(
        &b,
        &["-d", "--pid-file", pid_file.to_str().unwrap()],
        &["no-such-program-keel"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("executable file not found"),
        "{}",
        out.stderr
    );
    assert!(!pid_file.exists(), "pid file written for a failed exec");
    let leftovers: Vec<_> = fs::read_dir(&b.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("never"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------------------
// Containers that are not running.

#[test]
fn exec_into_a_stopped_container_fails() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("exec-stopped");
    b.args(&["true"]);
    b.run_detached();
    b.wait_for_status("stopped");
    let out = exec(&b, &[], &["true"]);
    assert_eq!(out.code, 255);
    assert!(
        out.stderr.contains("cannot exec in a stopped container"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-paused");
    let init = b.pid();
    let ok = b.keel(&["pause", &b.id]);
    assert!(ok.status.success(), "pause: {}", text(&ok.stderr));
    b.wait_for_status("paused");
    let out = exec(&b, &[], &["true"]);
    assert_eq!(out.code, 255);
    assert!(
        out.stderr
            .contains("cannot exec in a paused container (use --ignore-paused to override)"),
        "{}",
        out.stderr
    );

    // --ignore-paused: the process is made in the frozen cgroup and runs (as in
    // runc) once the container is resumed.
    let pid_file = b.dir.join("paused.pid");
    let (mut c, _, err) = keel(
        &b,
        "",
        &[
            "exec",
            "--ignore-paused",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &b.id,
            "sleep",
            "1000",
        ],
    );
    let mut child = c.stdin(Stdio::null()).spawn().expect("spawn keel exec");
    let pids = || -> Vec<i32> {
        let o = b.keel(&["ps", "--format", "json", &b.id]);
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    };
    common::wait_until(
        common::command_timeout(),
        "the exec'd process in the paused container's cgroup",
        || pids().iter().any(|&p| p != init),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "exec --ignore-paused ended while the container was paused: {}",
        text(&fs::read(&err).unwrap_or_default())
    );
    let ok = b.keel(&["resume", &b.id]);
    assert!(ok.status.success(), "resume: {}", text(&ok.stderr));
    let st = wait_deadline(&mut child, "exec --ignore-paused");
    assert!(
        st.success(),
        "exec --ignore-paused: {st}: {}",
        text(&fs::read(&err).unwrap_or_default())
    );
    let pid = read_pid_file(&pid_file);
    assert!(alive(pid));
    assert!(pids().contains(&pid));
}

// ---------------------------------------------------------------------------
// Terminal and signals.

#[test]
fn tty_flag_gives_a_pty_from_the_containers_devpts() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-tty");
    let cmd = format!(
        "{} --root {} exec -t {} sh -c 'tty; ls /dev/pts; exit 3'",
        common::keel_bin().display(),
        b.root.display(),
        b.id
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    // Held open until the end: at EOF script(1) would type ^D (echoed as "^@").
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let st = wait_deadline(&mut child, "script -c 'keel exec -t'");
    drop(stdin);
    let out = reader.join().unwrap();
    assert_eq!(st.code(), Some(3), "{out:?}");
    let at = out
        .find("/dev/pts/")
        .unwrap_or_else(|| panic!("no /dev/pts/N in {out:?}"));
    let n: String = out[at + "/dev/pts/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    assert!(!n.is_empty(), "{out:?}");
    // The container's own devpts instance lists it (and ptmx).
    let listed: Vec<&str> = out
        .split(|c: char| c.is_whitespace() || c.is_control())
        .collect();
    assert!(
        listed.contains(&n.as_str()) && listed.contains(&"ptmx"),
        "{out:?}"
    );
}

#[test]
fn tty_is_refused_when_dev_pts_is_not_a_devpts() {
    if !common::require_root() {
        return;
    }
    // /dev/pts is a bind of a directory holding a regular file named ptmx:
    // exec checks the filesystem magic, as the init does, before using it.
    let b = running_with("exec-fake-pts", |b| {
        let fake = b.dir.join("fake-pts");
        fs::create_dir_all(&fake).unwrap();
        fs::write(fake.join("ptmx"), "").unwrap();
        b.set(
            "/mounts/2",
            serde_json::json!({"destination": "/dev/pts", "type": "bind",
                "source": fake.to_str().unwrap(), "options": ["rbind"]}),
        );
    });
    let out = exec(
        &b,
        &[
            "-t",
            "-d",
            "--console-socket",
            b.dir.join("c.sock").to_str().unwrap(),
        ],
        &["true"],
    );
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(
        out.stderr.contains("not a devpts: /dev/pts/ptmx"),
        "{}",
        out.stderr
    );
    assert_eq!(b.status(), "running");
}

#[test]
fn foreground_exec_forwards_sigterm() {
    if !common::require_root() {
        return;
    }
    let b = running("exec-sigterm");
    let script = "trap 'kill $! 2>/dev/null; echo got-term; exit 7' TERM; \
                  sleep 1000 >/dev/null 2>&1 & echo ready; wait";
    let mut child = common::keel_cmd()
        .arg("--root")
        .arg(&b.root)
        .args(["exec", &b.id, "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel exec");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(common::command_timeout())
        .expect("the process said it is ready");
    assert_eq!(first, "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_deadline(&mut child, "keel exec after SIGTERM");
    // The rest of its output, up to EOF (every writer is gone).
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(common::command_timeout()) {
        rest.push(line);
    }
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    assert_eq!(
        st.code(),
        Some(7),
        "keel exits with the process's status ({st}); stdout {rest:?}; stderr {err}"
    );
    assert_eq!(rest, ["got-term"], "the process got SIGTERM");
    assert_eq!(b.status(), "running", "the init did not");
}
