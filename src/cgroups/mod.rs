//! cgroups: one container's cgroup on every hierarchy the host has — v1
//! (legacy), v1 plus the unified hierarchy (hybrid), or v2 alone (unified).
//!
//! The paths are decided in the parent before clone ([`Cgroup::plan`]) and
//! recorded in state.json, so later commands never parse config.json again.
//! The resource writers live in [`v1`] and [`v2`], device rules in [`devices`]
//! (v1 files, v2 eBPF), statistics in [`stats`].

pub mod devices;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Where cgroup hierarchies are mounted on every host we support.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// cgroup v2 only.
    Unified,
    /// v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified.
    Hybrid,
    /// v1 only.
    Legacy,
}

/// The host's cgroup layout, read from /sys/fs/cgroup.
pub fn detect() -> Mode {
    let is_v2 = |p: &str| {
        nix::sys::statfs::statfs(p)
            .map(|s| crate::sys::fs_magic(&s) == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    };
    if is_v2(CGROUP_ROOT) {
        Mode::Unified
    } else if is_v2("/sys/fs/cgroup/unified") {
        Mode::Hybrid
    } else {
        Mode::Legacy
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("linux.cgroupsPath: {0}")]
    Path(String),
    /// A resource the host cannot take: names the config field and the file.
    #[error("{field}: writing {value:?} to {}: {errno}", file.display())]
    Write {
        field: String,
        file: PathBuf,
        value: String,
        errno: Errno,
    },
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("{op} {}: {errno}", path.display())]
    Sys {
        op: &'static str,
        path: PathBuf,
        errno: Errno,
    },
}

impl CgroupError {
    pub fn sys(op: &'static str, path: &Path, e: std::io::Error) -> Self {
        CgroupError::Sys {
            op,
            path: path.to_path_buf(),
            errno: errno_of(&e),
        }
    }
}

pub fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

/// Write `value` to `dir/file`, naming the config field on failure.
pub fn write_file(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    check_name(file, field)?;
    let path = dir.join(file);
    // No O_CREAT: on cgroupfs a missing file must say ENOENT, not EACCES.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| CgroupError::Write {
            field: field.to_string(),
            file: path,
            value: value.to_string(),
            errno: errno_of(&e),
        })
}

/// A cgroup file name must be one plain component: nothing may escape the cgroup dir.
pub fn check_name(file: &str, field: &str) -> Result<(), CgroupError> {
    if file.is_empty() || file.contains('/') || file == "." || file == ".." || file.contains('\0') {
        return Err(CgroupError::Invalid {
            field: field.to_string(),
            msg: format!("{file:?} is not a cgroup file name"),
        });
    }
    Ok(())
}

/// One v1 hierarchy: its name (the mount dir's name, e.g. "memory", "cpu,cpuacct",
/// "systemd"), its controllers and the container's directory in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Dir {
    pub name: String,
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

/// A container's cgroup on every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub mode: Mode,
    /// The path below each hierarchy's root, e.g. "/keel/c1".
    pub rel: PathBuf,
    /// v1 hierarchies (legacy and hybrid).
    #[serde(default)]
    pub v1: Vec<V1Dir>,
    /// The unified directory (unified mode, or the hybrid's unified hierarchy).
    pub unified: Option<PathBuf>,
    /// Every directory `create` made, parents before children: `destroy`
    /// removes the parents among them too (the leaves always go, as in runc),
    /// so `/keel/c1` leaves no `/keel` that keel made behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub made: Vec<PathBuf>,
}

/// `linux.cgroupsPath` checked: absolute, or relative (to the caller's cgroup), no "..",
/// and a cgroup of the container's own: `delete` removes it with everything below.
fn clean_path(p: &str) -> Result<PathBuf, CgroupError> {
    let path = Path::new(p);
    let mut names = 0;
    for c in path.components() {
        match c {
            Component::Normal(_) => names += 1,
            Component::RootDir | Component::CurDir => {}
            _ => return Err(CgroupError::Path(format!("{p:?} may not contain \"..\""))),
        }
    }
    if names == 0 {
        let which = if path.is_absolute() {
            "the root of every cgroup hierarchy"
        } else {
            "keel's own cgroup"
        };
        return Err(CgroupError::Path(format!(
            "{p:?} is {which}: the container needs a cgroup of its own (delete removes it)"
        )));
    }
    Ok(path.to_path_buf())
}

/// The caller's cgroup on each hierarchy, from /proc/self/cgroup: (controllers, path).
fn own_cgroups() -> Vec<(String, PathBuf)> {
    let s = crate::sys::read_small("/proc/self/cgroup").unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            Some((it.next()?.to_string(), PathBuf::from(it.next()?)))
        })
        .collect()
}

/// v1 hierarchies mounted under /sys/fs/cgroup: (mount dir, controllers).
fn v1_hierarchies() -> Vec<(PathBuf, Vec<String>)> {
    let info = crate::sys::read_small("/proc/self/mountinfo").unwrap_or_default();
    let cgroup = crate::sys::read_small("/proc/self/cgroup").unwrap_or_default();
    parse_v1_hierarchies(&info, &cgroup)
}

/// [`v1_hierarchies`] from the text of mountinfo and /proc/self/cgroup. A
/// mount's controllers are the super options that /proc/self/cgroup lists as
/// controllers (as runc does): the rest (`rw`, `xattr`, `noprefix`,
/// `clone_children`, `cpuset_v2_mode`, `release_agent=`...) are mount flags,
/// and keeping one would make the hierarchy match no line there.
fn parse_v1_hierarchies(mountinfo: &str, proc_cgroup: &str) -> Vec<(PathBuf, Vec<String>)> {
    let known: Vec<&str> = proc_cgroup
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty())
        .collect();
    let mut out = Vec::new();
    for m in mountinfo
        .lines()
        .filter_map(crate::mounts::MountInfo::parse)
    {
        if m.fstype != "cgroup" {
            continue;
        }
        let mnt = PathBuf::from(m.point_str());
        if !mnt.starts_with(CGROUP_ROOT) {
            continue;
        }
        let ctrls: Vec<String> = m
            .super_opts
            .split(',')
            .filter(|o| known.contains(o))
            .map(str::to_string)
            .collect();
        out.push((mnt, ctrls));
    }
    out
}

impl Cgroup {
    /// Decide the container's cgroup paths (no side effects). `cgroups_path` is
    /// `linux.cgroupsPath`: absolute from each hierarchy's root, relative to the
    /// caller's cgroup, or `/<id>` when empty.
    pub fn plan(cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, CgroupError> {
        let given = cgroups_path.filter(|p| !p.is_empty());
        if let Some(p) = given {
            if p.contains(':') && !p.starts_with('/') {
                return Err(CgroupError::Path(format!(
                    "{p:?} is a systemd slice:prefix:name path; run keel with --systemd-cgroup (not supported yet) or give a cgroupfs path"
                )));
            }
        }
        let wanted = clean_path(given.unwrap_or(&format!("/{id}")))?;
        Ok(Self::locate(wanted))
    }

    /// The caller's own cgroup on every hierarchy: where the init of a
    /// container without a cgroup of its own stays, and what its cgroup mount
    /// shows.
    pub fn callers() -> Cgroup {
        Self::locate(PathBuf::new())
    }

    /// `wanted` on every hierarchy: absolute from its root, else relative to
    /// the caller's cgroup there (the caller's cgroup itself when empty).
    fn locate(wanted: PathBuf) -> Cgroup {
        let own = own_cgroups();
        let resolve = |key: &dyn Fn(&str) -> bool| -> PathBuf {
            if wanted.is_absolute() {
                return wanted.clone();
            }
            let base = own
                .iter()
                .find(|(c, _)| key(c))
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            if wanted.as_os_str().is_empty() {
                base
            } else {
                base.join(&wanted)
            }
        };
        let mode = detect();
        let unified_path = |root: &str| {
            let rel = resolve(&|c: &str| c.is_empty());
            join_rel(Path::new(root), &rel)
        };
        let (v1, unified) = match mode {
            Mode::Unified => (Vec::new(), Some(unified_path(CGROUP_ROOT))),
            Mode::Hybrid | Mode::Legacy => {
                let dirs = v1_hierarchies()
                    .into_iter()
                    .map(|(mnt, ctrls)| {
                        let rel = resolve(&|c: &str| {
                            let have: Vec<&str> = c.split(',').collect();
                            !c.is_empty() && ctrls.iter().all(|x| have.contains(&x.as_str()))
                        });
                        V1Dir {
                            name: mnt
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            controllers: ctrls,
                            path: join_rel(&mnt, &rel),
                        }
                    })
                    .collect();
                let unified =
                    (mode == Mode::Hybrid).then(|| unified_path("/sys/fs/cgroup/unified"));
                (dirs, unified)
            }
        };
        Cgroup {
            mode,
            rel: wanted,
            v1,
            unified,
            made: Vec::new(),
        }
    }

    /// The first directory that keel, with its effective ids, could not make
    /// (or join, when it exists), and why: only EACCES, EPERM and EROFS, the
    /// permission errors that runc's rootless mode ignores.
    pub fn denied(&self) -> Option<(PathBuf, Errno)> {
        use nix::unistd::{faccessat, AccessFlags};
        self.dirs().find_map(|d| {
            // A new cgroup is a mkdir in the nearest existing ancestor; an
            // existing one is joined through its cgroup.procs.
            let (target, mode) = if d.exists() {
                (d.join("cgroup.procs"), AccessFlags::W_OK)
            } else {
                let parent = d.ancestors().find(|a| a.exists())?;
                (parent.to_path_buf(), AccessFlags::W_OK | AccessFlags::X_OK)
            };
            match faccessat(
                nix::fcntl::AT_FDCWD,
                &target,
                mode,
                nix::fcntl::AtFlags::AT_EACCESS,
            ) {
                Err(e @ (Errno::EACCES | Errno::EPERM | Errno::EROFS)) => Some((target, e)),
                _ => None,
            }
        })
    }

    /// The v1 directory of a controller ("memory", "cpu", "freezer"...).
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    /// Every directory of this cgroup, v1 ones first.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|d| d.path.as_path())
            .chain(self.unified.as_deref())
    }

    /// mkdir on every hierarchy; on v2 enable the controllers down the path.
    /// Returns the cgroup with [`Cgroup::made`] filled in; on failure,
    /// removes every directory it made, on every hierarchy.
    pub fn create(&self) -> Result<Cgroup, CgroupError> {
        let mut made = Vec::new();
        match self.create_in(&mut made) {
            Ok(()) => Ok(Cgroup {
                made,
                ..self.clone()
            }),
            Err(e) => {
                // Nothing has joined them yet: they are empty.
                for d in made.iter().rev() {
                    let _ = fs::remove_dir(d);
                }
                Err(e)
            }
        }
    }

    fn create_in(&self, made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        for d in &self.v1 {
            mkdir_all(&d.path, made)?;
            if d.controllers.iter().any(|c| c == "cpuset") {
                v1::inherit_cpuset(&d.path)?;
            }
        }
        if let Some(u) = &self.unified {
            mkdir_all(u, made)?;
            if self.mode == Mode::Unified {
                v2::enable_controllers(Path::new(CGROUP_ROOT), u)?;
            }
        }
        Ok(())
    }

    /// Apply `linux.resources` (create, update).
    pub fn apply(&self, r: &LinuxResources, with_devices: bool) -> Result<(), CgroupError> {
        match self.mode {
            Mode::Unified => {
                let dir = self
                    .unified
                    .as_deref()
                    .expect("unified mode has a unified dir");
                v2::apply(dir, r)?;
                if with_devices {
                    devices::apply_v2(dir, r.devices().as_deref().unwrap_or_default())?;
                }
            }
            Mode::Hybrid | Mode::Legacy => {
                if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
                    return Err(CgroupError::Invalid {
                        field: "linux.resources.unified".into(),
                        msg: "cgroup v2 keys need a cgroup v2 host (this one is v1)".into(),
                    });
                }
                // Without the hierarchy the rules would be silently lost (runc fails too).
                let devices_dir = match (with_devices, self.v1_dir("devices")) {
                    (false, _) => None,
                    (true, Some(d)) => Some(d),
                    (true, None) => {
                        return Err(CgroupError::Invalid {
                            field: "linux.resources.devices".into(),
                            msg: format!(
                                "the host has no cgroup v1 devices hierarchy under {CGROUP_ROOT}, \
                                 so the device rules cannot be enforced"
                            ),
                        })
                    }
                };
                v1::apply(self, r)?;
                if let Some(d) = devices_dir {
                    devices::apply_v1(d, r.devices().as_deref().unwrap_or_default())?;
                }
            }
        }
        Ok(())
    }

    /// Move `pid` into the cgroup on every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(|e| CgroupError::sys("adding pid to", &p, e))?;
        }
        Ok(())
    }

    /// The unified directory's fd for clone3(CLONE_INTO_CGROUP) (unified mode only).
    pub fn clone_into_fd(&self) -> Option<std::os::fd::OwnedFd> {
        if self.mode != Mode::Unified {
            return None;
        }
        let dir = self.unified.as_ref()?;
        fs::File::open(dir).ok().map(Into::into)
    }

    /// Every pid in the container's cgroup (recursively), sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self
            .unified
            .as_deref()
            .filter(|_| self.mode == Mode::Unified)
            .or_else(|| self.v1_dir("pids"))
            .or_else(|| self.v1_dir("memory"))
            .or_else(|| self.v1.first().map(|d| d.path.as_path()))
            .or(self.unified.as_deref())
            .ok_or_else(|| CgroupError::Path("no cgroup hierarchy".into()))?;
        let mut pids = Vec::new();
        collect_pids(dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freeze or thaw (v1 freezer, v2 cgroup.freeze), waiting until the kernel says it is done.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        match (self.mode, self.v1_dir("freezer")) {
            (Mode::Unified, _) => {
                let dir = self.unified.as_deref().expect("unified dir");
                write_file(
                    dir,
                    "cgroup.freeze",
                    if frozen { "1" } else { "0" },
                    "freeze",
                )?;
                while self.is_frozen() != frozen {
                    if Instant::now() > deadline {
                        return Err(CgroupError::Sys {
                            op: "waiting for freeze",
                            path: dir.into(),
                            errno: Errno::ETIMEDOUT,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            (_, Some(dir)) => {
                let want = if frozen { "FROZEN" } else { "THAWED" };
                loop {
                    write_file(dir, "freezer.state", want, "freeze")?;
                    if fs::read_to_string(dir.join("freezer.state"))
                        .unwrap_or_default()
                        .trim()
                        == want
                    {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(CgroupError::Sys {
                            op: "waiting for freeze",
                            path: dir.into(),
                            errno: Errno::ETIMEDOUT,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            (_, None) => {
                return Err(CgroupError::Invalid {
                    field: "freezer".into(),
                    msg: "the host has no freezer cgroup hierarchy".into(),
                })
            }
        }
        Ok(())
    }

    pub fn is_frozen(&self) -> bool {
        match (self.mode, self.v1_dir("freezer")) {
            (Mode::Unified, _) => self
                .unified
                .as_ref()
                .and_then(|d| fs::read_to_string(d.join("cgroup.events")).ok())
                .is_some_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
            (_, Some(d)) => fs::read_to_string(d.join("freezer.state"))
                .map(|s| s.trim() == "FROZEN")
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Signal every process in the cgroup. The cgroup is frozen meanwhile so
    /// that nothing forks past the signal; SIGKILL on v2 uses cgroup.kill.
    pub fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        if sig == libc::SIGKILL && self.mode == Mode::Unified {
            let dir = self.unified.as_deref().expect("unified dir");
            if dir.join("cgroup.kill").exists() {
                return write_file(dir, "cgroup.kill", "1", "kill");
            }
        }
        let can_freeze = self.mode == Mode::Unified || self.v1_dir("freezer").is_some();
        if can_freeze {
            self.freeze(true)?;
        }
        let res = self.pids().map(|pids| {
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::try_from(sig).ok(),
                );
            }
        });
        if can_freeze {
            self.freeze(false)?;
        }
        res
    }

    /// Remove the container's directories (retrying EBUSY while dying tasks
    /// leave), then the parents `create` made, deepest first, each only if
    /// empty: one that another container made its cgroup in stays.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            remove_tree(d)?;
        }
        for p in self.made.iter().rev() {
            let _ = fs::remove_dir(p);
        }
        Ok(())
    }
}

/// The container's cgroup, or None under runc's rootless rule
/// (libcontainer/cgroups/fs): keel is not root (`unprivileged`),
/// `linux.cgroupsPath` is unset and keel has no permission to create the
/// cgroup. The container then runs in keel's own cgroups, without limits;
/// a limit set in `resources` would be silently lost, so it is refused,
/// naming the field. Device rules are no limit here: see [`first_limit`].
pub fn plan_for(
    cgroups_path: Option<&str>,
    id: &str,
    unprivileged: bool,
    resources: Option<&LinuxResources>,
) -> Result<Option<Cgroup>, CgroupError> {
    let cg = Cgroup::plan(cgroups_path, id)?;
    if !unprivileged || cgroups_path.is_some_and(|p| !p.is_empty()) {
        return Ok(Some(cg));
    }
    let Some((path, errno)) = cg.denied() else {
        return Ok(Some(cg));
    };
    if let Some(field) = resources.and_then(first_limit) {
        return Err(CgroupError::Invalid {
            field,
            msg: format!(
                "keel is not root and may not create the container's cgroup ({}: {errno}), \
                 so the limit cannot be applied; run keel as root, or set linux.cgroupsPath \
                 to a cgroup delegated to keel's user",
                path.display()
            ),
        });
    }
    crate::logging::debug(&format!(
        "cgroups: not root and {}: {errno}: the container stays in keel's cgroups",
        path.display()
    ));
    Ok(None)
}

/// The first field of `r` that sets a limit, whatever the host's cgroup
/// version. Device rules are left out: runc ignores them when rootless (an
/// unprivileged user can write neither v1's devices files nor v2's eBPF
/// programs, and mknod is refused in a user namespace anyway).
pub fn first_limit(r: &LinuxResources) -> Option<String> {
    v1::wanted(r).into_iter().find_map(|(_, f)| f).or_else(|| {
        r.unified()
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|_| "linux.resources.unified".to_string())
    })
}

fn join_rel(root: &Path, rel: &Path) -> PathBuf {
    let stripped = rel.strip_prefix("/").unwrap_or(rel);
    if stripped.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(stripped)
    }
}

/// mkdir `p` and its missing parents, recording each directory made here
/// (one that appears meanwhile is someone else's).
fn mkdir_all(p: &Path, made: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let missing: Vec<&Path> = p.ancestors().take_while(|a| !a.exists()).collect();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => made.push(d.to_path_buf()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(CgroupError::sys("creating cgroup", d, e)),
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let s = fs::read_to_string(&procs).map_err(|e| CgroupError::sys("reading", &procs, e))?;
    out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// rmdir children first, then the dir; EBUSY is retried for a while (tasks may still be exiting).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // Usually a leaf: one rmdir. Child cgroups (made by the container) or
    // processes still leaving make it EBUSY; then children first, and retry.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut delay = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(CgroupError::sys("removing cgroup", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_may_not_escape() {
        assert!(clean_path("/a/../b").is_err());
        assert!(clean_path("../x").is_err());
        assert_eq!(clean_path("/keel/c1").unwrap(), PathBuf::from("/keel/c1"));
        assert_eq!(clean_path("rel/c1").unwrap(), PathBuf::from("rel/c1"));
    }

    #[test]
    fn the_root_and_keels_own_cgroup_are_refused() {
        for p in ["/", "//", ".", "./", "/./", "./."] {
            let e = clean_path(p).unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath: "), "{p}: {e}");
        }
        assert!(Cgroup::plan(Some("/"), "c1").is_err());
        assert!(clean_path("./c1").is_ok());
    }

    #[test]
    fn mount_flags_are_not_controllers() {
        // A systemd host: the named hierarchy is mounted with xattr.
        let info = "\
30 25 0:26 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
31 25 0:27 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset,clone_children,cpuset_v2_mode,noprefix
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct,release_agent=/x
33 25 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
34 25 0:30 / /mnt/other rw - cgroup cgroup rw,memory
";
        let cgroup = "3:cpu,cpuacct:/a\n2:cpuset:/\n1:name=systemd:/user.slice\n0::/user.slice\n";
        let got = parse_v1_hierarchies(info, cgroup);
        let want = |m: &str, c: &[&str]| {
            (
                PathBuf::from(m),
                c.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            got,
            vec![
                want("/sys/fs/cgroup/systemd", &["name=systemd"]),
                want("/sys/fs/cgroup/cpuset", &["cpuset"]),
                want("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            ]
        );
    }

    /// A fake v1 layout in a temp dir: `create` is plain mkdir there.
    fn fake(dirs: &[&Path]) -> Cgroup {
        Cgroup {
            mode: Mode::Legacy,
            rel: PathBuf::from("/p/c1"),
            v1: dirs
                .iter()
                .map(|d| V1Dir {
                    name: "memory".into(),
                    controllers: vec!["memory".into()],
                    path: d.to_path_buf(),
                })
                .collect(),
            unified: None,
            made: Vec::new(),
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let t = std::env::temp_dir().join(format!("keel-cg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(&t).unwrap();
        t
    }

    #[test]
    fn create_records_parents_and_destroy_removes_them() {
        let t = tempdir("made");
        fs::create_dir(t.join("b")).unwrap();
        let cg = fake(&[&t.join("a/p/c1"), &t.join("b/p/c1")])
            .create()
            .unwrap();
        assert_eq!(
            cg.made,
            ["a", "a/p", "a/p/c1", "b/p", "b/p/c1"].map(|d| t.join(d))
        );
        // A sibling made by someone else keeps its parent.
        fs::create_dir(t.join("b/p/other")).unwrap();
        cg.destroy().unwrap();
        assert!(!t.join("a").exists());
        assert!(t.join("b/p/other").exists() && !t.join("b/p/c1").exists());
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_failed_create_removes_what_it_made_on_every_hierarchy() {
        let t = tempdir("fail");
        fs::write(t.join("file"), "").unwrap();
        let e = fake(&[&t.join("a/p/c1"), &t.join("file/c1")])
            .create()
            .unwrap_err();
        assert!(e.to_string().contains("file/c1"), "{e}");
        assert!(!t.join("a").exists());
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn v1_without_a_devices_hierarchy_refuses_device_rules() {
        let t = tempdir("nodev");
        let cg = fake(&[&t.join("c1")]);
        let none = LinuxResources::default();
        let e = cg.apply(&none, true).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.devices: "), "{e}");
        // Unprivileged (or update without rules): nothing to enforce.
        cg.apply(&none, false).unwrap();
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn systemd_paths_are_refused_clearly() {
        let e = Cgroup::plan(Some("system.slice:keel:c1"), "c1").unwrap_err();
        assert!(e.to_string().contains("--systemd-cgroup"), "{e}");
    }

    #[test]
    fn default_path_is_slash_id() {
        let cg = Cgroup::plan(None, "c1").unwrap();
        assert_eq!(cg.rel, PathBuf::from("/c1"));
        for d in cg.dirs() {
            assert!(d.ends_with("c1"), "{}", d.display());
            assert!(d.starts_with(CGROUP_ROOT));
        }
    }

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn device_rules_are_no_limit_for_the_rootless_rule() {
        let devices = res(serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}));
        assert_eq!(first_limit(&devices), None);
        // Zero is "not set", as everywhere.
        assert_eq!(
            first_limit(&res(serde_json::json!({"pids": {"limit": 0}}))),
            None
        );
        let mem = res(serde_json::json!({"memory": {"limit": 1 << 20}}));
        assert_eq!(
            first_limit(&mem).as_deref(),
            Some("linux.resources.memory.limit")
        );
        let unified = res(serde_json::json!({"unified": {"memory.max": "1M"}}));
        assert_eq!(
            first_limit(&unified).as_deref(),
            Some("linux.resources.unified")
        );
    }

    #[test]
    fn root_or_an_explicit_path_always_gets_a_cgroup() {
        let mem = res(serde_json::json!({"memory": {"limit": 1 << 20}}));
        assert!(plan_for(None, "c1", false, Some(&mem)).unwrap().is_some());
        let explicit = plan_for(Some("/keel/c1"), "c1", true, Some(&mem)).unwrap();
        assert_eq!(explicit.unwrap().rel, PathBuf::from("/keel/c1"));
    }

    #[test]
    fn the_callers_cgroup_is_its_own_on_every_hierarchy() {
        let own = own_cgroups();
        let cg = Cgroup::callers();
        for d in &cg.v1 {
            let (_, path) = own
                .iter()
                .find(|(c, _)| c.split(',').any(|x| d.controllers.contains(&x.to_string())))
                .unwrap();
            assert_eq!(
                d.path,
                join_rel(&PathBuf::from(CGROUP_ROOT).join(&d.name), path)
            );
        }
    }

    #[test]
    fn file_names_are_single_components() {
        assert!(check_name("memory.max", "f").is_ok());
        assert!(check_name("../x", "f").is_err());
        assert!(check_name("a/b", "f").is_err());
        assert!(check_name("..", "f").is_err());
    }

    #[test]
    fn join_rel_handles_root() {
        assert_eq!(
            join_rel(Path::new("/sys/fs/cgroup"), Path::new("/")),
            PathBuf::from("/sys/fs/cgroup")
        );
        assert_eq!(
            join_rel(Path::new("/sys/fs/cgroup"), Path::new("/a/b")),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
    }
}
