//! Spec → Plan: every decision and every C string is made here, in the
//! parent, before clone. The child only executes the plan.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::caps::{self, CapsPlan};
use crate::cgroups::{self, Cgroup};
use crate::devices::{self, DevicePlan};
use crate::error::SysError;
use crate::mounts::{self, MountPlan};
use crate::namespaces::{self, NsPlan};
use crate::process::{self, ProcessPlan};

#[derive(Debug)]
pub struct Plan {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: CString,
    pub ns: NsPlan,
    /// Propagation of "/" in the container's mount namespace (default rslave).
    pub root_propagation: libc::c_ulong,
    pub root_readonly: bool,
    pub no_pivot: bool,
    pub mounts: Vec<MountPlan>,
    pub setup_dev: bool,
    pub devices: Vec<DevicePlan>,
    pub kcore: bool,
    pub masked: Vec<CString>,
    pub readonly: Vec<CString>,
    /// (path relative to the rootfs, value) for each sysctl.
    pub sysctl: Vec<(CString, Vec<u8>)>,
    pub hostname: Option<Vec<u8>>,
    pub domainname: Option<Vec<u8>>,
    pub process: ProcessPlan,
    pub caps: Option<CapsPlan>,
    pub keyring: Option<CString>,
    pub preserve_fds: u32,
    /// None: keel is not root and may not create one (see [`cgroups::plan_for`]).
    pub cgroup: Option<Cgroup>,
    /// keel's effective uid is not 0: id maps through the kernel's
    /// unprivileged rules or newuidmap, no device cgroup, no bind sources
    /// opened by the parent (it cannot join the child's mount namespace).
    pub unprivileged: bool,
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// The parent moves the init into its cgroup after clone (v1/hybrid; on v2
    /// clone3 puts it there), and the init waits for that before going on.
    pub cgroup_sync: bool,
    /// Unshare the cgroup namespace after the move (instead of at clone), so the
    /// container sees its own cgroup as "/".
    pub unshare_cgroupns: bool,
    /// config.json's hooks, checked (see [`crate::hooks`]); None when there are none.
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// `linux.seccomp`, compiled here (parent) and loaded by the init just before execve.
    pub seccomp: Option<crate::seccomp::Program>,
    /// Personality, scheduler, I/O priority, CPU affinity, memory policy, AppArmor ([`crate::attrs`]).
    pub attrs: crate::attrs::AttrsPlan,
}

#[derive(Debug, Default, Clone)]
pub struct Options {
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Where compiled seccomp programs are cached (`<root>/seccomp-cache`); None: no cache.
    pub seccomp_cache: Option<PathBuf>,
    /// NAME=value entries appended to process.env (later entries win), e.g.
    /// runc's socket-activation pass-through `LISTEN_FDS=N`, `LISTEN_PID=1`.
    pub extra_env: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("config.json: {0}")]
    Invalid(String),
    #[error(transparent)]
    Mount(#[from] mounts::PlanError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("config.json: {0}")]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("config.json: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

impl Plan {
    /// The sd_notify relay ([`crate::notify`]): bind the state dir's `notify`
    /// directory at /run/notify after the config's mounts, read-only as runc
    /// does, and point the container's NOTIFY_SOCKET at the socket in it.
    pub fn add_notify_mount(&mut self, dir: &Path) {
        let opts: Vec<String> = ["bind", "nosuid", "noexec", "nodev", "ro"]
            .map(String::from)
            .to_vec();
        let mut opts = crate::mountopts::parse(&opts).unwrap_or_default();
        opts.flags |= libc::MS_BIND;
        self.mounts.push(MountPlan {
            dest: mounts::rel_cstring(Path::new(crate::notify::CONTAINER_DIR)),
            kind: mounts::MountKind::Bind {
                src: mounts::cstring(dir),
                src_is_dir: true,
            },
            opts,
            data: None,
            idmap: None,
        });
        let var = CString::new(format!("NOTIFY_SOCKET={}", crate::notify::CONTAINER_SOCKET))
            .unwrap_or_default();
        let env = &mut self.process.env;
        match env
            .iter_mut()
            .find(|e| e.as_bytes().starts_with(b"NOTIFY_SOCKET="))
        {
            Some(e) => *e = var,
            None => env.push(var),
        }
    }
}

pub fn propagation_flags(s: &str) -> Option<libc::c_ulong> {
    Some(match s {
        "" | "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

pub fn build(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    id: &str,
    o: &Options,
) -> Result<Plan, PlanError> {
    let invalid = PlanError::Invalid;
    let ns = namespaces::plan(spec)?;
    if !ns.has_mount {
        return Err(invalid(
            "linux.namespaces: a mount namespace is required (keel does not set up a rootfs in the host's)".into(),
        ));
    }
    let linux = spec.linux().as_ref();
    let root_propagation = propagation_flags(
        linux
            .and_then(|l| l.rootfs_propagation().as_deref())
            .unwrap_or(""),
    )
    .ok_or_else(|| invalid("linux.rootfsPropagation: unknown propagation".into()))?;
    let unprivileged = !nix::unistd::geteuid().is_root();
    let cgroup = cgroups::plan_for(
        linux
            .and_then(|l| l.cgroups_path().as_ref())
            .and_then(|p| p.to_str()),
        id,
        unprivileged,
        linux.and_then(|l| l.resources().as_ref()),
    )?;
    // Without a cgroup of its own the container sees keel's.
    let callers;
    let shown = match &cgroup {
        Some(c) => c,
        None => {
            callers = Cgroup::callers();
            &callers
        }
    };
    let mounts = mounts::plan(spec, bundle, ns.new_cgroup, shown)?;
    let cgroup_sync = cgroup
        .as_ref()
        .is_some_and(|c| c.mode != cgroups::Mode::Unified);
    let mut ns = ns;
    let unshare_cgroupns = cgroup_sync && ns.new_cgroup;
    if unshare_cgroupns {
        ns.clone_flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    let process = match spec.process() {
        Some(p) if o.extra_env.is_empty() => process::plan(p).map_err(invalid)?,
        Some(p) => {
            let mut p = p.clone();
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(o.extra_env.iter().cloned());
            p.set_env(Some(env));
            process::plan(&p).map_err(invalid)?
        }
        None => {
            return Err(invalid(
                "process: missing: create and run need a process to start".into(),
            ))
        }
    };
    let caps = match spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    {
        Some(c) => Some(caps::plan(c).map_err(invalid)?),
        None => None,
    };
    let rel_list = |v: Option<&Vec<String>>| -> Vec<CString> {
        v.map(|v| {
            v.iter()
                .map(|p| mounts::rel_cstring(Path::new(p)))
                .collect()
        })
        .unwrap_or_default()
    };
    let masked = rel_list(linux.and_then(|l| l.masked_paths().as_ref()));
    let readonly = rel_list(linux.and_then(|l| l.readonly_paths().as_ref()));
    let sysctl = linux
        .and_then(|l| l.sysctl().as_ref())
        .map(|m| {
            let mut v: Vec<(CString, Vec<u8>)> = m
                .iter()
                .map(|(k, val)| {
                    let path = format!("proc/sys/{}", k.replace('.', "/"));
                    (
                        CString::new(path).unwrap_or_default(),
                        val.as_bytes().to_vec(),
                    )
                })
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let setup_dev = devices::needs_setup(spec);
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile_cached(
            s,
            o.seccomp_cache.as_deref(),
        )?),
        None => None,
    };
    Ok(Plan {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        rootfs: mounts::cstring(rootfs),
        root_propagation,
        root_readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        no_pivot: o.no_pivot,
        mounts,
        setup_dev,
        devices: if setup_dev {
            devices::plan(spec)
        } else {
            Vec::new()
        },
        kcore: Path::new("/proc/kcore").exists(),
        masked,
        readonly,
        sysctl,
        hostname: spec
            .hostname()
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.as_bytes().to_vec()),
        domainname: spec
            .domainname()
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.as_bytes().to_vec()),
        process,
        caps,
        keyring: (!o.no_new_keyring)
            .then(|| CString::new(format!("_ses.{id}")).unwrap_or_default()),
        preserve_fds: o.preserve_fds,
        ns,
        cgroup,
        unprivileged,
        resources: linux.and_then(|l| l.resources().clone()),
        cgroup_sync,
        unshare_cgroupns,
        hooks: crate::hooks::validate(spec.hooks().as_ref()).map_err(invalid)?,
        seccomp,
        attrs: crate::attrs::plan(spec.process().as_ref(), linux, crate::attrs::Host::probe())
            .map_err(invalid)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},
        "process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
        "hostname":"h",
        "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                  {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666"]}],
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"}],
                 "sysctl":{"kernel.shmmax":"1000"},
                 "maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}"#;

    #[test]
    fn plan_of_a_runc_like_config() {
        let p = build(
            &spec(BASE),
            Path::new("/b"),
            Path::new("/b/rootfs"),
            "c1",
            &Options::default(),
        )
        .unwrap();
        assert_eq!(
            p.ns.clone_flags,
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS) as u64
        );
        assert_eq!(p.root_propagation, libc::MS_SLAVE | libc::MS_REC);
        assert!(p.root_readonly);
        assert_eq!(p.mounts[0].dest.as_bytes(), b"proc");
        assert_eq!(p.mounts[1].opts.flags & libc::MS_NOEXEC, libc::MS_NOEXEC);
        assert_eq!(p.sysctl[0].0.as_bytes(), b"proc/sys/kernel/shmmax");
        assert_eq!(p.masked[0].as_bytes(), b"proc/kcore");
        assert_eq!(p.keyring.as_ref().unwrap().as_bytes(), b"_ses.c1");
        assert!(p.setup_dev);
        assert_eq!(p.devices.len(), 6);
    }

    #[test]
    fn no_mount_namespace_is_refused() {
        let s = spec(&BASE.replace(r#"{"type":"mount"},"#, ""));
        let e = build(
            &s,
            Path::new("/b"),
            Path::new("/b/rootfs"),
            "c1",
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("linux.namespaces: a mount namespace is required"),
            "{e}"
        );
    }

    #[test]
    fn missing_process_names_the_field() {
        let mut s = spec(BASE);
        s.set_process(None);
        let e = build(
            &s,
            Path::new("/b"),
            Path::new("/b/rootfs"),
            "c1",
            &Options::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("config.json: process: missing"),
            "{e}"
        );
    }
}
