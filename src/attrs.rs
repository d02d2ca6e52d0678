//! Process attributes that the container's process inherits across execve:
//! `linux.personality`, `process.scheduler`, `process.ioPriority`,
//! `process.execCPUAffinity`, `linux.memoryPolicy` and the LSM labels
//! (`process.apparmorProfile`, `process.selinuxLabel`, `linux.mountLabel`).
//!
//! Everything is checked and turned into syscall arguments here, in the
//! parent ([`plan`], [`plan_exec`]); the child only calls [`AttrsPlan::apply`]
//! and friends at the points runc uses (docs/security.md, "Process attributes").

use std::ffi::{CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality,
    LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Process, Scheduler,
};

use crate::child::{Ctx, Fail};
use crate::sys::attrs::{self as sys, SchedAttr};

/// `PER_LINUX` and `PER_LINUX32` of linux/personality.h.
pub const PER_LINUX: libc::c_ulong = 0x0000;
pub const PER_LINUX32: libc::c_ulong = 0x0008;

/// Highest CPU number accepted in a cpu list (the kernel ignores bits past its
/// own limit; this only bounds the mask we allocate).
const MAX_CPU: usize = 65_535;
/// Highest NUMA node number (MAX_NUMNODES with CONFIG_NODES_SHIFT=10).
const MAX_NODE: usize = 1_023;

/// What the child sets, all precomputed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttrsPlan {
    pub personality: Option<libc::c_ulong>,
    pub sched: Option<SchedAttr>,
    pub ioprio: Option<libc::c_int>,
    /// execCPUAffinity.initial: set first thing in the child.
    pub cpus_initial: Option<Vec<u64>>,
    /// execCPUAffinity.final: set just before execve.
    pub cpus_final: Option<Vec<u64>>,
    /// (mode | flags, node mask).
    pub mempolicy: Option<(libc::c_int, Vec<u64>)>,
    /// The AppArmor profile to switch to at execve.
    pub apparmor: Option<CString>,
}

/// The LSMs enabled on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Host {
    /// Probe the real host: `/sys`.
    pub fn probe() -> Host {
        Host::probe_at(Path::new("/sys"))
    }

    /// As runc: AppArmor is enabled when securityfs has an `apparmor`
    /// directory and the module parameter says `Y`; SELinux when selinuxfs is
    /// mounted at `<sys>/fs/selinux`.
    pub fn probe_at(sys: &Path) -> Host {
        let apparmor = sys.join("kernel/security/apparmor").is_dir()
            && std::fs::read(sys.join("module/apparmor/parameters/enabled"))
                .is_ok_and(|b| b.first() == Some(&b'Y'));
        let selinux = sys.join("fs/selinux/enforce").exists();
        Host { apparmor, selinux }
    }
}

/// The plan for create/run: the process's attributes and the `linux` ones.
pub fn plan(
    process: Option<&Process>,
    linux: Option<&Linux>,
    host: Host,
) -> Result<AttrsPlan, String> {
    let mut a = match process {
        Some(p) => plan_process(p, host)?,
        None => AttrsPlan::default(),
    };
    if let Some(l) = linux {
        if let Some(p) = l.personality() {
            a.personality = Some(personality(p));
        }
        if let Some(m) = l.memory_policy() {
            a.mempolicy = mempolicy(m)?;
        }
        if l.mount_label().as_deref().is_some_and(|s| !s.is_empty()) {
            selinux_label("linux.mountLabel", host)?;
        }
    }
    Ok(a)
}

/// The plan for `exec`: the process's own attributes; the personality is the
/// init's (`/proc/<pid>/personality`, read by the caller), so that the exec'd
/// process sees the same machine as the container's process; the memory policy
/// is the container's (saved in state.json at create), as runc applies it to
/// every process it starts in the container.
pub fn plan_exec(
    p: &Process,
    init_personality: Option<libc::c_ulong>,
    memory_policy: Option<&LinuxMemoryPolicy>,
    host: Host,
) -> Result<AttrsPlan, String> {
    let mut a = plan_process(p, host)?;
    a.personality = init_personality.filter(|&v| v != PER_LINUX);
    if let Some(m) = memory_policy {
        a.mempolicy = mempolicy(m)?;
    }
    Ok(a)
}

/// `/proc/<pid>/personality` (hex).
pub fn read_personality(pid: libc::pid_t) -> Option<libc::c_ulong> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/personality")).ok()?;
    libc::c_ulong::from_str_radix(s.trim(), 16).ok()
}

fn plan_process(p: &Process, host: Host) -> Result<AttrsPlan, String> {
    let mut a = AttrsPlan::default();
    if let Some(s) = p.scheduler() {
        a.sched = Some(sched_attr(s)?);
    }
    if let Some(io) = p.io_priority() {
        a.ioprio = Some(ioprio(io)?);
    }
    if let Some(c) = p.exec_cpu_affinity() {
        let list = |field: &str, v: &Option<String>| -> Result<Option<Vec<u64>>, String> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => parse_list(field, s, MAX_CPU).map(Some),
            }
        };
        a.cpus_initial = list("process.execCPUAffinity.initial", c.initial())?;
        a.cpus_final = list("process.execCPUAffinity.final", c.cpu_affinity_final())?;
    }
    if let Some(prof) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        if !host.apparmor {
            return Err(format!(
                "process.apparmorProfile: AppArmor is not enabled on this host (profile {prof:?})"
            ));
        }
        a.apparmor = Some(
            CString::new(prof)
                .map_err(|_| "process.apparmorProfile: contains a NUL byte".to_string())?,
        );
    }
    if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty()) {
        selinux_label("process.selinuxLabel", host)?;
    }
    Ok(a)
}

/// SELinux labels are refused: with SELinux absent as runc does, and with it
/// present because keel does not label yet (better than running unlabelled).
fn selinux_label(field: &str, host: Host) -> Result<(), String> {
    if host.selinux {
        Err(format!(
            "{field}: SELinux labels are not supported by keel yet"
        ))
    } else {
        Err(format!(
            "{field}: a SELinux label is set, but SELinux is disabled or not supported on this host"
        ))
    }
}

pub fn personality(p: &LinuxPersonality) -> libc::c_ulong {
    if let Some(f) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        // runtime-spec defines no flags; runc warns and ignores them.
        crate::logging::warn(&format!(
            "linux.personality.flags: ignoring unsupported flags {f:?}"
        ));
    }
    match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    }
}

/// `process.scheduler` → sched_attr, with runc's checks.
pub fn sched_attr(s: &Scheduler) -> Result<SchedAttr, String> {
    use LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6, // SCHED_DEADLINE
        P::SchedIso => {
            return Err("process.scheduler.policy: SCHED_ISO is not implemented by Linux".into())
        }
    } as u32;
    let nice = s.nice().unwrap_or(0);
    if matches!(s.policy(), P::SchedOther | P::SchedBatch) && !(-20..=19).contains(&nice) {
        return Err(format!(
            "process.scheduler.nice: {nice} is out of range (-20..19)"
        ));
    }
    let prio = s.priority().unwrap_or(0);
    let rt = matches!(s.policy(), P::SchedFifo | P::SchedRr);
    if prio != 0 && !rt {
        return Err(format!(
            "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority (got {prio})"
        ));
    }
    if rt && !(1..=99).contains(&prio) {
        return Err(format!(
            "process.scheduler.priority: {prio} is out of range (1..99) for {}",
            s.policy()
        ));
    }
    let dl = [s.runtime(), s.deadline(), s.period()];
    if *s.policy() != P::SchedDeadline && dl.iter().any(|v| v.is_some_and(|v| v != 0)) {
        return Err(
            "process.scheduler: runtime, deadline and period are only for SCHED_DEADLINE".into(),
        );
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: prio as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
        ..Default::default()
    })
}

/// `process.ioPriority` → the ioprio value (class << 13 | level).
pub fn ioprio(io: &LinuxIOPriority) -> Result<libc::c_int, String> {
    let class = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = io.priority();
    if !(0..=7).contains(&prio) {
        return Err(format!(
            "process.ioPriority.priority: {prio} is out of range (0..7)"
        ));
    }
    Ok((class << 13) | prio as libc::c_int)
}

/// The `linux.memoryPolicy` modes [`mempolicy`] maps (`keel features`).
pub const MEMPOLICY_MODES: [&str; 7] = [
    "MPOL_DEFAULT",
    "MPOL_PREFERRED",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_LOCAL",
    "MPOL_PREFERRED_MANY",
    "MPOL_WEIGHTED_INTERLEAVE",
];

/// The `linux.memoryPolicy` flags [`mempolicy`] maps (`keel features`).
pub const MEMPOLICY_FLAGS: [&str; 3] = [
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// `linux.memoryPolicy` → (mode | flags, node mask); None for a bare MPOL_DEFAULT.
pub fn mempolicy(m: &LinuxMemoryPolicy) -> Result<Option<(libc::c_int, Vec<u64>)>, String> {
    use MemoryPolicyModeType as M;
    let mode = match m.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    let nodes = match m.nodes().as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(s) => parse_list("linux.memoryPolicy.nodes", s, MAX_NODE)?,
    };
    let count: u32 = nodes.iter().map(|w| w.count_ones()).sum();
    let name = m.mode();
    match m.mode() {
        M::MpolDefault | M::MpolLocal if count != 0 => {
            return Err(format!(
                "linux.memoryPolicy.nodes: {name} takes no nodes (got {count})"
            ))
        }
        M::MpolBind | M::MpolInterleave | M::MpolPreferredMany | M::MpolWeightedInterleave
            if count == 0 =>
        {
            return Err(format!(
                "linux.memoryPolicy.nodes: {name} needs at least one node"
            ))
        }
        _ => {}
    }
    let mut flags = 0;
    for f in m.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        };
    }
    if flags & (3 << 14) == 3 << 14 {
        return Err(
            "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
                .into(),
        );
    }
    if mode == 0 && flags == 0 {
        return Ok(None);
    }
    Ok(Some((mode | flags, nodes)))
}

/// A list like `0-3,7` as a bit mask (bit n of word n/64); `max` is the highest number.
pub fn parse_list(field: &str, s: &str, max: usize) -> Result<Vec<u64>, String> {
    let bad = |why: String| format!("{field}: invalid list {s:?}: {why}");
    let num = |t: &str| -> Result<usize, String> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{t:?} is not a number")));
        }
        match t.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(bad(format!("{t} is larger than {max}"))),
        }
    };
    let mut mask = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad(format!("range {lo}-{hi} is reversed")));
        }
        if mask.len() <= hi / 64 {
            mask.resize(hi / 64 + 1, 0u64);
        }
        for n in lo..=hi {
            mask[n / 64] |= 1 << (n % 64);
        }
    }
    Ok(mask)
}

/// runtime-spec's names of `process.scheduler.flags` that oci-spec 0.10 spells
/// otherwise, with oci-spec's spelling (the others are the same in both).
const SCHED_FLAG_ALIASES: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// oci-spec's spelling of a scheduler flag that runtime-spec names `name`.
pub fn sched_flag_alias(name: &str) -> Option<&'static str> {
    SCHED_FLAG_ALIASES
        .iter()
        .find(|(spec, _)| *spec == name)
        .map(|&(_, oci)| oci)
}

/// For spec.rs's decode errors: "unknown policy \"SCHED_FOO\"" and friends.
pub fn unknown_value(field: &str, name: &str) -> Option<String> {
    let what = if field == "process.scheduler.policy" {
        "policy"
    } else if field.starts_with("process.scheduler.flags[") {
        "flag"
    } else if field == "process.ioPriority.class" {
        "class"
    } else if field == "linux.personality.domain" {
        "domain"
    } else if field == "linux.memoryPolicy.mode" {
        "mode"
    } else if field.starts_with("linux.memoryPolicy.flags[") {
        "flag"
    } else {
        return None;
    };
    Some(format!("unknown {what} {name:?}"))
}

impl AttrsPlan {
    /// execCPUAffinity.initial: first thing in the child.
    pub fn apply_initial(&self) -> Result<(), Fail> {
        match &self.cpus_initial {
            Some(m) => {
                sys::sched_setaffinity(m).ctx("sched_setaffinity (execCPUAffinity.initial)", b"")
            }
            None => Ok(()),
        }
    }

    /// runc's order after no_new_privs: scheduler, I/O priority, personality, memory policy.
    pub fn apply(&self) -> Result<(), Fail> {
        if let Some(s) = &self.sched {
            sys::sched_setattr(s).ctx("sched_setattr (process.scheduler)", b"")?;
        }
        if let Some(v) = self.ioprio {
            sys::ioprio_set(v).ctx("ioprio_set (process.ioPriority)", b"")?;
        }
        if let Some(p) = self.personality {
            sys::personality(p).ctx("personality (linux.personality)", b"")?;
        }
        if let Some((mode, nodes)) = &self.mempolicy {
            sys::set_mempolicy(*mode, nodes).ctx("set_mempolicy (linux.memoryPolicy)", b"")?;
        }
        Ok(())
    }

    /// execCPUAffinity.final: just before execve (before a late seccomp filter).
    pub fn apply_final(&self) -> Result<(), nix::errno::Errno> {
        match &self.cpus_final {
            Some(m) => sys::sched_setaffinity(m),
            None => Ok(()),
        }
    }

    /// The AppArmor profile for execve, through the container's /proc.
    pub fn apply_apparmor(&self) -> Result<(), Fail> {
        match &self.apparmor {
            Some(p) => apparmor_exec(Path::new("/proc"), p),
            None => Ok(()),
        }
    }
}

/// Where a profile change on exec is written: the AppArmor-specific file
/// (kernel 5.8+, stacked LSMs), else the shared one.
pub fn apparmor_exec_path(proc: &Path) -> PathBuf {
    let specific = proc.join("self/attr/apparmor/exec");
    if specific.exists() {
        specific
    } else {
        proc.join("self/attr/exec")
    }
}

/// Write `exec <profile>` in one write(2), as runc's apparmor.changeOnExec.
pub fn apparmor_exec(proc: &Path, profile: &CStr) -> Result<(), Fail> {
    let path = apparmor_exec_path(proc);
    let show = path.as_os_str().as_encoded_bytes().to_vec();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Fail::io("opening AppArmor exec attribute", &show, &e))?;
    let mut msg = b"exec ".to_vec();
    msg.extend_from_slice(profile.to_bytes());
    f.write_all(&msg).map_err(|e| {
        Fail::io(
            "setting AppArmor profile (process.apparmorProfile)",
            &show,
            &e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_memory_policy_name_is_mapped() {
        for mode in MEMPOLICY_MODES {
            let nodes = if matches!(mode, "MPOL_DEFAULT" | "MPOL_LOCAL") {
                ""
            } else {
                "0"
            };
            let m: LinuxMemoryPolicy =
                serde_json::from_value(serde_json::json!({"mode": mode, "nodes": nodes}))
                    .unwrap_or_else(|e| panic!("{mode}: {e}"));
            mempolicy(&m).unwrap_or_else(|e| panic!("{mode}: {e}"));
        }
        for flag in MEMPOLICY_FLAGS {
            let m: LinuxMemoryPolicy = serde_json::from_value(
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": [flag]}),
            )
            .unwrap_or_else(|e| panic!("{flag}: {e}"));
            assert!(mempolicy(&m).unwrap().is_some(), "{flag}");
        }
    }

    fn process(json: serde_json::Value) -> Process {
        let mut base =
            serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn cpu_lists() {
        let f = "f";
        assert_eq!(parse_list(f, "0", MAX_CPU).unwrap(), vec![1]);
        assert_eq!(parse_list(f, "0-3,7", MAX_CPU).unwrap(), vec![0b1000_1111]);
        assert_eq!(parse_list(f, "64", MAX_CPU).unwrap(), vec![0, 1]);
        assert_eq!(parse_list(f, "1,1-2", MAX_CPU).unwrap(), vec![0b110]);
        assert_eq!(
            parse_list(f, "63-65", MAX_CPU).unwrap(),
            vec![1 << 63, 0b11]
        );
        for bad in [
            "", "a", "1-", "-1", "3-1", "1,,2", "1 - 2x", "70000", "1-99999",
        ] {
            let e = parse_list("process.execCPUAffinity.final", bad, MAX_CPU).unwrap_err();
            assert!(
                e.starts_with("process.execCPUAffinity.final: invalid list"),
                "{bad}: {e}"
            );
        }
        assert!(parse_list("n", "1024", MAX_NODE).is_err());
    }

    #[test]
    fn scheduler_policies() {
        let s = |j: serde_json::Value| {
            process(serde_json::json!({ "scheduler": j }))
                .scheduler()
                .clone()
                .unwrap()
        };
        let a = sched_attr(&s(serde_json::json!({"policy": "SCHED_BATCH", "nice": 5}))).unwrap();
        assert_eq!((a.sched_policy, a.sched_nice, a.size), (3, 5, 56));
        let a = sched_attr(&s(
            serde_json::json!({"policy": "SCHED_FIFO", "priority": 10}),
        ))
        .unwrap();
        assert_eq!((a.sched_policy, a.sched_priority), (1, 10));
        let a = sched_attr(&s(serde_json::json!({"policy": "SCHED_IDLE"}))).unwrap();
        assert_eq!(a.sched_policy, 5);
        let a = sched_attr(&s(serde_json::json!({"policy": "SCHED_DEADLINE",
            "runtime": 10, "deadline": 20, "period": 30, "flags": ["SCHED_RESET_ON_FORK"]})))
        .unwrap();
        assert_eq!(
            (
                a.sched_policy,
                a.sched_runtime,
                a.sched_period,
                a.sched_flags
            ),
            (6, 10, 30, 1)
        );
        let e =
            sched_attr(&s(serde_json::json!({"policy": "SCHED_OTHER", "nice": 20}))).unwrap_err();
        assert!(e.starts_with("process.scheduler.nice:"), "{e}");
        let e = sched_attr(&s(
            serde_json::json!({"policy": "SCHED_OTHER", "priority": 3}),
        ))
        .unwrap_err();
        assert!(e.starts_with("process.scheduler.priority:"), "{e}");
        let e = sched_attr(&s(serde_json::json!({"policy": "SCHED_RR"}))).unwrap_err();
        assert!(e.starts_with("process.scheduler.priority:"), "{e}");
        let e = sched_attr(&s(
            serde_json::json!({"policy": "SCHED_BATCH", "period": 3}),
        ))
        .unwrap_err();
        assert!(e.starts_with("process.scheduler:"), "{e}");
        assert!(sched_attr(&s(serde_json::json!({"policy": "SCHED_ISO"}))).is_err());
    }

    #[test]
    fn scheduler_flags_by_their_runtime_spec_names() {
        let bits = [
            ("SCHED_FLAG_RESET_ON_FORK", 0x01),
            ("SCHED_FLAG_RECLAIM", 0x02),
            ("SCHED_FLAG_DL_OVERRUN", 0x04),
            ("SCHED_FLAG_KEEP_POLICY", 0x08),
            ("SCHED_FLAG_KEEP_PARAMS", 0x10),
            ("SCHED_FLAG_UTIL_CLAMP_MIN", 0x20),
            ("SCHED_FLAG_UTIL_CLAMP_MAX", 0x40),
        ];
        for (name, bit) in bits {
            // What oci-spec takes: the alias where it spells the flag otherwise.
            let oci = sched_flag_alias(name).unwrap_or(name);
            let s: Scheduler = serde_json::from_value(
                serde_json::json!({"policy": "SCHED_OTHER", "flags": [oci]}),
            )
            .unwrap_or_else(|e| panic!("{name} as {oci}: {e}"));
            assert_eq!(sched_attr(&s).unwrap().sched_flags, bit, "{name}");
        }
        assert_eq!(sched_flag_alias("SCHED_RESET_ON_FORK"), None);
        assert_eq!(sched_flag_alias("X"), None);
    }

    #[test]
    fn io_classes() {
        let io = |j| {
            *process(serde_json::json!({ "ioPriority": j }))
                .io_priority()
                .as_ref()
                .unwrap()
        };
        assert_eq!(
            ioprio(&io(
                serde_json::json!({"class": "IOPRIO_CLASS_RT", "priority": 2})
            )),
            Ok((1 << 13) | 2)
        );
        assert_eq!(
            ioprio(&io(
                serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 7})
            )),
            Ok((2 << 13) | 7)
        );
        assert_eq!(
            ioprio(&io(serde_json::json!({"class": "IOPRIO_CLASS_IDLE"}))),
            Ok(3 << 13)
        );
        let e = ioprio(&io(
            serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 8}),
        ))
        .unwrap_err();
        assert!(e.starts_with("process.ioPriority.priority: 8"), "{e}");
    }

    #[test]
    fn memory_policies() {
        let m = |j: serde_json::Value| -> LinuxMemoryPolicy { serde_json::from_value(j).unwrap() };
        assert_eq!(
            mempolicy(&m(serde_json::json!({"mode": "MPOL_BIND", "nodes": "0-1"}))),
            Ok(Some((2, vec![3])))
        );
        assert_eq!(
            mempolicy(&m(
                serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]})
            )),
            Ok(Some((3 | 1 << 15, vec![1])))
        );
        assert_eq!(
            mempolicy(&m(serde_json::json!({"mode": "MPOL_DEFAULT"}))),
            Ok(None)
        );
        assert_eq!(
            mempolicy(&m(serde_json::json!({"mode": "MPOL_LOCAL"}))),
            Ok(Some((4, vec![])))
        );
        assert_eq!(
            mempolicy(&m(serde_json::json!({"mode": "MPOL_PREFERRED"}))),
            Ok(Some((1, vec![])))
        );
        let e = mempolicy(&m(serde_json::json!({"mode": "MPOL_BIND"}))).unwrap_err();
        assert!(
            e.starts_with("linux.memoryPolicy.nodes: MPOL_BIND needs"),
            "{e}"
        );
        let e = mempolicy(&m(serde_json::json!({"mode": "MPOL_LOCAL", "nodes": "0"}))).unwrap_err();
        assert!(e.starts_with("linux.memoryPolicy.nodes:"), "{e}");
        let e = mempolicy(&m(serde_json::json!({"mode": "MPOL_BIND", "nodes": "0",
            "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]})))
        .unwrap_err();
        assert!(e.starts_with("linux.memoryPolicy.flags:"), "{e}");
    }

    #[test]
    fn exec_takes_the_containers_memory_policy() {
        let p = process(serde_json::json!({}));
        let m: LinuxMemoryPolicy =
            serde_json::from_value(serde_json::json!({"mode": "MPOL_BIND", "nodes": "0"})).unwrap();
        let a = plan_exec(&p, None, Some(&m), Host::default()).unwrap();
        assert_eq!(a.mempolicy, Some((2, vec![1])));
        assert_eq!(
            plan_exec(&p, None, None, Host::default())
                .unwrap()
                .mempolicy,
            None
        );
        let bad: LinuxMemoryPolicy =
            serde_json::from_value(serde_json::json!({"mode": "MPOL_BIND"})).unwrap();
        let e = plan_exec(&p, None, Some(&bad), Host::default()).unwrap_err();
        assert!(e.starts_with("linux.memoryPolicy.nodes:"), "{e}");
    }

    #[test]
    fn personality_domains() {
        let p = |d: &str| -> LinuxPersonality {
            serde_json::from_value(serde_json::json!({"domain": d})).unwrap()
        };
        assert_eq!(personality(&p("LINUX")), PER_LINUX);
        assert_eq!(personality(&p("LINUX32")), PER_LINUX32);
    }

    #[test]
    fn unknown_values_name_the_field() {
        assert_eq!(
            unknown_value("process.scheduler.policy", "SCHED_FOO").unwrap(),
            "unknown policy \"SCHED_FOO\""
        );
        assert_eq!(
            unknown_value("process.ioPriority.class", "X").unwrap(),
            "unknown class \"X\""
        );
        assert_eq!(
            unknown_value("process.scheduler.flags[2]", "X").unwrap(),
            "unknown flag \"X\""
        );
        assert!(unknown_value("process.user.uid", "X").is_none());
    }

    #[test]
    fn lsm_labels_without_lsms() {
        let none = Host::default();
        let p = process(serde_json::json!({"apparmorProfile": "docker-default"}));
        let e = plan(Some(&p), None, none).unwrap_err();
        assert!(
            e.starts_with("process.apparmorProfile: AppArmor is not enabled"),
            "{e}"
        );
        let a = plan(
            Some(&p),
            None,
            Host {
                apparmor: true,
                selinux: false,
            },
        )
        .unwrap();
        assert_eq!(a.apparmor.unwrap().as_bytes(), b"docker-default");
        let p = process(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}));
        let e = plan(Some(&p), None, none).unwrap_err();
        assert!(
            e.starts_with("process.selinuxLabel: a SELinux label is set"),
            "{e}"
        );
        let l: Linux = serde_json::from_value(serde_json::json!({"mountLabel": "x"})).unwrap();
        let e = plan(None, Some(&l), none).unwrap_err();
        assert!(e.starts_with("linux.mountLabel:"), "{e}");
        // Empty strings mean "not set".
        let p = process(serde_json::json!({"apparmorProfile": "", "selinuxLabel": ""}));
        assert_eq!(plan(Some(&p), None, none).unwrap(), AttrsPlan::default());
    }

    #[test]
    fn host_probe() {
        let d = std::env::temp_dir().join(format!("keel-attrs-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(Host::probe_at(&d), Host::default());
        std::fs::create_dir_all(d.join("kernel/security/apparmor")).unwrap();
        std::fs::create_dir_all(d.join("module/apparmor/parameters")).unwrap();
        std::fs::write(d.join("module/apparmor/parameters/enabled"), "N\n").unwrap();
        assert!(!Host::probe_at(&d).apparmor);
        std::fs::write(d.join("module/apparmor/parameters/enabled"), "Y\n").unwrap();
        assert!(Host::probe_at(&d).apparmor);
        std::fs::create_dir_all(d.join("fs/selinux")).unwrap();
        std::fs::write(d.join("fs/selinux/enforce"), "0").unwrap();
        assert!(Host::probe_at(&d).selinux);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn apparmor_write_goes_to_the_right_file() {
        let d = std::env::temp_dir().join(format!("keel-attrs-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        // Old kernels: only the shared attribute.
        std::fs::create_dir_all(d.join("self/attr")).unwrap();
        std::fs::write(d.join("self/attr/exec"), "").unwrap();
        apparmor_exec(&d, c"p1").unwrap();
        assert_eq!(std::fs::read(d.join("self/attr/exec")).unwrap(), b"exec p1");
        // The AppArmor-specific file wins when it exists.
        std::fs::create_dir_all(d.join("self/attr/apparmor")).unwrap();
        std::fs::write(d.join("self/attr/apparmor/exec"), "").unwrap();
        apparmor_exec(&d, c"p2").unwrap();
        assert_eq!(
            std::fs::read(d.join("self/attr/apparmor/exec")).unwrap(),
            b"exec p2"
        );
        assert_eq!(std::fs::read(d.join("self/attr/exec")).unwrap(), b"exec p1");
        // No attribute file at all: an error naming the path.
        std::fs::remove_dir_all(d.join("self")).unwrap();
        let f = apparmor_exec(&d, c"p3").unwrap_err();
        assert!(f.path.ends_with(b"self/attr/exec"), "{f:?}");
        assert_eq!(f.errno, libc::ENOENT);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
