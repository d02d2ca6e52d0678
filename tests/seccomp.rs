//! linux.seccomp in real busybox containers: the Docker profile, every action,
//! argument filters, NOTIFY with a listener, the compiled-program cache.

mod common;

use std::fs;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Bundle;
use serde_json::{json, Value};

/// A profile whose default is ALLOW, with one rule for mkdir/mkdirat.
fn mkdir_rule(rule: Value) -> Value {
    let mut r = json!({"names": ["mkdir", "mkdirat"]});
    for (k, v) in rule.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [r]})
}

fn bundle(name: &str, seccomp: Value) -> Bundle {
    let mut b = Bundle::new(name);
    b.set("/linux/seccomp", seccomp);
    b
}

/// Adds CAP_SYS_ADMIN to the sets, so that an EPERM can only come from seccomp.
fn with_sys_admin(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.set(
            &format!("/process/capabilities/{set}/-"),
            json!("CAP_SYS_ADMIN"),
        );
    }
}

/// `sh -c script` in the container: (exit code, stdout, stderr).
fn sh(b: &mut Bundle, script: &str) -> (i32, String, String) {
    b.run(&["sh", "-c", script])
}

const BLOCKED: &str = "unshare -U true; echo unshare=$?; \
     mount -t tmpfs t /tmp; echo mount=$?; \
     umount /tmp; echo umount=$?; \
     hostname x; echo hostname=$?";

#[test]
fn docker_profile_loads_and_ordinary_commands_work() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("sc-docker-ok", common::docker_profile());
    let (code, out, err) = sh(
        &mut b,
        "ls / >/dev/null && echo hello && cat /etc/hostname && grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("hello\nkeel\n"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "filter not active: {out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn docker_profile_blocks_namespace_and_mount_syscalls() {
    if !common::require_root() {
        return;
    }
    // Control: with CAP_SYS_ADMIN and no profile, every command works.
    let mut b = Bundle::new("sc-docker-control");
    with_sys_admin(&mut b);
    let (code, out, err) = sh(&mut b, BLOCKED);
    assert_eq!(code, 0, "{out}{err}");
    for what in ["unshare=0", "mount=0", "umount=0", "hostname=0"] {
        assert!(
            out.contains(what),
            "control: {what} expected\nstdout: {out}\nstderr: {err}"
        );
    }
    // The same with the Docker profile: each syscall fails with EPERM.
    let mut b = bundle("sc-docker-blocked", common::docker_profile());
    with_sys_admin(&mut b);
    let (code, out, err) = sh(&mut b, BLOCKED);
    assert_eq!(code, 0, "{out}{err}");
    for what in ["unshare=1", "mount=1", "umount=1", "hostname=1"] {
        assert!(
            out.contains(what),
            "{what} expected\nstdout: {out}\nstderr: {err}"
        );
    }
    // busybox mount says EPERM its own way.
    assert!(err.contains("mount: permission denied"), "{err}");
    assert_eq!(
        err.matches("Operation not permitted").count(),
        3,
        "three more EPERMs expected: {err}"
    );
}

#[test]
fn docker_profile_without_no_new_privs_loads_before_the_caps_switch() {
    if !common::require_root() {
        return;
    }
    // Loaded while the init still has CAP_SYS_ADMIN; the uid switch after it is allowed.
    let mut b = bundle("sc-docker-nnp0", common::docker_profile());
    b.set("/process/noNewPrivileges", json!(false));
    b.set("/process/user", json!({"uid": 65534, "gid": 65534}));
    let (code, out, err) = sh(
        &mut b,
        "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true",
    );
    assert_eq!(code, 1, "unshare must fail\nstdout: {out}\nstderr: {err}");
    assert!(out.starts_with("65534\n"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn errno_action_returns_errno_ret() {
    if !common::require_root() {
        return;
    }
    // 100 = ENETDOWN, as in runc's seccomp.bats.
    let mut b = bundle(
        "sc-errno",
        mkdir_rule(json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 100})),
    );
    let (code, out, err) = sh(&mut b, "mkdir /dev/shm/x; echo rc=$?");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(err.contains("Network is down"), "{err}");
    // Without errnoRet: EPERM.
    let mut b = bundle(
        "sc-errno-eperm",
        mkdir_rule(json!({"action": "SCMP_ACT_ERRNO"})),
    );
    let (_, _, err) = sh(&mut b, "mkdir /dev/shm/x");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn kill_actions_kill_with_sigsys() {
    if !common::require_root() {
        return;
    }
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL",
    ] {
        let mut b = bundle("sc-kill", mkdir_rule(json!({ "action": action })));
        let (code, out, err) = b.run(&["mkdir", "/dev/shm/x"]);
        assert_eq!(
            code,
            128 + libc::SIGSYS,
            "{action}\nstdout: {out}\nstderr: {err}"
        );
    }
}

#[test]
fn trap_action_raises_sigsys() {
    if !common::require_root() {
        return;
    }
    // Uncaught, SIGSYS ends the process...
    let mut b = bundle("sc-trap", mkdir_rule(json!({"action": "SCMP_ACT_TRAP"})));
    let (code, out, err) = b.run(&["mkdir", "/dev/shm/x"]);
    assert_eq!(code, 128 + libc::SIGSYS, "stdout: {out}\nstderr: {err}");
    // ...but unlike KILL it is a signal the process can catch and survive.
    let mut b = Bundle::new("sc-trap-caught");
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["chdir"], "action": "SCMP_ACT_TRAP"}]}),
    );
    let (code, out, err) = sh(&mut b, "trap 'echo caught SIGSYS' SYS; cd /tmp; echo after");
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("caught SIGSYS"), "{out}");
    assert!(out.contains("after"), "{out}");
}

#[test]
fn trace_action_without_a_tracer_is_enosys() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("sc-trace", mkdir_rule(json!({"action": "SCMP_ACT_TRACE"})));
    let (code, out, err) = sh(&mut b, "mkdir /dev/shm/x; echo rc=$?");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(err.contains("Function not implemented"), "{err}");
}

#[test]
fn log_and_allow_actions_let_the_syscall_run() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle("sc-log", mkdir_rule(json!({"action": "SCMP_ACT_LOG"})));
    let (code, out, err) = sh(
        &mut b,
        "mkdir /dev/shm/x && test -d /dev/shm/x && echo made",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("made"), "{out}");
    // ALLOW as a rule under an ERRNO default: mkdir works, rmdir does not.
    let mut b = Bundle::new("sc-allow");
    let mut profile = common::docker_profile();
    profile["syscalls"][0]["names"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n != "rmdir");
    profile["defaultErrnoRet"] = json!(100);
    b.set("/linux/seccomp", profile);
    let (code, out, err) = sh(
        &mut b,
        "mkdir /dev/shm/x && echo made; rmdir /dev/shm/x; echo rc=$?",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("made\nrc=1"), "{out}");
    assert!(err.contains("Network is down"), "{err}");
}

#[test]
fn argument_filters() {
    if !common::require_root() {
        return;
    }
    // EQ on arg0: socket(AF_INET) -> EAFNOSUPPORT (97); other families are untouched.
    let mut b = bundle(
        "sc-arg-eq",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"],
               "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}),
    );
    let (_, out, err) = sh(
        &mut b,
        "nc 127.0.0.1 1 </dev/null; echo inet=$?; nc ::1 1 </dev/null; echo inet6=$?",
    );
    assert!(out.contains("inet=1"), "{out}\n{err}");
    assert!(
        err.contains("Address family not supported by protocol"),
        "{err}"
    );
    assert_eq!(
        err.matches("Address family not supported").count(),
        1,
        "AF_INET6 must not match: {err}"
    );
    // MASKED_EQ: unshare(CLONE_NEWUSER) -> ENOMSG (42); unshare(CLONE_NEWUTS) is not matched.
    let mut b = bundle(
        "sc-arg-masked",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["unshare"],
               "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
               "args": [{"index": 0, "value": 0x1000_0000u64, "valueTwo": 0x1000_0000u64,
                         "op": "SCMP_CMP_MASKED_EQ"}]}]}),
    );
    let (_, out, err) = sh(
        &mut b,
        "unshare -U true; echo user=$?; unshare -u true; echo uts=$?",
    );
    assert!(out.contains("user=1"), "{out}");
    assert_eq!(
        err.matches("No message of desired type").count(),
        1,
        "{err}"
    );
    // Without CAP_SYS_ADMIN the UTS unshare fails on its own, with EPERM.
    assert!(err.contains("Operation not permitted"), "{err}");
    // LT and GE on the same argument: separate rules (ORed), so both ends match.
    let mut b = bundle(
        "sc-arg-split",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"],
               "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LT"},
                        {"index": 0, "value": 16, "op": "SCMP_CMP_GE"}]}]}),
    );
    let (_, out, err) = sh(
        &mut b,
        "nc 127.0.0.1 1 </dev/null; echo inet=$?; nc ::1 1 </dev/null; echo inet6=$?; ip link; echo netlink=$?",
    );
    // AF_INET (2) matches LT, AF_NETLINK (16) matches GE, AF_INET6 (10) neither.
    assert!(out.contains("inet=1\ninet6=1\nnetlink="), "{out}\n{err}");
    assert!(!out.contains("netlink=0"), "{out}\n{err}");
    assert_eq!(
        err.matches("nc: socket: Address family not supported")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("ip: socket: Address family not supported"),
        "{err}"
    );
    assert!(err.contains("nc: can't connect to remote host:"), "{err}");
}

#[test]
fn unknown_names_are_skipped_and_unknown_actions_refused() {
    if !common::require_root() {
        return;
    }
    let mut b = bundle(
        "sc-unknown-name",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_syscall_xyz", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100}]}),
    );
    let (code, _, err) = sh(&mut b, "mkdir /dev/shm/x");
    assert_eq!(code, 1);
    assert!(err.contains("Network is down"), "{err}");

    let mut profile = common::docker_profile();
    profile["syscalls"][3]["action"] = json!("SCMP_ACT_FOO");
    let mut b = bundle("sc-unknown-action", profile);
    let (code, _, err) = b.run(&["true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO""#),
        "{err}"
    );
    let mut b = bundle(
        "sc-notify-default",
        json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
    );
    let (code, _, err) = b.run(&["true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"),
        "{err}"
    );
}

/// Receive one message with an fd on `conn`; returns the fd and all the data until EOF.
fn recv_fd_and_payload(conn: &mut std::os::unix::net::UnixStream) -> (OwnedFd, Vec<u8>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let m = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg from keel");
        let mut fd = None;
        for c in m.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        (m.bytes, fd)
    };
    // The kernel installed the fd in our table for us: nothing else owns it.
    let fd = keel::sys::own_fd(fd.expect("no fd came with the state (SCM_RIGHTS)"));
    let mut payload = buf[..n].to_vec();
    conn.read_to_end(&mut payload)
        .expect("read the rest of the payload");
    (fd, payload)
}

/// The agent's side of one connection (a deadline, never a hang): the listener
/// fd and the state document keel sent with it.
fn agent_accept(listener: &UnixListener) -> Result<(OwnedFd, Value), String> {
    let end = Instant::now() + common::command_timeout();
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    conn.set_nonblocking(false).unwrap();
    let (fd, payload) = recv_fd_and_payload(&mut conn);
    let state: Value = serde_json::from_slice(&payload).map_err(|e| {
        format!(
            "payload is not JSON ({e}): {}",
            String::from_utf8_lossy(&payload)
        )
    })?;
    Ok((fd, state))
}

/// Answers one notification on `fd` with ENETDOWN; returns its id.
fn refuse_one(fd: &OwnedFd) -> Result<u64, String> {
    let req =
        libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).map_err(|e| format!("receive: {e}"))?;
    libseccomp::ScmpNotifResp::new_error(
        req.id,
        -libc::ENETDOWN,
        libseccomp::ScmpNotifRespFlags::empty(),
    )
    .respond(fd.as_raw_fd())
    .map_err(|e| format!("respond: {e}"))?;
    Ok(req.id)
}

#[test]
fn notify_hands_a_working_listener_to_the_agent() {
    if !common::require_root() {
        return;
    }
    // Loaded just before Ready (no_new_privs), or before the caps switch (without).
    for nnp in [true, false] {
        notify_round_trip(nnp);
    }
}

fn notify_round_trip(nnp: bool) {
    let mut b = Bundle::new("sc-notify");
    b.set("/process/noNewPrivileges", json!(nnp));
    let sock: PathBuf = b.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind the agent socket");
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600)).unwrap();
    listener.set_nonblocking(true).unwrap();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": sock, "listenerMetadata": "meta-x",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let id = b.id.clone();
    let agent = std::thread::spawn(move || -> Result<(Value, u64), String> {
        let (fd, state) = agent_accept(&listener)?;
        Ok((state, refuse_one(&fd)?))
    });
    let (code, out, err) = sh(&mut b, "mkdir /dev/shm/x; echo rc=$?");
    let (state, _) = agent
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("agent: {e}\nkeel: {err}"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(err.contains("Network is down"), "{err}");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "meta-x", "{state}");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(state["state"]["id"], id.as_str(), "{state}");
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert_eq!(state["state"]["pid"], state["pid"], "{state}");
    assert_eq!(state["state"]["bundle"], b.dir.to_str().unwrap(), "{state}");
}

/// `keel --debug --log <file> run` of the bundle; returns (exit code, log text).
fn run_logged(b: &mut Bundle, log: &str, cmd: &[&str]) -> (i32, String, String) {
    b.args(cmd);
    b.write();
    let log = b.dir.join(log);
    let dir = b.dir.to_str().unwrap().to_owned();
    let out = b.keel(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        &dir,
        &b.id.clone(),
    ]);
    (
        common::exit_code(out.status),
        fs::read_to_string(&log).unwrap_or_default(),
        common::text(&out.stderr),
    )
}

fn cache_files(b: &Bundle) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(b.root.join("seccomp-cache"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn compiled_programs_are_cached_and_corruption_is_rebuilt() {
    if !common::require_root() {
        return;
    }
    let mut profile = common::docker_profile();
    profile["syscalls"][0]["names"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n != "mkdir" && n != "mkdirat");
    profile["defaultErrnoRet"] = json!(100);
    let mut b = bundle("sc-cache", profile);
    let cmd = ["sh", "-c", "mkdir /dev/shm/x; echo rc=$?"];
    let check = |code: i32, log: &str, err: &str| {
        assert_eq!(code, 0, "log: {log}\nstderr: {err}");
        assert!(err.contains("Network is down"), "filter not active: {err}");
    };

    let (code, log1, err) = run_logged(&mut b, "log1", &cmd);
    check(code, &log1, &err);
    let key = log1
        .split("seccomp: cache miss ")
        .nth(1)
        .map(|s| s[..16].to_string())
        .unwrap_or_else(|| panic!("no cache miss logged: {log1}"));
    let files = cache_files(&b);
    assert_eq!(files, vec![b.root.join(format!("seccomp-cache/{key}.bpf"))]);
    let good = fs::read(&files[0]).unwrap();

    let (code, log2, err) = run_logged(&mut b, "log2", &cmd);
    check(code, &log2, &err);
    assert!(
        log2.contains(&format!("seccomp: cache hit {key}")),
        "{log2}"
    );

    // Flip a bit in the body: detected, rebuilt, and the container is still filtered.
    let mut bad = good.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x10;
    fs::write(&files[0], &bad).unwrap();
    let (code, log3, err) = run_logged(&mut b, "log3", &cmd);
    check(code, &log3, &err);
    assert!(
        log3.contains(&format!(
            "seccomp: cache corrupt {key} (bad checksum): rebuilding"
        )),
        "{log3}"
    );
    assert_eq!(
        fs::read(&files[0]).unwrap(),
        good,
        "the cache file was not rewritten"
    );

    // A truncated file too; afterwards the rebuilt file is hit again.
    fs::write(&files[0], &good[..good.len() / 2]).unwrap();
    let (code, log4, err) = run_logged(&mut b, "log4", &cmd);
    check(code, &log4, &err);
    assert!(
        log4.contains(&format!("seccomp: cache corrupt {key}")),
        "{log4}"
    );
    let (code, log5, err) = run_logged(&mut b, "log5", &cmd);
    check(code, &log5, &err);
    assert!(
        log5.contains(&format!("seccomp: cache hit {key}")),
        "{log5}"
    );
    assert_eq!(
        cache_files(&b).len(),
        1,
        "stray files: {:?}",
        cache_files(&b)
    );
}

#[test]
fn exec_applies_the_containers_filter() {
    if !common::require_root() {
        return;
    }
    // The init sleeps under the Docker profile; an exec'd shell gets the same filter.
    let mut b = bundle("sc-exec", common::docker_profile());
    with_sys_admin(&mut b);
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let out = b.keel(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "unshare -U true; echo unshare=$?; ls / >/dev/null; echo ls=$?",
    ]);
    let stdout = common::text(&out.stdout);
    let stderr = common::text(&out.stderr);
    assert_eq!(common::exit_code(out.status), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("unshare=1"),
        "unshare must be refused: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("ls=0"),
        "ordinary commands work: {stdout}{stderr}"
    );
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn exec_hands_its_own_listener_to_the_agent() {
    if !common::require_root() {
        return;
    }
    // Loaded right before execve (no_new_privs), or before the caps switch (without).
    for nnp in [true, false] {
        exec_notify_round_trip(nnp);
    }
}

fn exec_notify_round_trip(nnp: bool) {
    let mut b = Bundle::new("sc-exec-notify");
    b.set("/process/noNewPrivileges", json!(nnp));
    b.set("/annotations", json!({"k": "v"}));
    let sock: PathBuf = b.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind the agent socket");
    listener.set_nonblocking(true).unwrap();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": sock, "listenerMetadata": "meta-exec",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    // First the init's listener (create), then the exec'd process's own (as runc:
    // a filter, and so a listener, per process).
    let agent = std::thread::spawn(move || -> Result<(Value, Value, u64), String> {
        let (_init_fd, created) = agent_accept(&listener)?;
        let (fd, exec) = agent_accept(&listener)?;
        Ok((created, exec, refuse_one(&fd)?))
    });
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let init = b.pid();
    let out = b.keel(&["exec", &b.id, "sh", "-c", "mkdir /dev/shm/x; echo rc=$?"]);
    let (stdout, stderr) = (common::text(&out.stdout), common::text(&out.stderr));
    // Before joining: an exec that never connects leaves the agent waiting.
    assert_eq!(
        common::exit_code(out.status),
        0,
        "nnp {nnp}: {stdout}{stderr}"
    );
    let (created, exec, _) = agent
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("agent (nnp {nnp}): {e}\nkeel: {stderr}"));
    assert!(
        stdout.contains("rc=1"),
        "the agent's answer, not mkdir's: {stdout}"
    );
    assert!(stderr.contains("Network is down"), "{stderr}");
    assert_eq!(created["state"]["status"], "creating", "{created}");
    // runc's setns process: the process's own pid, the container's state and init.
    assert_eq!(exec["fds"], json!(["seccompFd"]), "{exec}");
    assert_eq!(exec["metadata"], "meta-exec", "{exec}");
    assert_eq!(exec["state"]["id"], b.id.as_str(), "{exec}");
    assert_eq!(exec["state"]["status"], "running", "{exec}");
    assert_eq!(exec["state"]["pid"], init, "{exec}");
    assert_eq!(exec["state"]["bundle"], b.dir.to_str().unwrap(), "{exec}");
    assert_eq!(exec["state"]["annotations"], json!({"k": "v"}), "{exec}");
    let pid = exec["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0 && pid != i64::from(init), "{exec}");
}

#[test]
fn exec_fails_naming_the_listener_when_the_agent_is_gone() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("sc-exec-noagent");
    let sock: PathBuf = b.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind the agent socket");
    listener.set_nonblocking(true).unwrap();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let agent = std::thread::spawn(move || agent_accept(&listener).map(drop));
    b.args(&["sleep", "1000"]);
    b.run_detached();
    agent.join().unwrap().unwrap();
    fs::remove_file(&sock).unwrap();
    let out = b.keel(&["exec", &b.id, "true"]);
    let stderr = common::text(&out.stderr);
    assert_eq!(common::exit_code(out.status), 255, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "sending the seccomp listener to {}: ENOENT",
            sock.display()
        )),
        "{stderr}"
    );
    assert_eq!(b.status(), "running");
}
