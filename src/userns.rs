//! The parent's side of user namespaces and idmapped mounts.
//!
//! * [`write_id_maps`]: the child's `uid_map`/`gid_map`, written after the clone
//!   while the child waits on the channel. As root keel writes them directly;
//!   otherwise a map that is more than "0 <own id> 1" goes through
//!   `newuidmap`/`newgidmap` (shadow-utils, setuid), and `setgroups` is set to
//!   "deny" only where the kernel requires it: not root, gid map written
//!   directly (runc's rule).
//! * [`open_sources`]: bind sources opened by the parent, inside the child's
//!   mount namespace, with keel's credentials (runc 1.2's mount sources).
//!   A plain bind gets an `O_PATH` fd, which the child binds through
//!   `/proc/self/fd/N`, so no path lookup happens with the container's mapped
//!   ids (a source under a 0700 directory works). An idmapped bind gets a
//!   detached tree: `open_tree(OPEN_TREE_CLONE[|AT_RECURSIVE])`, then
//!   `mount_setattr(MOUNT_ATTR_IDMAP)` with a user namespace carrying the
//!   mapping, which the child attaches with `move_mount`. Because the copies
//!   are made of the child's mount namespace, the mount flags that the kernel
//!   locked there (ro, nosuid, nodev... of the host mounts) stay locked.
//! * [`userns_with`]: a user namespace fd with a given mapping, for
//!   `MOUNT_ATTR_IDMAP`: a child cloned with `CLONE_NEWUSER` that only waits,
//!   its maps written, `/proc/<pid>/ns/user` opened, the child killed.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::error::{At, SysError};
use crate::mounts::{MountKind, MountPlan};
use crate::namespaces::NsPlan;
use crate::plan::Plan;
use crate::sys;

/// One line of a uid_map/gid_map: (container id, host id, size).
pub type Range = (u32, u32, u32);

/// Parse "c h s\n..." lines back into ranges (they were built by keel).
pub fn ranges(map: &str) -> Vec<Range> {
    map.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u32>());
            match (f.next(), f.next(), f.next()) {
                (Some(Ok(c)), Some(Ok(h)), Some(Ok(s))) => Some((c, h, s)),
                _ => None,
            }
        })
        .collect()
}

/// argv of `newuidmap`/`newgidmap` for `pid` and `map`: tool, pid, then each range.
pub fn tool_args(tool: &str, pid: i32, map: &str) -> Vec<String> {
    let mut v = vec![tool.to_string(), pid.to_string()];
    for (c, h, s) in ranges(map) {
        v.extend([c.to_string(), h.to_string(), s.to_string()]);
    }
    v
}

/// How one map gets written.
#[derive(Debug, PartialEq, Eq)]
pub enum Writer {
    /// Write /proc/<pid>/{uid,gid}_map ourselves.
    Direct,
    /// Run newuidmap/newgidmap.
    Tool(&'static str),
}

/// runc's rule: root writes any map; otherwise only "0 <own id> 1" can be
/// written directly, and anything else needs the setuid mapping tool.
pub fn writer(euid_or_egid: u32, root: bool, map: &str, tool: &'static str) -> Writer {
    if root || ranges(map) == [(0, euid_or_egid, 1)] {
        Writer::Direct
    } else {
        Writer::Tool(tool)
    }
}

/// Whether `setgroups` must be set to "deny" before gid_map (unprivileged direct write).
pub fn must_deny_setgroups(root: bool, gid_writer: &Writer) -> bool {
    !root && *gid_writer == Writer::Direct
}

/// Write the child's id maps (new user namespace only). Errors name the field.
pub fn write_id_maps(pid: i32, ns: &NsPlan) -> Result<(), SysError> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let root = euid == 0;
    let base = PathBuf::from(format!("/proc/{pid}"));
    let uw = writer(euid, root, &ns.uid_map, "newuidmap");
    let gw = writer(egid, root, &ns.gid_map, "newgidmap");
    if must_deny_setgroups(root, &gw) {
        std::fs::write(base.join("setgroups"), "deny").at(
            "linux.gidMappings: writing \"deny\" to",
            base.join("setgroups"),
        )?;
    }
    for (field, file, map, w) in [
        ("linux.uidMappings", "uid_map", &ns.uid_map, uw),
        ("linux.gidMappings", "gid_map", &ns.gid_map, gw),
    ] {
        match w {
            Writer::Direct => std::fs::write(base.join(file), map)
                .at(&format!("{field}: writing"), base.join(file))?,
            Writer::Tool(tool) => run_tool(field, &tool_args(tool, pid, map))?,
        }
    }
    Ok(())
}

fn run_tool(field: &str, argv: &[String]) -> Result<(), SysError> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .at(&format!("{field}: running"), &argv[0])?;
    if !out.status.success() {
        return Err(SysError::new(
            format!(
                "{field}: {} failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
            nix::errno::Errno::EPERM,
        ));
    }
    Ok(())
}

/// Whether the parent opens the source of `m` (see the module doc); `plain`:
/// it opens those of plain binds too.
pub fn source_wanted(m: &MountPlan, plain: bool) -> bool {
    matches!(m.kind, MountKind::Bind { .. }) && (plain || m.idmap.is_some())
}

/// Whether the parent opens plain bind sources: with a new user namespace,
/// and only as root. An unprivileged keel cannot join the child's mount
/// namespace (setns needs CAP_SYS_CHROOT and CAP_SYS_ADMIN in keel's own user
/// namespace); its container's ids are its own or its subordinate ones, and
/// the container's root is normally keel's user, which owns the state dir.
fn plain_sources(plan: &Plan) -> bool {
    plan.ns.new_user && !plan.unprivileged
}

/// Whether any mount of the plan has its source opened by the parent.
pub fn needs_sources(plan: &Plan) -> bool {
    let plain = plain_sources(plan);
    plan.mounts.iter().any(|m| source_wanted(m, plain))
}

/// Open the wanted bind sources inside the mount namespace of `pid` (the
/// waiting child): (index in `plan.mounts`, fd) for each.
pub fn open_sources(pid: i32, plan: &Plan) -> Result<Vec<(u32, OwnedFd)>, SysError> {
    let own = File::open("/proc/self/ns/mnt").at("opening", "/proc/self/ns/mnt")?;
    let cwd = File::open(".").at("opening", ".")?;
    let theirs = format!("/proc/{pid}/ns/mnt");
    let theirs = File::open(&theirs).at("opening", &theirs)?;
    // User namespaces carrying each distinct mapping, made before entering the child's mounts.
    let mut userns: HashMap<(String, String), OwnedFd> = HashMap::new();
    for m in &plan.mounts {
        if let Some(i) = &m.idmap {
            let key = (i.uid_map.clone(), i.gid_map.clone());
            if let std::collections::hash_map::Entry::Vacant(e) = userns.entry(key) {
                e.insert(userns_with(&i.uid_map, &i.gid_map)?);
            }
        }
    }
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWNS)
        .at("joining the mount namespace of pid", pid.to_string())?;
    let r = open_in_ns(plan, &userns);
    // Back to our own mounts (and cwd, which setns reset) whatever happened.
    let back = setns(own.as_fd(), CloneFlags::CLONE_NEWNS).at("returning to", "/proc/self/ns/mnt");
    let _ = nix::unistd::fchdir(cwd.as_fd());
    back?;
    r
}

fn open_in_ns(
    plan: &Plan,
    userns: &HashMap<(String, String), OwnedFd>,
) -> Result<Vec<(u32, OwnedFd)>, SysError> {
    let mut out = Vec::new();
    let plain = plain_sources(plan);
    for (i, m) in plan.mounts.iter().enumerate() {
        if !source_wanted(m, plain) {
            continue;
        }
        let MountKind::Bind { src, .. } = &m.kind else {
            continue;
        };
        let field = format!("mounts[{i}]: ");
        let path = crate::mounts::host_path(src);
        let fd = match &m.idmap {
            None => sys::openat2(nix::fcntl::AT_FDCWD, src, libc::O_PATH, 0, 0)
                .at(&format!("{field}opening bind source"), &path)?,
            Some(idm) => {
                let tree = sys::open_tree_clone(src, m.opts.is_recursive_bind())
                    .at(&format!("{field}open_tree"), &path)?;
                let ns = &userns[&(idm.uid_map.clone(), idm.gid_map.clone())];
                use std::os::fd::AsRawFd;
                sys::mount_setattr(
                    tree.as_fd(),
                    idm.recursive,
                    crate::mountopts::MOUNT_ATTR_IDMAP,
                    0,
                    Some(ns.as_raw_fd()),
                )
                .at(
                    &format!("{field}idmapping (mount_setattr MOUNT_ATTR_IDMAP)"),
                    &path,
                )?;
                // The copy may be a peer of the host's mount: make it receive only, like the
                // rest of the container's mounts (rslave), before anyone attaches it.
                sys::mount_setattr_propagation(tree.as_fd(), true, libc::MS_SLAVE)
                    .at(&format!("{field}making idmapped mount a slave"), &path)?;
                tree
            }
        };
        out.push((i as u32, fd));
    }
    Ok(out)
}

/// A user namespace fd whose maps are `uid_map`/`gid_map`.
pub fn userns_with(uid_map: &str, gid_map: &str) -> Result<OwnedFd, SysError> {
    let cloned =
        match sys::clone3_fork(libc::CLONE_NEWUSER as u64, None).op("clone3(CLONE_NEWUSER)")? {
            None => {
                // The helper: wait to be killed (or die with keel).
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                loop {
                    nix::unistd::pause();
                }
            }
            Some(c) => c,
        };
    let pid = cloned.pid;
    let r = (|| {
        let base = PathBuf::from(format!("/proc/{pid}"));
        std::fs::write(base.join("uid_map"), uid_map).at(
            "idmapped mount: writing uidMappings to",
            base.join("uid_map"),
        )?;
        std::fs::write(base.join("gid_map"), gid_map).at(
            "idmapped mount: writing gidMappings to",
            base.join("gid_map"),
        )?;
        let f = File::open(base.join("ns/user")).at("opening", base.join("ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    let _ = sys::pidfd_send_signal(cloned.pidfd.as_fd(), libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_command_lists_every_range() {
        let map = "0 1000 1\n1 100000 65536\n";
        assert_eq!(
            tool_args("newuidmap", 42, map),
            ["newuidmap", "42", "0", "1000", "1", "1", "100000", "65536"]
        );
    }

    #[test]
    fn writers_follow_runcs_rule() {
        // Root writes anything directly and never denies setgroups.
        let w = writer(0, true, "0 100000 65536\n", "newgidmap");
        assert_eq!(w, Writer::Direct);
        assert!(!must_deny_setgroups(true, &w));
        // Not root, only our own id as root: direct, and setgroups must be denied.
        let w = writer(1000, false, "0 1000 1\n", "newgidmap");
        assert_eq!(w, Writer::Direct);
        assert!(must_deny_setgroups(false, &w));
        // Not root, anything more: the setuid tool, setgroups left alone.
        let w = writer(1000, false, "0 1000 1\n1 100000 65536\n", "newgidmap");
        assert_eq!(w, Writer::Tool("newgidmap"));
        assert!(!must_deny_setgroups(false, &w));
    }

    #[test]
    fn ranges_round_trip() {
        assert_eq!(ranges("0 1 2\n3 4 5\n"), [(0, 1, 2), (3, 4, 5)]);
    }
}
