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
    std::fs::remove_file(b.config_path()).ok();
    let out = b.keel(&["spec", "--bundle", b.dir.to_str().unwrap()]);
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
