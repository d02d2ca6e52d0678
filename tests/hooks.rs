//! OCI hooks on real containers: every kind runs once, at its moment, in its
//! namespaces, with the container's state on stdin; failures follow the
//! runtime-spec (create fails and leaves nothing, start fails, poststart and
//! poststop only warn); timeouts kill the hook.
//!
//! Hooks are one shell script (`hook.sh`, run by `/bin/sh` with a recognisable
//! argv[0]) that appends one tab-separated line per run to a log in a host
//! directory, which is also bind-mounted on the container's /tmp so that
//! startContainer hooks (whose paths resolve inside the container) find the
//! script and the log there.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{text, Bundle};
use serde_json::{json, Value};

/// Records: kind, argv[0], "$*", mount ns, time ns, env, whether $CHECK exists, stdin.
const SCRIPT: &str = r#"#!/bin/sh
state=$(cat)
# Opened by the shell itself: $$ is not our pid in /proc before pivot_root.
exec 3< /proc/self/cmdline
argv0=$(tr '\0' '\n' <&3 | head -n 1)
exec 3<&-
if [ -n "$CHECK" ] && [ -e "$CHECK" ]; then seen=present; else seen=absent; fi
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$KIND" "$argv0" "$*" \
    "$(readlink /proc/self/ns/mnt)" "$(readlink /proc/self/ns/time)" \
    "$(env | sort | tr '\n' ' ')" "$seen" "$state" >> "$LOG"
"#;

const CREATE_KINDS: [&str; 3] = ["prestart", "createRuntime", "createContainer"];
const ALL_KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// One run of hook.sh, as it logged it.
#[derive(Debug)]
struct Run {
    kind: String,
    argv0: String,
    args: String,
    mnt: String,
    time: String,
    env: String,
    seen: String,
    state: Value,
}

/// The hook directory: `<bundle>/hooks` on the host, `/tmp` in the container.
struct Hooks {
    dir: PathBuf,
    log: PathBuf,
}

impl Hooks {
    fn install(b: &mut Bundle) -> Hooks {
        let dir = b.dir.join("hooks");
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hook.sh");
        fs::write(&script, SCRIPT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        b.set(
            "/mounts/-",
            json!({
                "destination": "/tmp",
                "type": "bind",
                "source": path_str(&dir),
                "options": ["rbind", "rw"]
            }),
        );
        let log = dir.join("log");
        Hooks { dir, log }
    }

    /// A hook that records itself as `kind`; `inside`: with the paths the
    /// container sees (startContainer), else host paths.
    fn recorder(&self, kind: &str, inside: bool, extra_env: &[String]) -> Value {
        let (script, log) = if inside {
            ("/tmp/hook.sh".to_string(), "/tmp/log".to_string())
        } else {
            (path_str(&self.dir.join("hook.sh")), path_str(&self.log))
        };
        let mut env = vec![format!("KIND={kind}"), format!("LOG={log}")];
        env.extend(extra_env.iter().cloned());
        json!({
            "path": "/bin/sh",
            "args": [argv0(kind), script, "a1", "a 2"],
            "env": env
        })
    }

    /// Every run logged so far, in order.
    fn runs(&self) -> Vec<Run> {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert_eq!(f.len(), 8, "bad log line {l:?}");
                Run {
                    kind: f[0].into(),
                    argv0: f[1].into(),
                    args: f[2].into(),
                    mnt: f[3].into(),
                    time: f[4].into(),
                    env: f[5].into(),
                    seen: f[6].into(),
                    state: serde_json::from_str(f[7])
                        .unwrap_or_else(|e| panic!("stdin of {} is not JSON ({e}): {l}", f[0])),
                }
            })
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.runs().into_iter().map(|r| r.kind).collect()
    }
}

/// The argv[0] a recorder gets: the container's busybox picks its applet by
/// argv[0], so startContainer hooks must say "sh"; dash on the host takes anything.
fn argv0(kind: &str) -> String {
    if kind == "startContainer" {
        "sh".into()
    } else {
        format!("hook-{kind}")
    }
}

/// A hook running `sh -c script` (the shell of whichever root the path resolves in).
fn shell(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

fn add(b: &mut Bundle, kind: &str, hook: Value) {
    if !b.config["hooks"][kind].is_array() {
        b.set(&format!("/hooks/{kind}"), json!([]));
    }
    b.set(&format!("/hooks/{kind}/-"), hook);
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn state_dir(b: &Bundle) -> PathBuf {
    b.root.join(&b.id)
}

/// `keel create` of the bundle as it is now, expected to fail.
fn create_fails(b: &Bundle) -> Output {
    b.write();
    let out = b.keel(&["create", "--bundle", &path_str(&b.dir), &b.id]);
    assert!(
        !out.status.success(),
        "create succeeded\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Nothing of the container is left: no state dir, no cgroup under any hierarchy.
fn assert_nothing_left(b: &Bundle) {
    assert!(
        !state_dir(b).exists(),
        "state dir {} is left",
        state_dir(b).display()
    );
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    for r in roots {
        let cg = r.join(&b.id);
        assert!(!cg.exists(), "cgroup {} is left", cg.display());
    }
}

fn assert_stderr(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

#[test]
fn every_hook_runs_once_in_order_in_its_namespace_with_the_state() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-all");
    let h = Hooks::install(&mut b);
    let check = format!("CHECK={}", path_str(&state_dir(&b)));
    for kind in ALL_KINDS {
        let hook = h.recorder(kind, kind == "startContainer", std::slice::from_ref(&check));
        add(&mut b, kind, hook);
    }
    b.set("/annotations", json!({"org.keel.test": "hooks"}));
    b.args(&["sleep", "1000"]);

    b.create();
    let pid = b.pid();
    let container_mnt = ns_of(&pid.to_string(), "mnt");
    assert_eq!(h.kinds(), CREATE_KINDS, "after create");
    b.start();
    assert_eq!(h.kinds(), &ALL_KINDS[..5], "after start");
    assert_eq!(b.status(), "running");
    b.kill("KILL");
    b.wait_for_status("stopped");
    b.delete();
    assert_eq!(h.kinds(), ALL_KINDS, "after delete");

    let host_mnt = ns_of("self", "mnt");
    assert_ne!(container_mnt, host_mnt);
    let bundle = fs::canonicalize(&b.dir).unwrap();
    for r in h.runs() {
        let k = r.kind.as_str();
        assert_eq!(r.argv0, argv0(k), "{k}: argv[0]");
        assert_eq!(r.args, "a1 a 2", "{k}: args");
        assert!(r.env.contains(&format!("KIND={k} ")), "{k}: env {}", r.env);
        assert!(
            !r.env.contains("HOME=") && !r.env.contains("CARGO"),
            "{k}: keel's environment leaked: {}",
            r.env
        );
        let in_container = k == "createContainer" || k == "startContainer";
        let want_mnt = if in_container {
            &container_mnt
        } else {
            &host_mnt
        };
        assert_eq!(&r.mnt, want_mnt, "{k}: mount namespace");
        let s = &r.state;
        assert_eq!(s["id"], b.id.as_str(), "{k}: {s}");
        assert_eq!(s["bundle"], path_str(&bundle).as_str(), "{k}: {s}");
        assert_eq!(s["annotations"]["org.keel.test"], "hooks", "{k}: {s}");
        let (status, want_pid) = match k {
            "startContainer" => ("created", pid),
            "poststart" => ("running", pid),
            "poststop" => ("stopped", 0),
            _ => ("creating", pid),
        };
        assert_eq!(s["status"], status, "{k}: {s}");
        assert_eq!(s["pid"], want_pid, "{k}: {s}");
    }
    let runs = h.runs();
    assert_eq!(
        runs[1].seen, "present",
        "the state dir exists during create"
    );
    assert_eq!(
        runs[5].seen, "absent",
        "poststop runs after the state dir is gone"
    );
}

#[test]
fn run_runs_every_hook_once_and_runtime_hooks_stay_in_keels_namespaces() {
    if !common::require_root() {
        return;
    }
    let timens = Path::new("/proc/self/ns/time").exists();
    let mut b = Bundle::new("hooks-run");
    let h = Hooks::install(&mut b);
    for kind in ALL_KINDS {
        let hook = h.recorder(kind, kind == "startContainer", &[]);
        add(&mut b, kind, hook);
    }
    if timens {
        // The parent enters a new time namespace for its child before the clone:
        // hooks forked by `run` afterwards must still be in keel's.
        b.set("/linux/namespaces/-", json!({"type": "time"}));
    }
    let (code, _out, err) = b.run(&["true"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(h.kinds(), ALL_KINDS);
    assert!(!state_dir(&b).exists());

    let host_mnt = ns_of("self", "mnt");
    let host_time = ns_of("self", "time");
    let runs = h.runs();
    for r in &runs {
        let k = r.kind.as_str();
        let in_container = k == "createContainer" || k == "startContainer";
        assert_eq!(r.mnt == host_mnt, !in_container, "{k}: mount ns {}", r.mnt);
        if timens {
            assert_eq!(
                r.time == host_time,
                !in_container,
                "{k}: time ns {}",
                r.time
            );
        }
        assert!(
            r.state["pid"].as_i64().unwrap() > 0 || k == "poststop",
            "{k}"
        );
    }
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-fail");
    let h = Hooks::install(&mut b);
    let prestart = h.recorder("prestart", false, &[]);
    add(&mut b, "prestart", prestart);
    let recorder = h.recorder("createRuntime", false, &[]);
    add(&mut b, "createRuntime", recorder.clone());
    add(
        &mut b,
        "createRuntime",
        shell("echo out; echo boom >&2; exit 3"),
    );
    add(&mut b, "createRuntime", recorder);
    let cc = h.recorder("createContainer", false, &[]);
    add(&mut b, "createContainer", cc);
    let ps = h.recorder("poststop", false, &[]);
    add(&mut b, "poststop", ps);

    let out = create_fails(&b);
    assert_stderr(
        &out,
        "createRuntime hook #1 (/bin/sh) failed: exit status 3: boom",
    );
    // The spec: stop the container, destroy it, then the poststop hooks.
    assert_eq!(h.kinds(), ["prestart", "createRuntime", "poststop"]);
    let runs = h.runs();
    let pid = runs[1].state["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the init {pid} is still there"
    );
    assert_eq!(runs[2].state["status"], "stopped");
    assert_nothing_left(&b);
}

#[test]
fn failing_create_container_hook_fails_create_and_leaves_nothing() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-ccfail");
    let h = Hooks::install(&mut b);
    let cr = h.recorder("createRuntime", false, &[]);
    add(&mut b, "createRuntime", cr);
    add(&mut b, "createContainer", shell("echo nope >&2; exit 4"));
    let ps = h.recorder("poststop", false, &[]);
    add(&mut b, "poststop", ps);

    let out = create_fails(&b);
    assert_stderr(
        &out,
        "running hooks: createContainer hook #0 (/bin/sh) failed: exit status 4: nope",
    );
    assert_eq!(h.kinds(), ["createRuntime", "poststop"]);
    let pid = h.runs()[0].state["pid"].as_i64().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_nothing_left(&b);
}

#[test]
fn hooks_past_their_timeout_are_killed_and_fail_create() {
    if !common::require_root() {
        return;
    }
    // In keel (prestart) and in the container's init (createContainer).
    for kind in ["prestart", "createContainer"] {
        let mut b = Bundle::new(&format!("hooks-timeout-{kind}"));
        let pid_file = b.dir.join("hook.pid");
        let mut hook = shell(&format!("echo $$ > {}; exec sleep 30", path_str(&pid_file)));
        hook["timeout"] = json!(1);
        add(&mut b, kind, hook);
        let t0 = Instant::now();
        let out = create_fails(&b);
        let took = t0.elapsed();
        assert_stderr(
            &out,
            &format!("{kind} hook #0 (/bin/sh) timed out after 1s"),
        );
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(20),
            "{kind}: create took {took:?}"
        );
        if kind == "prestart" {
            // In keel's pid namespace: the very process must be gone (killed and reaped).
            let pid = fs::read_to_string(&pid_file).unwrap();
            assert!(
                !Path::new(&format!("/proc/{}", pid.trim())).exists(),
                "the hook {} survived its timeout",
                pid.trim()
            );
        }
        assert_nothing_left(&b);
    }
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-warn");
    let h = Hooks::install(&mut b);
    add(&mut b, "poststart", shell("echo bad start >&2; exit 1"));
    let p = h.recorder("poststart", false, &[]);
    add(&mut b, "poststart", p);
    add(&mut b, "poststop", shell("echo bad stop >&2; exit 2"));
    let p = h.recorder("poststop", false, &[]);
    add(&mut b, "poststop", p);
    b.args(&["sleep", "1000"]);
    let log = b.dir.join("keel.log");
    let log_s = path_str(&log);

    b.create();
    let out = b.keel(&["--log", &log_s, "start", &b.id]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));
    assert_eq!(b.status(), "running");
    assert_eq!(
        h.kinds(),
        ["poststart"],
        "the next poststart hook still runs"
    );
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("level=warning")
            && logged.contains("poststart hook #0 (/bin/sh) failed: exit status 1: bad start"),
        "log: {logged}"
    );

    b.kill("KILL");
    b.wait_for_status("stopped");
    let out = b.keel(&["--log", &log_s, "delete", &b.id]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert!(!state_dir(&b).exists());
    assert_eq!(h.kinds(), ["poststart", "poststop"]);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("poststop hook #0 (/bin/sh) failed: exit status 2: bad stop"),
        "log: {logged}"
    );
}

#[test]
fn failing_start_container_hook_fails_start_before_the_process_runs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-scfail");
    let h = Hooks::install(&mut b);
    // /bin/sh here is the container's: startContainer paths resolve inside it.
    add(&mut b, "startContainer", shell("echo nope >&2; exit 7"));
    let p = h.recorder("poststart", false, &[]);
    add(&mut b, "poststart", p);
    let p = h.recorder("poststop", false, &[]);
    add(&mut b, "poststop", p);
    b.args(&["sh", "-c", "echo ran > /tmp/ran"]);

    b.create();
    let out = b.keel(&["start", &b.id]);
    assert!(!out.status.success(), "start succeeded");
    let msg = "startContainer hook #0 (/bin/sh) failed: exit status 7: nope";
    assert_stderr(&out, msg);
    assert!(
        b.container_stderr().contains(msg),
        "container stderr: {}",
        b.container_stderr()
    );
    b.wait_for_status("stopped");
    assert!(!h.dir.join("ran").exists(), "the process ran");
    assert!(h.kinds().is_empty(), "poststart ran: {:?}", h.kinds());
    b.delete();
    assert_eq!(h.kinds(), ["poststop"]);
    assert_nothing_left(&b);
}

#[test]
fn failing_start_container_hook_makes_run_fail() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-scrun");
    let h = Hooks::install(&mut b);
    add(&mut b, "startContainer", shell("exit 9"));
    let p = h.recorder("poststop", false, &[]);
    add(&mut b, "poststop", p);
    let (code, _out, err) = b.run(&["sh", "-c", "echo ran > /tmp/ran"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("startContainer hook #0 (/bin/sh) failed: exit status 9"),
        "stderr: {err}"
    );
    assert!(!h.dir.join("ran").exists(), "the process ran");
    assert_eq!(h.kinds(), ["poststop"]);
    assert_nothing_left(&b);
}

/// A `run` whose start fails leaves nothing, detached or not, as runc's
/// destroy: no process, state dir or cgroup, and no pid file (create wrote
/// it; a pid file is never left on failure). A failed `run` exits 255.
#[test]
fn failing_start_container_hook_makes_run_leave_no_pid_file_nor_container() {
    if !common::require_root() {
        return;
    }
    for detach in [false, true] {
        let mode = if detach { "run -d" } else { "run" };
        let mut b = Bundle::new(if detach {
            "hooks-scrun-d"
        } else {
            "hooks-scrun-pidf"
        });
        let h = Hooks::install(&mut b);
        // Its stdin has the init's pid.
        let r = h.recorder("createRuntime", false, &[]);
        add(&mut b, "createRuntime", r);
        add(&mut b, "startContainer", shell("exit 9"));
        b.args(&["sh", "-c", "echo ran > /tmp/ran"]);
        b.write();
        let pid_file = path_str(&b.dir.join("init.pid"));
        let dir = path_str(&b.dir);
        let mut args = vec!["run", "--pid-file", &pid_file, "--bundle", &dir, &b.id];
        if detach {
            args.insert(1, "-d");
        }
        let out = b.keel(&args);
        assert_eq!(
            common::exit_code(out.status),
            255,
            "{mode}: stderr: {}",
            text(&out.stderr)
        );
        assert_stderr(
            &out,
            "startContainer hook #0 (/bin/sh) failed: exit status 9",
        );
        assert!(!Path::new(&pid_file).exists(), "{mode} left its pid file");
        assert!(!h.dir.join("ran").exists(), "{mode}: the process ran");
        let runs = h.runs();
        assert_eq!(h.kinds(), ["createRuntime"], "{mode}");
        let pid = runs[0].state["pid"].as_i64().expect("pid in the state");
        // Gone, or a recycled pid outside the container's cgroup.
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            !cgroup.contains(&b.id),
            "{mode} left the init {pid}: {cgroup}"
        );
        assert_nothing_left(&b);
    }
}

#[test]
fn relative_hook_path_is_refused_before_anything_is_created() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("hooks-relpath");
    add(&mut b, "createRuntime", json!({"path": "hook.sh"}));
    let out = create_fails(&b);
    assert_stderr(&out, "hooks.createRuntime[0].path");
    assert_nothing_left(&b);
}
