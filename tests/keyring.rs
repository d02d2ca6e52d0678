//! H-12: each container gets its own session keyring `_ses.<id>` unless
//! `--no-new-keyring`, so containers never share the caller's keys.

mod common;

use common::Bundle;

fn keyring_named(id: &str) -> bool {
    let want = format!(" _ses.{id}:");
    std::fs::read_to_string("/proc/keys").is_ok_and(|k| k.lines().any(|l| l.contains(&want)))
}

#[test]
fn h12_session_keyring_per_container() {
    if !common::require_root() {
        return;
    }
    for (name, flag, expect) in [
        ("keyring", None, true),
        ("no-keyring", Some("--no-new-keyring"), false),
    ] {
        let mut b = Bundle::new(name);
        b.args(&["sleep", "1000"]);
        b.write();
        let dir = b.dir.to_str().unwrap().to_string();
        let id = b.id.clone();
        let mut args = vec!["run", "--detach", "--bundle", dir.as_str()];
        if let Some(f) = flag {
            args.push(f);
        }
        args.push(&id);
        let out = b.keel(&args);
        assert!(
            out.status.success(),
            "{name}: {}",
            common::text(&out.stderr)
        );
        assert_eq!(
            keyring_named(&id),
            expect,
            "{name}: /proc/keys:\n{}",
            std::fs::read_to_string("/proc/keys").unwrap_or_default()
        );
        let out = b.keel(&["delete", "--force", &id]);
        assert!(out.status.success(), "{}", common::text(&out.stderr));
    }
}
