//! The first containers: a command's output and exit status come back.

mod common;

use common::Bundle;

#[test]
fn run_echo() {
    if !common::require_root() {
        return;
    }
    let mut bundle = Bundle::new("echo");
    let (code, stdout, stderr) = bundle.run(&["echo", "hello"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stdout, "hello\n", "stderr: {stderr}");
}

#[test]
fn run_exit_code() {
    if !common::require_root() {
        return;
    }
    let mut bundle = Bundle::new("exit-code");
    let (code, stdout, stderr) = bundle.run(&["sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
}
