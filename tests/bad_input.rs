//! Bad configs, bad ids and misuse: keel refuses with a message that names
//! the field (or id, or path) and leaves nothing behind — no state dir, no
//! process, no mount.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{text, Bundle};
use serde_json::json;

// ---------------------------------------------------------------------------
// Local helpers.

fn dir_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// Pids of processes with `id` as one of their arguments (a keel command, or
/// a container init that has not exec'd yet: a clone of `keel create`), or
/// whose cwd or root is at or below `dir`.
fn processes_of(id: &str, dir: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = e.path();
        let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // Only a test id is distinctive: "." or "a/b" may be anyone's argument.
        let by_id = id.starts_with(common::MARKER) && args.iter().any(|a| a == id);
        let by_path = ["cwd", "root"]
            .iter()
            .any(|l| fs::read_link(proc_dir.join(l)).is_ok_and(|p| p.starts_with(dir)));
        if by_id || by_path {
            found.push((pid, args.join(" ")));
        }
    }
    found
}

/// Lines of /proc/self/mountinfo that mention `dir`.
fn mounts_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir_str(dir);
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Entries of the state root (none when it does not exist).
fn root_entries(b: &Bundle) -> Vec<String> {
    match fs::read_dir(&b.root) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The command failed, stderr names every needle, and nothing is left: no
/// container dir under --root, no process with the id, no mount of the bundle.
fn assert_refused_clean(b: &Bundle, id: &str, out: &Output, what: &str, needles: &[&str]) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what}: expected failure, got {}\nstdout: {}\nstderr: {err}",
        out.status,
        text(&out.stdout)
    );
    for n in needles {
        assert!(err.contains(n), "{what}: stderr lacks {n:?}:\n{err}");
    }
    assert_left_nothing(b, id, what);
}

fn assert_left_nothing(b: &Bundle, id: &str, what: &str) {
    let left = root_entries(b);
    assert!(
        left.is_empty(),
        "{what}: left {left:?} in {}",
        b.root.display()
    );
    let procs = processes_of(id, &b.dir);
    assert!(procs.is_empty(), "{what}: processes left: {procs:?}");
    let mounts = mounts_mentioning(&b.dir);
    assert!(mounts.is_empty(), "{what}: mounts left: {mounts:?}");
    let cgroups = common::cgroups_named(id);
    assert!(cgroups.is_empty(), "{what}: cgroups left: {cgroups:?}");
}

/// runc's exit status for a failure of the runtime itself: 255 for run (and
/// exec), whose own status is the container's; 1 for the other commands.
fn failure_code(verb: &str) -> i32 {
    if verb == "run" {
        255
    } else {
        1
    }
}

/// `keel <verb> --bundle <dir> <id>` for create and run, each checked.
fn refuse_create_and_run(b: &Bundle, what: &str, needles: &[&str]) {
    let dir = dir_str(&b.dir);
    for verb in ["create", "run"] {
        let out = b.keel(&[verb, "--bundle", &dir, &b.id]);
        let what = format!("{what} ({verb})");
        assert_refused_clean(b, &b.id, &out, &what, needles);
        assert_eq!(
            common::exit_code(out.status),
            failure_code(verb),
            "{what}: exit status"
        );
    }
}

/// A bundle whose config is `edit`ed, written, and refused by create and run.
fn refuse_config(name: &str, needles: &[&str], edit: impl FnOnce(&mut Bundle)) {
    let mut b = Bundle::new(name);
    b.args(&["sh", "-c", "echo must-not-run"]);
    edit(&mut b);
    b.write();
    refuse_create_and_run(&b, name, needles);
}

// ---------------------------------------------------------------------------
// config.json.

#[test]
fn malformed_json_names_the_line() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("bad-json");
    // The stray comma is on line 4.
    fs::write(
        b.config_path(),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\n    \"args\": [\"sh\"],,\n    \"cwd\": \"/\"\n  }\n}\n",
    )
    .unwrap();
    refuse_create_and_run(&b, "malformed JSON", &["config.json", "line 4"]);

    // Cut short: the message still gives a position.
    fs::write(b.config_path(), "{\n  \"ociVersion\": \"1.0.2\",\n").unwrap();
    refuse_create_and_run(&b, "truncated JSON", &["config.json", "line 3"]);
}

#[test]
fn wrong_type_names_the_field() {
    if !common::require_root() {
        return;
    }
    refuse_config("bad-uid", &["process.user.uid", "\"x\""], |b| {
        b.set("/process/user/uid", json!("x"));
    });
}

#[test]
fn missing_process_is_refused() {
    if !common::require_root() {
        return;
    }
    refuse_config("no-process", &["config.json: process"], |b| {
        b.unset("/process");
    });
}

#[test]
fn unknown_namespace_type() {
    if !common::require_root() {
        return;
    }
    refuse_config(
        "ns-foo",
        &["config.json: linux.namespaces[2].type: unknown namespace \"foo\""],
        |b| {
            b.set("/linux/namespaces/2/type", json!("foo"));
        },
    );
}

#[test]
fn namespace_listed_twice() {
    if !common::require_root() {
        return;
    }
    refuse_config("ns-twice", &["linux.namespaces[5]", "pid"], |b| {
        assert_eq!(b.config["linux"]["namespaces"].as_array().unwrap().len(), 5);
        b.set("/linux/namespaces/-", json!({"type": "pid"}));
    });
}

#[test]
fn relative_mount_destination() {
    if !common::require_root() {
        return;
    }
    // runc 1.1 accepts this with a deprecation warning; keel refuses it.
    refuse_config(
        "mount-rel",
        &["mounts[7].destination", "relative/dest"],
        |b| {
            assert_eq!(b.config["mounts"].as_array().unwrap().len(), 7);
            b.set(
                "/mounts/-",
                json!({"destination": "relative/dest", "type": "tmpfs", "source": "tmpfs"}),
            );
        },
    );
}

#[test]
fn missing_rootfs() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("no-rootfs");
    let missing = b.dir.join("no-such-rootfs");
    b.set("/root/path", json!(dir_str(&missing)));
    b.write();
    refuse_create_and_run(&b, "missing rootfs", &["root.path", &dir_str(&missing)]);
    assert!(!missing.exists(), "keel created the missing rootfs");
}

#[test]
fn hostname_without_uts_namespace() {
    if !common::require_root() {
        return;
    }
    refuse_config("hostname-no-uts", &["config.json: hostname", "UTS"], |b| {
        assert_eq!(b.config["linux"]["namespaces"][3]["type"], "uts");
        b.unset("/linux/namespaces/3");
        b.set("/hostname", json!("keel-bad"));
    });
}

#[test]
fn sysctl_not_in_a_namespace() {
    if !common::require_root() {
        return;
    }
    let host = || fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let before = host();
    let other = if before.trim() == "17" { "18" } else { "17" };
    refuse_config("sysctl", &["linux.sysctl", "vm.swappiness"], |b| {
        b.set("/linux/sysctl", json!({ "vm.swappiness": other }));
    });
    assert_eq!(host(), before, "the host's vm.swappiness changed");
}

#[test]
fn unknown_capability() {
    if !common::require_root() {
        return;
    }
    // runc 1.1 ignores unknown capabilities with a warning; keel refuses them.
    refuse_config(
        "cap-foo",
        &["process.capabilities.bounding", "CAP_FOO"],
        |b| {
            b.set("/process/capabilities/bounding/-", json!("CAP_FOO"));
        },
    );
}

#[test]
fn oom_score_adj_out_of_range() {
    if !common::require_root() {
        return;
    }
    refuse_config("oom-1001", &["process.oomScoreAdj", "1001"], |b| {
        b.set("/process/oomScoreAdj", json!(1001));
    });
}

// ---------------------------------------------------------------------------
// Failures inside the container's set-up.

#[test]
fn bind_mount_of_missing_source() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("bind-missing");
    let src = b.dir.join("no-such-source");
    b.set(
        "/mounts/-",
        json!({"destination": "/mnt", "type": "bind", "source": dir_str(&src), "options": ["rbind"]}),
    );
    b.args(&["sh", "-c", "echo must-not-run"]);
    b.write();
    refuse_create_and_run(&b, "bind of a missing source", &[&dir_str(&src)]);
    assert!(!src.exists(), "keel created the missing bind source");
}

#[test]
fn executable_not_found() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("no-exec");
    b.args(&["no-such-program-keel", "arg"]);
    b.write();
    refuse_create_and_run(
        &b,
        "args[0] not in PATH",
        &["no-such-program-keel", "executable file not found"],
    );

    // An absolute path that does not exist is named too.
    b.args(&["/bin/no-such-program-keel"]);
    b.write();
    refuse_create_and_run(
        &b,
        "missing absolute args[0]",
        &["/bin/no-such-program-keel"],
    );
}

// ---------------------------------------------------------------------------
// Container ids.

#[test]
fn invalid_container_ids() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("bad-id");
    b.args(&["sh", "-c", "echo must-not-run"]);
    b.write();
    let dir = dir_str(&b.dir);
    let before = {
        let mut v: Vec<_> = fs::read_dir(&b.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        v.sort();
        v
    };
    for id in ["", "a/b", "..", "."] {
        for verb in ["create", "run"] {
            let out = b.keel(&[verb, "--bundle", &dir, id]);
            let what = format!("{verb} with id {id:?}");
            assert_refused_clean(&b, id, &out, &what, &["invalid container id"]);
            assert_eq!(common::exit_code(out.status), failure_code(verb), "{what}");
            assert!(
                !b.root.join("a").exists(),
                "{what}: created {}/a",
                b.root.display()
            );
        }
        for verb in ["state", "start", "delete", "kill"] {
            let out = b.keel(&[verb, id]);
            let what = format!("{verb} with id {id:?}");
            assert_refused_clean(&b, id, &out, &what, &["invalid container id"]);
            assert_eq!(common::exit_code(out.status), failure_code(verb), "{what}");
        }
    }
    // Nothing appeared next to the state root (".." would be the bundle dir)
    // except the files keel's output went to.
    let mut after: Vec<_> = fs::read_dir(&b.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    after.sort();
    assert_eq!(before, after, "the bundle dir changed");
}

#[test]
fn existing_id_is_refused_and_survives() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("exists");
    b.args(&["sh", "-c", "echo first"]);
    b.create();
    let st = b.state();
    let pid = st["pid"].as_i64().unwrap();
    let stat_before = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();

    for verb in ["create", "run"] {
        b.args(&["sh", "-c", "echo second"]);
        b.write();
        let out = b.keel(&[verb, "--bundle", &dir_str(&b.dir), &b.id]);
        assert!(!out.status.success(), "{verb} of an existing id succeeded");
        assert_eq!(common::exit_code(out.status), failure_code(verb), "{verb}");
        let err = text(&out.stderr);
        assert!(
            err.contains("already exists") && err.contains(&b.id),
            "{verb}: {err}"
        );
        let now = b.state();
        assert_eq!(now, st, "{verb} changed the first container's state");
        let stat_now = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let field = |s: &str| {
            s.rsplit(')')
                .next()
                .unwrap()
                .split(' ')
                .nth(20)
                .map(str::to_owned)
        };
        assert_eq!(
            field(&stat_now),
            field(&stat_before),
            "the init was replaced"
        );
    }
    b.start();
    b.wait_for_status("stopped");
    assert_eq!(b.container_stdout(), "first\n");
}

// ---------------------------------------------------------------------------
// Commands on the wrong container.

#[test]
fn start_of_running_and_missing() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("start-bad");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let pid = b.pid();
    let out = b.keel(&["start", &b.id]);
    assert!(
        !out.status.success(),
        "start of a running container succeeded"
    );
    assert!(
        text(&out.stderr).contains("cannot start an already running container"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.status(), "running");
    assert_eq!(b.pid(), pid);

    let missing = format!("{}-missing", b.id);
    let out = b.keel(&["start", &missing]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains(&missing),
        "{err}"
    );
    assert!(!b.root.join(&missing).exists());
}

#[test]
fn commands_on_a_missing_id() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("missing-id");
    for args in [
        vec!["state", b.id.as_str()],
        vec!["delete", b.id.as_str()],
        vec!["kill", b.id.as_str()],
        vec!["kill", b.id.as_str(), "KILL"],
        vec!["start", b.id.as_str()],
    ] {
        let out = b.keel(&args);
        assert_refused_clean(
            &b,
            &b.id,
            &out,
            &args.join(" "),
            &["container does not exist", &b.id],
        );
    }
}

// ---------------------------------------------------------------------------
// Self-checks: the leak detectors must be able to see a leak.

#[test]
fn leak_detectors_see_leaks() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("detector");
    // A process whose cwd is in the bundle, and one with the id as argument.
    let mut by_cwd = std::process::Command::new("sleep")
        .arg("1000")
        .current_dir(&b.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // argv[0] is the id: no shell, so no grandchild outlives the kill below.
    let mut by_id = std::process::Command::new("sleep")
        .arg0(&b.id)
        .arg("1000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // posix_spawn returns while the kernel is still setting up the new
    // image: its argv shows up in /proc a moment later.
    let cmdline = format!("/proc/{}/cmdline", by_id.id());
    common::wait_until(Duration::from_secs(30), "sleep's argv in /proc", || {
        fs::read(&cmdline).is_ok_and(|c| c.starts_with(b.id.as_bytes()))
    });
    let found = processes_of(&b.id, Path::new("/nonexistent-keel-dir"));
    let found_cwd = processes_of("", &b.dir);
    let not_by_dot = processes_of(".", Path::new("/nonexistent-keel-dir"));
    let _ = by_cwd.kill();
    let _ = by_id.kill();
    let _ = by_cwd.wait();
    let _ = by_id.wait();
    assert!(
        found.iter().any(|(p, _)| *p == by_id.id() as i32),
        "{found:?}"
    );
    assert!(
        found_cwd.iter().any(|(p, _)| *p == by_cwd.id() as i32),
        "{found_cwd:?}"
    );
    assert!(not_by_dot.is_empty(), "{not_by_dot:?}");
    assert!(!mounts_mentioning(Path::new("/proc")).is_empty());
    fs::create_dir_all(b.root.join("x")).unwrap();
    assert_eq!(root_entries(&b), ["x"]);
}
