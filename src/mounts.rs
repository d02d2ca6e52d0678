//! Mounts: the plan of `mounts[]`, and the child's side of the rootfs — every
//! target is resolved inside the rootfs through fds (openat2 RESOLVE_IN_ROOT),
//! created there if missing, and mounted on through its fd, never a joined string.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::mkdirat;
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::Spec;

use crate::child::{Ctx, Fail};
use crate::mountopts::{self, MountOptions};
use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

#[derive(Debug)]
pub enum MountKind {
    /// A bind of a host path (absolute; relative sources were resolved against the bundle).
    Bind { src: CString, src_is_dir: bool },
    /// A new filesystem instance (proc, sysfs, tmpfs, devpts, mqueue, ...).
    Fs { fstype: CString, src: CString },
    /// `type: cgroup`: the host's hierarchies as the container should see them.
    Cgroup(CgroupMount),
}

#[derive(Debug)]
pub struct MountPlan {
    /// Destination relative to the rootfs ("proc", "dev/pts").
    pub dest: CString,
    pub kind: MountKind,
    pub opts: MountOptions,
    pub data: Option<CString>,
    /// An idmapped bind (`idmap`/`ridmap` or the mount's own uid/gid mappings).
    pub idmap: Option<Idmap>,
}

/// The mapping of an idmapped mount, as uid_map/gid_map lines: the mount's own
/// `uidMappings`/`gidMappings`, or the container's when the mount has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idmap {
    pub uid_map: String,
    pub gid_map: String,
    /// `ridmap`: submounts of an rbind are idmapped too.
    pub recursive: bool,
}

/// How to show cgroups at the destination.
#[derive(Debug)]
pub enum CgroupMount {
    /// Pure v2 and a new cgroup namespace: a fresh cgroup2 mount.
    Fresh2,
    /// Bind the host's directory of our own cgroup (v2 without cgroupns).
    Bind2(CString),
    /// v1 or hybrid: a tmpfs with one bind per hierarchy, named as on the host.
    V1 { binds: Vec<(CString, CString)> },
}

#[derive(Debug, thiserror::Error)]
#[error("config.json: mounts[{index}]: {msg}")]
pub struct PlanError {
    pub index: usize,
    pub msg: String,
}

/// Turn `mounts[]` into mount plans: options parsed, paths made C strings.
pub fn plan(
    spec: &Spec,
    bundle: &Path,
    new_cgroupns: bool,
    cg: &crate::cgroups::Cgroup,
) -> Result<Vec<MountPlan>, PlanError> {
    let mut out = Vec::new();
    for (index, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let err = |msg: String| PlanError { index, msg };
        let opts = mountopts::parse(m.options().as_deref().unwrap_or_default()).map_err(err)?;
        let dest = rel_cstring(m.destination());
        let typ = m.typ().as_deref().unwrap_or("");
        let kind = if opts.is_bind() || typ == "bind" {
            let src = m
                .source()
                .as_ref()
                .ok_or_else(|| err("a bind mount needs a source".into()))?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            let meta = std::fs::metadata(&src).map_err(|e| {
                let errno = e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO);
                err(format!("bind source {}: {errno}", src.display()))
            })?;
            MountKind::Bind {
                src: cstring(&src),
                src_is_dir: meta.is_dir(),
            }
        } else if typ == "cgroup" || typ == "cgroup2" {
            MountKind::Cgroup(cgroup_plan(new_cgroupns, cg))
        } else {
            let src = m
                .source()
                .as_ref()
                .map(|s| cstring(s))
                .unwrap_or_else(|| CString::new(typ).unwrap_or_default());
            MountKind::Fs {
                fstype: CString::new(typ).map_err(|_| err("type has a NUL byte".into()))?,
                src,
            }
        };
        let mut opts = opts;
        if opts.is_bind() {
            opts.flags |= libc::MS_BIND;
        }
        let idmap = idmap_plan(spec, m, &opts).map_err(err)?;
        if idmap.is_some() && !matches!(kind, MountKind::Bind { .. }) {
            return Err(err(
                "idmapped mounts (idmap, ridmap, uidMappings, gidMappings) must be bind mounts"
                    .into(),
            ));
        }
        let data = (!opts.data.is_empty())
            .then(|| CString::new(opts.data.clone()))
            .transpose()
            .map_err(|_| err("options have a NUL byte".into()))?;
        out.push(MountPlan {
            dest,
            kind,
            opts,
            data,
            idmap,
        });
    }
    Ok(out)
}

/// uid_map/gid_map lines ("containerID hostID size\n" each).
pub fn id_map_lines(maps: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The idmap of one mount: the mount's own mappings, else the container's.
fn idmap_plan(
    spec: &Spec,
    m: &oci_spec::runtime::Mount,
    opts: &MountOptions,
) -> Result<Option<Idmap>, String> {
    let (own_u, own_g) = (m.uid_mappings().as_deref(), m.gid_mappings().as_deref());
    if opts.idmap.is_none() && own_u.is_none() && own_g.is_none() {
        return Ok(None);
    }
    let (u, g) = match (own_u, own_g) {
        (Some(u), Some(g)) => (u, g),
        (None, None) => {
            let l = spec.linux().as_ref();
            (
                l.and_then(|l| l.uid_mappings().as_deref())
                    .unwrap_or_default(),
                l.and_then(|l| l.gid_mappings().as_deref())
                    .unwrap_or_default(),
            )
        }
        (Some(_), None) => return Err("uidMappings given without gidMappings".into()),
        (None, Some(_)) => return Err("gidMappings given without uidMappings".into()),
    };
    if u.is_empty() || g.is_empty() {
        return Err("an idmapped mount needs uidMappings and gidMappings, on the mount or in linux.uidMappings/gidMappings".into());
    }
    for (name, list) in [("uidMappings", u), ("gidMappings", g)] {
        if let Some(i) = list.iter().position(|x| x.size() == 0) {
            return Err(format!("{name}[{i}].size: must be greater than 0"));
        }
    }
    Ok(Some(Idmap {
        uid_map: id_map_lines(u),
        gid_map: id_map_lines(g),
        recursive: opts.idmap == Some(true),
    }))
}

/// The container's own cgroup on each hierarchy, shown where the host has it.
fn cgroup_plan(new_cgroupns: bool, cg: &crate::cgroups::Cgroup) -> CgroupMount {
    use crate::cgroups::Mode;
    let c = |p: &Path| cstring(p);
    match cg.mode {
        Mode::Unified if new_cgroupns => CgroupMount::Fresh2,
        Mode::Unified => CgroupMount::Bind2(cg.unified.as_deref().map(c).unwrap_or_default()),
        Mode::Hybrid | Mode::Legacy => {
            let mut binds: Vec<(CString, CString)> = cg
                .v1
                .iter()
                .map(|d| (CString::new(d.name.clone()).unwrap_or_default(), c(&d.path)))
                .collect();
            if let Some(u) = &cg.unified {
                binds.push((c"unified".to_owned(), c(u)));
            }
            CgroupMount::V1 { binds }
        }
    }
}

pub fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// "/dev/pts" -> "dev/pts"; "/" -> ".".
pub fn rel_cstring(p: &Path) -> CString {
    let s = p.as_os_str().as_bytes();
    let s = s.trim_ascii_start();
    let trimmed: &[u8] = {
        let mut t = s;
        while let [b'/', rest @ ..] = t {
            t = rest;
        }
        t
    };
    if trimmed.is_empty() {
        c".".to_owned()
    } else {
        CString::new(trimmed).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Child side: everything below runs in the container's init, before pivot_root.

/// The rootfs, opened once: every operation is relative to it.
pub struct Rootfs<'a> {
    pub fd: OwnedFd,
    /// Host path, for error messages only.
    pub host: &'a CStr,
}

/// The `/proc/self/fd/N` path of `fd` (host procfs; valid before pivot_root).
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl<'a> Rootfs<'a> {
    /// Make the host mounts private to us, bind the rootfs onto itself (pivot_root
    /// needs a mount point) and open it.
    pub fn prepare(host: &'a CStr, propagation: libc::c_ulong) -> Result<Self, Fail> {
        mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::from_bits_retain(propagation),
            None::<&CStr>,
        )
        .ctx("setting propagation of", b"/")?;
        // After a recursive slave, private or unbindable change nothing is shared
        // any more: no need to read mountinfo for the rootfs's parent mount.
        if propagation & libc::MS_REC == 0 || propagation & libc::MS_SHARED != 0 {
            make_parent_private(host)?;
        }
        mount(
            Some(host),
            host,
            None::<&CStr>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&CStr>,
        )
        .ctx("bind mounting rootfs", host.to_bytes())?;
        let fd = sys::openat2(cwd_fd(), host, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .ctx("opening rootfs", host.to_bytes())?;
        Ok(Rootfs { fd, host })
    }

    /// Host-side path of `rel` for messages: "<rootfs>/<rel>".
    pub fn show(&self, rel: &CStr) -> Vec<u8> {
        let mut v = self.host.to_bytes().to_vec();
        v.push(b'/');
        v.extend_from_slice(rel.to_bytes());
        v
    }

    /// Open `rel` inside the rootfs: symlinks and ".." resolve as if the rootfs were "/".
    pub fn open(&self, rel: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        sys::openat2(
            self.fd.as_fd(),
            rel,
            libc::O_PATH | flags,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// Open `rel`, creating it (and its parents) inside the rootfs if missing.
    /// A dangling symlink on the way is followed and its target created inside the rootfs.
    pub fn ensure(&self, rel: &CStr, dir: bool) -> Result<OwnedFd, Fail> {
        self.ensure_depth(rel.to_bytes(), dir, 0)
            .ctx("creating mount target", &self.show(rel))
    }

    fn ensure_depth(&self, rel: &[u8], dir: bool, depth: u32) -> Result<OwnedFd, Errno> {
        if depth > 40 {
            return Err(Errno::ELOOP);
        }
        let c = CString::new(rel).map_err(|_| Errno::EINVAL)?;
        let flags = if dir { libc::O_DIRECTORY } else { 0 };
        match self.open(&c, flags) {
            Err(Errno::ENOENT) => {}
            r => return r,
        }
        let (parent, name) = split_last(rel);
        if name.is_empty() || name == b"." || name == b".." {
            return Err(Errno::ENOENT);
        }
        // A top-level entry's parent is the rootfs itself (openat2 of "" is ENOENT).
        let parent_rel: &[u8] = if parent.is_empty() { b"." } else { parent };
        let pfd = self.ensure_depth(parent_rel, true, depth + 1)?;
        let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
        let made = if dir {
            mkdirat(
                pfd.as_fd(),
                cname.as_c_str(),
                Mode::from_bits_truncate(0o755),
            )
        } else {
            sys::openat2(
                pfd.as_fd(),
                &cname,
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY,
                0o644,
                sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
            )
            .map(drop)
        };
        match made {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // A dangling symlink: create what it points at, inside the rootfs.
                let target = sys::readlinkat(pfd.as_fd(), &cname)?;
                let next = if target.starts_with(b"/") {
                    target
                } else {
                    let mut p = parent.to_vec();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&target);
                    p
                };
                let next = clamp_in_root(&next);
                return self.ensure_depth(&next, dir, depth + 1);
            }
            Err(e) => return Err(e),
        }
        self.open(&c, flags)
    }

    /// Perform one planned mount.
    pub fn mount_one(&self, m: &MountPlan) -> Result<(), Fail> {
        self.mount_one_from(m, None)
    }

    /// Perform one planned mount; a bind whose source the parent opened
    /// (`source`: an O_PATH fd, or for an idmapped mount a detached tree) uses it.
    pub fn mount_one_from(
        &self,
        m: &MountPlan,
        source: Option<BorrowedFd<'_>>,
    ) -> Result<(), Fail> {
        self.refuse_inside_proc(m)?;
        match &m.kind {
            MountKind::Bind { src, src_is_dir } => {
                let target = self.ensure(&m.dest, *src_is_dir)?;
                let mut flags = MsFlags::MS_BIND;
                if m.opts.is_recursive_bind() {
                    flags |= MsFlags::MS_REC;
                }
                match source {
                    Some(tree) if m.idmap.is_some() => sys::move_mount(tree, target.as_fd())
                        .ctx_mount("moving idmapped mount", src, &self.show(&m.dest))?,
                    // The parent opened the source: no path lookup with our (mapped) credentials.
                    Some(fd) => mount(
                        Some(fd_path(fd).as_path()),
                        &fd_path(target.as_fd()),
                        None::<&CStr>,
                        flags,
                        None::<&CStr>,
                    )
                    .ctx_mount("bind mounting", src, &self.show(&m.dest))?,
                    None => mount(
                        Some(src.as_c_str()),
                        &fd_path(target.as_fd()),
                        None::<&CStr>,
                        flags,
                        None::<&CStr>,
                    )
                    .ctx_mount("bind mounting", src, &self.show(&m.dest))?,
                }
                let extra = m.opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
                if extra != 0 {
                    self.remount_bind(&m.dest, extra)?;
                }
            }
            MountKind::Fs { fstype, src } => {
                let fs = fstype.to_bytes();
                // proc and sysfs go on real directories only: a symlink could aim them elsewhere.
                let target = if fs == b"proc" || fs == b"sysfs" {
                    let fd = self.ensure(&m.dest, true)?;
                    self.check_no_symlink(&m.dest)?;
                    fd
                } else {
                    self.ensure(&m.dest, true)?
                };
                let flags = m.opts.flags & !(libc::MS_BIND | libc::MS_REC);
                if m.opts.tmpcopyup && fs == b"tmpfs" {
                    self.tmpcopyup(m, target, flags)?;
                    return self.after_mount(m);
                }
                mount(
                    Some(src.as_c_str()),
                    &fd_path(target.as_fd()),
                    Some(fstype.as_c_str()),
                    MsFlags::from_bits_retain(flags),
                    m.data.as_deref(),
                )
                .ctx_mount("mounting", fstype, &self.show(&m.dest))?;
                if fs == b"proc" {
                    self.check_proc(&m.dest)?;
                }
            }
            MountKind::Cgroup(cg) => self.mount_cgroup(m, cg)?,
        }
        // Only procfs may cover /proc (CVE-2019-16884), whatever path led there.
        if let (Ok(d), Ok(p)) = (self.open(&m.dest, 0), self.open(c"proc", 0)) {
            if let (Ok(d), Ok(p)) = (fstat(d.as_fd()), fstat(p.as_fd())) {
                if (d.st_dev, d.st_ino) == (p.st_dev, p.st_ino) {
                    self.check_proc(c"proc")?;
                }
            }
        }
        self.after_mount(m)
    }

    /// Propagation and recursive attributes, applied to the new mount.
    fn after_mount(&self, m: &MountPlan) -> Result<(), Fail> {
        if m.opts.propagation.is_empty() && !m.opts.has_rec_attr() {
            return Ok(());
        }
        let fd = self
            .open(&m.dest, 0)
            .ctx("reopening", &self.show(&m.dest))?;
        for p in &m.opts.propagation {
            mount(
                None::<&CStr>,
                &fd_path(fd.as_fd()),
                None::<&CStr>,
                MsFlags::from_bits_retain(*p),
                None::<&CStr>,
            )
            .ctx("setting propagation of", &self.show(&m.dest))?;
        }
        if m.opts.has_rec_attr() {
            sys::mount_setattr(
                fd.as_fd(),
                true,
                m.opts.rec_attr_set,
                m.opts.rec_attr_clr,
                None,
            )
            .ctx("setting recursive mount attributes on", &self.show(&m.dest))?;
        }
        Ok(())
    }

    /// Remount the bind at `rel` with `flags` (ro, nosuid...), keeping the flags
    /// the kernel locks (a remount may not clear them).
    pub fn remount_bind(&self, rel: &CStr, flags: libc::c_ulong) -> Result<(), Fail> {
        let fd = self.open(rel, 0).ctx("reopening", &self.show(rel))?;
        let locked = locked_flags(fd.as_fd());
        mount(
            None::<&CStr>,
            &fd_path(fd.as_fd()),
            None::<&CStr>,
            MsFlags::from_bits_retain(libc::MS_REMOUNT | libc::MS_BIND | flags | locked),
            None::<&CStr>,
        )
        .ctx("remounting", &self.show(rel))
    }

    fn check_no_symlink(&self, rel: &CStr) -> Result<(), Fail> {
        sys::openat2(
            self.fd.as_fd(),
            rel,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS,
        )
        .map(drop)
        .ctx("mount target is a symlink:", &self.show(rel))
    }

    /// Nothing but procfs may be mounted inside /proc (CVE-2019-16884: a mount
    /// over /proc/self/attr silently voids the LSM label written there), except
    /// runc's lxcfs allow-list. Checked on the resolved target, whatever path led there.
    fn refuse_inside_proc(&self, m: &MountPlan) -> Result<(), Fail> {
        const LXCFS: &[&[u8]] = &[
            b"proc/cpuinfo",
            b"proc/diskstats",
            b"proc/meminfo",
            b"proc/stat",
            b"proc/swaps",
            b"proc/uptime",
            b"proc/loadavg",
            b"proc/slabinfo",
            b"proc/sys/kernel/ns_last_pid",
            b"proc/sys/crypto/fips_enabled",
        ];
        if matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype.to_bytes() == b"proc")
            || LXCFS.contains(&m.dest.to_bytes())
        {
            return Ok(());
        }
        let Ok(fd) = self.open(&m.dest, 0) else {
            return Ok(());
        };
        match nix::sys::statfs::fstatfs(fd.as_fd()) {
            Ok(st) if crate::sys::fs_magic(&st) == PROC_SUPER_MAGIC => Err(Fail::new(
                "refusing a mount inside /proc at",
                &self.show(&m.dest),
                Errno::EPERM,
            )),
            _ => Ok(()),
        }
    }

    fn check_proc(&self, rel: &CStr) -> Result<(), Fail> {
        let fd = self
            .open(rel, libc::O_DIRECTORY)
            .ctx("reopening", &self.show(rel))?;
        let st = nix::sys::statfs::fstatfs(fd.as_fd()).ctx("statfs", &self.show(rel))?;
        if crate::sys::fs_magic(&st) != PROC_SUPER_MAGIC {
            return Err(Fail::new(
                "mounted proc is not procfs at",
                &self.show(rel),
                Errno::EINVAL,
            ));
        }
        Ok(())
    }

    /// tmpcopyup: a new tmpfs that starts with the target's previous contents.
    fn tmpcopyup(&self, m: &MountPlan, target: OwnedFd, flags: libc::c_ulong) -> Result<(), Fail> {
        let show = self.show(&m.dest);
        // Keep a handle on the old directory: after the tmpfs covers it, it is still readable here.
        let old = sys::openat2(
            target.as_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_BENEATH,
        )
        .ctx("opening", &show)?;
        mount(
            Some(c"tmpfs"),
            &fd_path(target.as_fd()),
            Some(c"tmpfs"),
            MsFlags::from_bits_retain(flags & !libc::MS_RDONLY),
            m.data.as_deref(),
        )
        .ctx("mounting tmpfs on", &show)?;
        let new = self
            .open(&m.dest, libc::O_DIRECTORY)
            .ctx("reopening", &show)?;
        let newdir = sys::openat2(
            new.as_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_BENEATH,
        )
        .ctx("opening", &show)?;
        copy_tree(old.as_fd(), newdir.as_fd(), 0).ctx("copying up into", &show)?;
        if flags & libc::MS_RDONLY != 0 {
            self.remount_bind(&m.dest, libc::MS_RDONLY)?;
        }
        Ok(())
    }

    fn mount_cgroup(&self, m: &MountPlan, cg: &CgroupMount) -> Result<(), Fail> {
        let show = self.show(&m.dest);
        let target = self.ensure(&m.dest, true)?;
        self.check_no_symlink(&m.dest)?;
        let flags = m.opts.flags & !(libc::MS_BIND | libc::MS_REC);
        let tpath = fd_path(target.as_fd());
        match cg {
            CgroupMount::Fresh2 => mount(
                Some(c"cgroup2"),
                &tpath,
                Some(c"cgroup2"),
                MsFlags::from_bits_retain(flags),
                None::<&CStr>,
            )
            .ctx("mounting cgroup2 on", &show),
            CgroupMount::Bind2(src) => {
                mount(
                    Some(src.as_c_str()),
                    &tpath,
                    None::<&CStr>,
                    MsFlags::MS_BIND,
                    None::<&CStr>,
                )
                .ctx_mount("bind mounting", src, &show)?;
                self.remount_bind(&m.dest, flags)
            }
            CgroupMount::V1 { binds } => {
                mount(
                    Some(c"tmpfs"),
                    &tpath,
                    Some(c"tmpfs"),
                    MsFlags::from_bits_retain(flags & !libc::MS_RDONLY),
                    Some(c"mode=755"),
                )
                .ctx("mounting tmpfs on", &show)?;
                for (name, src) in binds {
                    let mut rel = m.dest.to_bytes().to_vec();
                    rel.push(b'/');
                    rel.extend_from_slice(name.to_bytes());
                    let rel = CString::new(rel).unwrap_or_default();
                    let t = self.ensure(&rel, true)?;
                    mount(
                        Some(src.as_c_str()),
                        &fd_path(t.as_fd()),
                        None::<&CStr>,
                        MsFlags::MS_BIND,
                        None::<&CStr>,
                    )
                    .ctx_mount("bind mounting", src, &self.show(&rel))?;
                    self.remount_bind(
                        &rel,
                        flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    )?;
                }
                if flags & libc::MS_RDONLY != 0 {
                    let fd = self.open(&m.dest, 0).ctx("reopening", &show)?;
                    mount(
                        None::<&CStr>,
                        &fd_path(fd.as_fd()),
                        None::<&CStr>,
                        MsFlags::from_bits_retain(libc::MS_REMOUNT | flags),
                        Some(c"mode=755"),
                    )
                    .ctx("remounting read-only", &show)?;
                }
                Ok(())
            }
        }
    }

    /// readonlyPaths[]: bind onto itself, then remount read-only. Missing paths are skipped.
    pub fn make_readonly(&self, rel: &CStr) -> Result<(), Fail> {
        let fd = match self.open(rel, 0) {
            Err(Errno::ENOENT) => return Ok(()),
            r => r.ctx("opening", &self.show(rel))?,
        };
        let p = fd_path(fd.as_fd());
        mount(
            Some(p.as_path()),
            &p,
            None::<&CStr>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&CStr>,
        )
        .ctx("bind mounting", &self.show(rel))?;
        self.remount_bind(rel, libc::MS_RDONLY)
    }

    /// maskedPaths[]: files get /dev/null (verified 1:3), directories a read-only tmpfs.
    pub fn mask(&self, rel: &CStr, devnull: BorrowedFd<'_>) -> Result<(), Fail> {
        let fd = match self.open(rel, 0) {
            Err(Errno::ENOENT) => return Ok(()),
            r => r.ctx("opening", &self.show(rel))?,
        };
        let st = fstat(fd.as_fd()).ctx("stat", &self.show(rel))?;
        let p = fd_path(fd.as_fd());
        if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR {
            mount(
                Some(c"tmpfs"),
                &p,
                Some(c"tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&CStr>,
            )
            .ctx("masking", &self.show(rel))
        } else {
            mount(
                Some(fd_path(devnull).as_path()),
                &p,
                None::<&CStr>,
                MsFlags::MS_BIND,
                None::<&CStr>,
            )
            .ctx("masking", &self.show(rel))
        }
    }

    /// The rootfs's own /dev/null, checked to be the real character device 1:3.
    pub fn devnull(&self) -> Result<OwnedFd, Fail> {
        let fd = self
            .open(c"dev/null", 0)
            .ctx("opening", &self.show(c"dev/null"))?;
        let st = fstat(fd.as_fd()).ctx("stat", &self.show(c"dev/null"))?;
        let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        if !is_chr || libc::major(st.st_rdev) != 1 || libc::minor(st.st_rdev) != 3 {
            return Err(Fail::new(
                "not the null device:",
                &self.show(c"dev/null"),
                Errno::EINVAL,
            ));
        }
        Ok(fd)
    }

    /// root.readonly: the rootfs bind itself becomes read-only (not its submounts).
    pub fn make_root_readonly(&self) -> Result<(), Fail> {
        let locked = locked_flags(self.fd.as_fd());
        mount(
            None::<&CStr>,
            &fd_path(self.fd.as_fd()),
            None::<&CStr>,
            MsFlags::from_bits_retain(libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | locked),
            None::<&CStr>,
        )
        .ctx("remounting rootfs read-only", self.host.to_bytes())
    }

    /// Switch to the rootfs: pivot_root(".", ".") and detach the old root, or with
    /// --no-pivot move the rootfs onto "/" and chroot (for ramfs roots).
    pub fn switch(&self, no_pivot: bool) -> Result<(), Fail> {
        let host = self.host.to_bytes();
        fchdir(self.fd.as_fd()).ctx("chdir to rootfs", host)?;
        if no_pivot {
            self.hide_host_proc_sys()?;
            mount(
                Some(c"."),
                c"/",
                None::<&CStr>,
                MsFlags::MS_MOVE,
                None::<&CStr>,
            )
            .ctx("moving rootfs to /", host)?;
            chroot(c".").ctx("chroot", host)?;
        } else {
            // "." names the new root, below the old one stacked on it after pivot_root: to
            // reach the old root, chdir to it through an fd opened before (as runc does).
            let old_root = sys::openat2(cwd_fd(), c"/", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
                .ctx("opening old root", b"/")?;
            pivot_root(c".", c".").ctx("pivot_root", host)?;
            fchdir(old_root.as_fd()).ctx("chdir to old root", b"/")?;
            // The old root is stacked on "."; keep its events from reaching the host, then drop it.
            mount(
                None::<&CStr>,
                c".",
                None::<&CStr>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&CStr>,
            )
            .ctx("making old root a slave", host)?;
            umount2(c".", MntFlags::MNT_DETACH).ctx("unmounting old root", host)?;
        }
        chdir(c"/").ctx("chdir", b"/")
    }

    /// --no-pivot keeps the old root's mounts in our namespace, under the rootfs moved
    /// onto "/": unreachable by path, but a full procfs or sysfs among them lets the
    /// kernel allow fresh, unmasked procfs mounts inside the container (its
    /// mount_too_revealing check), defeating maskedPaths. Detach them (covering with a
    /// tmpfs where that is not allowed), as runc's msMoveRoot does.
    fn hide_host_proc_sys(&self) -> Result<(), Fail> {
        let info = sys::read_small("/proc/self/mountinfo")
            .map_err(|e| Fail::io("reading", b"/proc/self/mountinfo", &e))?;
        let mounts: Vec<MountInfo<'_>> = info.lines().filter_map(MountInfo::parse).collect();
        let root_id = mount_id(self.fd.as_fd(), self.host)?;
        let under_rootfs = |m: &MountInfo<'_>| {
            let mut id = m.id;
            // Bounded: a parent cycle (the namespace root is its own parent) ends it.
            for _ in 0..=mounts.len() {
                if id == root_id {
                    return true;
                }
                match mounts.iter().find(|p| p.id == id) {
                    Some(p) if p.parent != id => id = p.parent,
                    _ => return false,
                }
            }
            false
        };
        for m in mounts
            .iter()
            .filter(|m| matches!(m.fstype, "proc" | "sysfs"))
        {
            if under_rootfs(m) {
                continue;
            }
            let point = m.point()?;
            let shown = point.to_bytes();
            // A slave first, so that the unmount does not reach the host's peers.
            match mount(
                None::<&CStr>,
                point.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&CStr>,
            ) {
                // Gone with a mount detached before it.
                Err(Errno::ENOENT | Errno::EINVAL) => continue,
                r => r.ctx("making a host mount a slave:", shown)?,
            }
            match umount2(point.as_c_str(), MntFlags::MNT_DETACH) {
                Ok(()) => {}
                Err(Errno::EINVAL | Errno::EPERM) => mount(
                    Some(c"tmpfs"),
                    point.as_c_str(),
                    Some(c"tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    None::<&CStr>,
                )
                .ctx("covering a host mount with tmpfs:", shown)?,
                Err(e) => return Err(Fail::new("unmounting a host mount:", shown, e)),
            }
        }
        Ok(())
    }
}

/// One line of /proc/self/mountinfo (also read by cgroups for the v1 hierarchies).
pub(crate) struct MountInfo<'a> {
    pub id: u64,
    pub parent: u64,
    /// Escaped as in the file (\040 for a space...): see [`MountInfo::point`].
    raw_point: &'a str,
    /// Optional fields: `shared:N`, `master:N`...
    pub optional: Vec<&'a str>,
    pub fstype: &'a str,
    /// Per-superblock options (for a v1 cgroup mount: its controllers).
    pub super_opts: &'a str,
}

impl<'a> MountInfo<'a> {
    pub fn parse(line: &'a str) -> Option<Self> {
        let (pre, post) = line.split_once(" - ")?;
        let f: Vec<&str> = pre.split(' ').collect();
        if f.len() < 6 {
            return None;
        }
        let mut post = post.split(' ');
        Some(MountInfo {
            id: f[0].parse().ok()?,
            parent: f[1].parse().ok()?,
            raw_point: f[4],
            optional: f[6..].to_vec(),
            fstype: post.next()?,
            super_opts: post.nth(1).unwrap_or(""),
        })
    }

    /// The mount point: mountinfo escapes space, tab, newline and backslash as \ooo.
    pub fn point_str(&self) -> String {
        let mut point = self.raw_point.to_string();
        for (esc, c) in [
            ("\\040", " "),
            ("\\011", "\t"),
            ("\\012", "\n"),
            ("\\134", "\\"),
        ] {
            point = point.replace(esc, c);
        }
        point
    }

    fn point(&self) -> Result<CString, Fail> {
        CString::new(self.point_str()).map_err(|_| Fail::msg("mount point with NUL", b""))
    }
}

/// The id of the mount that `fd` is on (its fdinfo's mnt_id).
fn mount_id(fd: BorrowedFd<'_>, shown: &CStr) -> Result<u64, Fail> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|e| Fail::io("reading fdinfo of", shown.to_bytes(), &e))?;
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Fail::msg("no mnt_id in the fdinfo of", shown.to_bytes()))
}

/// MS_* flags that an unprivileged remount must keep (nosuid, nodev, noexec, atime).
fn locked_flags(fd: BorrowedFd<'_>) -> libc::c_ulong {
    use nix::sys::statvfs::{fstatvfs, FsFlags};
    // Not named by nix on every libc; the kernel's value.
    const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(4096);
    let Ok(st) = fstatvfs(fd) else { return 0 };
    let f = st.flags();
    let mut out = 0;
    for (s, m) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    out
}

/// runc's rootfsParentMountPrivate: if the mount holding the rootfs is shared (say
/// rootfsPropagation "shared"), make it private, or the rootfs bind would propagate to
/// its peers and pivot_root would fail with EINVAL.
fn make_parent_private(host: &CStr) -> Result<(), Fail> {
    let fd = sys::openat2(cwd_fd(), host, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .ctx("opening rootfs", host.to_bytes())?;
    let id = mount_id(fd.as_fd(), host)?;
    let info = sys::read_small("/proc/self/mountinfo")
        .map_err(|e| Fail::io("reading", b"/proc/self/mountinfo", &e))?;
    let Some(m) = info
        .lines()
        .filter_map(MountInfo::parse)
        .find(|m| m.id == id)
    else {
        return Ok(());
    };
    if !m.optional.iter().any(|o| o.starts_with("shared:")) {
        return Ok(());
    }
    let point = m.point()?;
    mount(
        None::<&CStr>,
        point.as_c_str(),
        None::<&CStr>,
        MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )
    .ctx(
        "making the rootfs's parent mount private:",
        point.to_bytes(),
    )
}

fn cwd_fd() -> BorrowedFd<'static> {
    // AT_FDCWD is a valid "directory fd" for *at calls; a path given here is absolute anyway.
    nix::fcntl::AT_FDCWD
}

/// ("a/b", "c") from "a/b/c"; ("", "c") from "c".
fn split_last(p: &[u8]) -> (&[u8], &[u8]) {
    let p = trim_slashes(p);
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (trim_slashes(&p[..i]), &p[i + 1..]),
        None => (&[], p),
    }
}

fn trim_slashes(mut p: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = p {
        p = rest;
    }
    while let [b'/', rest @ ..] = p {
        p = rest;
    }
    p
}

/// Normalise a path lexically with ".." clamped at the root; the result is relative.
pub fn clamp_in_root(p: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

/// Copy a directory tree (files, dirs, symlinks; modes and owners) between two dir fds.
fn copy_tree(from: BorrowedFd<'_>, to: BorrowedFd<'_>, depth: u32) -> Result<(), Errno> {
    use nix::dir::{Dir, Type};
    use nix::fcntl::OFlag;
    if depth > 64 {
        return Err(Errno::ELOOP);
    }
    // Born close-on-exec (F_DUPFD_CLOEXEC): never a window for an exec to inherit it.
    let dup = from
        .try_clone_to_owned()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EMFILE)))?;
    let mut dir = Dir::from_fd(dup)?;
    let entries: Vec<(CString, Option<Type>)> = dir
        .iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != c"." && e.file_name() != c"..")
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect();
    for (name, _) in entries {
        let st = nix::sys::stat::fstatat(
            from,
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                mkdirat(to, name.as_c_str(), mode)?;
                let s = nix::fcntl::openat(
                    from,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let d = nix::fcntl::openat(
                    to,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                copy_tree(s.as_fd(), d.as_fd(), depth + 1)?;
            }
            libc::S_IFREG => {
                let s = nix::fcntl::openat(
                    from,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let d = nix::fcntl::openat(
                    to,
                    name.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    mode,
                )?;
                let mut s = std::fs::File::from(s);
                let mut d = std::fs::File::from(d);
                std::io::copy(&mut s, &mut d)
                    .map_err(|e| e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO))?;
            }
            libc::S_IFLNK => {
                let target = sys::readlinkat(from, &name)?;
                let target = CString::new(target).map_err(|_| Errno::EINVAL)?;
                nix::unistd::symlinkat(target.as_c_str(), to, name.as_c_str())?;
            }
            _ => continue,
        }
        let _ = nix::unistd::fchownat(
            to,
            name.as_c_str(),
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

pub fn host_path(c: &CStr) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let l = "36 25 0:31 / /sys/fs/cgroup/cpu\\040x rw,nosuid shared:9 master:2 - cgroup cgroup rw,cpu";
        let m = MountInfo::parse(l).unwrap();
        assert_eq!((m.id, m.parent), (36, 25));
        assert_eq!(m.point_str(), "/sys/fs/cgroup/cpu x");
        assert_eq!(m.optional, ["shared:9", "master:2"]);
        assert_eq!((m.fstype, m.super_opts), ("cgroup", "rw,cpu"));
        assert!(MountInfo::parse("36 25 0:31 / /x rw").is_none());
    }

    #[test]
    fn relative_destinations() {
        assert_eq!(rel_cstring(Path::new("/dev/pts")).as_bytes(), b"dev/pts");
        assert_eq!(rel_cstring(Path::new("//proc")).as_bytes(), b"proc");
        assert_eq!(rel_cstring(Path::new("/")).as_bytes(), b".");
    }

    #[test]
    fn clamping_never_leaves_the_root() {
        assert_eq!(clamp_in_root(b"../../etc/passwd"), b"etc/passwd");
        assert_eq!(clamp_in_root(b"/a/b/../c"), b"a/c");
        assert_eq!(clamp_in_root(b"a/../../.."), b".");
    }

    #[test]
    fn split_last_component() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(split_last(b"/a/"), (&b""[..], &b"a"[..]));
    }
}
