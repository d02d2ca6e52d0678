//! Descriptors handed through keel as runc hands them:
//!
//! * socket activation: with `LISTEN_PID` keel's own pid and `LISTEN_FDS=N`,
//!   fds 3..3+N-1 go to the container on top of `--preserve-fds`, and the
//!   container sees `LISTEN_FDS=N`, `LISTEN_PID=1` (create and run; exec
//!   ignores them, as runc 1.1.5 does);
//! * `--pidfd-socket` (runc 1.2): a pidfd of the init (payload "standard") or
//!   of the exec'd process ("setns") sent with SCM_RIGHTS.

mod common;
mod recvfd;

use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use common::{text, Bundle};

const SHOW: &str = "cat <&3; [ -e /proc/$$/fd/4 ] && cat <&4; \
                    [ -e /proc/$$/fd/5 ] && echo fd5-open; \
                    echo \"LISTEN_FDS=${LISTEN_FDS-unset} LISTEN_PID=${LISTEN_PID-unset}\"";

fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs `sh -c '<setup>; exec keel --root <state> ARGS'` (so that keel's pid is
/// the shell's `$$`) within the harness's deadline: (exit code, stdout, stderr).
fn keel_via_sh(b: &Bundle, setup: &str, args: &[&str]) -> (i32, String, String) {
    let (code, out, err, _) = keel_via_sh_at(b, setup, args);
    (code, out, err)
}

/// [`keel_via_sh`], also returning the file that holds keel's stdout (a
/// container that `create` started keeps writing to it).
fn keel_via_sh_at(b: &Bundle, setup: &str, args: &[&str]) -> (i32, String, String, PathBuf) {
    let n = unique();
    let out = b.dir.join("io").join(format!("p{n:03}.stdout"));
    let err = b.dir.join("io").join(format!("p{n:03}.stderr"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{setup}\nexec \"$@\""))
        .arg("sh")
        .arg(common::keel_bin())
        .arg("--root")
        .arg(&b.root)
        .args(args)
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .expect("spawn sh");
    let start = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > common::command_timeout() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keel {args:?} still running after the deadline");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        common::exit_code(st),
        text(&fs::read(&out).unwrap_or_default()),
        text(&fs::read(err).unwrap_or_default()),
        out,
    )
}

/// Files for fds 3 and 4, and the shell that opens them.
fn fd_files(b: &Bundle) -> String {
    fs::write(b.dir.join("fd3"), "three\n").unwrap();
    fs::write(b.dir.join("fd4"), "four\n").unwrap();
    format!("exec 3<'{0}/fd3' 4<'{0}/fd4' 5</dev/null", b.dir.display())
}

#[test]
fn listen_fds_are_passed_to_run() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("listen-run");
    b.args(&["sh", "-c", SHOW]);
    b.write();
    let setup = fd_files(&b) + "; export LISTEN_FDS=1 LISTEN_PID=$$";
    let (code, out, err) = keel_via_sh(&b, &setup, &["run", "--bundle", &b.dir_s(), &b.id]);
    assert_eq!(
        (code, out.as_str()),
        (0, "three\nLISTEN_FDS=1 LISTEN_PID=1\n"),
        "{err}"
    );
}

#[test]
fn listen_fds_come_on_top_of_preserve_fds() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("listen-preserve");
    b.args(&["sh", "-c", SHOW]);
    b.write();
    let setup = fd_files(&b) + "; export LISTEN_FDS=1 LISTEN_PID=$$";
    let (code, out, err) = keel_via_sh(
        &b,
        &setup,
        &["run", "--preserve-fds", "1", "--bundle", &b.dir_s(), &b.id],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "three\nfour\nLISTEN_FDS=1 LISTEN_PID=1\n"),
        "fds 3 and 4, not 5: {err}"
    );
}

#[test]
fn listen_fds_override_the_configs_and_survive_until_start() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("listen-create");
    b.args(&["sh", "-c", SHOW]);
    b.set("/process/env/-", serde_json::json!("LISTEN_FDS=9"));
    b.write();
    let setup = fd_files(&b) + "; export LISTEN_FDS=2 LISTEN_PID=$$";
    let (code, _, err, stdout) =
        keel_via_sh_at(&b, &setup, &["create", "--bundle", &b.dir_s(), &b.id]);
    assert_eq!(code, 0, "create: {err}");
    // The container's stdout is the create's (a file under io/).
    let out = b.keel(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    b.wait_for_status("stopped");
    let got = fs::read_to_string(stdout).unwrap();
    assert_eq!(got, "three\nfour\nLISTEN_FDS=2 LISTEN_PID=1\n");
}

#[test]
fn listen_fds_for_another_pid_are_ignored() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("listen-other");
    b.args(&[
        "sh",
        "-c",
        "[ -e /proc/$$/fd/3 ] && echo fd3-open; echo \"${LISTEN_FDS-unset}\"",
    ]);
    b.write();
    // LISTEN_PID names the shell's parent, not keel: not for us (as runc).
    let setup = fd_files(&b) + "; export LISTEN_FDS=1 LISTEN_PID=$PPID";
    let (code, out, err) = keel_via_sh(&b, &setup, &["run", "--bundle", &b.dir_s(), &b.id]);
    assert_eq!((code, out.as_str()), (0, "unset\n"), "{err}");
    // And without LISTEN_PID at all.
    let setup = fd_files(&b) + "; export LISTEN_FDS=1; unset LISTEN_PID";
    let (code, out, err) = keel_via_sh(&b, &setup, &["run", "--bundle", &b.dir_s(), &b.id]);
    assert_eq!((code, out.as_str()), (0, "unset\n"), "{err}");
}

#[test]
fn exec_ignores_listen_fds_as_runc_does() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("listen-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let setup = fd_files(&b) + "; export LISTEN_FDS=1 LISTEN_PID=$$";
    let (code, out, err) = keel_via_sh(
        &b,
        &setup,
        &[
            "exec",
            &b.id,
            "sh",
            "-c",
            "[ -e /proc/$$/fd/3 ] && echo fd3-open; echo \"${LISTEN_FDS-unset}\"",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "unset\n"), "{err}");
}

// ---------------------------------------------------------------------------
// --pidfd-socket

/// The pid a pidfd refers to (its fdinfo's `Pid:` line; -1 once it has exited
/// and been reaped).
fn pidfd_pid(fd: &OwnedFd) -> i32 {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .unwrap_or_else(|| panic!("not a pidfd: {info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Whether the process behind the pidfd has exited (poll says readable).
fn exited(fd: &OwnedFd, wait: Duration) -> bool {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0
}

fn check_live_pidfd(fd: &OwnedFd, pid: i32) {
    assert_eq!(pidfd_pid(fd), pid, "the pidfd is the process's");
    keel::sys::pidfd_send_signal(fd.as_fd(), 0).expect("pidfd_send_signal(0)");
    assert!(!exited(fd, Duration::ZERO), "alive");
}

#[test]
fn create_sends_a_pidfd_of_the_init() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pidfd-create");
    b.args(&["sleep", "1000"]);
    b.write();
    let r = recvfd::Receiver::bind(&b.dir.join("pidfd.sock"));
    let out = b.keel(&[
        "create",
        "--pidfd-socket",
        r.path_str(),
        "--bundle",
        &b.dir_s(),
        &b.id,
    ]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let (payload, fd) = r.recv();
    assert_eq!(
        payload, b"standard",
        "runc's payload for a container's init"
    );
    check_live_pidfd(&fd, b.pid());
    // The container's end is seen through it.
    let out = b.keel(&["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    assert!(
        exited(&fd, common::command_timeout()),
        "the pidfd reports the exit"
    );
    b.wait_for_status("stopped");
}

#[test]
fn run_detached_sends_a_pidfd_that_can_signal_the_init() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pidfd-run");
    b.args(&["sleep", "1000"]);
    b.write();
    let r = recvfd::Receiver::bind(&b.dir.join("pidfd.sock"));
    let out = b.keel(&[
        "run",
        "-d",
        "--pidfd-socket",
        r.path_str(),
        "--bundle",
        &b.dir_s(),
        &b.id,
    ]);
    assert!(out.status.success(), "run -d: {}", text(&out.stderr));
    let (payload, fd) = r.recv();
    assert_eq!(payload, b"standard");
    check_live_pidfd(&fd, b.pid());
    // As runc's own test does: kill the container through the pidfd.
    keel::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).unwrap();
    assert!(exited(&fd, common::command_timeout()));
    b.wait_for_status("stopped");
}

#[test]
fn exec_sends_a_pidfd_of_the_exec_process() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pidfd-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let r = recvfd::Receiver::bind(&b.dir.join("pidfd.sock"));
    let pid_file = b.dir.join("exec.pid");
    let out = b.keel(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--pidfd-socket",
        r.path_str(),
        &b.id,
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "exec -d: {}", text(&out.stderr));
    let (payload, fd) = r.recv();
    assert_eq!(payload, b"setns", "runc's payload for an exec'd process");
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    check_live_pidfd(&fd, pid);
    keel::sys::pidfd_send_signal(fd.as_fd(), libc::SIGTERM).unwrap();
    assert!(exited(&fd, common::command_timeout()));
    assert_eq!(b.status(), "running", "only the exec'd process");

    // In the foreground too: the pidfd arrives while keel waits for the process.
    let r = recvfd::Receiver::bind(&b.dir.join("pidfd2.sock"));
    let out = b.keel(&[
        "exec",
        "--pidfd-socket",
        r.path_str(),
        &b.id,
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let (payload, fd) = r.recv();
    assert_eq!(payload, b"setns");
    assert!(exited(&fd, Duration::ZERO), "that process is gone");
}

#[test]
fn an_unreachable_pidfd_socket_fails_create_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pidfd-nosock");
    b.args(&["sleep", "1000"]);
    b.write();
    let missing = b.dir.join("nobody-listens.sock");
    let out = b.keel(&[
        "create",
        "--pidfd-socket",
        missing.to_str().unwrap(),
        "--bundle",
        &b.dir_s(),
        &b.id,
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("pidfd socket"), "{err}");
    assert!(
        !b.keel(&["state", &b.id]).status.success(),
        "no container left"
    );
}

trait DirStr {
    fn dir_s(&self) -> String;
}

impl DirStr for Bundle {
    fn dir_s(&self) -> String {
        self.dir.to_str().unwrap().to_owned()
    }
}

/// A reader that goes away (`keel features | head -c1`, `grep -q` on the
/// version) ends keel quietly with the status of a SIGPIPE death, never with
/// a panic (101) or an error message.
#[test]
fn a_closed_stdout_ends_keel_quietly_as_sigpipe_would() {
    for args in [
        &["--version"][..],
        &["features"][..],
        &["spec", "--help"][..],
    ] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let out = common::keel_cmd()
            .args(args)
            .stdout(Stdio::from(w))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let code = common::exit_code(out.status);
        let stderr = text(&out.stderr);
        if args[0] == "spec" {
            // clap prints help itself; it must not panic either.
            assert_ne!(code, 101, "keel {args:?}: panicked: {stderr}");
            continue;
        }
        assert_eq!(code, 141, "keel {args:?}: status {code}, stderr: {stderr}");
        assert!(stderr.is_empty(), "keel {args:?}: stderr: {stderr}");
    }
}
