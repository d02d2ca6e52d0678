//! Namespaces: which to create with the clone, which to join by path, and the
//! two the parent joins for its child (pid and time only take effect for
//! children, so setns in the parent puts the child in them with one clone).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{At, SysError};
use crate::sys;

/// A namespace file opened in the parent, joined with setns.
#[derive(Debug)]
pub struct Join {
    pub fd: OwnedFd,
    pub flag: CloneFlags,
    pub path: CString,
}

#[derive(Debug, Default)]
pub struct NsPlan {
    /// CLONE_NEW* flags for clone3.
    pub clone_flags: u64,
    /// Joined by the child, user namespace first.
    pub child_joins: Vec<Join>,
    /// pid and time namespaces joined by the parent before clone.
    pub parent_joins: Vec<Join>,
    /// `/proc/self/timens_offsets` content for a new time namespace (made by the parent with unshare).
    pub new_time: Option<String>,
    pub new_user: bool,
    pub uid_map: String,
    pub gid_map: String,
    /// The container has a mount namespace (new or joined): the rootfs is set up in it.
    pub has_mount: bool,
    /// The container has a pid namespace of its own (new or joined).
    pub has_pid: bool,
    pub new_cgroup: bool,
}

pub fn flag_of(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(sys::CLONE_NEWTIME),
    }
}

/// The order in which joined namespaces are entered: user first (it grants the
/// rights for the rest), mount last among those that matter for paths.
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Cgroup => 4,
        LinuxNamespaceType::Mount => 5,
        LinuxNamespaceType::Pid | LinuxNamespaceType::Time => 6,
    }
}

/// Build the namespace part of the plan. Namespace files are opened here so that
/// a bad path fails before anything is created.
pub fn plan(spec: &Spec) -> Result<NsPlan, SysError> {
    let mut p = NsPlan::default();
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(p);
    };
    let mut joins: Vec<(u8, Join, LinuxNamespaceType)> = Vec::new();
    for ns in linux.namespaces().as_deref().unwrap_or_default() {
        let t = ns.typ();
        match t {
            LinuxNamespaceType::Mount => p.has_mount = true,
            LinuxNamespaceType::Pid => p.has_pid = true,
            _ => {}
        }
        match ns.path() {
            Some(path) => {
                let f = File::open(path).at("opening namespace", path)?;
                let join = Join {
                    fd: f.into(),
                    flag: flag_of(t),
                    path: cstring(path),
                };
                joins.push((join_rank(t), join, t));
            }
            None => match t {
                LinuxNamespaceType::Time => {
                    p.new_time = Some(time_offsets(spec));
                }
                _ => {
                    p.clone_flags |= flag_of(t).bits() as u64;
                    if t == LinuxNamespaceType::User {
                        p.new_user = true;
                    }
                    if t == LinuxNamespaceType::Cgroup {
                        p.new_cgroup = true;
                    }
                }
            },
        }
    }
    joins.sort_by_key(|(r, _, _)| *r);
    for (_, j, t) in joins {
        if matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
            p.parent_joins.push(j);
        } else {
            p.child_joins.push(j);
        }
    }
    if p.new_user {
        p.uid_map = id_map(linux.uid_mappings().as_deref().unwrap_or_default());
        p.gid_map = id_map(linux.gid_mappings().as_deref().unwrap_or_default());
    }
    Ok(p)
}

fn id_map(maps: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// `/proc/self/timens_offsets` lines: "<clock> <secs> <nanosecs>".
fn time_offsets(spec: &Spec) -> String {
    let mut s = String::new();
    if let Some(offs) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    {
        for (clock, off) in offs {
            s.push_str(&format!(
                "{} {} {}\n",
                clock,
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
    }
    s
}

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

/// Parent side, just before clone: enter the pid/time namespaces for our
/// children, and make a new time namespace with its offsets.
pub fn enter_for_children(p: &NsPlan) -> Result<(), SysError> {
    for j in &p.parent_joins {
        setns(j.fd.as_fd(), j.flag).at("joining namespace", cpath(&j.path))?;
    }
    if let Some(offsets) = &p.new_time {
        unshare(CloneFlags::from_bits_retain(sys::CLONE_NEWTIME)).op("unshare time namespace")?;
        if !offsets.is_empty() {
            std::fs::write("/proc/self/timens_offsets", offsets)
                .at("writing time offsets to", "/proc/self/timens_offsets")?;
        }
    }
    Ok(())
}

/// Parent side, after clone: write the child's id maps (new user namespace only;
/// setgroups and newuidmap/newgidmap as runc does: see [`crate::userns`]).
pub fn write_id_maps(pid: i32, p: &NsPlan) -> Result<(), SysError> {
    crate::userns::write_id_maps(pid, p)
}

pub fn cpath(c: &CString) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(c.as_bytes()))
}
