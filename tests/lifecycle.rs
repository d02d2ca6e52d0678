//! The container lifecycle as runc users see it: create → created → start →
//! running → stopped, the OCI state document, kill, delete, run (detached and
//! in the foreground), pid files, list, version, spec and the global flags.
//!
//! Every assertion looks at what keel reports *and* at what the host sees
//! (`/proc/<pid>`, the state directory, files written by the container).

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{text, Bundle};
use serde_json::{json, Value};

/// Deadline for anything a test waits for: only bounds failures.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Local helpers.

/// Process state letter and start time of `pid`, from /proc/<pid>/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The process that started at `start` still runs as `pid` (not a zombie).
fn alive(pid: i32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((s, t)) if t == start && s != 'Z' && s != 'X')
}

/// The live process `pid` and its start time; panics when there is none.
fn live_process(pid: i32, what: &str) -> u64 {
    assert!(pid > 1, "{what}: pid {pid} is not a container init");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "{what}: /proc/{pid} does not exist on the host"
    );
    match proc_stat(pid) {
        Some((s, t)) if s != 'Z' && s != 'X' => t,
        other => panic!("{what}: pid {pid} is not a live process: {other:?}"),
    }
}

/// Waits until the process (pid, start time) has died. A zombie counts as
/// dead: reaping an orphan is the host's pid 1's business, not keel's.
fn wait_dead(pid: i32, start: u64, what: &str) {
    common::wait_until(DEADLINE, &format!("{what}: pid {pid} to die"), || {
        !alive(pid, start)
    });
}

fn state_dir(b: &Bundle) -> PathBuf {
    b.root.join(&b.id)
}

fn dir_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn assert_failed(out: &Output, what: &str, needles: &[&str]) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: expected failure, got {}\nstdout: {}\nstderr: {err}",
        out.status,
        text(&out.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "{what}: stderr lacks {n:?}: {err}");
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A host directory bind-mounted on the container's /tmp, holding a fifo
/// `go`: the container blocks in `read x < /tmp/go` until [`Gate::open`].
struct Gate {
    fifo: PathBuf,
}

impl Gate {
    fn install(b: &mut Bundle) -> Gate {
        let dir = b.dir.join("ctl");
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("go");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
        b.set(
            "/mounts/-",
            json!({
                "destination": "/tmp",
                "type": "bind",
                "source": dir_str(&dir),
                "options": ["rbind", "rw"]
            }),
        );
        Gate { fifo }
    }

    /// Waits for the container to open the fifo, then sends it a line.
    fn open(&self, line: &str) {
        let mut writer = None;
        common::wait_until(DEADLINE, "the container to open its fifo", || {
            // Without a reader a non-blocking open for writing fails (ENXIO).
            match fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.fifo)
            {
                Ok(f) => {
                    writer = Some(f);
                    true
                }
                Err(_) => false,
            }
        });
        let mut f = writer.unwrap();
        writeln!(f, "{line}").expect("write to the fifo");
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 3339 timestamp
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)`), or None when it is not one.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs keel (no `--root` added) in `dir` with stdout/stderr in fresh files
/// (a container started by the command inherits them; a pipe would hang).
fn keel_raw(dir: &Path, tag: &str, args: &[&str]) -> Output {
    let io = dir.join("io-raw");
    fs::create_dir_all(&io).unwrap();
    let (out_p, err_p) = (io.join(format!("{tag}.out")), io.join(format!("{tag}.err")));
    let mut child = common::keel_cmd()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_p).unwrap())
        .stderr(File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn keel");
    let mut status = None;
    common::wait_until(DEADLINE, &format!("keel {}", args.join(" ")), || {
        status = child.try_wait().expect("wait for keel");
        status.is_some()
    });
    Output {
        status: status.unwrap(),
        stdout: fs::read(&out_p).unwrap_or_default(),
        stderr: fs::read(&err_p).unwrap_or_default(),
    }
}

/// A child process killed and reaped if the test ends before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// create → start → exit.

#[test]
fn create_start_exit_moves_through_created_running_stopped() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("lifecycle");
    let gate = Gate::install(&mut b);
    b.args(&["sh", "-c", "echo up; read x < /tmp/go; echo \"got $x\""]);
    b.create();

    let st = b.state();
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid") as i32;
    let start = live_process(pid, "created init");
    assert!(
        state_dir(&b).join("state.json").is_file(),
        "no state.json under {}",
        state_dir(&b).display()
    );
    assert_eq!(
        b.container_stdout(),
        "",
        "the process ran before start: {}",
        b.container_stdout()
    );

    b.start();
    let st = b.state();
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["pid"], pid, "start changed the pid: {st}");
    assert!(alive(pid, start), "init {pid} died on start");

    gate.open("go");
    b.wait_for_status("stopped");
    let st = b.state();
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0: {st}");
    wait_dead(pid, start, "exited init");
    assert_eq!(b.container_stdout(), "up\ngot go\n");

    b.delete();
    assert!(
        !state_dir(&b).exists(),
        "delete left {}",
        state_dir(&b).display()
    );
    let cgroups = common::cgroups_named(&b.id);
    assert!(cgroups.is_empty(), "delete left {cgroups:?}");
    let out = b.keel(&["state", &b.id]);
    assert_failed(&out, "state after delete", &["container does not exist"]);
}

#[test]
fn state_document_has_the_oci_fields() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("state-doc");
    b.args(&["sh", "-c", "exit 0"]);
    b.set("/ociVersion", json!("1.0.2-dev"));
    b.set(
        "/annotations",
        json!({"org.keel.test": "yes", "com.example/note": "a b"}),
    );
    let before = now_secs();
    b.create();
    let after = now_secs();

    let st = b.state();
    let obj = st.as_object().expect("state is an object");
    for key in [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
        "annotations",
    ] {
        assert!(obj.contains_key(key), "state lacks {key}: {st}");
    }
    assert_eq!(st["ociVersion"], "1.0.2-dev", "{st}");
    assert_eq!(st["id"], b.id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    live_process(st["pid"].as_i64().unwrap() as i32, "created init");
    let bundle = fs::canonicalize(&b.dir).unwrap();
    assert_eq!(st["bundle"], dir_str(&bundle), "{st}");
    let rootfs = fs::canonicalize(common::shared_rootfs()).unwrap();
    assert_eq!(st["rootfs"], dir_str(&rootfs), "{st}");
    // runc's `state` leaves owner empty; its `list` fills it in.
    assert_eq!(st["owner"], "", "{st}");
    assert_eq!(
        st["annotations"],
        json!({"org.keel.test": "yes", "com.example/note": "a b"}),
        "{st}"
    );
    let created = st["created"].as_str().expect("created is a string");
    let t = parse_rfc3339(created).unwrap_or_else(|| panic!("created {created:?} is not RFC 3339"));
    assert!(
        (before - 1..=after + 1).contains(&t),
        "created {created} ({t}) is not between {before} and {after}"
    );
}

// ---------------------------------------------------------------------------
// kill.

/// A container whose init traps SIGTERM: it prints "ready", waits, and on
/// TERM prints "got TERM" and exits 0. (An untrapped TERM is ignored by a
/// pid namespace's init, so the trap is what makes the signal visible.)
fn term_trapping(name: &str) -> Bundle {
    let mut b = Bundle::new(name);
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 1000 & wait",
    ]);
    b
}

#[test]
fn kill_by_name_and_number() {
    if !common::require_root() {
        return;
    }
    for sig in ["TERM", "SIGTERM", "15"] {
        let mut b = term_trapping(&format!("kill-{sig}"));
        b.run_detached();
        let pid = b.pid();
        let start = live_process(pid, "init");
        common::wait_until(DEADLINE, "the container to print ready", || {
            b.container_stdout() == "ready\n"
        });
        b.kill(sig);
        b.wait_for_status("stopped");
        wait_dead(pid, start, &format!("kill {sig}"));
        assert_eq!(
            b.container_stdout(),
            "ready\ngot TERM\n",
            "kill {sig} did not deliver SIGTERM"
        );
    }
    for sig in ["KILL", "9"] {
        // The same trap: SIGKILL must end it without "got TERM".
        let mut b = term_trapping(&format!("kill-{sig}"));
        b.run_detached();
        let pid = b.pid();
        let start = live_process(pid, "init");
        common::wait_until(DEADLINE, "the container to print ready", || {
            b.container_stdout() == "ready\n"
        });
        b.kill(sig);
        b.wait_for_status("stopped");
        wait_dead(pid, start, &format!("kill {sig}"));
        assert_eq!(b.container_stdout(), "ready\n", "kill {sig} sent a TERM");

        let out = b.keel(&["kill", &b.id, "KILL"]);
        assert_failed(
            &out,
            "kill of a stopped container",
            &["container not running"],
        );
        let out = b.keel(&["kill", &b.id, "9"]);
        assert_failed(
            &out,
            "kill 9 of a stopped container",
            &["container not running"],
        );
        // runc 1.1: --all signals whatever is left in the cgroup, here nothing.
        let out = b.keel(&["kill", "--all", &b.id, "KILL"]);
        assert!(
            out.status.success(),
            "kill --all of a stopped container: {}",
            text(&out.stderr)
        );
        // runc's phrase, which callers match, from the cgroup commands too.
        for cmd in ["pause", "update", "events"] {
            let out = b.keel(&[cmd, &b.id]);
            assert_failed(
                &out,
                &format!("{cmd} of a stopped container"),
                &["container not running", &b.id],
            );
        }
        b.delete();
        assert!(!state_dir(&b).exists());
    }
}

#[test]
fn kill_without_signal_sends_term_and_bad_signal_is_refused() {
    if !common::require_root() {
        return;
    }
    let mut b = term_trapping("kill-default");
    b.run_detached();
    let pid = b.pid();
    let start = live_process(pid, "init");
    common::wait_until(DEADLINE, "the container to print ready", || {
        b.container_stdout() == "ready\n"
    });
    let out = b.keel(&["kill", &b.id, "SIGNOPE"]);
    assert_failed(&out, "kill SIGNOPE", &["SIGNOPE"]);
    assert!(alive(pid, start), "a refused kill hurt the init");
    assert_eq!(b.status(), "running");

    let out = b.keel(&["kill", &b.id]);
    assert_ok(&out, "kill without a signal");
    b.wait_for_status("stopped");
    assert_eq!(b.container_stdout(), "ready\ngot TERM\n");
}

// ---------------------------------------------------------------------------
// delete.

#[test]
fn delete_refuses_running_and_force_kills() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("delete-running");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let pid = b.pid();
    let start = live_process(pid, "init");

    let out = b.keel(&["delete", &b.id]);
    assert_failed(&out, "delete of a running container", &["not stopped"]);
    assert_eq!(b.status(), "running", "a refused delete changed the state");
    assert!(alive(pid, start), "a refused delete killed the init");
    assert!(state_dir(&b).join("state.json").is_file());

    let out = b.keel(&["delete", "--force", &b.id]);
    assert_ok(&out, "delete --force");
    assert!(
        !state_dir(&b).exists(),
        "delete --force left {}",
        state_dir(&b).display()
    );
    wait_dead(pid, start, "delete --force");
    let cgroups = common::cgroups_named(&b.id);
    assert!(cgroups.is_empty(), "delete --force left {cgroups:?}");
    let out = b.keel(&["state", &b.id]);
    assert_failed(
        &out,
        "state after delete --force",
        &["container does not exist"],
    );
}

#[test]
fn delete_of_created_container_kills_its_init() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("delete-created");
    b.args(&["sh", "-c", "echo must-not-run"]);
    b.create();
    let pid = b.pid();
    let start = live_process(pid, "created init");
    assert_eq!(b.status(), "created");
    assert!(
        !common::cgroups_named(&b.id).is_empty(),
        "no cgroup named {} on any hierarchy",
        b.id
    );

    b.delete();
    assert!(!state_dir(&b).exists(), "delete left the state dir");
    wait_dead(pid, start, "delete of a created container");
    let cgroups = common::cgroups_named(&b.id);
    assert!(cgroups.is_empty(), "delete left {cgroups:?}");
    assert_eq!(b.container_stdout(), "", "the process ran on delete");
}

// ---------------------------------------------------------------------------
// run.

#[test]
fn run_detach_returns_while_the_container_runs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("run-detach");
    b.args(&["sleep", "1000"]);
    // With a 1000 s sleep inside, run -d can only pass the harness's command
    // deadline by returning without waiting for the container.
    b.run_detached();
    let st = b.state();
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let start = live_process(pid, "detached init");

    b.kill("KILL");
    b.wait_for_status("stopped");
    wait_dead(pid, start, "kill KILL");
    b.delete();
    assert!(!state_dir(&b).exists());
}

#[test]
fn foreground_exit_codes() {
    if !common::require_root() {
        return;
    }
    let cases: [(&str, &[&str], i32); 3] = [
        ("exit-0", &["true"], 0),
        ("exit-3", &["sh", "-c", "exit 3"], 3),
        // kill -9 of itself: in a pid namespace of its own the init would be
        // immune (the kernel ignores SIGKILL to a namespace's init from
        // inside), so this container shares the host's pid namespace.
        ("exit-137", &["sh", "-c", "kill -9 $$; echo survived"], 137),
    ];
    for (name, cmd, want) in cases {
        let mut b = Bundle::new(name);
        if want == 137 {
            assert_eq!(b.config["linux"]["namespaces"][0]["type"], "pid");
            b.unset("/linux/namespaces/0");
        }
        let (code, out, err) = b.run(cmd);
        assert_eq!(code, want, "{name}: stdout: {out}\nstderr: {err}");
        assert!(!out.contains("survived"), "{name}: {out}");
        assert!(
            !state_dir(&b).exists(),
            "{name}: run without --keep left {}",
            state_dir(&b).display()
        );
    }
}

#[test]
fn foreground_run_forwards_sigterm() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("fg-signal");
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 1000 & wait",
    ]);
    let (mut child, out_p, err_p) = spawn_foreground(&b);
    let keel_pid = child.0.id() as i32;

    common::wait_until(DEADLINE, "the foreground container to run", || {
        b.try_state().is_some_and(|s| s["status"] == "running")
    });
    // The trap is installed once the shell has printed "ready".
    common::wait_until(DEADLINE, "the container to print ready", || {
        fs::read_to_string(&out_p).is_ok_and(|s| s.contains("ready"))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keel_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM to keel run");

    let mut status = None;
    common::wait_until(DEADLINE, "keel run to exit after SIGTERM", || {
        status = child.0.try_wait().expect("wait for keel run");
        status.is_some()
    });
    let code = common::exit_code(status.unwrap());
    let out = fs::read_to_string(&out_p).unwrap_or_default();
    let err = fs::read_to_string(&err_p).unwrap_or_default();
    assert_eq!(code, 7, "keel run exit code; stdout: {out}\nstderr: {err}");
    assert_eq!(out, "ready\ngot TERM\n", "stderr: {err}");
    assert!(!state_dir(&b).exists(), "run left its state dir");
}

/// `keel run` in the foreground of `b`, stdout and stderr to files under `<dir>/io-fg`.
fn spawn_foreground(b: &Bundle) -> (ChildGuard, PathBuf, PathBuf) {
    b.write();
    let io = b.dir.join("io-fg");
    fs::create_dir_all(&io).unwrap();
    let (out_p, err_p) = (io.join("stdout"), io.join("stderr"));
    let child = Command::new(common::keel_bin())
        .arg("--root")
        .arg(&b.root)
        .args(["run", "--bundle", &dir_str(&b.dir), &b.id])
        .current_dir(&b.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_p).unwrap())
        .stderr(File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn keel run");
    (ChildGuard(child), out_p, err_p)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
        .unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

fn wait_exit(child: &mut ChildGuard) -> i32 {
    let mut status = None;
    common::wait_until(DEADLINE, "keel run to exit", || {
        status = child.0.try_wait().expect("wait for keel run");
        status.is_some()
    });
    common::exit_code(status.unwrap())
}

#[test]
fn foreground_run_forwards_sigusr1_and_sighup() {
    if !common::require_root() {
        return;
    }
    use nix::sys::signal::Signal;
    let mut b = Bundle::new("fg-usr1-hup");
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; trap 'echo got HUP' HUP; \
         trap 'echo got TERM; exit 7' TERM; echo ready; \
         while :; do sleep 1000 & wait $!; done",
    ]);
    let (mut child, out_p, err_p) = spawn_foreground(&b);
    let out = || fs::read_to_string(&out_p).unwrap_or_default();
    common::wait_until(DEADLINE, "the container to print ready", || {
        out().contains("ready")
    });
    // Each signal in turn, once the previous one was seen: no coalescing.
    for (sig, line) in [(Signal::SIGUSR1, "got USR1"), (Signal::SIGHUP, "got HUP")] {
        signal(child.0.id(), sig);
        common::wait_until(DEADLINE, line, || out().contains(line));
    }
    signal(child.0.id(), Signal::SIGTERM);
    let code = wait_exit(&mut child);
    let err = fs::read_to_string(&err_p).unwrap_or_default();
    assert_eq!(code, 7, "stdout: {}\nstderr: {err}", out());
    assert_eq!(out(), "ready\ngot USR1\ngot HUP\ngot TERM\n", "{err}");
}

/// (state, ppid) from /proc/<pid>/stat, None once the pid is gone.
fn stat_of(pid: i32) -> Option<(String, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = s.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.to_owned();
    Some((state, f.next()?.parse().ok()?))
}

/// A container without a pid namespace whose init leaves an orphan that
/// prints `orphan <pid>` and then waits on the fifo `<w>/go` (the returned
/// `w`), which the test writes once it has seen where the orphan went.
fn orphan_bundle(name: &str) -> (Bundle, PathBuf) {
    let mut b = Bundle::new(name);
    b.unset("/linux/namespaces/0");
    let w = b.dir.join("w");
    fs::create_dir(&w).unwrap();
    nix::unistd::mkfifo(
        &w.join("go"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "bind", "source": w, "options": ["rbind"]}),
    );
    b.args(&[
        "sh",
        "-c",
        "(sh -c 'echo orphan $$; read x < /tmp/go' &); echo ready; exec sleep 1000",
    ]);
    (b, w)
}

#[test]
fn foreground_run_reaps_orphans_and_waits_for_the_init() {
    if !common::require_root() {
        return;
    }
    // Without a pid namespace the container's orphans are reparented to keel,
    // the nearest subreaper: it must reap them and keep waiting for the init.
    let (b, w) = orphan_bundle("fg-subreaper");
    let (mut child, out_p, err_p) = spawn_foreground(&b);
    let keel_pid = child.0.id() as i32;
    let out = || fs::read_to_string(&out_p).unwrap_or_default();
    common::wait_until(DEADLINE, "the orphan and the init to print", || {
        let o = out();
        o.contains("ready") && o.contains("orphan ")
    });
    let orphan: i32 = out()
        .lines()
        .find_map(|l| l.strip_prefix("orphan "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("orphan pid in {:?}", out()));
    common::wait_until(DEADLINE, "the orphan to be reparented to keel", || {
        stat_of(orphan).is_some_and(|(_, ppid)| ppid == keel_pid)
    });
    fs::OpenOptions::new()
        .write(true)
        .open(w.join("go"))
        .and_then(|mut f| f.write_all(b"go\n"))
        .expect("writing the fifo");
    // Gone entirely (reaped), not a zombie; and no zombie child of keel at all.
    common::wait_until(DEADLINE, "the orphan to be reaped", || {
        stat_of(orphan).is_none()
    });
    let zombies: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_of(p).is_some_and(|(st, ppid)| ppid == keel_pid && st == "Z"))
        .collect();
    assert!(zombies.is_empty(), "zombie children of keel: {zombies:?}");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "keel run exited when an orphan did; stderr: {}",
        fs::read_to_string(&err_p).unwrap_or_default()
    );
    assert_eq!(b.status(), "running");
    // SIGTERM is forwarded to the init (sleep): keel exits with 128+15.
    signal(child.0.id(), nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child), 128 + 15);
}

/// The processes whose parent is `ppid`.
fn children_of(ppid: i32) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_of(p).is_some_and(|(_, pp)| pp == ppid))
        .collect()
}

#[test]
fn no_subreaper_leaves_orphans_to_the_namespaces_init() {
    if !common::require_root() {
        return;
    }
    // keel runs under a shell that is pid 1 of a pid namespace of its own (so
    // that what it adopts dies with it); the container shares that namespace.
    // With --no-subreaper the orphan goes to that shell, not to keel. The
    // namespace has its own /proc (in a private mount namespace): keel reads
    // its init's start time there, so state.json names the right process.
    let (b, w) = orphan_bundle("fg-no-subreaper");
    b.write();
    let io = b.dir.join("io-fg");
    fs::create_dir_all(&io).unwrap();
    let out_p = io.join("stdout");
    let mut child = ChildGuard(
        Command::new("unshare")
            .args([
                "--fork",
                "--pid",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
            ])
            .arg(r#""$0" --root "$1" run --no-subreaper --bundle "$2" "$3""#)
            .arg(common::keel_bin())
            .arg(&b.root)
            .arg(&b.dir)
            .arg(&b.id)
            .current_dir(&b.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out_p).unwrap())
            .stderr(File::create(io.join("stderr")).unwrap())
            .spawn()
            .expect("spawn unshare"),
    );
    let unshare = child.0.id() as i32;
    let mut ns_init = 0;
    common::wait_until(DEADLINE, "the namespace's shell", || {
        ns_init = children_of(unshare).first().copied().unwrap_or(0);
        ns_init != 0
    });
    let mut keel_pid = 0;
    common::wait_until(DEADLINE, "keel under the namespace's shell", || {
        keel_pid = children_of(ns_init).first().copied().unwrap_or(0);
        keel_pid != 0
    });
    common::wait_until(DEADLINE, "the init to print", || {
        fs::read_to_string(&out_p)
            .unwrap_or_default()
            .contains("ready")
    });
    // From the host, by the container's cgroup: `keel ps` here would check
    // the init by a pid of the other namespace.
    let procs: Vec<PathBuf> = common::cgroups_named(&b.id)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .filter(|p| p.exists())
        .collect();
    assert!(!procs.is_empty(), "no cgroup for {}", b.id);
    let mut orphan = 0;
    common::wait_until(DEADLINE, "the orphan in the container's cgroup", || {
        let pids = fs::read_to_string(&procs[0]).unwrap_or_default();
        orphan = pids
            .lines()
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .find(|p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("read x"))
            })
            .unwrap_or(0);
        orphan != 0
    });
    // With the subreaper, its parent would become keel and stay keel.
    common::wait_until(
        DEADLINE,
        "the orphan to be reparented to the namespace's init",
        || stat_of(orphan).is_some_and(|(_, ppid)| ppid == ns_init),
    );
    assert!(stat_of(keel_pid).is_some(), "keel run is gone");
    fs::OpenOptions::new()
        .write(true)
        .open(w.join("go"))
        .and_then(|mut f| f.write_all(b"go\n"))
        .expect("writing the fifo");
    signal(keel_pid as u32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child), 128 + 15);
}

// ---------------------------------------------------------------------------
// --pid-file.

#[test]
fn pid_file_is_decimal_atomic_and_matches_state() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pid-file");
    b.args(&["sleep", "1000"]);
    b.write();
    let pid_dir = b.dir.join("pids");
    fs::create_dir(&pid_dir).unwrap();
    let abs = pid_dir.join("init.pid");
    let out = b.keel(&[
        "create",
        "--pid-file",
        &dir_str(&abs),
        "--bundle",
        &dir_str(&b.dir),
        &b.id,
    ]);
    assert_ok(&out, "create --pid-file");

    let content = fs::read(&abs).expect("pid file written");
    let s = String::from_utf8(content.clone()).expect("pid file is UTF-8");
    assert!(
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()),
        "pid file is not plain decimal: {content:?}"
    );
    let pid: i32 = s.parse().unwrap();
    assert_eq!(pid, b.pid(), "pid file and state disagree");
    live_process(pid, "pid file's process");
    let names: Vec<String> = fs::read_dir(&pid_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["init.pid"],
        "something next to the pid file (temp file?)"
    );
}

#[test]
fn pid_file_relative_to_the_working_directory() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("pid-file-rel");
    b.args(&["sleep", "1000"]);
    b.write();
    fs::create_dir(b.dir.join("pids")).unwrap();
    // Bundle::keel runs keel in the bundle directory.
    let out = b.keel(&[
        "create",
        "--pid-file",
        "pids/rel.pid",
        "--bundle",
        &dir_str(&b.dir),
        &b.id,
    ]);
    assert_ok(&out, "create --pid-file (relative)");
    let s = fs::read_to_string(b.dir.join("pids/rel.pid")).expect("relative pid file");
    assert_eq!(s, b.pid().to_string());
}

#[test]
fn pid_file_not_written_when_create_fails() {
    if !common::require_root() {
        return;
    }
    type Breaker = fn(&mut Bundle);
    let cases: [(&str, Breaker); 2] = [
        ("pidf-noproc", |b| {
            b.unset("/process");
        }),
        ("pidf-noexec", |b| {
            b.args(&["no-such-program-keel"]);
        }),
    ];
    for (name, break_it) in cases {
        let mut b = Bundle::new(name);
        break_it(&mut b);
        b.write();
        let pid_dir = b.dir.join("pids");
        fs::create_dir(&pid_dir).unwrap();
        let abs = pid_dir.join("init.pid");
        for verb in ["create", "run"] {
            let out = b.keel(&[
                verb,
                "--pid-file",
                &dir_str(&abs),
                "--bundle",
                &dir_str(&b.dir),
                &b.id,
            ]);
            assert_failed(&out, &format!("{name}: {verb}"), &[]);
            let left: Vec<_> = fs::read_dir(&pid_dir).unwrap().collect();
            assert!(
                left.is_empty(),
                "{name}: failed {verb} left {left:?} in {}",
                pid_dir.display()
            );
            assert!(!state_dir(&b).exists(), "{name}: {verb} left a state dir");
        }
    }
}

// ---------------------------------------------------------------------------
// list.

#[test]
fn list_shows_the_container() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("list");
    b.args(&["sleep", "1000"]);
    b.create();
    let pid = b.pid();
    let bundle = dir_str(&fs::canonicalize(&b.dir).unwrap());

    let out = b.keel(&["list"]);
    assert_ok(&out, "list");
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "{table}");
    let row = &rows[0];
    assert_eq!(row[0], b.id, "{table}");
    assert_eq!(row[1], pid.to_string(), "{table}");
    assert_eq!(row[2], "created", "{table}");
    assert_eq!(row[3], bundle, "{table}");
    assert!(parse_rfc3339(row[4]).is_some(), "{table}");
    assert_eq!(row[5], "root", "{table}");

    let out = b.keel(&["list", "--format", "json"]);
    assert_ok(&out, "list --format json");
    let docs: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list json: {e}: {}", text(&out.stdout)));
    let docs = docs.as_array().expect("list json is an array");
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["id"], b.id.as_str());
    assert_eq!(docs[0]["pid"], pid);
    assert_eq!(docs[0]["status"], "created");
    assert_eq!(docs[0]["bundle"], bundle.as_str());

    let out = b.keel(&["list", "-q"]);
    assert_ok(&out, "list -q");
    assert_eq!(text(&out.stdout), format!("{}\n", b.id));

    b.start();
    let out = b.keel(&["list", "--format", "json"]);
    let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs[0]["status"], "running", "{docs}");
}

// ---------------------------------------------------------------------------
// create and start misuse.

#[test]
fn create_of_existing_id_fails_and_leaves_the_first() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("dup-id");
    b.args(&["sh", "-c", "echo first"]);
    b.create();
    let pid = b.pid();
    let start = live_process(pid, "first init");

    // A different config under the same id.
    b.args(&["sh", "-c", "echo second"]);
    b.write();
    let out = b.keel(&["create", "--bundle", &dir_str(&b.dir), &b.id]);
    assert_failed(&out, "second create", &["already exists", &b.id]);
    let st = b.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"], pid, "{st}");
    assert!(alive(pid, start), "the second create killed the first init");

    // The first container still starts and runs its own process.
    b.start();
    b.wait_for_status("stopped");
    assert_eq!(b.container_stdout(), "first\n");
}

#[test]
fn start_of_running_container_fails() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("start-running");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let pid = b.pid();
    let start = live_process(pid, "init");
    let out = b.keel(&["start", &b.id]);
    assert_failed(
        &out,
        "start of a running container",
        &["cannot start an already running container"],
    );
    assert_eq!(b.status(), "running");
    assert!(alive(pid, start));
}

#[test]
fn start_of_missing_container_fails() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("start-missing");
    let out = b.keel(&["start", &b.id]);
    assert_failed(
        &out,
        "start of a missing container",
        &["container does not exist", &b.id],
    );
    assert!(!state_dir(&b).exists());
}

// ---------------------------------------------------------------------------
// Global things: version, spec, -root, --log.

#[test]
fn version_prints_three_lines() {
    if !common::require_root() {
        return;
    }
    for flag in ["--version", "-v"] {
        let out = common::keel_cmd()
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ok(&out, flag);
        let s = text(&out.stdout);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{flag}: {s}");
        for (line, prefix) in lines.iter().zip(["keel version ", "commit: ", "spec: "]) {
            let value = line
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{flag}: {line:?} does not start with {prefix:?}"));
            assert!(!value.trim().is_empty(), "{flag}: empty {prefix:?} line");
        }
        assert!(
            lines[2]["spec: ".len()..].starts_with("1."),
            "{flag}: spec version: {s}"
        );
    }
}

#[test]
fn spec_writes_a_config_that_run_accepts() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("spec").with_own_rootfs();
    assert!(!b.config_path().exists());
    let out = b.keel(&["spec", "--bundle", &dir_str(&b.dir)]);
    assert_ok(&out, "spec");
    let written = fs::read(b.config_path()).expect("spec wrote config.json");
    let mut config: Value = serde_json::from_slice(&written).expect("config.json is JSON");
    assert_eq!(config["process"]["terminal"], true, "{config}");
    assert_eq!(config["root"]["path"], "rootfs", "{config}");

    // A second spec refuses to overwrite it.
    let out = b.keel(&["spec", "--bundle", &dir_str(&b.dir)]);
    assert_failed(&out, "spec over an existing config.json", &["exists"]);
    assert_eq!(fs::read(b.config_path()).unwrap(), written);

    // Only terminal changes; `sh` reads EOF from /dev/null and exits 0.
    config["process"]["terminal"] = json!(false);
    b.config = config.clone();
    let (code, out, err) = b.run(&[]);
    assert_eq!(
        code, 0,
        "run of keel spec's config: stdout: {out}\nstderr: {err}"
    );

    // The same config really ran: it shows the spec's hostname.
    b.config = config;
    let (code, out, err) = b.run(&["sh", "-c", "echo spec-ok $(hostname)"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "spec-ok runc\n", "stderr: {err}");
}

#[test]
fn single_dash_root_flag() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("dash-root");
    b.args(&["sleep", "1000"]);
    b.write();
    let root = dir_str(&b.root);
    let dir = dir_str(&b.dir);
    let out = keel_raw(
        &b.dir,
        "create",
        &["-root", &root, "create", "-bundle", &dir, &b.id],
    );
    assert_ok(&out, "-root create");
    // The container is under the root given with a single dash.
    assert!(state_dir(&b).join("state.json").is_file());
    assert_eq!(b.status(), "created");

    let out = keel_raw(&b.dir, "state", &["-root", &root, "state", &b.id]);
    assert_ok(&out, "-root state");
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["id"], b.id.as_str());

    let eq = format!("-root={root}");
    let out = keel_raw(&b.dir, "list", &[&eq, "list", "-q"]);
    assert_ok(&out, "-root= list");
    assert_eq!(text(&out.stdout), format!("{}\n", b.id));

    // --rootless is accepted (and ignored: keel decides by its euid) in the
    // forms crun and podman pass, before the subcommand.
    for flags in [
        &["--rootless"][..],
        &["--rootless=true"],
        &["--rootless", "false"],
        &["-rootless=auto"],
    ] {
        let mut args = vec!["-root", root.as_str()];
        args.extend_from_slice(flags);
        args.extend(["list", "-q"]);
        let out = keel_raw(&b.dir, "list", &args);
        assert_ok(&out, &format!("{flags:?} list"));
        assert_eq!(text(&out.stdout), format!("{}\n", b.id), "{flags:?}");
    }

    let out = keel_raw(
        &b.dir,
        "delete",
        &["-root", &root, "delete", "-force", &b.id],
    );
    assert_ok(&out, "-root delete -force");
    assert!(!state_dir(&b).exists());
}

/// Failing commands (state of a missing id, an unknown flag, create without `process`)
/// with `--log <file> --log-format <format>`: each must write exactly one
/// line to the log. Returns (command, what its msg must hold, the line).
fn failing_log_lines(format: &str) -> Vec<(&'static str, &'static str, String)> {
    let mut b = Bundle::new(&format!("log-{format}"));
    b.unset("/process");
    b.write();
    let missing = format!("{}-missing", b.id);
    let dir = dir_str(&b.dir);
    let cases: [(&str, Vec<&str>, &str); 3] = [
        ("state", vec!["state", &missing], "container does not exist"),
        // Refused by the command-line parser, before keel's own logging starts.
        (
            "usage",
            vec!["create", "--no-such-flag", &b.id],
            "--no-such-flag",
        ),
        (
            "create",
            vec!["create", "--bundle", &dir, &b.id],
            "config.json: process",
        ),
    ];
    let mut lines = Vec::new();
    for (name, args, needle) in cases {
        let log = b.dir.join(format!("{name}.log"));
        let log_s = dir_str(&log);
        let mut all = vec!["--log", &log_s, "--log-format", format];
        all.extend(args.iter().copied());
        let out = b.keel(&all);
        assert_failed(&out, name, &[]);
        let body = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{name}: log file: {e}"));
        assert!(body.ends_with('\n'), "{name}: {body:?}");
        assert_eq!(body.lines().count(), 1, "{name}: {body}");
        lines.push((name, needle, body.trim_end().to_owned()));
    }
    lines
}

#[test]
fn log_json_writes_one_error_line() {
    if !common::require_root() {
        return;
    }
    for (name, needle, line) in failing_log_lines("json") {
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name}: log line is not JSON ({e}): {line}"));
        let obj = v.as_object().expect("log line is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["level", "msg", "time"], "{name}: {v}");
        assert_eq!(v["level"], "error", "{name}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{name}: msg {msg:?} lacks {needle:?}");
        let time = v["time"].as_str().unwrap();
        assert!(parse_rfc3339(time).is_some(), "{name}: time {time:?}");
        // runc's (logrus's) key order, which line-oriented readers may rely on.
        let want = format!(
            "{{\"level\":\"error\",\"msg\":{},\"time\":\"{time}\"}}",
            Value::from(msg)
        );
        assert_eq!(line, want, "{name}: key order or spacing");
    }
}

/// `keel --log <file> --log-format json create` of the bundle: its output
/// and what it wrote to the log.
fn create_with_json_log(b: &Bundle) -> (Output, String) {
    b.write();
    let log = b.dir.join("create.log");
    let dir = dir_str(&b.dir);
    let log_s = dir_str(&log);
    let out = b.keel(&[
        "--log",
        &log_s,
        "--log-format",
        "json",
        "create",
        "--bundle",
        &dir,
        &b.id,
    ]);
    (out, fs::read_to_string(&log).unwrap_or_default())
}

/// podman decodes a failed call's log file as one JSON object: a warning
/// and an error of one call are one line, the warning folded in. A call that
/// succeeds writes its warnings as their own lines.
#[test]
fn log_json_failure_is_one_object_even_after_a_warning() {
    if !common::require_root() {
        return;
    }
    let flags = json!({"domain": "LINUX", "flags": ["keel-test-flag"]});
    let warning = "linux.personality.flags: ignoring unsupported flags";

    let mut b = Bundle::new("log-warn-fail");
    b.set("/linux/personality", flags.clone());
    b.args(&["/keel-test-no-such-binary"]);
    let (out, body) = create_with_json_log(&b);
    assert_failed(&out, "create", &[]);
    assert_eq!(body.lines().count(), 1, "{body}");
    let v: Value = serde_json::from_str(body.trim_end()).expect("one JSON object");
    assert_eq!(v["level"], "error", "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("keel-test-no-such-binary") && msg.contains(warning),
        "{msg}"
    );

    let mut b = Bundle::new("log-warn-ok");
    b.set("/linux/personality", flags);
    b.args(&["true"]);
    let (out, body) = create_with_json_log(&b);
    assert_ok(&out, "create");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["level"], "warning", "{body}");
    assert!(
        lines[0]["msg"].as_str().unwrap().contains(warning),
        "{body}"
    );
}

#[test]
fn log_text_writes_one_error_line() {
    if !common::require_root() {
        return;
    }
    for (name, needle, line) in failing_log_lines("text") {
        // logrus's text format: time="<RFC3339>" level=error msg="<quoted>"
        let rest = line
            .strip_prefix("time=\"")
            .unwrap_or_else(|| panic!("{name}: no time= first: {line}"));
        let (time, rest) = rest
            .split_once('"')
            .unwrap_or_else(|| panic!("{name}: unterminated time: {line}"));
        assert!(parse_rfc3339(time).is_some(), "{name}: time {time:?}");
        let quoted = rest
            .strip_prefix(" level=error msg=")
            .unwrap_or_else(|| panic!("{name}: no level=error msg= after the time: {line}"));
        let msg: String = serde_json::from_str(quoted)
            .unwrap_or_else(|e| panic!("{name}: msg is not one quoted string ({e}): {line}"));
        assert!(msg.contains(needle), "{name}: msg {msg:?} lacks {needle:?}");
    }
}

#[test]
fn rfc3339_parser_rejects_garbage() {
    if !common::require_root() {
        return;
    }
    // The local parser guards several assertions: it must be able to say no.
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.000000005Z"),
        Some(1_700_000_000)
    );
    assert_eq!(
        parse_rfc3339("2023-11-14T23:13:20+01:00"),
        Some(1_700_000_000)
    );
    for bad in [
        "",
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13:20",
        "2023-13-14T22:13:20Z",
        "2023-11-14T22:13:20.Z",
        "yesterday",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
    }
}
