//! `--console-socket`: keel sends the pty master (made in the container's own
//! devpts) over a unix socket with SCM_RIGHTS, as runc does; the receiver
//! here ([`recvfd`], like runc's recvtty) drives the shell through it. Also
//! runc's rules for when a socket is required and when it is refused.

mod common;
mod recvfd;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use common::{text, Bundle};

/// The shell's answer to this line holds "/dev/pts/N" and "marker-42"; the
/// echo of the line itself holds neither.
const PROBE: &[u8] = b"tty; echo marker-$((40+2))\n";

/// Reads the master until everything in `want` has been seen (or panics at the deadline).
fn read_until(master: &OwnedFd, want: &[&str]) -> String {
    fcntl(master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK on the master");
    let deadline = Instant::now() + common::command_timeout();
    let mut seen = Vec::new();
    loop {
        let got = text(&seen);
        if want.iter().all(|w| got.contains(w)) {
            return got;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("timed out waiting for {want:?} on the pty; got {got:?}");
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => panic!("poll on the master: {e}"),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) => panic!("EOF on the pty before {want:?}; got {got:?}"),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => panic!("reading the pty ({e}) before {want:?}; got {got:?}"),
        }
    }
}

fn write_all(master: &OwnedFd, mut data: &[u8]) {
    let deadline = Instant::now() + common::command_timeout();
    while !data.is_empty() {
        match nix::unistd::write(master, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EAGAIN) | Err(Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("writing to the pty: {e}"),
        }
    }
}

/// A bundle with `terminal: true` and `sh` as its process.
fn tty_bundle(name: &str) -> Bundle {
    let mut b = Bundle::new(name);
    b.set("/process/terminal", serde_json::json!(true));
    b.args(&["sh"]);
    b.write();
    b
}

fn dir(b: &Bundle) -> &str {
    b.dir.to_str().unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

fn assert_fails_with(out: &std::process::Output, msg: &str) {
    assert!(
        !out.status.success(),
        "succeeded; stdout {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(err.contains(msg), "want {msg:?} in {err}");
}

/// `keel create --console-socket` of the bundle, which must succeed: the
/// socket's receiver, holding what create sent.
fn create_with_console_socket(b: &Bundle) -> recvfd::Receiver {
    let r = recvfd::Receiver::bind(&b.dir.join("console.sock"));
    let out = b.keel(&[
        "create",
        "--console-socket",
        r.path_str(),
        "--bundle",
        dir(b),
        &b.id,
    ]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    r
}

#[test]
fn create_sends_the_pty_master_to_the_console_socket() {
    if !common::require_root() {
        return;
    }
    let b = tty_bundle("console-create");
    let r = create_with_console_socket(&b);
    // Sent before create returned, as runc does: one message, whose payload
    // is the name runc's console package gives the master.
    let (payload, master) = r.recv();
    assert_eq!(text(&payload), "/dev/ptmx");
    assert_eq!(b.status(), "created");
    let out = b.keel(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));

    write_all(&master, PROBE);
    let got = read_until(&master, &["/dev/pts/0", "marker-42"]);
    assert!(!got.contains("/dev/console"), "{got}");
    write_all(&master, b"exit 3\n");
    b.wait_for_status("stopped");
}

#[test]
fn exec_tty_detached_sends_the_pty_master_to_the_console_socket() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("console-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let r = recvfd::Receiver::bind(&b.dir.join("console.sock"));
    let pid_file = b.dir.join("exec.pid");
    let out = b.keel(&[
        "exec",
        "-t",
        "--console-socket",
        r.path_str(),
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sh",
    ]);
    assert!(out.status.success(), "exec: {}", text(&out.stderr));
    let (payload, master) = r.recv();
    assert_eq!(text(&payload), "/dev/ptmx");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(alive(pid));

    write_all(&master, PROBE);
    // The init has no terminal: the exec'd shell has the devpts's first pty.
    read_until(&master, &["/dev/pts/0", "marker-42"]);
    write_all(&master, b"exit 3\n");
    common::wait_until(
        common::command_timeout(),
        "the exec'd shell to exit",
        || !alive(pid),
    );
    assert_eq!(b.status(), "running", "only the exec'd process exited");
}

#[test]
fn terminal_without_a_console_socket_is_refused_when_detached() {
    if !common::require_root() {
        return;
    }
    let msg = "cannot allocate tty if keel will detach without setting console socket";
    let b = tty_bundle("console-none");
    assert_fails_with(&b.keel(&["create", "--bundle", dir(&b), &b.id]), msg);
    assert_fails_with(&b.keel(&["run", "-d", "--bundle", dir(&b), &b.id]), msg);
    assert!(
        !b.keel(&["state", &b.id]).status.success(),
        "nothing is left of the refused container"
    );

    let mut b = Bundle::new("console-none-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    assert_fails_with(&b.keel(&["exec", "-t", "-d", &b.id, "true"]), msg);
}

#[test]
fn console_socket_without_a_terminal_is_refused() {
    if !common::require_root() {
        return;
    }
    let msg = "cannot use --console-socket if keel will not detach or allocate tty";
    let sock = |b: &Bundle| b.dir.join("unused.sock");
    let mut b = Bundle::new("console-noterm");
    b.args(&["true"]);
    b.write();
    let s = sock(&b);
    let s = s.to_str().unwrap();
    assert_fails_with(
        &b.keel(&["create", "--console-socket", s, "--bundle", dir(&b), &b.id]),
        msg,
    );
    assert!(!b.keel(&["state", &b.id]).status.success());

    // runc's rule also refuses a socket in the foreground, tty or not: keel
    // relays the pty itself there. Refused before anything is made.
    let b = tty_bundle("console-foreground");
    let s = sock(&b);
    let s = s.to_str().unwrap();
    let out = b.keel(&["run", "--console-socket", s, "--bundle", dir(&b), &b.id]);
    assert_fails_with(&out, msg);
    assert_eq!(common::exit_code(out.status), 255);
    assert!(!b.keel(&["state", &b.id]).status.success());
    assert!(common::cgroups_named(&b.id).is_empty());
    assert!(!Path::new(s).exists());

    let mut b = Bundle::new("console-noterm-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let s = sock(&b);
    let s = s.to_str().unwrap();
    // Without -t, and (as runc) with -t but in the foreground.
    assert_fails_with(
        &b.keel(&["exec", "-d", "--console-socket", s, &b.id, "true"]),
        msg,
    );
    assert_fails_with(
        &b.keel(&["exec", "-t", "--console-socket", s, &b.id, "true"]),
        msg,
    );
    assert!(!Path::new(s).exists());
}

#[test]
fn console_size_is_applied_to_the_pty_sent_to_the_socket() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("console-size");
    b.set("/process/terminal", serde_json::json!(true));
    b.set(
        "/process/consoleSize",
        serde_json::json!({"height": 37, "width": 111}),
    );
    b.args(&["sh"]);
    b.write();
    let r = create_with_console_socket(&b);
    let (_, master) = r.recv();
    let out = b.keel(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    write_all(&master, b"stty size; echo marker-$((40+2))\n");
    let got = read_until(&master, &["marker-42"]);
    assert!(got.contains("37 111"), "{got:?}");
    write_all(&master, b"exit\n");
    b.wait_for_status("stopped");
}
