//! Devices: the spec's default devices plus `linux.devices`, created with
//! mknod inside the rootfs (or bound from the host where mknod is not allowed),
//! and runc's /dev symlinks.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use crate::child::{Ctx, Fail};
use crate::mounts::{self, fd_path, Rootfs};

#[derive(Debug, Clone)]
pub struct DevicePlan {
    /// Relative to the rootfs ("dev/null").
    pub rel: CString,
    /// Host path to bind when mknod is refused.
    pub host: CString,
    pub kind: SFlag,
    pub mode: u32,
    pub major: u64,
    pub minor: u64,
    pub uid: u32,
    pub gid: u32,
}

/// The runtime-spec's default devices: null, zero, full, random, urandom, tty.
const DEFAULTS: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// /dev needs setting up unless the config bind-mounts something over it (runc's rule).
pub fn needs_setup(spec: &Spec) -> bool {
    !spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            m.destination() == Path::new("/dev")
                && m.options()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o == "bind" || o == "rbind")
        })
}

pub fn plan(spec: &Spec) -> Vec<DevicePlan> {
    let mut out: Vec<DevicePlan> = DEFAULTS
        .iter()
        .map(|(p, ma, mi)| DevicePlan {
            rel: mounts::rel_cstring(Path::new(p)),
            host: CString::new(*p).unwrap_or_default(),
            kind: SFlag::S_IFCHR,
            mode: 0o666,
            major: *ma,
            minor: *mi,
            uid: 0,
            gid: 0,
        })
        .collect();
    let devs = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .cloned()
        .unwrap_or_default();
    for d in devs {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let plan = DevicePlan {
            rel: mounts::rel_cstring(d.path()),
            host: mounts::cstring(d.path()),
            kind,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            major: d.major() as u64,
            minor: d.minor() as u64,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        // A listed device replaces a default one of the same path.
        out.retain(|o| o.rel != plan.rel);
        out.push(plan);
    }
    out
}

/// Create every device node (umask must be 0 so the modes are exact).
pub fn create(root: &Rootfs<'_>, devs: &[DevicePlan], bind_only: bool) -> Result<(), Fail> {
    for d in devs {
        let (parent, name) = split(&d.rel);
        let pfd = root.ensure(&parent, true)?;
        let mode = Mode::from_bits_truncate(d.mode);
        let made = if bind_only {
            Err(Errno::EPERM)
        } else {
            mknodat(
                pfd.as_fd(),
                name.as_c_str(),
                d.kind,
                mode,
                libc::makedev(d.major as u32, d.minor as u32),
            )
        };
        match made {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(Errno::EPERM) => {
                // In a user namespace mknod is refused: bind the host's node instead.
                let target = root.ensure(&d.rel, false)?;
                mount(
                    Some(d.host.as_c_str()),
                    &fd_path(target.as_fd()),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND,
                    None::<&std::ffi::CStr>,
                )
                .ctx("bind mounting device", &root.show(&d.rel))?;
                continue;
            }
            Err(e) => return Err(Fail::new("mknod", &root.show(&d.rel), e)),
        }
        fchownat(
            pfd.as_fd(),
            name.as_c_str(),
            Some(Uid::from_raw(d.uid)),
            Some(Gid::from_raw(d.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx("chown", &root.show(&d.rel))?;
    }
    Ok(())
}

/// /dev/fd, stdin, stdout, stderr, ptmx, and core when the host has /proc/kcore.
pub fn symlinks(root: &Rootfs<'_>, kcore: bool) -> Result<(), Fail> {
    let dev = root.ensure(c"dev", true)?;
    let mut links = vec![
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
    ];
    if kcore {
        links.push((c"/proc/kcore", c"core"));
    }
    for (target, name) in links {
        if name == c"ptmx" {
            // The /dev tmpfs may already hold a ptmx node; the symlink to the container's devpts wins.
            let _ =
                nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                let mut p = b"dev/".to_vec();
                p.extend_from_slice(name.to_bytes());
                return Err(Fail::new(
                    "symlink",
                    &root.show(&CString::new(p).unwrap_or_default()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

fn split(rel: &CString) -> (CString, CString) {
    let b = rel.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(i) => (
            CString::new(&b[..i]).unwrap_or_default(),
            CString::new(&b[i + 1..]).unwrap_or_default(),
        ),
        None => (c".".to_owned(), rel.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_device_replaces_default() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"linux":{"devices":[
                {"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":384,"uid":5,"gid":6},
                {"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#,
        )
        .unwrap();
        let p = plan(&spec);
        assert_eq!(p.len(), 7);
        let null = p.iter().find(|d| d.rel.as_bytes() == b"dev/null").unwrap();
        assert_eq!((null.mode, null.uid, null.gid), (0o600, 5, 6));
        assert!(p
            .iter()
            .any(|d| d.rel.as_bytes() == b"dev/fuse" && d.major == 10));
    }

    #[test]
    fn dev_bind_disables_setup() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"mounts":[{"destination":"/dev","source":"/dev","options":["rbind"]}]}"#,
        )
        .unwrap();
        assert!(!needs_setup(&spec));
    }
}
