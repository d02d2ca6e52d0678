//! The sd_notify relay (runc's notify_socket.go): with NOTIFY_SOCKET in keel's
//! environment the container gets /run/notify/notify.sock, and what it sends
//! there reaches keel's NOTIFY_SOCKET, followed by MAINPID= and BARRIER=1.
//!
//! The host side of every test is a unix datagram socket bound in the bundle
//! directory, standing in for systemd. busybox cannot send a unix datagram
//! (its nc has no -U), so the container's client is `tests/bin/notify_client.rs`,
//! built here once per test process as a static binary with the rustc that
//! cargo uses and copied into the bundle's own rootfs as /bin/notify-client.
//!
//! Nothing sleeps to synchronise: the host socket's reads and keel's exit are
//! waited for with deadlines that only bound failures.

mod common;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use common::Bundle;
use serde_json::json;

/// Builds the notify client (once per process); returns its path.
fn notify_client() -> &'static Path {
    static CLIENT: OnceLock<PathBuf> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bin/notify_client.rs");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("keel-notify-client");
        let tmp = dir.join(format!("keel-notify-client.{}.tmp", std::process::id()));
        let built = Command::new(rustc())
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
            ])
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", rustc().display()));
        assert!(
            built.status.success(),
            "building {} (static; needs glibc's libc.a, in libc6-dev): {}",
            src.display(),
            common::text(&built.stderr)
        );
        // Other test processes may be building it too: each renames its own copy.
        fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        out
    })
}

/// The rustc cargo uses: $RUSTC, else the one next to $CARGO, else PATH's.
fn rustc() -> PathBuf {
    if let Some(r) = std::env::var_os("RUSTC") {
        return r.into();
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let r = Path::new(&cargo).with_file_name("rustc");
        if r.is_file() {
            return r;
        }
    }
    "rustc".into()
}

/// A bundle with its own rootfs (keel creates /run/notify in it) holding the client.
fn bundle(name: &str) -> Bundle {
    let b = Bundle::new(name).with_own_rootfs();
    let dst = b.rootfs().join("bin/notify-client");
    fs::copy(notify_client(), &dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod notify-client");
    b
}

/// The stand-in for systemd: a datagram socket in the bundle directory.
fn host_socket(b: &Bundle) -> (UnixDatagram, PathBuf) {
    let path = b.dir.join("systemd.sock");
    let sock = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (sock, path)
}

/// Datagrams on the host socket up to and including BARRIER=1 (keel waits for
/// it to be read). Panics, showing what came, if `k` exits first or the
/// harness deadline passes.
fn until_barrier(sock: &UnixDatagram, k: &mut Keel) -> Vec<String> {
    // Short reads, so that a keel that failed is noticed; the deadline bounds the rest.
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = common::text(&buf[..n]);
                let done = msg == "BARRIER=1";
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                if !k.running() {
                    got.extend(queued(sock));
                    panic!(
                        "{} exited before BARRIER=1; got {got:?}\nstderr: {}",
                        k.what,
                        common::text(&fs::read(&k.err).unwrap_or_default())
                    );
                }
                if start.elapsed() > common::command_timeout() {
                    panic!("no BARRIER=1 after {:?}; got {got:?}", start.elapsed());
                }
            }
            Err(e) => panic!("host socket: {e}; got so far: {got:?}"),
        }
    }
}

/// Whatever is queued on the host socket now.
fn queued(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(common::text(&buf[..n]));
    }
    sock.set_nonblocking(false).expect("blocking");
    got
}

/// A keel command running in the background, its output in files under `<dir>/io`.
struct Keel {
    child: Child,
    what: String,
    out: PathBuf,
    err: PathBuf,
}

/// Starts `keel --root <state> ARGS` with NOTIFY_SOCKET set to `notify`, or
/// removed from its environment when None.
fn keel(b: &Bundle, notify: Option<&Path>, args: &[&str]) -> Keel {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let io = b.dir.join("io");
    let (out, err) = (
        io.join(format!("notify-{n}.stdout")),
        io.join(format!("notify-{n}.stderr")),
    );
    let mut cmd = common::keel_cmd();
    cmd.arg("--root")
        .arg(&b.root)
        .args(args)
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"));
    match notify {
        Some(p) => cmd.env("NOTIFY_SOCKET", p),
        None => cmd.env_remove("NOTIFY_SOCKET"),
    };
    let what = format!("keel {}", args.join(" "));
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    Keel {
        child,
        what,
        out,
        err,
    }
}

impl Keel {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Still running (not yet exited)?
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (with the harness deadline) and returns (exit code, stdout, stderr).
    fn finish(self) -> (i32, String, String) {
        let Keel {
            mut child,
            what,
            out,
            err,
        } = self;
        let pid = child.id() as i32;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(common::command_timeout()) {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!(
                    "{what}: still running after {:?}, killed it\nstderr: {}",
                    common::command_timeout(),
                    common::text(&fs::read(&err).unwrap_or_default())
                );
            }
        };
        let read = |p: &Path| common::text(&fs::read(p).unwrap_or_default());
        (common::exit_code(status), read(&out), read(&err))
    }

    fn expect_ok(self) {
        let what = self.what.clone();
        let (code, out, err) = self.finish();
        assert_eq!(code, 0, "{what}\nstdout: {out}\nstderr: {err}");
    }
}

/// The mount at `target` in the mount namespace of `pid`: its mountinfo line.
fn mount_at(pid: i32, target: &str) -> Option<String> {
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .map(str::to_owned)
}

fn environ(pid: i32) -> Vec<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    env.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(common::text)
        .collect()
}

fn state_dir(b: &Bundle) -> PathBuf {
    b.root.join(&b.id)
}

#[test]
fn run_detached_relays_status_ready_and_the_inits_pid() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("notify-run-d");
    let (host, host_path) = host_socket(&b);
    // A NOTIFY_SOCKET in the config is replaced; the container's MAINPID=1 is not relayed.
    b.set("/process/env/-", json!("NOTIFY_SOCKET=/elsewhere"));
    b.args(&[
        "sh",
        "-c",
        "notify-client STATUS=starting \"$1\" && exec sleep 1000",
        "sh",
        "STATUS=up\nMAINPID=1\nREADY=1",
    ]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let mut k = keel(
        &b,
        Some(&host_path),
        &["run", "--detach", "--bundle", &dir, &b.id],
    );
    let got = until_barrier(&host, &mut k);
    k.expect_ok();

    let pid = b.pid();
    assert_eq!(
        got,
        [
            "STATUS=starting\n".to_owned(),
            "STATUS=up\nREADY=1\n".to_owned(),
            format!("MAINPID={pid}\n"),
            "BARRIER=1".to_owned(),
        ]
    );
    assert!(queued(&host).is_empty());

    let m = mount_at(pid, "/run/notify").expect("no /run/notify mount in the container");
    let opts = m.split(' ').nth(5).unwrap_or("");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {m}");
    }
    let env = environ(pid);
    let notify: Vec<_> = env
        .iter()
        .filter(|v| v.starts_with("NOTIFY_SOCKET="))
        .collect();
    assert_eq!(notify, ["NOTIFY_SOCKET=/run/notify/notify.sock"], "{env:?}");
    let sock = state_dir(&b).join("notify/notify.sock");
    let meta = fs::symlink_metadata(&sock).expect("notify.sock in the state dir");
    assert_eq!(meta.permissions().mode() & 0o777, 0o777);
    let dmode = fs::metadata(state_dir(&b).join("notify")).unwrap();
    assert_eq!(dmode.permissions().mode() & 0o777, 0o755);

    // The socket lives in the state dir and goes with it.
    let out = b.keel(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(!state_dir(&b).exists());
}

#[test]
fn start_waits_for_ready_without_holding_the_container() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("notify-start");
    let (host, host_path) = host_socket(&b);
    // The container says READY=1 only once the test has written to the fifo /x/go.
    let gate = b.dir.join("gate");
    fs::create_dir(&gate).unwrap();
    nix::unistd::mkfifo(
        &gate.join("go"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    b.set(
        "/mounts/-",
        json!({"destination": "/x", "type": "bind",
               "source": gate.to_str().unwrap(), "options": ["bind"]}),
    );
    b.args(&[
        "sh",
        "-c",
        "read _ < /x/go && notify-client READY=1 && exec sleep 1000",
    ]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    keel(&b, Some(&host_path), &["create", "--bundle", &dir, &b.id]).expect_ok();
    let mut start = keel(&b, Some(&host_path), &["start", &b.id]);

    // `start` has let the init exec but waits for READY=1; meanwhile the
    // container is not locked: state answers (running once exec.fifo is gone).
    b.wait_for_status("running");
    assert!(start.running(), "start returned before READY=1");
    assert!(queued(&host).is_empty());
    fs::write(gate.join("go"), "go\n").unwrap();

    let got = until_barrier(&host, &mut start);
    start.expect_ok();
    let pid = b.pid();
    assert_eq!(
        got,
        [
            "READY=1\n".to_owned(),
            format!("MAINPID={pid}\n"),
            "BARRIER=1".to_owned()
        ]
    );
}

#[test]
fn foreground_run_relays_with_keels_own_pid() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("notify-run");
    let (host, host_path) = host_socket(&b);
    // READY=1 and then exit at once: keel must still relay it. Any user may send.
    b.set("/process/user", json!({"uid": 65534, "gid": 65534}));
    b.args(&["sh", "-c", "notify-client READY=1; exit 7"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let mut k = keel(&b, Some(&host_path), &["run", "--bundle", &dir, &b.id]);
    let keel_pid = k.pid();
    let got = until_barrier(&host, &mut k);
    let (code, _, err) = k.finish();
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(
        got,
        [
            "READY=1\n".to_owned(),
            format!("MAINPID={keel_pid}\n"),
            "BARRIER=1".to_owned()
        ]
    );
    assert!(!state_dir(&b).exists(), "run left its state dir");
}

#[test]
fn init_exiting_before_ready_ends_the_wait() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("notify-noready");
    let (host, host_path) = host_socket(&b);
    b.args(&["true"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    // Would hang (until the deadline) if keel kept waiting for READY=1.
    keel(
        &b,
        Some(&host_path),
        &["run", "--detach", "--bundle", &dir, &b.id],
    )
    .expect_ok();
    assert!(queued(&host).is_empty());

    // Foreground too.
    let id2 = format!("{}-fg", b.id);
    let (code, _, err) = keel(&b, Some(&host_path), &["run", "--bundle", &dir, &id2]).finish();
    assert_eq!(code, 0, "stderr: {err}");
    assert!(queued(&host).is_empty());
}

#[test]
fn without_notify_socket_nothing_is_mounted() {
    if !common::require_root() {
        return;
    }
    // The shared rootfs: nothing may be created in it.
    let mut b = Bundle::new("notify-none");
    b.args(&["sleep", "1000"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    keel(&b, None, &["create", "--bundle", &dir, &b.id]).expect_ok();
    keel(&b, None, &["start", &b.id]).expect_ok();
    let pid = b.pid();
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        !info
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|t| t.starts_with("/run"))),
        "{info}"
    );
    let env = environ(pid);
    assert!(
        !env.iter().any(|v| v.starts_with("NOTIFY_SOCKET=")),
        "{env:?}"
    );
    assert!(!state_dir(&b).join("notify").exists());
    assert!(!b.rootfs().join("run/notify").exists());
}
