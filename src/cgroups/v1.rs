//! cgroup v1 resource files (legacy and hybrid hosts).
//!
//! Each field goes to its controller's hierarchy ([`Cgroup::v1_dir`]). Every
//! hierarchy a set field needs is looked up before anything is written, so a
//! host without, say, net_cls refuses the config without half-applying it.
//! Zero means "not set" where runc says so (memory, cpu, pids, blkio weights,
//! classID); docs/cgroups.md has the whole table.

use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::v2::{
    check_common, debug, errno, hugetlb, idle_hint, invalid, nz, put, put_rdma, read, read_opt,
    read_u64, throttle_lists,
};
use super::{Cgroup, CgroupError, Mode};

const MEM: &str = "linux.resources.memory";
const CPU: &str = "linux.resources.cpu";
const BLKIO: &str = "linux.resources.blockIO";
const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Each v1 controller with the first field of `r` that writes to it (None:
/// nothing to write there), in the order [`apply`] looks them up.
pub(super) fn wanted(r: &LinuxResources) -> [(&'static str, Option<String>); 9] {
    let cpu = r.cpu().as_ref();
    let net = r.network().as_ref();
    let named = |set: bool, field: &str| set.then(|| field.to_string());
    [
        (
            "cpuset",
            cpu.and_then(|c| {
                [("cpus", c.cpus()), ("mems", c.mems())]
                    .into_iter()
                    .find(|(_, v)| v.as_deref().is_some_and(|s| !s.is_empty()))
                    .map(|(n, _)| format!("{CPU}.{n}"))
            }),
        ),
        ("cpu", cpu.and_then(cpu_field)),
        ("memory", r.memory().as_ref().and_then(memory_field)),
        (
            "pids",
            named(
                r.pids().is_some_and(|p| p.limit() != 0),
                "linux.resources.pids.limit",
            ),
        ),
        ("blkio", r.block_io().as_ref().and_then(blkio_field)),
        (
            "hugetlb",
            named(
                r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
                "linux.resources.hugepageLimits",
            ),
        ),
        (
            "net_cls",
            named(
                net.and_then(|n| nz(n.class_id())).is_some(),
                "linux.resources.network.classID",
            ),
        ),
        (
            "net_prio",
            named(
                net.and_then(|n| n.priorities().as_ref())
                    .is_some_and(|p| !p.is_empty()),
                "linux.resources.network.priorities",
            ),
        ),
        (
            "rdma",
            named(
                r.rdma().as_ref().is_some_and(|m| !m.is_empty()),
                "linux.resources.rdma",
            ),
        ),
    ]
}

/// Write every `linux.resources` field that v1 has (devices excepted: see `devices`).
pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    check_common(r)?;
    let cpu = r.cpu().as_ref();
    let mem = r.memory().as_ref();
    let blk = r.block_io().as_ref();
    let net = r.network().as_ref();
    // Every hierarchy needed, in wanted()'s order, before anything is written.
    let [cpuset_dir, cpu_dir, mem_dir, pids_dir, blkio_dir, hugetlb_dir, class_dir, prio_dir, rdma_dir] =
        wanted(r).map(|(ctrl, field)| need(cg, ctrl, field));
    let (cpuset_dir, cpu_dir, mem_dir) = (cpuset_dir?, cpu_dir?, mem_dir?);
    let (pids_dir, blkio_dir, hugetlb_dir) = (pids_dir?, blkio_dir?, hugetlb_dir?);
    let (class_dir, prio_dir, rdma_dir) = (class_dir?, prio_dir?, rdma_dir?);

    if let (Some(d), Some(c)) = (cpuset_dir, cpu) {
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            put(d, "cpuset.cpus", cpus, &format!("{CPU}.cpus"))?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            put(d, "cpuset.mems", mems, &format!("{CPU}.mems"))?;
        }
    }
    if let (Some(d), Some(m)) = (mem_dir, mem) {
        memory(d, m)?;
    }
    if let (Some(d), Some(c)) = (cpu_dir, cpu) {
        cpu_files(d, c)?;
    }
    if let (Some(d), Some(p)) = (pids_dir, r.pids()) {
        let v = if p.limit() < 0 {
            "max".to_string()
        } else {
            p.limit().to_string()
        };
        put(d, "pids.max", &v, "linux.resources.pids.limit")?;
    }
    if let (Some(d), Some(b)) = (blkio_dir, blk) {
        blkio(d, b)?;
    }
    if let (Some(d), Some(h)) = (hugetlb_dir, r.hugepage_limits()) {
        hugetlb(d, h, ".limit_in_bytes", "-1")?;
    }
    if let (Some(d), Some(id)) = (class_dir, net.and_then(|n| n.class_id())) {
        put(
            d,
            "net_cls.classid",
            &id.to_string(),
            "linux.resources.network.classID",
        )?;
    }
    if let (Some(d), Some(prios)) = (prio_dir, net.and_then(|n| n.priorities().as_ref())) {
        for (i, p) in prios.iter().enumerate() {
            put(
                d,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
                &format!("linux.resources.network.priorities[{i}]"),
            )?;
        }
    }
    if let (Some(d), Some(rdma)) = (rdma_dir, r.rdma()) {
        put_rdma(d, rdma)?;
    }
    Ok(())
}

/// The controller's directory when `field` (the first field needing it) is set.
fn need<'a>(
    cg: &'a Cgroup,
    ctrl: &str,
    field: Option<String>,
) -> Result<Option<&'a Path>, CgroupError> {
    let Some(field) = field else { return Ok(None) };
    match cg.v1_dir(ctrl) {
        Some(d) => Ok(Some(d)),
        None => Err(invalid(
            &field,
            format!(
                "this host has no {ctrl} cgroup v1 hierarchy (none mounted under /sys/fs/cgroup){}",
                if cg.mode == Mode::Hybrid {
                    "; on this hybrid host it may be attached to the cgroup2 hierarchy (/sys/fs/cgroup/unified), \
                     where keel sets no limits"
                } else {
                    ""
                }
            ),
        )),
    }
}

fn memory_field(m: &LinuxMemory) -> Option<String> {
    [
        ("limit", nz(m.limit()).is_some()),
        ("reservation", nz(m.reservation()).is_some()),
        ("swap", nz(m.swap()).is_some()),
        ("kernelTCP", nz(m.kernel_tcp()).is_some()),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("useHierarchy", m.use_hierarchy().is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(n, _)| format!("{MEM}.{n}"))
}

fn cpu_field(c: &LinuxCpu) -> Option<String> {
    [
        ("shares", nz(c.shares()).is_some()),
        ("quota", nz(c.quota()).is_some()),
        ("period", nz(c.period()).is_some()),
        ("burst", c.burst().is_some()),
        ("realtimeRuntime", nz(c.realtime_runtime()).is_some()),
        ("realtimePeriod", nz(c.realtime_period()).is_some()),
        ("idle", c.idle().is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(n, _)| format!("{CPU}.{n}"))
}

fn blkio_field(b: &LinuxBlockIo) -> Option<String> {
    let devs = b.weight_device().as_deref().unwrap_or_default();
    let mut set = vec![
        ("weight", nz(b.weight()).is_some()),
        ("leafWeight", nz(b.leaf_weight()).is_some()),
        (
            "weightDevice",
            devs.iter()
                .any(|d| nz(d.weight()).is_some() || nz(d.leaf_weight()).is_some()),
        ),
    ];
    set.extend(throttle_lists(b).map(|(n, l)| (n, !l.is_empty())));
    set.into_iter()
        .find(|(_, s)| *s)
        .map(|(n, _)| format!("{BLKIO}.{n}"))
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = nz(m.limit());
    let mut swap = nz(m.swap());
    if m.check_before_update() == Some(true) {
        check_usage(dir, limit, swap)?;
    }
    // runc: unlimited memory with no swap given means unlimited memory+swap too.
    if limit == Some(-1) && swap.is_none() && dir.join(MEMSW).exists() {
        swap = Some(-1);
    }
    let limit_field = format!("{MEM}.limit");
    let set_limit = |l: i64| {
        put(dir, LIMIT, &l.to_string(), &limit_field).map_err(|e| match errno(&e) {
            Some(Errno::EBUSY) => limit_busy(dir, l),
            _ => e,
        })
    };
    // The kernel keeps limit <= memsw at every step: write the limit first; if
    // it is refused (EINVAL: above the memsw in force), raise memsw, then retry.
    let mut limit_later = None;
    if let Some(l) = limit {
        match set_limit(l) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EINVAL) && swap.is_some() => limit_later = Some(l),
            Err(e) if errno(&e) == Some(Errno::EINVAL) => return Err(limit_above_memsw(dir, l, e)),
            Err(e) => return Err(e),
        }
    }
    if let Some(s) = swap {
        let field = format!("{MEM}.swap");
        if let Err(e) = put(dir, MEMSW, &s.to_string(), &field) {
            if dir.join(MEMSW).exists() {
                return Err(e);
            }
            if s != -1 {
                return Err(invalid(
                    &field,
                    format!(
                        "{} does not exist: this kernel does not account swap (boot with swapaccount=1), \
                         so no swap limit can be set",
                        dir.join(MEMSW).display()
                    ),
                ));
            }
            debug(&format!(
                "{}: no {MEMSW} (no swap accounting): unlimited swap is already true",
                dir.display()
            ));
        }
    }
    if let Some(l) = limit_later {
        set_limit(l)?;
    }
    if let Some(r) = nz(m.reservation()) {
        put(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            &format!("{MEM}.reservation"),
        )?;
    }
    if m.disable_oom_killer() == Some(true) {
        put(
            dir,
            "memory.oom_control",
            "1",
            &format!("{MEM}.disableOOMKiller"),
        )?;
    }
    if let Some(s) = m.swappiness() {
        put(
            dir,
            "memory.swappiness",
            &s.to_string(),
            &format!("{MEM}.swappiness"),
        )?;
    }
    if let Some(h) = m.use_hierarchy() {
        let field = format!("{MEM}.useHierarchy");
        put(dir, "memory.use_hierarchy", if h { "1" } else { "0" }, &field).map_err(|e| {
            if !h && errno(&e) == Some(Errno::EINVAL) {
                invalid(
                    &field,
                    "this kernel's memory controller is always hierarchical (memory.use_hierarchy cannot be 0)".into(),
                )
            } else {
                e
            }
        })?;
    }
    #[allow(deprecated)]
    if nz(m.kernel()).is_some() {
        // Deprecated by the runtime-spec; since Linux 6.1 a write to
        // memory.kmem.limit_in_bytes succeeds and does nothing (runc 1.1 ignores it too).
        debug(&format!(
            "{MEM}.kernel: kernel memory limits are obsolete, ignored (as runc does)"
        ));
    }
    if let Some(t) = nz(m.kernel_tcp()) {
        const TCP: &str = "memory.kmem.tcp.limit_in_bytes";
        if dir.join(TCP).exists() {
            put(dir, TCP, &t.to_string(), &format!("{MEM}.kernelTCP"))?;
        } else {
            debug(&format!(
                "{MEM}.kernelTCP: this kernel has no {TCP}, ignored"
            ));
        }
    }
    Ok(())
}

/// checkBeforeUpdate: refuse a limit below what the cgroup already uses.
fn check_usage(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
    let field = format!("{MEM}.checkBeforeUpdate");
    if let Some(l) = limit.filter(|l| *l > 0) {
        let used = read_u64(dir, "memory.usage_in_bytes", &field)?;
        if (l as u64) < used {
            return Err(invalid(
                &field,
                format!("refusing memory limit {l}: below the current usage {used} (memory.usage_in_bytes)"),
            ));
        }
    }
    if let Some(s) = swap.filter(|s| *s > 0) {
        if let Some(used) =
            read_opt(dir, "memory.memsw.usage_in_bytes").and_then(|v| v.parse::<u64>().ok())
        {
            if (s as u64) < used {
                return Err(invalid(
                    &field,
                    format!(
                        "refusing memory+swap limit {s}: below the current usage {used} (memory.memsw.usage_in_bytes)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// EBUSY from memory.limit_in_bytes: the kernel could not reclaim down to the new limit.
fn limit_busy(dir: &Path, l: i64) -> CgroupError {
    let usage = read_opt(dir, "memory.usage_in_bytes").unwrap_or_else(|| "?".into());
    let peak = read_opt(dir, "memory.max_usage_in_bytes").unwrap_or_else(|| "?".into());
    invalid(
        &format!("{MEM}.limit"),
        format!(
            "cannot set {} to {l}: the cgroup uses {usage} bytes (peak {peak}) and the kernel could not reclaim enough (EBUSY)",
            dir.join(LIMIT).display()
        ),
    )
}

/// EINVAL from memory.limit_in_bytes without a swap value: say it is the memsw limit in force.
fn limit_above_memsw(dir: &Path, l: i64, e: CgroupError) -> CgroupError {
    match read_opt(dir, MEMSW).and_then(|v| v.parse::<i64>().ok()) {
        Some(sw) if l == -1 || l > sw => invalid(
            &format!("{MEM}.limit"),
            format!(
                "cannot set {} to {l}: above the memory+swap limit in force ({sw} in {MEMSW}); give memory.swap too",
                dir.join(LIMIT).display()
            ),
        ),
        _ => e,
    }
}

/// Write `a`; if the kernel refuses it with EINVAL and `b` will be written
/// too, write `b` first and retry `a` (quota/period, burst/quota, rt period/runtime).
fn put_pair(
    dir: &Path,
    a: Option<(&str, String, String)>,
    b: Option<(&str, String, String)>,
) -> Result<(), CgroupError> {
    let mut a_later = None;
    if let Some((file, v, field)) = &a {
        match put(dir, file, v, field) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EINVAL) && b.is_some() => a_later = a.as_ref(),
            Err(e) => return Err(e),
        }
    }
    if let Some((file, v, field)) = &b {
        put(dir, file, v, field)?;
    }
    if let Some((file, v, field)) = a_later {
        put(dir, file, v, field)?;
    }
    Ok(())
}

fn cpu_files(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{CPU}.{n}");
    // The kernel refuses cpu.shares while the group is idle: leave idle first, enter it last.
    if c.idle() == Some(0) {
        put(dir, "cpu.idle", "0", &f("idle"))?;
    }
    if let Some(s) = nz(c.shares()) {
        put(dir, "cpu.shares", &s.to_string(), &f("shares")).map_err(|e| idle_hint(dir, e))?;
    }
    let quota = nz(c.quota()).map(|q| {
        (
            "cpu.cfs_quota_us",
            if q < 0 {
                "-1".to_string()
            } else {
                q.to_string()
            },
            f("quota"),
        )
    });
    let period = nz(c.period()).map(|p| ("cpu.cfs_period_us", p.to_string(), f("period")));
    let burst = c
        .burst()
        .map(|b| ("cpu.cfs_burst_us", b.to_string(), f("burst")));
    // A shorter period can exceed the parent's quota/period, a larger burst the
    // quota in force: both are retried after the quota.
    match (period, burst) {
        (Some(p), Some(b)) => {
            let mut later = Vec::new();
            for (file, v, field) in [p, b] {
                match put(dir, file, &v, &field) {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(Errno::EINVAL) && quota.is_some() => {
                        later.push((file, v, field))
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some((file, v, field)) = &quota {
                put(dir, file, v, field)?;
            }
            for (file, v, field) in later {
                put(dir, file, &v, &field)?;
            }
        }
        (p, b) => put_pair(dir, p.or(b), quota)?,
    }
    let rt_period =
        nz(c.realtime_period()).map(|p| ("cpu.rt_period_us", p.to_string(), f("realtimePeriod")));
    let rt_runtime = nz(c.realtime_runtime())
        .map(|r| ("cpu.rt_runtime_us", r.to_string(), f("realtimeRuntime")));
    put_pair(dir, rt_period, rt_runtime)?;
    if let Some(i) = c.idle().filter(|i| *i != 0) {
        put(dir, "cpu.idle", &i.to_string(), &f("idle"))?;
    }
    Ok(())
}

fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let devs = b.weight_device().as_deref().unwrap_or_default();
    let weights = nz(b.weight()).is_some() || devs.iter().any(|d| nz(d.weight()).is_some());
    // CFQ's blkio.weight, else BFQ's blkio.bfq.weight (CFQ is gone since Linux 5.0), as runc does.
    let (wfile, wdfile) = if !weights || dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else if dir.join("blkio.bfq.weight").exists() {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        let field = if nz(b.weight()).is_some() {
            format!("{BLKIO}.weight")
        } else {
            format!("{BLKIO}.weightDevice")
        };
        return Err(invalid(
            &field,
            format!(
                "neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ) exists in {}: no I/O scheduler with weights",
                dir.display()
            ),
        ));
    };
    if let Some(w) = nz(b.weight()) {
        put(dir, wfile, &w.to_string(), &format!("{BLKIO}.weight"))?;
    }
    if let Some(w) = nz(b.leaf_weight()) {
        put(
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
            &format!("{BLKIO}.leafWeight"),
        )?;
    }
    for (i, d) in devs.iter().enumerate() {
        if let Some(w) = nz(d.weight()) {
            put(
                dir,
                wdfile,
                &format!("{}:{} {w}", d.major(), d.minor()),
                &format!("{BLKIO}.weightDevice[{i}].weight"),
            )?;
        }
        if let Some(w) = nz(d.leaf_weight()) {
            put(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
                &format!("{BLKIO}.weightDevice[{i}].leafWeight"),
            )?;
        }
    }
    for (name, list) in throttle_lists(b) {
        let file = match name {
            "throttleReadBpsDevice" => "blkio.throttle.read_bps_device",
            "throttleWriteBpsDevice" => "blkio.throttle.write_bps_device",
            "throttleReadIOPSDevice" => "blkio.throttle.read_iops_device",
            _ => "blkio.throttle.write_iops_device",
        };
        for (i, d) in list.iter().enumerate() {
            put(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                &format!("{BLKIO}.{name}[{i}]"),
            )?;
        }
    }
    Ok(())
}

/// A new cpuset cgroup starts with empty cpus/mems, and then no task can join:
/// copy them from the parent (each level down from the first non-empty one).
///
/// Walks up from `dir` while a level lacks cpus or mems (the hierarchy root,
/// whose parent has no cpuset.cpus, always has both), then fills the empty
/// files top-down, as runc's cpuset ensureParent does. A `dir` without
/// cpuset.cpus is not a cpuset cgroup: nothing to do.
pub fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    const FIELD: &str = "cpuset (copied from the parent cgroup)";
    let mut pending = Vec::new();
    let mut level = dir;
    let (mut cpus, mut mems) = loop {
        let Some(c) = read_opt(level, "cpuset.cpus") else {
            if level == dir {
                return Ok(());
            }
            break (String::new(), String::new());
        };
        let m = read(level, "cpuset.mems")?;
        if !c.is_empty() && !m.is_empty() {
            break (c, m);
        }
        pending.push((level, c, m));
        match level.parent() {
            Some(p) => level = p,
            None => break (String::new(), String::new()),
        }
    };
    for (d, c, m) in pending.into_iter().rev() {
        if c.is_empty() {
            if !cpus.is_empty() {
                put(d, "cpuset.cpus", &cpus, FIELD)?;
            }
        } else {
            cpus = c;
        }
        if m.is_empty() {
            if !mems.is_empty() {
                put(d, "cpuset.mems", &mems, FIELD)?;
            }
        } else {
            mems = m;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::v2::testutil::{fail, w, TempCg};
    use super::super::V1Dir;
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    /// (hierarchy dir name, controllers, files) as on a legacy host.
    const HIERARCHIES: &[(&str, &[&str], &[&str])] = &[
        ("cpuset", &["cpuset"], &["cpuset.cpus", "cpuset.mems"]),
        (
            "cpu,cpuacct",
            &["cpu", "cpuacct"],
            &[
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpu.cfs_burst_us",
                "cpu.rt_runtime_us",
                "cpu.rt_period_us",
                "cpu.idle",
            ],
        ),
        (
            "memory",
            &["memory"],
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
                "memory.use_hierarchy",
                "memory.kmem.limit_in_bytes",
                "memory.kmem.tcp.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.max_usage_in_bytes",
                "memory.memsw.usage_in_bytes",
            ],
        ),
        ("pids", &["pids"], &["pids.max"]),
        (
            "blkio",
            &["blkio"],
            &[
                "blkio.weight",
                "blkio.weight_device",
                "blkio.leaf_weight",
                "blkio.leaf_weight_device",
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ],
        ),
        (
            "hugetlb",
            &["hugetlb"],
            &[
                "hugetlb.2MB.limit_in_bytes",
                "hugetlb.2MB.rsvd.limit_in_bytes",
                "hugetlb.1GB.limit_in_bytes",
            ],
        ),
        (
            "net_cls,net_prio",
            &["net_cls", "net_prio"],
            &["net_cls.classid", "net_prio.ifpriomap"],
        ),
        ("rdma", &["rdma"], &["rdma.max"]),
    ];

    /// A legacy-mode Cgroup whose hierarchies are temp dirs `<name>/c1`, minus `without`.
    fn legacy(t: &TempCg, without: &[&str]) -> Cgroup {
        let mut v1 = Vec::new();
        for (name, ctrls, files) in HIERARCHIES {
            if ctrls.iter().any(|c| without.contains(c)) {
                continue;
            }
            let path = t.dir(&format!("{name}/c1"), files);
            v1.push(V1Dir {
                name: name.to_string(),
                controllers: ctrls.iter().map(|c| c.to_string()).collect(),
                path,
            });
        }
        Cgroup {
            mode: Mode::Legacy,
            rel: PathBuf::from("/c1"),
            v1,
            unified: None,
            made: Vec::new(),
        }
    }

    #[test]
    fn absent_or_zero_fields_write_nothing_and_need_no_hierarchy() {
        let t = TempCg::new("v1-empty");
        let cg = legacy(&t, &[]);
        apply(&cg, &res(json!({}))).unwrap();
        let zero = res(json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernelTCP": 0, "disableOOMKiller": false},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0, "leafWeight": 0, "weightDevice": [{"major": 8, "minor": 0}]},
            "hugepageLimits": [],
            "network": {"classID": 0, "priorities": []},
            "rdma": {}
        }));
        apply(&cg, &zero).unwrap();
        // Nothing set: no hierarchy is needed at all.
        apply(
            &Cgroup {
                v1: Vec::new(),
                ..cg
            },
            &zero,
        )
        .unwrap();
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn memory_limit_before_memsw_when_lowering() {
        let t = TempCg::new("v1-mem-lower");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"memory": {"limit": 1000, "swap": 2000, "reservation": 500}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("memory/c1/memory.limit_in_bytes", "1000"),
                ("memory/c1/memory.memsw.limit_in_bytes", "2000"),
                ("memory/c1/memory.soft_limit_in_bytes", "500"),
            ])
        );
    }

    #[test]
    fn memory_memsw_first_when_the_limit_is_above_the_memsw_in_force() {
        let t = TempCg::new("v1-mem-raise");
        let cg = legacy(&t, &[]);
        // The kernel refuses limit > memsw with EINVAL: memsw is raised, then the limit retried.
        fail("memory.limit_in_bytes", Errno::EINVAL);
        apply(&cg, &res(json!({"memory": {"limit": 3000, "swap": 4000}}))).unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("memory/c1/memory.memsw.limit_in_bytes", "4000"),
                ("memory/c1/memory.limit_in_bytes", "3000")
            ])
        );
    }

    #[test]
    fn memory_unlimited_makes_memsw_unlimited_too() {
        let t = TempCg::new("v1-mem-unl");
        let cg = legacy(&t, &[]);
        fail("memory.limit_in_bytes", Errno::EINVAL);
        apply(&cg, &res(json!({"memory": {"limit": -1}}))).unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("memory/c1/memory.memsw.limit_in_bytes", "-1"),
                ("memory/c1/memory.limit_in_bytes", "-1")
            ])
        );
        // Without swap accounting there is no memsw to follow.
        let t = TempCg::new("v1-mem-unl-noswap");
        let cg = legacy(&t, &[]);
        std::fs::remove_file(cg.v1_dir("memory").unwrap().join(MEMSW)).unwrap();
        apply(&cg, &res(json!({"memory": {"limit": -1}}))).unwrap();
        assert_eq!(t.log(), w(&[("memory/c1/memory.limit_in_bytes", "-1")]));
    }

    #[test]
    fn memory_limit_errors_explain_themselves() {
        let t = TempCg::new("v1-mem-err");
        let cg = legacy(&t, &[]);
        t.set("memory/c1/memory.memsw.limit_in_bytes", "500\n");
        fail("memory.limit_in_bytes", Errno::EINVAL);
        let e = apply(&cg, &res(json!({"memory": {"limit": 1000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.limit:")
                && e.contains("memory+swap limit in force (500"),
            "{e}"
        );
        t.set("memory/c1/memory.usage_in_bytes", "900\n");
        t.set("memory/c1/memory.max_usage_in_bytes", "950\n");
        fail("memory.limit_in_bytes", Errno::EBUSY);
        let e = apply(&cg, &res(json!({"memory": {"limit": 100}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.limit:")
                && e.contains("uses 900 bytes (peak 950)"),
            "{e}"
        );
        let e = apply(&cg, &res(json!({"memory": {"limit": 100, "swap": 50}})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
    }

    #[test]
    fn memory_swap_without_swap_accounting() {
        let t = TempCg::new("v1-memsw-missing");
        let cg = legacy(&t, &[]);
        std::fs::remove_file(cg.v1_dir("memory").unwrap().join(MEMSW)).unwrap();
        fail(MEMSW, Errno::EACCES);
        let e = apply(&cg, &res(json!({"memory": {"limit": 1000, "swap": 2000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.swap:") && e.contains("swapaccount=1"),
            "{e}"
        );
        fail(MEMSW, Errno::EACCES);
        apply(&cg, &res(json!({"memory": {"swap": -1}}))).unwrap();
    }

    #[test]
    fn memory_other_files() {
        let t = TempCg::new("v1-mem-other");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(
                json!({"memory": {"disableOOMKiller": true, "swappiness": 0, "useHierarchy": true,
                                    "kernel": 1_000_000, "kernelTCP": 2_000_000}}),
            ),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("memory/c1/memory.oom_control", "1"),
                ("memory/c1/memory.swappiness", "0"),
                ("memory/c1/memory.use_hierarchy", "1"),
                ("memory/c1/memory.kmem.tcp.limit_in_bytes", "2000000"),
            ])
        );
        assert_eq!(t.get("memory/c1/memory.kmem.limit_in_bytes"), "");
        // kernelTCP where the kernel has no such file: skipped.
        std::fs::remove_file(
            cg.v1_dir("memory")
                .unwrap()
                .join("memory.kmem.tcp.limit_in_bytes"),
        )
        .unwrap();
        apply(&cg, &res(json!({"memory": {"kernelTCP": 5}}))).unwrap();
        assert_eq!(t.log().len(), 4);
        // useHierarchy false on a kernel that is always hierarchical.
        fail("memory.use_hierarchy", Errno::EINVAL);
        let e = apply(&cg, &res(json!({"memory": {"useHierarchy": false}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.useHierarchy:")
                && e.contains("always hierarchical"),
            "{e}"
        );
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let t = TempCg::new("v1-cbu");
        let cg = legacy(&t, &[]);
        t.set("memory/c1/memory.usage_in_bytes", "5000\n");
        t.set("memory/c1/memory.memsw.usage_in_bytes", "7000\n");
        let e = apply(
            &cg,
            &res(json!({"memory": {"limit": 4000, "checkBeforeUpdate": true}})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.memory.checkBeforeUpdate:") && e.contains("5000"),
            "{e}"
        );
        let e = apply(
            &cg,
            &res(json!({"memory": {"limit": 6000, "swap": 6500, "checkBeforeUpdate": true}})),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("7000"), "{e}");
        assert_eq!(t.log(), w(&[]));
        apply(
            &cg,
            &res(json!({"memory": {"limit": 6000, "swap": 8000, "checkBeforeUpdate": true}})),
        )
        .unwrap();
        assert_eq!(t.log().len(), 2);
    }

    #[test]
    fn cpu_files_in_order() {
        let t = TempCg::new("v1-cpu");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(
                json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
                                 "realtimeRuntime": 950, "realtimePeriod": 1000, "idle": 1,
                                 "cpus": "0-3", "mems": "0"}}),
            ),
        )
        .unwrap();
        let c = "cpu,cpuacct/c1/";
        assert_eq!(
            t.log(),
            w(&[
                ("cpuset/c1/cpuset.cpus", "0-3"),
                ("cpuset/c1/cpuset.mems", "0"),
                (&format!("{c}cpu.shares"), "512"),
                (&format!("{c}cpu.cfs_period_us"), "100000"),
                (&format!("{c}cpu.cfs_burst_us"), "10000"),
                (&format!("{c}cpu.cfs_quota_us"), "50000"),
                (&format!("{c}cpu.rt_period_us"), "1000"),
                (&format!("{c}cpu.rt_runtime_us"), "950"),
                (&format!("{c}cpu.idle"), "1"),
            ])
        );
    }

    #[test]
    fn cpu_idle_zero_comes_first_and_negative_quota_is_unlimited() {
        let t = TempCg::new("v1-cpu-idle");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"cpu": {"idle": 0, "shares": 1024, "quota": -5}})),
        )
        .unwrap();
        let c = "cpu,cpuacct/c1/";
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{c}cpu.idle"), "0"),
                (&format!("{c}cpu.shares"), "1024"),
                (&format!("{c}cpu.cfs_quota_us"), "-1"),
            ])
        );
    }

    #[test]
    fn shares_refused_while_idle_says_why() {
        let t = TempCg::new("v1-idle-shares");
        let cg = legacy(&t, &[]);
        t.set("cpu,cpuacct/c1/cpu.idle", "1\n");
        fail("cpu.shares", Errno::EINVAL);
        let e = apply(&cg, &res(json!({"cpu": {"shares": 512}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.shares:") && e.contains("cpu.idle is 1"),
            "{e}"
        );
    }

    #[test]
    fn cpu_period_burst_and_rt_period_are_retried() {
        let t = TempCg::new("v1-cpu-retry");
        let cg = legacy(&t, &[]);
        let c = "cpu,cpuacct/c1/";
        fail("cpu.cfs_period_us", Errno::EINVAL);
        apply(&cg, &res(json!({"cpu": {"quota": 20000, "period": 10000}}))).unwrap();
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{c}cpu.cfs_quota_us"), "20000"),
                (&format!("{c}cpu.cfs_period_us"), "10000")
            ])
        );
        let t = TempCg::new("v1-cpu-retry2");
        let cg = legacy(&t, &[]);
        fail("cpu.cfs_burst_us", Errno::EINVAL);
        fail("cpu.rt_period_us", Errno::EINVAL);
        apply(
            &cg,
            &res(
                json!({"cpu": {"quota": 200000, "period": 100000, "burst": 150000,
                                 "realtimePeriod": 500, "realtimeRuntime": 400}}),
            ),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{c}cpu.cfs_period_us"), "100000"),
                (&format!("{c}cpu.cfs_quota_us"), "200000"),
                (&format!("{c}cpu.cfs_burst_us"), "150000"),
                (&format!("{c}cpu.rt_runtime_us"), "400"),
                (&format!("{c}cpu.rt_period_us"), "500"),
            ])
        );
        // Nothing to write first: the error stands, naming the field.
        fail("cpu.cfs_period_us", Errno::EINVAL);
        let e = apply(&cg, &res(json!({"cpu": {"period": 500}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.period: writing \"500\" to ")
                && e.contains("EINVAL"),
            "{e}"
        );
    }

    #[test]
    fn pids_limit() {
        let t = TempCg::new("v1-pids");
        let cg = legacy(&t, &[]);
        apply(&cg, &res(json!({"pids": {"limit": 64}}))).unwrap();
        assert_eq!(t.get("pids/c1/pids.max"), "64");
        apply(&cg, &res(json!({"pids": {"limit": -1}}))).unwrap();
        assert_eq!(t.get("pids/c1/pids.max"), "max");
        apply(&cg, &res(json!({"pids": {"limit": 0}}))).unwrap();
        assert_eq!(t.log().len(), 2);
    }

    #[test]
    fn blkio_every_file_one_write_per_entry() {
        let t = TempCg::new("v1-blkio");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"blockIO": {
                "weight": 300, "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 50}, {"major": 8, "minor": 16, "weight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}, {"major": 8, "minor": 16, "rate": 0}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]
            }})),
        )
        .unwrap();
        let b = "blkio/c1/blkio.";
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{b}weight"), "300"),
                (&format!("{b}leaf_weight"), "200"),
                (&format!("{b}weight_device"), "8:0 500"),
                (&format!("{b}leaf_weight_device"), "8:0 50"),
                (&format!("{b}weight_device"), "8:16 10"),
                (&format!("{b}throttle.read_bps_device"), "8:0 1000"),
                (&format!("{b}throttle.read_bps_device"), "8:16 0"),
                (&format!("{b}throttle.write_bps_device"), "8:0 2000"),
                (&format!("{b}throttle.read_iops_device"), "8:0 30"),
                (&format!("{b}throttle.write_iops_device"), "8:0 40"),
            ])
        );
    }

    #[test]
    fn blkio_weight_falls_back_to_bfq() {
        let t = TempCg::new("v1-bfq");
        let cg = legacy(&t, &[]);
        let d = cg.v1_dir("blkio").unwrap();
        std::fs::remove_file(d.join("blkio.weight")).unwrap();
        let e = apply(&cg, &res(json!({"blockIO": {"weight": 300}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.weight:") && e.contains("blkio.bfq.weight"),
            "{e}"
        );
        t.set("blkio/c1/blkio.bfq.weight", "");
        t.set("blkio/c1/blkio.bfq.weight_device", "");
        apply(&cg, &res(json!({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 500}]}})))
            .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("blkio/c1/blkio.bfq.weight", "300"),
                ("blkio/c1/blkio.bfq.weight_device", "8:0 500")
            ])
        );
        // Throttling alone needs no weight file.
        apply(&cg, &res(json!({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}}))).unwrap();
    }

    #[test]
    fn hugetlb_limit_and_reservation() {
        let t = TempCg::new("v1-hugetlb");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}, {"pageSize": "1GB", "limit": -1}]})),
        )
        .unwrap();
        let h = "hugetlb/c1/hugetlb.";
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{h}2MB.limit_in_bytes"), "2097152"),
                (&format!("{h}2MB.rsvd.limit_in_bytes"), "2097152"),
                (&format!("{h}1GB.limit_in_bytes"), "-1"),
            ])
        );
        let e = apply(
            &cg,
            &res(json!({"hugepageLimits": [{"pageSize": "16GB", "limit": 1}]})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.hugepageLimits[0].pageSize:")
                && e.contains("no 16GB huge pages"),
            "{e}"
        );
        let e = apply(
            &cg,
            &res(json!({"hugepageLimits": [{"pageSize": "../../x", "limit": 1}]})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a cgroup file name"), "{e}");
    }

    #[test]
    fn network_classid_and_priorities() {
        let t = TempCg::new("v1-net");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 2}]}})),
        )
        .unwrap();
        let n = "net_cls,net_prio/c1/";
        assert_eq!(
            t.log(),
            w(&[
                (&format!("{n}net_cls.classid"), "1048577"),
                (&format!("{n}net_prio.ifpriomap"), "eth0 5"),
                (&format!("{n}net_prio.ifpriomap"), "lo 2"),
            ])
        );
        let e = apply(
            &cg,
            &res(json!({"network": {"priorities": [{"name": "eth0 7\nlo", "priority": 5}]}})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.network.priorities[0].name:"),
            "{e}"
        );
    }

    #[test]
    fn rdma_on_v1() {
        let t = TempCg::new("v1-rdma");
        let cg = legacy(&t, &[]);
        apply(
            &cg,
            &res(json!({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[("rdma/c1/rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")])
        );
    }

    #[test]
    fn a_missing_hierarchy_names_the_field_and_nothing_is_written() {
        let t = TempCg::new("v1-missing");
        let cg = legacy(&t, &["net_cls", "hugetlb", "rdma"]);
        let e = apply(
            &cg,
            &res(json!({"memory": {"limit": 1000}, "network": {"classID": 7}})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.network.classID:")
                && e.contains("no net_cls cgroup v1 hierarchy"),
            "{e}"
        );
        assert!(!e.contains("hybrid"), "{e}");
        let hybrid = Cgroup {
            mode: Mode::Hybrid,
            ..cg.clone()
        };
        let e = apply(
            &hybrid,
            &res(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})),
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("linux.resources.hugepageLimits:")
                && e.contains("no hugetlb")
                && e.contains("hybrid"),
            "{e}"
        );
        let e = apply(&cg, &res(json!({"rdma": {"mlx5_1": {"hcaHandles": 1}}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.rdma:") && e.contains("no rdma"),
            "{e}"
        );
        assert_eq!(t.log(), w(&[]));
        let nocpu = Cgroup {
            v1: cg
                .v1
                .iter()
                .filter(|d| d.name != "cpu,cpuacct")
                .cloned()
                .collect(),
            ..cg
        };
        let e = apply(&nocpu, &res(json!({"cpu": {"idle": 1}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.idle:") && e.contains("no cpu cgroup"),
            "{e}"
        );
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn invalid_values_are_refused_before_writing() {
        let t = TempCg::new("v1-invalid");
        let cg = legacy(&t, &[]);
        for (r, field) in [
            (json!({"cpu": {"shares": 1}}), "linux.resources.cpu.shares:"),
            (
                json!({"cpu": {"shares": 262145}}),
                "linux.resources.cpu.shares:",
            ),
            (
                json!({"blockIO": {"weight": 5}}),
                "linux.resources.blockIO.weight:",
            ),
            (
                json!({"blockIO": {"leafWeight": 1001}}),
                "linux.resources.blockIO.leafWeight:",
            ),
            (
                json!({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 2}]}}),
                "linux.resources.blockIO.weightDevice[0].weight:",
            ),
            (
                json!({"memory": {"limit": -2}}),
                "linux.resources.memory.limit:",
            ),
            (
                json!({"memory": {"reservation": -3}}),
                "linux.resources.memory.reservation:",
            ),
            (
                json!({"memory": {"limit": -1, "swap": 4096}}),
                "linux.resources.memory.swap:",
            ),
            (
                json!({"hugepageLimits": [{"pageSize": "2MB", "limit": -2}]}),
                "linux.resources.hugepageLimits[0].limit:",
            ),
            (
                json!({"rdma": {"bad dev": {"hcaHandles": 1}}}),
                "linux.resources.rdma:",
            ),
        ] {
            // With a valid memory limit alongside: it must not be written either.
            let mut r = r.as_object().unwrap().clone();
            r.entry("memory").or_insert(json!({"limit": 100}));
            let e = apply(&cg, &res(r.into())).unwrap_err().to_string();
            assert!(e.starts_with(field), "{field} {e}");
        }
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn inherit_cpuset_copies_down_from_the_nearest_full_ancestor() {
        let t = TempCg::new("v1-cpuset-inherit");
        let files = ["cpuset.cpus", "cpuset.mems"];
        t.dir("cpuset", &files);
        t.set("cpuset/cpuset.cpus", "0-3\n");
        t.set("cpuset/cpuset.mems", "0\n");
        t.dir("cpuset/a", &files);
        t.dir("cpuset/a/b", &files);
        t.set("cpuset/a/b/cpuset.cpus", "2\n"); // narrowed in between: b's own value is the source below it
        let c = t.dir("cpuset/a/b/c", &files);
        inherit_cpuset(&c).unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("cpuset/a/cpuset.cpus", "0-3"),
                ("cpuset/a/cpuset.mems", "0"),
                ("cpuset/a/b/cpuset.mems", "0"),
                ("cpuset/a/b/c/cpuset.cpus", "2"),
                ("cpuset/a/b/c/cpuset.mems", "0"),
            ])
        );
        // Already populated: two reads, no writes.
        inherit_cpuset(&c).unwrap();
        assert_eq!(t.log().len(), 5);
        // Not a cpuset directory: nothing to do.
        inherit_cpuset(&t.dir("memory/x", &["memory.limit_in_bytes"])).unwrap();
        assert_eq!(t.log().len(), 5);
    }
}
