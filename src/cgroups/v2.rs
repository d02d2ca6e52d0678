//! cgroup v2 resource files, with crun's conversions from v1-style values.
//!
//! Every `linux.resources` field is mapped in docs/cgroups.md. In short: a
//! field that is absent (or 0 where runc treats 0 as "unset") writes nothing;
//! v1-only tuning knobs that cannot loosen a limit here (swappiness,
//! disableOOMKiller, kernel, kernelTCP, useHierarchy, leaf weights) are
//! ignored as runc does; settings v2 cannot enforce at all (realtime budgets,
//! net_cls/net_prio) are refused as crun does. The helpers shared with
//! [`super::v1`] (writing with a named field, reading, formatting) live here too.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path};

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxRdma, LinuxResources,
    LinuxThrottleDevice,
};

use super::{check_name, write_file, CgroupError};

const MEM: &str = "linux.resources.memory";
const CPU: &str = "linux.resources.cpu";
const BLKIO: &str = "linux.resources.blockIO";

/// Write every `linux.resources` field that v2 has (devices excepted: see `devices`).
pub fn apply(dir: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    check(r)?;
    if let Some(c) = r.cpu() {
        cpuset(dir, c)?;
    }
    if let Some(m) = r.memory() {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    if let Some(p) = r.pids() {
        let limit = p.limit();
        if limit != 0 {
            let v = if limit < 0 {
                "max".to_string()
            } else {
                limit.to_string()
            };
            put(dir, "pids.max", &v, "linux.resources.pids.limit")?;
        }
    }
    if let Some(b) = r.block_io() {
        io(dir, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        hugetlb(dir, h, ".max", "max")?;
    }
    if let Some(rdma) = r.rdma() {
        put_rdma(dir, rdma)?;
    }
    if let Some(u) = r.unified() {
        unified(dir, u)?;
    }
    Ok(())
}

/// Everything that can be refused without touching the cgroup, so that a bad
/// `update` changes nothing.
fn check(r: &LinuxResources) -> Result<(), CgroupError> {
    check_common(r)?;
    if let Some(c) = r.cpu() {
        for (name, set) in [
            ("realtimeRuntime", nz(c.realtime_runtime()).is_some()),
            ("realtimePeriod", nz(c.realtime_period()).is_some()),
        ] {
            if set {
                return Err(invalid(
                    &format!("{CPU}.{name}"),
                    "cgroup v2 has no real-time group scheduling (cpu.rt_* are v1 only); remove the field".into(),
                ));
            }
        }
    }
    if let Some(n) = r.network() {
        let set = nz(n.class_id()).map(|_| "classID").or_else(|| {
            n.priorities()
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|_| "priorities")
        });
        if let Some(name) = set {
            return Err(invalid(
                &format!("linux.resources.network.{name}"),
                "cgroup v2 has no net_cls/net_prio controllers (match the container's cgroup path in nftables/tc instead)"
                    .into(),
            ));
        }
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            check_unified_key(k)?;
        }
    }
    Ok(())
}

/// Checks that are the same on v1 and v2: value ranges and names.
pub(super) fn check_common(r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        for (name, v) in [
            ("limit", m.limit()),
            ("reservation", m.reservation()),
            ("swap", m.swap()),
        ] {
            if let Some(v) = nz(v) {
                if v < -1 {
                    return Err(invalid(
                        &format!("{MEM}.{name}"),
                        format!("{v} is not a byte count (use -1 for unlimited)"),
                    ));
                }
            }
        }
        if let (Some(l), Some(s)) = (nz(m.limit()), nz(m.swap())) {
            if l == -1 && s != -1 {
                return Err(invalid(
                    &format!("{MEM}.swap"),
                    "a swap limit needs a memory limit (memory.limit is -1, unlimited)".into(),
                ));
            }
            if l > 0 && s > 0 && s < l {
                return Err(invalid(
                    &format!("{MEM}.swap"),
                    format!("{s} is below memory.limit {l}: swap is the memory+swap limit and must be >= limit"),
                ));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = nz(c.shares()) {
            if !(MIN_SHARES..=MAX_SHARES).contains(&s) {
                return Err(invalid(
                    &format!("{CPU}.shares"),
                    format!("{s} is outside {MIN_SHARES}..{MAX_SHARES}"),
                ));
            }
        }
    }
    if let Some(b) = r.block_io() {
        let weight = |name: &str, w: Option<u16>| match nz(w) {
            Some(w) if !(10..=1000).contains(&w) => Err(invalid(
                &format!("{BLKIO}.{name}"),
                format!("{w} is outside 10..1000"),
            )),
            _ => Ok(()),
        };
        weight("weight", b.weight())?;
        weight("leafWeight", b.leaf_weight())?;
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            weight(&format!("weightDevice[{i}].weight"), d.weight())?;
            weight(&format!("weightDevice[{i}].leafWeight"), d.leaf_weight())?;
            check_dev(&format!("{BLKIO}.weightDevice[{i}]"), d.major(), d.minor())?;
        }
        for (name, list) in throttle_lists(b) {
            for (i, d) in list.iter().enumerate() {
                check_dev(&format!("{BLKIO}.{name}[{i}]"), d.major(), d.minor())?;
            }
        }
    }
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        check_page_size(&format!("{field}.pageSize"), h.page_size())?;
        if h.limit() < -1 {
            return Err(invalid(
                &format!("{field}.limit"),
                format!("{} is not a byte count (use -1 for unlimited)", h.limit()),
            ));
        }
    }
    if let Some(n) = r.network() {
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let name = p.name();
            if name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c.is_whitespace() || c == '/')
            {
                return Err(invalid(
                    &format!("linux.resources.network.priorities[{i}].name"),
                    format!("{name:?} is not a network interface name"),
                ));
            }
        }
    }
    if let Some(rdma) = r.rdma() {
        for dev in rdma.keys() {
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(invalid(
                    "linux.resources.rdma",
                    format!("{dev:?} is not an RDMA device name"),
                ));
            }
        }
    }
    Ok(())
}

fn check_dev(field: &str, major: i64, minor: i64) -> Result<(), CgroupError> {
    if major < 0 || minor < 0 {
        return Err(invalid(
            field,
            format!("device {major}:{minor}: major and minor must be >= 0"),
        ));
    }
    Ok(())
}

/// `<digits><KB|MB|GB|TB|PB>` as runc/the kernel name hugetlb files ("2MB", "1GB", "64KB").
fn check_page_size(field: &str, s: &str) -> Result<(), CgroupError> {
    check_name(s, field)?;
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
    {
        return Err(invalid(
            field,
            format!("{s:?} is not a page size like \"2MB\" or \"1GB\""),
        ));
    }
    Ok(())
}

fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        put(dir, "cpuset.cpus", cpus, &format!("{CPU}.cpus"))?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        put(dir, "cpuset.mems", mems, &format!("{CPU}.mems"))?;
    }
    Ok(())
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = nz(m.limit());
    let swap = nz(m.swap());
    if m.check_before_update() == Some(true) {
        check_usage(dir, limit, swap)?;
    }
    // memory.swap.max is swap alone; OCI's swap is memory+swap (v1 memsw).
    let swap_max = match (limit, swap) {
        // v1 compatibility: unlimited memory with no swap given means unlimited swap too.
        (Some(-1), None) | (_, Some(-1)) => Some("max".to_string()),
        (Some(l), Some(s)) => Some((s - l).to_string()),
        (None, Some(s)) => {
            // An update of swap alone: convert against the limit in force.
            let cur = read(dir, "memory.max")?;
            match cur.parse::<i64>() {
                Ok(l) if s >= l => Some((s - l).to_string()),
                Ok(l) => {
                    return Err(invalid(
                        &format!("{MEM}.swap"),
                        format!("{s} is below the current memory limit {l} (memory.max): swap is memory+swap"),
                    ))
                }
                Err(_) => {
                    return Err(invalid(
                        &format!("{MEM}.swap"),
                        format!("a swap limit needs a memory limit (memory.max is {cur:?}); give memory.limit too"),
                    ))
                }
            }
        }
        (_, None) => None,
    };
    if let Some(v) = swap_max {
        if let Err(e) = put(dir, "memory.swap.max", &v, &format!("{MEM}.swap")) {
            // Without swap accounting there is no file: "no swap" and "unlimited" are then already true.
            if (v == "max" || v == "0") && !dir.join("memory.swap.max").exists() {
                debug(&format!(
                    "{}: no memory.swap.max (swap accounting is off), ignoring swap {v}",
                    dir.display()
                ));
            } else {
                return Err(e);
            }
        }
    }
    if let Some(l) = limit {
        put(dir, "memory.max", &max_or(l), &format!("{MEM}.limit"))?;
    }
    if let Some(r) = nz(m.reservation()) {
        put(dir, "memory.low", &max_or(r), &format!("{MEM}.reservation"))?;
    }
    #[allow(deprecated)]
    let kernel = nz(m.kernel());
    for (name, set) in [
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("kernel", kernel.is_some()),
        ("kernelTCP", nz(m.kernel_tcp()).is_some()),
        ("useHierarchy", m.use_hierarchy().is_some()),
    ] {
        if set {
            debug(&format!(
                "{MEM}.{name} has no cgroup v2 equivalent: ignored (as runc does)"
            ));
        }
    }
    Ok(())
}

/// checkBeforeUpdate: refuse a limit below what the cgroup already uses.
fn check_usage(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
    let field = format!("{MEM}.checkBeforeUpdate");
    let current = read_u64(dir, "memory.current", &field)?;
    if let Some(l) = limit.filter(|l| *l > 0) {
        if (l as u64) < current {
            return Err(invalid(
                &field,
                format!(
                    "refusing memory limit {l}: below the current usage {current} (memory.current)"
                ),
            ));
        }
    }
    if let Some(s) = swap.filter(|s| *s > 0) {
        let swapped = match read_opt(dir, "memory.swap.current") {
            Some(v) => v.parse::<u64>().unwrap_or(0),
            None => 0,
        };
        if (s as u64) < current + swapped {
            return Err(invalid(
                &field,
                format!(
                    "refusing memory+swap limit {s}: below the current usage {} (memory.current + memory.swap.current)",
                    current + swapped
                ),
            ));
        }
    }
    Ok(())
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    let idle_field = format!("{CPU}.idle");
    // The kernel refuses cpu.weight while the group is idle: leave idle first, enter it last.
    if c.idle() == Some(0) {
        put(dir, "cpu.idle", "0", &idle_field)?;
    }
    if let Some(s) = nz(c.shares()) {
        put(
            dir,
            "cpu.weight",
            &shares_to_weight(s).to_string(),
            &format!("{CPU}.shares"),
        )
        .map_err(|e| idle_hint(dir, e))?;
    }
    let quota = nz(c.quota());
    let period = nz(c.period());
    let burst_field = format!("{CPU}.burst");
    let mut burst_later = None;
    if let Some(b) = c.burst() {
        let v = b.to_string();
        match put(dir, "cpu.max.burst", &v, &burst_field) {
            // burst may not exceed the quota: retry once the new quota is in.
            Err(e) if errno(&e) == Some(Errno::EINVAL) && (quota.is_some() || period.is_some()) => {
                burst_later = Some(v)
            }
            r => r?,
        }
    }
    if quota.is_some() || period.is_some() {
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            // A period alone keeps the quota in force (cpu.max is "$MAX $PERIOD").
            None => read_opt(dir, "cpu.max")
                .and_then(|s| s.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "max".to_string()),
        };
        let v = match period {
            Some(p) => format!("{q} {p}"),
            None => q, // the kernel keeps the period
        };
        let field = if quota.is_some() {
            format!("{CPU}.quota")
        } else {
            format!("{CPU}.period")
        };
        put(dir, "cpu.max", &v, &field)?;
    }
    if let Some(v) = burst_later {
        put(dir, "cpu.max.burst", &v, &burst_field)?;
    }
    if let Some(i) = c.idle().filter(|i| *i != 0) {
        put(dir, "cpu.idle", &i.to_string(), &idle_field)?;
    }
    Ok(())
}

fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = nz(b.weight());
    let devs: Vec<_> = b
        .weight_device()
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, d)| nz(d.weight()).map(|w| (i, d.major(), d.minor(), w)))
        .collect();
    if weight.is_some() || !devs.is_empty() {
        // BFQ takes the v1 range unchanged; otherwise io.weight (iocost) needs 1..10000.
        let bfq = dir.join("io.bfq.weight").exists();
        let (file, conv): (&str, fn(u16) -> u64) = if bfq {
            ("io.bfq.weight", u64::from)
        } else {
            ("io.weight", blkio_weight_to_io_weight)
        };
        if let Some(w) = weight {
            put(dir, file, &conv(w).to_string(), &format!("{BLKIO}.weight"))?;
        }
        for (i, major, minor, w) in devs {
            put(
                dir,
                file,
                &format!("{major}:{minor} {}", conv(w)),
                &format!("{BLKIO}.weightDevice[{i}].weight"),
            )?;
        }
    }
    let leaf = nz(b.leaf_weight()).is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| nz(d.leaf_weight()).is_some());
    if leaf {
        debug(&format!(
            "{BLKIO}.leafWeight has no cgroup v2 equivalent: ignored (as runc does)"
        ));
    }
    // One io.max line per device with every key given for it; a rate of 0
    // means "no limit" as on v1 (the kernel refuses 0 in io.max).
    let mut lines: Vec<((i64, i64), Vec<String>, String)> = Vec::new();
    for (name, list) in throttle_lists(b) {
        let key = match name {
            "throttleReadBpsDevice" => "rbps",
            "throttleWriteBpsDevice" => "wbps",
            "throttleReadIOPSDevice" => "riops",
            _ => "wiops",
        };
        for (i, d) in list.iter().enumerate() {
            let kv = format!(
                "{key}={}",
                if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                }
            );
            let dev = (d.major(), d.minor());
            match lines.iter_mut().find(|(k, _, _)| *k == dev) {
                Some((_, kvs, _)) => {
                    kvs.retain(|x| !x.starts_with(&format!("{key}=")));
                    kvs.push(kv);
                }
                None => lines.push((dev, vec![kv], format!("{BLKIO}.{name}[{i}]"))),
            }
        }
    }
    for ((major, minor), kvs, field) in lines {
        put(
            dir,
            "io.max",
            &format!("{major}:{minor} {}", kvs.join(" ")),
            &field,
        )?;
    }
    Ok(())
}

pub(super) fn throttle_lists(b: &LinuxBlockIo) -> [(&'static str, &[LinuxThrottleDevice]); 4] {
    fn l(v: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        v.as_deref().unwrap_or_default()
    }
    [
        ("throttleReadBpsDevice", l(b.throttle_read_bps_device())),
        ("throttleWriteBpsDevice", l(b.throttle_write_bps_device())),
        ("throttleReadIOPSDevice", l(b.throttle_read_iops_device())),
        ("throttleWriteIOPSDevice", l(b.throttle_write_iops_device())),
    ]
}

/// hugetlb.<size><suffix> for every limit, and the reservation limit
/// (hugetlb.<size>.rsvd<suffix>, kernel 5.7+) with the same value where the
/// kernel has it. `unlimited` is what -1 becomes ("max" on v2, "-1" on v1).
pub(super) fn hugetlb(
    dir: &Path,
    limits: &[LinuxHugepageLimit],
    suffix: &str,
    unlimited: &str,
) -> Result<(), CgroupError> {
    for (i, h) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        let file = format!("hugetlb.{size}{suffix}");
        // The page size is the user's: never create a file for it, say what is missing.
        if !dir.join(&file).exists() {
            return Err(invalid(
                &format!("{field}.pageSize"),
                format!(
                    "{} does not exist: {}",
                    dir.join(&file).display(),
                    ctrl_missing(dir, &file).unwrap_or_else(|| format!(
                        "this host has no {size} huge pages (see /sys/kernel/mm/hugepages)"
                    ))
                ),
            ));
        }
        let v = if h.limit() < 0 {
            unlimited.to_string()
        } else {
            h.limit().to_string()
        };
        put(dir, &file, &v, &format!("{field}.limit"))?;
        let rsvd = format!("hugetlb.{size}.rsvd{suffix}");
        if dir.join(&rsvd).exists() {
            put(dir, &rsvd, &v, &format!("{field}.limit"))?;
        }
    }
    Ok(())
}

/// rdma.max: one "<device> hca_handle=N hca_object=M" line per device, in name order.
pub(super) fn put_rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    let mut devs: Vec<(&String, &LinuxRdma)> = rdma.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line.len() > dev.len() {
            put(
                dir,
                "rdma.max",
                &line,
                &format!("linux.resources.rdma.{dev}"),
            )?;
        }
    }
    Ok(())
}

/// cgroup core files `unified` may write: the limits on the container's own subtree.
const UNIFIED_CORE_ALLOWED: &[&str] = &[
    "cgroup.max.depth",
    "cgroup.max.descendants",
    "cgroup.pressure",
];

fn check_unified_key(k: &str) -> Result<(), CgroupError> {
    let field = format!("linux.resources.unified.{k}");
    check_name(k, &field)?;
    let Some((ctrl, param)) = k.split_once('.') else {
        return Err(invalid(
            &field,
            format!("{k:?} is not of the form CONTROLLER.PARAMETER"),
        ));
    };
    if ctrl.is_empty() || param.is_empty() {
        return Err(invalid(
            &field,
            format!("{k:?} is not of the form CONTROLLER.PARAMETER"),
        ));
    }
    if ctrl == "cgroup" && !UNIFIED_CORE_ALLOWED.contains(&k) {
        return Err(invalid(
            &field,
            format!(
                "{k} is a cgroup core file keel manages itself (membership, freezing, killing, controllers); only {} may be set",
                UNIFIED_CORE_ALLOWED.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `unified`: written last (so it overrides the fields above), in key order,
/// one write per line of the value. The file must exist in the cgroup.
fn unified(dir: &Path, u: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for k in keys {
        let field = format!("linux.resources.unified.{k}");
        if !dir.join(k).exists() {
            return Err(invalid(
                &field,
                format!(
                    "{} does not exist: {}",
                    dir.join(k).display(),
                    why_missing(dir, k)
                ),
            ));
        }
        for line in u[k].lines().filter(|l| !l.trim().is_empty()) {
            put(dir, k, line, &field)?;
        }
    }
    Ok(())
}

const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

/// cpu.shares (v1, 2..262144) to cpu.weight (v2, 1..10000), crun's and runc's
/// linear conversion; shares outside the v1 range are clamped into it first
/// (as the v1 kernel does), so 0 and 1 give 1.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio.weight (v1, 10..1000) to io.weight (v2, 1..10000), crun's and runc's
/// linear conversion; values outside 10..1000 are clamped into it first.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// Enable the available controllers in `cgroup.subtree_control` of every
/// ancestor of `dir` below `root`, so that `dir` gets them.
///
/// `root`'s cgroup.controllers is read once; each level then gets one write of
/// every controller ("+cpu +io +memory ..."). If that fails, they are tried one
/// by one and those the level cannot take are dropped (with a debug line) for
/// the levels below. EBUSY means the level has processes of its own (the "no
/// internal processes" rule): an error naming the directory.
pub fn enable_controllers(root: &Path, dir: &Path) -> Result<(), CgroupError> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        CgroupError::Path(format!(
            "{} is not below the cgroup root {}",
            dir.display(),
            root.display()
        ))
    })?;
    let parts: Vec<_> = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if parts.is_empty() {
        return Ok(());
    }
    let list = fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|e| CgroupError::sys("reading", &root.join("cgroup.controllers"), e))?;
    let mut ctrls: Vec<&str> = list.split_whitespace().collect();
    let mut level = root.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        if ctrls.is_empty() {
            break;
        }
        enable_at(&level, &mut ctrls)?;
        level.push(part);
    }
    if !ctrls.is_empty() {
        enable_at(&level, &mut ctrls)?;
    }
    Ok(())
}

fn enable_at(level: &Path, ctrls: &mut Vec<&str>) -> Result<(), CgroupError> {
    const FIELD: &str = "linux.cgroupsPath";
    let all = ctrls
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let busy = |what: &str| {
        invalid(
            FIELD,
            format!(
                "cannot enable {what} in {}: that cgroup has processes of its own, and cgroup v2 allows \
                 controllers for child cgroups only when it has none (move them to a leaf cgroup, or use a \
                 cgroupsPath elsewhere)",
                level.join("cgroup.subtree_control").display()
            ),
        )
    };
    match put(level, "cgroup.subtree_control", &all, FIELD) {
        Ok(()) => return Ok(()),
        Err(e) if errno(&e) == Some(Errno::EBUSY) => return Err(busy(&all)),
        Err(_) => {}
    }
    let mut keep = Vec::with_capacity(ctrls.len());
    for c in ctrls.iter() {
        match put(level, "cgroup.subtree_control", &format!("+{c}"), FIELD) {
            Ok(()) => keep.push(*c),
            Err(e) if errno(&e) == Some(Errno::EBUSY) => return Err(busy(&format!("+{c}"))),
            Err(e) => debug(&format!("not enabling the {c} controller: {e}")),
        }
    }
    *ctrls = keep;
    Ok(())
}

// ---- helpers shared with v1 ----

/// EINVAL from cpu.weight/cpu.shares while the group is idle: say so.
pub(super) fn idle_hint(dir: &Path, e: CgroupError) -> CgroupError {
    match (&e, errno(&e)) {
        (CgroupError::Write { field, .. }, Some(Errno::EINVAL))
            if read_opt(dir, "cpu.idle").is_some_and(|v| v != "0") =>
        {
            invalid(
                field,
                format!(
                    "{} is idle (cpu.idle is 1) and the kernel takes no weight then: set cpu.idle to 0 as well",
                    dir.display()
                ),
            )
        }
        _ => e,
    }
}

/// `Some(v)` unless absent or 0 (runc treats 0 as "not set" for these fields).
pub(super) fn nz<T: PartialEq + Default>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

/// -1 (any negative) as v2's "max".
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

pub(super) fn invalid(field: &str, msg: String) -> CgroupError {
    CgroupError::Invalid {
        field: field.to_string(),
        msg,
    }
}

pub(super) fn errno(e: &CgroupError) -> Option<Errno> {
    match e {
        CgroupError::Write { errno, .. } | CgroupError::Sys { errno, .. } => Some(*errno),
        _ => None,
    }
}

pub(super) fn debug(msg: &str) {
    crate::logging::debug(msg);
}

/// [`write_file`], with a clearer error when the file does not exist (opening a
/// missing cgroupfs file for writing fails with EACCES, which misleads).
pub(super) fn put(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    #[cfg(test)]
    if let Some(errno) = testutil::injected(file, value) {
        let e = CgroupError::Write {
            field: field.to_string(),
            file: dir.join(file),
            value: value.to_string(),
            errno,
        };
        return Err(refine(e, dir, file, field));
    }
    match write_file(dir, file, value, field) {
        Ok(()) => {
            #[cfg(test)]
            testutil::record(&dir.join(file), value);
            Ok(())
        }
        Err(e) => Err(refine(e, dir, file, field)),
    }
}

fn refine(e: CgroupError, dir: &Path, file: &str, field: &str) -> CgroupError {
    if matches!(
        errno(&e),
        Some(Errno::EACCES | Errno::EPERM | Errno::ENOENT)
    ) && !dir.join(file).exists()
    {
        return invalid(
            field,
            format!(
                "{} does not exist: {}",
                dir.join(file).display(),
                why_missing(dir, file)
            ),
        );
    }
    e
}

/// Why a cgroup file is missing: on v2, usually a controller not enabled for the cgroup.
pub(super) fn why_missing(dir: &Path, file: &str) -> String {
    ctrl_missing(dir, file).unwrap_or_else(|| {
        "this kernel does not provide it (feature not built in, or not supported here)".into()
    })
}

/// On v2, the explanation when `file`'s controller is not in the cgroup's cgroup.controllers.
fn ctrl_missing(dir: &Path, file: &str) -> Option<String> {
    let ctrl = file.split('.').next().unwrap_or(file);
    let list = fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    if ctrl == "cgroup" || list.split_whitespace().any(|c| c == ctrl) {
        return None;
    }
    Some(format!(
        "the {ctrl} controller is not enabled for this cgroup (its cgroup.controllers has: {})",
        if list.trim().is_empty() {
            "nothing"
        } else {
            list.trim()
        }
    ))
}

/// A cgroup file's content, trimmed; a missing file is an error naming it.
pub(super) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let p = dir.join(file);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| CgroupError::sys("reading", &p, e))
}

/// A cgroup file's content, trimmed, or None when it does not exist (or cannot be read).
pub(super) fn read_opt(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

pub(super) fn read_u64(dir: &Path, file: &str, field: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file)?;
    s.parse::<u64>().map_err(|_| {
        invalid(
            field,
            format!("{} holds {s:?}, not a number", dir.join(file).display()),
        )
    })
}

/// Unit-test support shared with v1: unique temp dirs standing in for cgroup
/// directories, a per-thread log of every successful write (so ordering is
/// visible even when a file is written twice) and injected write failures.
#[cfg(test)]
pub(super) mod testutil {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::errno::Errno;

    thread_local! {
        static LOG: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
        static FAIL: RefCell<Vec<(String, Option<String>, Errno)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn record(path: &Path, value: &str) {
        LOG.with(|l| l.borrow_mut().push((path.to_path_buf(), value.to_string())));
    }

    /// The next write of `file` (in any directory) fails with `e`, once per call.
    pub fn fail(file: &str, e: Errno) {
        FAIL.with(|f| f.borrow_mut().push((file.to_string(), None, e)));
    }

    /// The next write of exactly `value` to `file` fails with `e`.
    pub fn fail_value(file: &str, value: &str, e: Errno) {
        FAIL.with(|f| {
            f.borrow_mut()
                .push((file.to_string(), Some(value.to_string()), e))
        });
    }

    pub fn injected(file: &str, value: &str) -> Option<Errno> {
        FAIL.with(|f| {
            let mut f = f.borrow_mut();
            let i = f
                .iter()
                .position(|(n, v, _)| n == file && v.as_deref().map_or(true, |v| v == value))?;
            Some(f.remove(i).2)
        })
    }

    pub struct TempCg {
        pub root: PathBuf,
    }

    impl TempCg {
        pub fn new(tag: &str) -> TempCg {
            static N: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "keel-cgtest-{}-{}-{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            LOG.with(|l| l.borrow_mut().clear());
            FAIL.with(|f| f.borrow_mut().clear());
            TempCg { root }
        }

        /// Make `sub` (relative, may be "") with the given empty files; returns its path.
        pub fn dir(&self, sub: &str, files: &[&str]) -> PathBuf {
            let d = if sub.is_empty() {
                self.root.clone()
            } else {
                self.root.join(sub)
            };
            std::fs::create_dir_all(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "").unwrap();
            }
            d
        }

        pub fn set(&self, rel: &str, content: &str) {
            std::fs::write(self.root.join(rel), content).unwrap();
        }

        pub fn get(&self, rel: &str) -> String {
            std::fs::read_to_string(self.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
        }

        /// Every write so far: (path relative to the root, value).
        pub fn log(&self) -> Vec<(String, String)> {
            LOG.with(|l| {
                l.borrow()
                    .iter()
                    .map(|(p, v)| {
                        let rel = p.strip_prefix(&self.root).unwrap_or(p);
                        (rel.display().to_string(), v.clone())
                    })
                    .collect()
            })
        }
    }

    impl Drop for TempCg {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// Shorthand for expected logs.
    pub fn w(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{fail, fail_value, w, TempCg};
    use super::*;
    use serde_json::json;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    /// A v2 cgroup dir with the usual files of the given controllers, empty.
    fn cg(t: &TempCg, ctrls: &str) -> std::path::PathBuf {
        let mut files = vec![
            "cgroup.procs",
            "cgroup.controllers",
            "cgroup.subtree_control",
        ];
        for c in ctrls.split_whitespace() {
            files.extend_from_slice(match c {
                "memory" => &[
                    "memory.max",
                    "memory.low",
                    "memory.swap.max",
                    "memory.current",
                    "memory.swap.current",
                ][..],
                "cpu" => &["cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle"][..],
                "cpuset" => &["cpuset.cpus", "cpuset.mems"][..],
                "pids" => &["pids.max"][..],
                "io" => &["io.weight", "io.max"][..],
                "hugetlb" => &["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "hugetlb.1GB.max"][..],
                "rdma" => &["rdma.max"][..],
                _ => &[][..],
            });
        }
        let d = t.dir("c", &files);
        t.set("c/cgroup.controllers", &format!("{ctrls}\n"));
        d
    }

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma";

    #[test]
    fn shares_to_weight_is_cruns_linear_map() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Clamped into the v1 range first, as the v1 kernel does.
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
    }

    #[test]
    fn blkio_weight_to_io_weight_is_cruns_linear_map() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(100), 910);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(0), 1);
        assert_eq!(blkio_weight_to_io_weight(5), 1);
        assert_eq!(blkio_weight_to_io_weight(u16::MAX), 10_000);
    }

    #[test]
    fn absent_or_zero_fields_write_nothing() {
        let t = TempCg::new("v2-empty");
        let d = cg(&t, ALL);
        apply(&d, &res(json!({}))).unwrap();
        apply(
            &d,
            &res(json!({
                "memory": {"limit": 0, "reservation": 0, "swap": 0, "disableOOMKiller": false},
                "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
                "pids": {"limit": 0},
                "blockIO": {"weight": 0},
                "hugepageLimits": [],
                "unified": {}
            })),
        )
        .unwrap();
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn memory_limit_swap_reservation() {
        let t = TempCg::new("v2-mem");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(
                json!({"memory": {"limit": 1_000_000, "swap": 1_500_000, "reservation": 500_000}}),
            ),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/memory.swap.max", "500000"),
                ("c/memory.max", "1000000"),
                ("c/memory.low", "500000")
            ])
        );
        assert_eq!(t.get("c/memory.max"), "1000000");
    }

    #[test]
    fn memory_minus_one_is_max_and_swap_follows() {
        let t = TempCg::new("v2-mem-max");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"memory": {"limit": -1, "reservation": -1}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/memory.swap.max", "max"),
                ("c/memory.max", "max"),
                ("c/memory.low", "max")
            ])
        );
    }

    #[test]
    fn swap_equal_to_limit_disables_swap() {
        let t = TempCg::new("v2-noswap");
        let d = cg(&t, ALL);
        apply(&d, &res(json!({"memory": {"limit": 4096, "swap": 4096}}))).unwrap();
        assert_eq!(
            t.log(),
            w(&[("c/memory.swap.max", "0"), ("c/memory.max", "4096")])
        );
        apply(&d, &res(json!({"memory": {"limit": 4096, "swap": -1}}))).unwrap();
        assert_eq!(t.get("c/memory.swap.max"), "max");
    }

    #[test]
    fn swap_alone_converts_against_the_limit_in_force() {
        let t = TempCg::new("v2-swap-alone");
        let d = cg(&t, ALL);
        t.set("c/memory.max", "1000\n");
        apply(&d, &res(json!({"memory": {"swap": 3000}}))).unwrap();
        assert_eq!(t.log(), w(&[("c/memory.swap.max", "2000")]));
        t.set("c/memory.max", "max\n");
        let e = apply(&d, &res(json!({"memory": {"swap": 3000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.memory.swap") && e.contains("needs a memory limit"),
            "{e}"
        );
    }

    #[test]
    fn swap_below_limit_or_with_unlimited_memory_is_refused_before_writing() {
        let t = TempCg::new("v2-swap-bad");
        let d = cg(&t, ALL);
        let e = apply(&d, &res(json!({"memory": {"limit": 2000, "swap": 1000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.swap:") && e.contains(">= limit"),
            "{e}"
        );
        let e = apply(&d, &res(json!({"memory": {"limit": -1, "swap": 1000}})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
        let e = apply(&d, &res(json!({"memory": {"limit": -7}})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.memory.limit:"), "{e}");
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn swap_without_swap_accounting() {
        let t = TempCg::new("v2-swapacct");
        let d = cg(&t, ALL);
        std::fs::remove_file(d.join("memory.swap.max")).unwrap();
        // "max" (and "0") are already true without swap accounting: ignored.
        fail("memory.swap.max", Errno::EACCES);
        apply(&d, &res(json!({"memory": {"limit": -1}}))).unwrap();
        assert_eq!(t.log(), w(&[("c/memory.max", "max")]));
        // A real swap limit cannot be honoured: an error naming field and file.
        fail("memory.swap.max", Errno::EACCES);
        let e = apply(&d, &res(json!({"memory": {"limit": 1000, "swap": 3000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.swap:")
                && e.contains("memory.swap.max does not exist"),
            "{e}"
        );
    }

    #[test]
    fn v1_only_memory_knobs_are_ignored() {
        let t = TempCg::new("v2-mem-v1");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(
                json!({"memory": {"swappiness": 10, "disableOOMKiller": true, "kernel": 1_000_000,
                                    "kernelTCP": 1_000_000, "useHierarchy": true}}),
            ),
        )
        .unwrap();
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let t = TempCg::new("v2-cbu");
        let d = cg(&t, ALL);
        t.set("c/memory.current", "5000\n");
        t.set("c/memory.swap.current", "1000\n");
        let e = apply(
            &d,
            &res(json!({"memory": {"limit": 4000, "checkBeforeUpdate": true}})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.memory.checkBeforeUpdate:") && e.contains("5000"),
            "{e}"
        );
        let e = apply(
            &d,
            &res(json!({"memory": {"limit": 5000, "swap": 5500, "checkBeforeUpdate": true}})),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("6000"), "{e}");
        assert_eq!(t.log(), w(&[]));
        apply(
            &d,
            &res(json!({"memory": {"limit": 6000, "checkBeforeUpdate": true}})),
        )
        .unwrap();
        // Without the flag the kernel decides.
        apply(&d, &res(json!({"memory": {"limit": 4000}}))).unwrap();
        assert_eq!(t.get("c/memory.max"), "4000");
    }

    #[test]
    fn cpu_weight_max_burst_idle_in_order() {
        let t = TempCg::new("v2-cpu");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "idle": 1}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/cpu.weight", "39"),
                ("c/cpu.max.burst", "10000"),
                ("c/cpu.max", "50000 100000"),
                ("c/cpu.idle", "1"),
            ])
        );
        // Leaving idle comes before the weight (the kernel refuses a weight while idle).
        let t = TempCg::new("v2-cpu-idle0");
        let d = cg(&t, ALL);
        apply(&d, &res(json!({"cpu": {"shares": 2, "idle": 0}}))).unwrap();
        assert_eq!(t.log(), w(&[("c/cpu.idle", "0"), ("c/cpu.weight", "1")]));
    }

    #[test]
    fn a_weight_refused_while_idle_says_why() {
        let t = TempCg::new("v2-idle-weight");
        let d = cg(&t, ALL);
        t.set("c/cpu.idle", "1\n");
        fail("cpu.weight", Errno::EINVAL);
        let e = apply(&d, &res(json!({"cpu": {"shares": 1024}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.shares:") && e.contains("cpu.idle is 1"),
            "{e}"
        );
    }

    #[test]
    fn cpu_max_forms() {
        let t = TempCg::new("v2-cpumax");
        let d = cg(&t, ALL);
        apply(&d, &res(json!({"cpu": {"quota": -1, "period": 100000}}))).unwrap();
        assert_eq!(t.get("c/cpu.max"), "max 100000");
        apply(&d, &res(json!({"cpu": {"quota": 20000}}))).unwrap();
        assert_eq!(t.get("c/cpu.max"), "20000");
        // A period alone keeps the quota in force.
        t.set("c/cpu.max", "30000 100000\n");
        apply(&d, &res(json!({"cpu": {"period": 50000}}))).unwrap();
        assert_eq!(t.get("c/cpu.max"), "30000 50000");
        t.set("c/cpu.max", "max 100000\n");
        apply(&d, &res(json!({"cpu": {"period": 50000}}))).unwrap();
        assert_eq!(t.get("c/cpu.max"), "max 50000");
    }

    #[test]
    fn cpu_burst_is_retried_after_the_quota() {
        let t = TempCg::new("v2-burst");
        let d = cg(&t, ALL);
        fail("cpu.max.burst", Errno::EINVAL);
        apply(
            &d,
            &res(json!({"cpu": {"quota": 200000, "period": 100000, "burst": 150000}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/cpu.max", "200000 100000"),
                ("c/cpu.max.burst", "150000")
            ])
        );
        // Without a quota to write first, the error stands.
        fail("cpu.max.burst", Errno::EINVAL);
        let e = apply(&d, &res(json!({"cpu": {"burst": 150000}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.cpu.burst:") && e.contains("cpu.max.burst"),
            "{e}"
        );
    }

    #[test]
    fn shares_out_of_range_are_refused() {
        let t = TempCg::new("v2-shares");
        let d = cg(&t, ALL);
        let e = apply(&d, &res(json!({"cpu": {"shares": 1}})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.cpu.shares:"), "{e}");
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn realtime_and_network_are_refused_on_v2() {
        let t = TempCg::new("v2-refuse");
        let d = cg(&t, ALL);
        let e = apply(
            &d,
            &res(json!({"memory": {"limit": 1}, "cpu": {"realtimeRuntime": 950000}})),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.cpu.realtimeRuntime:"),
            "{e}"
        );
        let e = apply(&d, &res(json!({"cpu": {"realtimePeriod": 1000000}}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.cpu.realtimePeriod:"),
            "{e}"
        );
        let e = apply(&d, &res(json!({"network": {"classID": 1048577}}))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.network.classID:"),
            "{e}"
        );
        let e = apply(
            &d,
            &res(json!({"network": {"priorities": [{"name": "eth0", "priority": 5}]}})),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.network.priorities:"),
            "{e}"
        );
        assert_eq!(t.log(), w(&[]));
        // Zero values are "unset", as in runc.
        apply(&d, &res(json!({"cpu": {"realtimeRuntime": 0, "realtimePeriod": 0}, "network": {"classID": 0}})))
            .unwrap();
    }

    #[test]
    fn cpuset_and_pids() {
        let t = TempCg::new("v2-cpuset-pids");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"cpu": {"cpus": "0-1", "mems": "0"}, "pids": {"limit": 100}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/cpuset.cpus", "0-1"),
                ("c/cpuset.mems", "0"),
                ("c/pids.max", "100")
            ])
        );
        apply(&d, &res(json!({"pids": {"limit": -1}}))).unwrap();
        assert_eq!(t.get("c/pids.max"), "max");
        apply(&d, &res(json!({"pids": {"limit": -5}}))).unwrap();
        assert_eq!(t.get("c/pids.max"), "max");
    }

    #[test]
    fn io_weight_uses_bfq_when_present() {
        let t = TempCg::new("v2-bfq");
        let d = cg(&t, ALL);
        t.set("c/io.bfq.weight", "default 100\n");
        apply(
            &d,
            &res(json!({"blockIO": {"weight": 300, "leafWeight": 200,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 10}, {"major": 8, "minor": 16}]}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[("c/io.bfq.weight", "300"), ("c/io.bfq.weight", "8:0 500")])
        );
    }

    #[test]
    fn io_weight_falls_back_to_converted_io_weight() {
        let t = TempCg::new("v2-ioweight");
        let d = cg(&t, ALL);
        apply(&d, &res(json!({"blockIO": {"weight": 100, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}]}})))
            .unwrap();
        assert_eq!(
            t.log(),
            w(&[("c/io.weight", "910"), ("c/io.weight", "8:0 10000")])
        );
        let e = apply(&d, &res(json!({"blockIO": {"weight": 5}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.weight:") && e.contains("10..1000"),
            "{e}"
        );
    }

    #[test]
    fn io_max_one_line_per_device() {
        let t = TempCg::new("v2-iomax");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"blockIO": {
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}, {"major": 253, "minor": 1, "rate": 7}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}]
            }})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/io.max", "8:0 rbps=1000 wbps=2000 wiops=30"),
                ("c/io.max", "253:1 wbps=7"),
                ("c/io.max", "8:16 riops=max"),
            ])
        );
        let e = apply(&d, &res(json!({"blockIO": {"throttleReadBpsDevice": [{"major": -1, "minor": 0, "rate": 1}]}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.throttleReadBpsDevice[0]:"),
            "{e}"
        );
    }

    #[test]
    fn hugetlb_max_and_reservation() {
        let t = TempCg::new("v2-hugetlb");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}]})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/hugetlb.2MB.max", "4194304"),
                ("c/hugetlb.2MB.rsvd.max", "4194304"),
                ("c/hugetlb.1GB.max", "max"),
            ])
        );
    }

    #[test]
    fn hugetlb_page_sizes_are_validated() {
        let t = TempCg::new("v2-hugetlb-bad");
        let d = cg(&t, ALL);
        let e = apply(
            &d,
            &res(json!({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("linux.resources.hugepageLimits[0].pageSize:")
                && e.contains("hugetlb.64KB.max does not exist"),
            "{e}"
        );
        assert!(!d.join("hugetlb.64KB.max").exists());
        for bad in ["../x", "2mb", "MB", "2MB.max", ""] {
            let e = apply(
                &d,
                &res(json!({"hugepageLimits": [{"pageSize": bad, "limit": 1}]})),
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("linux.resources.hugepageLimits[0].pageSize:"),
                "{bad}: {e}"
            );
        }
        t.set("c/cgroup.controllers", "cpu memory\n");
        let e = apply(
            &d,
            &res(json!({"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]})),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("hugetlb controller is not enabled"), "{e}");
        assert_eq!(t.log(), w(&[]));
    }

    #[test]
    fn rdma_lines_in_device_order() {
        let t = TempCg::new("v2-rdma");
        let d = cg(&t, ALL);
        apply(
            &d,
            &res(json!({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 5}, "x": {}}})),
        )
        .unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("c/rdma.max", "mlx4_0 hca_object=5"),
                ("c/rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")
            ])
        );
    }

    #[test]
    fn unified_is_written_last_line_by_line() {
        let t = TempCg::new("v2-unified");
        let d = cg(&t, ALL);
        t.set("c/memory.high", "");
        t.set("c/cgroup.max.depth", "");
        apply(
            &d,
            &res(json!({"memory": {"limit": 1000}, "unified": {"memory.max": "2000", "memory.high": "1500",
                        "io.max": "8:0 rbps=1\n8:16 wbps=2\n", "cgroup.max.depth": "3"}})),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.log(),
            w(&[
                ("c/memory.max", "1000"),
                ("c/cgroup.max.depth", "3"),
                ("c/io.max", "8:0 rbps=1"),
                ("c/io.max", "8:16 wbps=2"),
                ("c/memory.high", "1500"),
                ("c/memory.max", "2000"),
            ])
        );
    }

    #[test]
    fn unified_keys_are_checked() {
        let t = TempCg::new("v2-unified-bad");
        let d = cg(&t, "memory pids");
        let err = |u: serde_json::Value| {
            apply(&d, &res(json!({"unified": u})))
                .unwrap_err()
                .to_string()
        };
        let e = err(json!({"../memory.max": "1"}));
        assert!(
            e.starts_with("linux.resources.unified.../memory.max:")
                && e.contains("not a cgroup file name"),
            "{e}"
        );
        let e = err(json!({"cgroup.procs": "1"}));
        assert!(
            e.starts_with("linux.resources.unified.cgroup.procs:") && e.contains("keel manages"),
            "{e}"
        );
        for k in [
            "cgroup.kill",
            "cgroup.freeze",
            "cgroup.subtree_control",
            "cgroup.type",
        ] {
            assert!(err(json!({k: "1"})).contains("keel manages"), "{k}");
        }
        let e = err(json!({"memoryhigh": "1"}));
        assert!(e.contains("CONTROLLER.PARAMETER"), "{e}");
        let e = err(json!({"memory.nosuch": "1"}));
        assert!(
            e.starts_with("linux.resources.unified.memory.nosuch:") && e.contains("does not exist"),
            "{e}"
        );
        let e = err(json!({"io.max": "8:0 rbps=1"}));
        assert!(
            e.contains("io controller is not enabled") && e.contains("memory pids"),
            "{e}"
        );
        // Checked before anything is written.
        let e = apply(
            &d,
            &res(json!({"memory": {"limit": 5}, "unified": {"cgroup.procs": "1"}})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("keel manages"));
        assert_eq!(t.log(), w(&[]));
        assert!(!d.join("memory.nosuch").exists() && !d.join("io.max").exists());
    }

    #[test]
    fn errors_name_field_file_value_and_errno() {
        let t = TempCg::new("v2-errors");
        let d = cg(&t, ALL);
        fail("memory.max", Errno::EINVAL);
        let e = apply(&d, &res(json!({"memory": {"limit": 12345}})))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.memory.limit: writing \"12345\" to "),
            "{e}"
        );
        assert!(e.contains("/c/memory.max") && e.contains("EINVAL"), "{e}");
    }

    #[test]
    fn missing_controller_is_named() {
        let t = TempCg::new("v2-noctrl");
        let d = cg(&t, "cpu pids");
        // On cgroupfs, opening a missing file for writing fails with EACCES.
        fail("memory.max", Errno::EACCES);
        let e = apply(&d, &res(json!({"memory": {"limit": 1000}})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("linux.resources.memory.limit:"), "{e}");
        assert!(
            e.contains("memory controller is not enabled for this cgroup")
                && e.contains("cpu pids"),
            "{e}"
        );
    }

    #[test]
    fn enable_controllers_writes_every_ancestor_once() {
        let t = TempCg::new("v2-enable");
        for sub in ["", "a", "a/b", "a/b/c"] {
            t.dir(sub, &["cgroup.subtree_control", "cgroup.procs"]);
        }
        t.set("cgroup.controllers", "cpuset cpu io memory pids\n");
        enable_controllers(&t.root, &t.root.join("a/b/c")).unwrap();
        let all = "+cpuset +cpu +io +memory +pids";
        assert_eq!(
            t.log(),
            w(&[
                ("cgroup.subtree_control", all),
                ("a/cgroup.subtree_control", all),
                ("a/b/cgroup.subtree_control", all),
            ])
        );
        // The root itself: nothing to do.
        enable_controllers(&t.root, &t.root).unwrap();
        assert_eq!(t.log().len(), 3);
        let e = enable_controllers(&t.root.join("a"), Path::new("/elsewhere"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not below"), "{e}");
    }

    #[test]
    fn enable_controllers_drops_what_a_level_cannot_take() {
        let t = TempCg::new("v2-enable-some");
        for sub in ["", "a", "a/b"] {
            t.dir(sub, &["cgroup.subtree_control"]);
        }
        t.set("cgroup.controllers", "cpu memory pids\n");
        fail_value(
            "cgroup.subtree_control",
            "+cpu +memory +pids",
            Errno::ENOENT,
        );
        fail_value("cgroup.subtree_control", "+memory", Errno::EOPNOTSUPP);
        enable_controllers(&t.root, &t.root.join("a/b")).unwrap();
        assert_eq!(
            t.log(),
            w(&[
                ("cgroup.subtree_control", "+cpu"),
                ("cgroup.subtree_control", "+pids"),
                ("a/cgroup.subtree_control", "+cpu +pids"),
            ])
        );
    }

    #[test]
    fn enable_controllers_ebusy_names_the_directory() {
        let t = TempCg::new("v2-enable-busy");
        for sub in ["", "a", "a/b"] {
            t.dir(sub, &["cgroup.subtree_control"]);
        }
        t.set("cgroup.controllers", "cpu memory\n");
        fail_value("cgroup.subtree_control", "+cpu +memory", Errno::ENOENT); // root: falls back
        fail_value("cgroup.subtree_control", "+memory", Errno::EBUSY);
        let e = enable_controllers(&t.root, &t.root.join("a/b"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.cgroupsPath:") && e.contains("has processes of its own"),
            "{e}"
        );
        assert!(
            e.contains(&format!("{}/cgroup.subtree_control", t.root.display())),
            "{e}"
        );
        // EBUSY on the all-at-once write is reported the same way.
        fail("cgroup.subtree_control", Errno::EBUSY);
        let e = enable_controllers(&t.root, &t.root.join("a/b"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has processes of its own"), "{e}");
    }
}
