//! Process attributes (src/attrs.rs) as the container sees them: personality,
//! scheduler, I/O priority, execCPUAffinity, memoryPolicy, for the init and
//! for `exec`; and the LSM fields refused on a host without AppArmor/SELinux.

mod common;

use common::Bundle;
use serde_json::json;

fn run_ok(b: &mut Bundle, script: &str) -> String {
    let (code, out, err) = b.run(&["sh", "-c", script]);
    assert_eq!(code, 0, "{script}\nstdout: {out}\nstderr: {err}");
    out
}

/// `keel exec <id> sh -c SCRIPT` in a running container; panics unless it exits 0.
fn exec_ok(b: &Bundle, script: &str) -> String {
    let out = b.keel(&["exec", &b.id, "sh", "-c", script]);
    let (o, e) = (common::text(&out.stdout), common::text(&out.stderr));
    assert!(out.status.success(), "{script}\nstdout: {o}\nstderr: {e}");
    o
}

/// (nice, policy) from a /proc/<pid>/stat line: fields 19 and 41.
fn nice_and_policy(stat: &str) -> (i64, u32) {
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    (f[19 - 3].parse().unwrap(), f[41 - 3].parse().unwrap())
}

/// Runs `create` and returns its stderr, asserting that it failed.
fn create_fails(b: &mut Bundle) -> String {
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let out = b.keel(&["create", "--bundle", &dir, &b.id]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "create succeeded; stderr: {err}");
    assert!(
        !b.root.join(&b.id).exists(),
        "a failed create left its state dir"
    );
    err
}

#[test]
fn personality_linux32() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("attrs-pers");
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    let out = run_ok(&mut b, "cat /proc/self/personality; uname -m");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("00000008"), "{out}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(lines.next(), Some("i686"), "{out}");
    }
}

#[test]
fn scheduler_batch_nice_and_ioprio_on_init_and_exec() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("attrs-sched");
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_BATCH", "nice": 5}),
    );
    b.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_BE", "priority": 6}),
    );
    let out = run_ok(&mut b, "cat /proc/self/stat; ionice");
    let mut lines = out.lines();
    assert_eq!(nice_and_policy(lines.next().unwrap()), (5, 3), "{out}");
    assert_eq!(lines.next(), Some("best-effort: prio 6"), "{out}");

    // exec takes them from the container's process (process.json).
    b.args(&["sleep", "60"]);
    b.run_detached();
    // The init's, seen from the host.
    assert_eq!(keel::sys::attrs::ioprio_get(b.pid()), Ok((2 << 13) | 6));
    let out = exec_ok(&b, "cat /proc/self/stat; ionice; ionice -p 1");
    let mut lines = out.lines();
    assert_eq!(nice_and_policy(lines.next().unwrap()), (5, 3), "{out}");
    assert_eq!(lines.next(), Some("best-effort: prio 6"), "{out}");
    assert_eq!(lines.next(), Some("best-effort: prio 6"), "{out}");
}

/// (nice, policy) of a shell and of its child `cat`, from `cat /proc/$$/stat /proc/self/stat`.
fn shell_and_child(out: &str) -> [(i64, u32); 2] {
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 2, "{out}");
    [nice_and_policy(l[0]), nice_and_policy(l[1])]
}

#[test]
fn scheduler_flag_reset_on_fork_by_its_spec_name() {
    if !common::require_root() {
        return;
    }
    // With SCHED_FLAG_RESET_ON_FORK a child does not inherit a negative nice
    // (a normal policy is kept). `; exit 0`: sh must fork cat, not exec it.
    let sched = json!({"policy": "SCHED_BATCH", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    let script = "cat /proc/$$/stat /proc/self/stat; exit 0";
    let want = [(-5, 3), (0, 3)];
    let mut b = Bundle::new("attrs-sched-rof");
    b.set("/process/scheduler", sched.clone());
    assert_eq!(shell_and_child(&run_ok(&mut b, script)), want);

    // exec: from the saved process, and from a --process file using the spec's name.
    b.args(&["sleep", "1000"]);
    b.run_detached();
    assert_eq!(shell_and_child(&exec_ok(&b, script)), want);
    let file = b.dir.join("exec-process.json");
    let process = json!({"args": ["sh", "-c", script], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "scheduler": sched});
    std::fs::write(&file, process.to_string()).unwrap();
    let out = b.keel(&["exec", "--process", file.to_str().unwrap(), &b.id]);
    let (o, e) = (common::text(&out.stdout), common::text(&out.stderr));
    assert!(
        out.status.success(),
        "exec --process\nstdout: {o}\nstderr: {e}"
    );
    assert_eq!(shell_and_child(&o), want);
}

#[test]
fn ioprio_idle_class() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("attrs-idle");
    b.set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_IDLE"}));
    let out = run_ok(&mut b, "ionice");
    assert_eq!(out.trim(), "idle", "{out}");
}

#[test]
fn exec_cpu_affinity_final() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("attrs-cpus");
    b.set(
        "/process/execCPUAffinity",
        json!({"initial": "0", "final": "0"}),
    );
    let out = run_ok(&mut b, "grep Cpus_allowed_list /proc/self/status");
    assert_eq!(out.trim(), "Cpus_allowed_list:\t0", "{out}");
    b.args(&["sleep", "60"]);
    b.run_detached();
    let out = exec_ok(&b, "grep Cpus_allowed_list /proc/self/status");
    assert_eq!(out.trim(), "Cpus_allowed_list:\t0", "{out}");
}

#[test]
fn memory_policy_bind() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("attrs-mpol");
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "0"}),
    );
    // set_mempolicy is per task: numa_maps shows it for mappings without their own policy.
    let out = run_ok(&mut b, "grep -E ' (heap|stack) ' /proc/self/numa_maps");
    assert!(
        out.lines().any(|l| l.contains(" bind:0 ")),
        "no bind:0 mapping:\n{out}"
    );
}

/// The policy field of the first line of a numa_maps file, e.g. `prefer=relative:0`.
fn task_policy(numa_maps: &str) -> String {
    numa_maps
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no policy in numa_maps: {numa_maps:?}"))
        .to_owned()
}

#[test]
fn memory_policy_on_init_and_exec() {
    if !common::require_root() {
        return;
    }
    // runc's memorypolicy.bats "run and exec": every process of the container gets it.
    let mut b = Bundle::new("attrs-mpol-exec");
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
    );
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let path = format!("/proc/{}/numa_maps", b.pid());
    let init =
        task_policy(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
    assert_eq!(init, "prefer=relative:0");
    let exec = task_policy(&exec_ok(&b, "cat /proc/self/numa_maps"));
    assert_eq!(exec, init, "exec'd process without the container's policy");
}

#[test]
fn invalid_values_name_the_field() {
    if !common::require_root() {
        return;
    }
    let cases = [
        (
            "/process/scheduler",
            json!({"policy": "SCHED_FOO"}),
            "process.scheduler.policy: unknown policy \"SCHED_FOO\"",
        ),
        (
            "/process/scheduler",
            json!({"policy": "SCHED_OTHER", "nice": 40}),
            "process.scheduler.nice: 40 is out of range",
        ),
        (
            "/process/scheduler",
            json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_X"]}),
            "process.scheduler.flags[1]: unknown flag \"SCHED_FLAG_X\"",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
            "process.ioPriority.priority: 9 is out of range",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_X", "priority": 1}),
            "process.ioPriority.class: unknown class \"IOPRIO_CLASS_X\"",
        ),
        (
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND"}),
            "linux.memoryPolicy.nodes: MPOL_BIND needs at least one node",
        ),
        (
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "3-1"}),
            "linux.memoryPolicy.nodes: invalid list \"3-1\"",
        ),
        (
            "/linux/personality",
            json!({"domain": "LINUX64"}),
            "linux.personality.domain: unknown domain \"LINUX64\"",
        ),
    ];
    for (i, (ptr, val, want)) in cases.into_iter().enumerate() {
        let mut b = Bundle::new(&format!("attrs-bad{i}"));
        b.set(ptr, val);
        let err = create_fails(&mut b);
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn lsm_fields_fail_without_the_lsm() {
    if !common::require_root() {
        return;
    }
    let host = keel::attrs::Host::probe();
    if !host.apparmor {
        let mut b = Bundle::new("attrs-aa");
        b.set("/process/apparmorProfile", json!("keel-test-profile"));
        let err = create_fails(&mut b);
        assert!(
            err.contains("process.apparmorProfile: AppArmor is not enabled on this host"),
            "{err}"
        );
    }
    if !host.selinux {
        let mut b = Bundle::new("attrs-se");
        b.set(
            "/process/selinuxLabel",
            json!("system_u:system_r:container_t:s0"),
        );
        let err = create_fails(&mut b);
        assert!(
            err.contains("process.selinuxLabel: a SELinux label is set, but SELinux is disabled"),
            "{err}"
        );
        let mut b = Bundle::new("attrs-mnt");
        b.set(
            "/linux/mountLabel",
            json!("system_u:object_r:container_file_t:s0"),
        );
        let err = create_fails(&mut b);
        assert!(err.contains("linux.mountLabel:"), "{err}");
    }
}
