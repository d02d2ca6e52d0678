//! `process.terminal: true`: a bundle made by `keel spec` runs unchanged, with
//! the pty relayed to keel's own terminal (here the pty that script(1) makes).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Bundle;

#[test]
fn runc_spec_bundle_runs_unchanged_on_a_terminal() {
    if !common::require_root() {
        return;
    }
    let b = Bundle::new("tty");
    // The unchanged default config: terminal true, args ["sh"], root "rootfs" (read-only).
    // Made by runc itself when it is installed (its 1.1 template lists ambient caps
    // without inheritable ones), else by `keel spec`.
    std::fs::remove_file(b.config_path()).ok();
    let out = if std::path::Path::new("/usr/sbin/runc").exists() {
        Command::new("/usr/sbin/runc")
            .args(["spec", "--bundle", b.dir.to_str().unwrap()])
            .output()
            .unwrap()
    } else {
        b.keel(&["spec", "--bundle", b.dir.to_str().unwrap()])
    };
    assert!(out.status.success(), "spec: {}", common::text(&out.stderr));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.config_path()).unwrap()).unwrap();
    assert_eq!(spec["process"]["terminal"], true);
    std::os::unix::fs::symlink(common::shared_rootfs(), b.dir.join("rootfs")).unwrap();

    let cmd = format!(
        "{} --root {} run --bundle {} {}",
        common::keel_bin().display(),
        b.root.display(),
        b.dir.display(),
        b.id
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tty; echo in-$((6*7)); exit 4\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = common::text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout: {stdout}\nstderr: {}",
        common::text(&out.stderr)
    );
    assert!(
        stdout.contains("/dev/pts/0"),
        "tty inside is the container's pty: {stdout}"
    );
    assert!(stdout.contains("in-42"), "{stdout}");
    assert!(
        b.keel(&["state", &b.id]).status.code() != Some(0),
        "run removed the container"
    );
}

/// A private tmux server (its own socket name), killed on drop even when a test fails.
struct Tmux {
    sock: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.sock, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux (Debian package tmux)")
    }

    fn pane(&self) -> String {
        common::text(&self.cmd(&["capture-pane", "-p", "-t", "s"]).stdout)
    }

    fn wait_for(&self, what: &str) {
        common::wait_until(std::time::Duration::from_secs(30), what, || {
            self.pane().contains(what)
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn foreground_tty_follows_window_resizes() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("tty-resize");
    b.set("/process/terminal", serde_json::json!(true));
    b.args(&["sh"]);
    b.write();
    let tmux = Tmux {
        sock: format!("{}-tmux", b.id),
    };
    let cmd = format!(
        "{} --root {} run --bundle {} {}",
        common::keel_bin().display(),
        b.root.display(),
        b.dir.display(),
        b.id
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "s", "-x", "80", "-y", "24", &cmd]);
    assert!(out.status.success(), "tmux: {}", common::text(&out.stderr));
    tmux.cmd(&[
        "send-keys",
        "-t",
        "s",
        "stty size; echo size-$((1+1))",
        "Enter",
    ]);
    tmux.wait_for("24 80");
    tmux.wait_for("size-2");
    // A resize of our terminal reaches the container's pty through SIGWINCH.
    let out = tmux.cmd(&["resize-window", "-t", "s", "-x", "100", "-y", "30"]);
    assert!(
        out.status.success(),
        "resize: {}",
        common::text(&out.stderr)
    );
    tmux.cmd(&[
        "send-keys",
        "-t",
        "s",
        "clear; stty size; echo resized-$((2+1))",
        "Enter",
    ]);
    tmux.wait_for("resized-3");
    let pane = tmux.pane();
    assert!(
        pane.contains("30 100"),
        "stty size after the resize: {pane}"
    );
    tmux.cmd(&["send-keys", "-t", "s", "exit", "Enter"]);
    common::wait_until(std::time::Duration::from_secs(30), "keel run exits", || {
        !tmux.cmd(&["has-session", "-t", "s"]).status.success()
    });
}

#[test]
fn outer_terminal_mode_is_restored_after_run_and_exec() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("tty-restore");
    b.set("/process/terminal", serde_json::json!(true));
    b.args(&["sh"]);
    b.write();
    let mut e = Bundle::new("tty-restore-exec");
    e.args(&["sleep", "1000"]);
    e.run_detached();
    let keel = common::keel_bin();
    let d = b.dir.display();
    // The pane's shell records its terminal's mode before and after each
    // foreground keel (which puts it in raw mode while it relays).
    let script = b.dir.join("outer.sh");
    std::fs::write(
        &script,
        format!(
            "stty -g > {d}/before\n\
             {k} --root {r} run --bundle {d} {id}\n\
             stty -g > {d}/after-run\n\
             {k} --root {er} exec -t {eid} sh\n\
             stty -g > {d}/after-exec\n\
             exec sleep 1000\n",
            k = keel.display(),
            r = b.root.display(),
            id = b.id,
            er = e.root.display(),
            eid = e.id,
        ),
    )
    .unwrap();
    let tmux = Tmux {
        sock: format!("{}-tmux", b.id),
    };
    let cmd = format!("sh {}", script.display());
    let out = tmux.cmd(&["new-session", "-d", "-s", "s", "-x", "80", "-y", "24", &cmd]);
    assert!(out.status.success(), "tmux: {}", common::text(&out.stderr));
    let exists = |name: &str| {
        let p = b.dir.join(name);
        common::wait_until(std::time::Duration::from_secs(30), name, || p.exists());
    };
    for (marker, after) in [("in-$((1+1))", "after-run"), ("in-$((2+1))", "after-exec")] {
        tmux.cmd(&["send-keys", "-t", "s", &format!("echo {marker}"), "Enter"]);
        // The shell in the container answers: keel is relaying.
        let want = if after == "after-run" { "in-2" } else { "in-3" };
        tmux.wait_for(want);
        tmux.cmd(&["send-keys", "-t", "s", "exit", "Enter"]);
        exists(after);
    }
    let read = |name: &str| {
        // Written by stty right before the file is closed: wait for the newline.
        let p = b.dir.join(name);
        common::wait_until(std::time::Duration::from_secs(30), name, || {
            std::fs::read_to_string(&p).is_ok_and(|s| s.ends_with('\n'))
        });
        std::fs::read_to_string(&p).unwrap()
    };
    let before = read("before");
    assert_eq!(read("after-run"), before, "mode after keel run -t");
    assert_eq!(read("after-exec"), before, "mode after keel exec -t");
}
