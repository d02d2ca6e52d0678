//! Statistics in runc's `events` shape, and OOM notifications.
//!
//! [`stats`] reads the container's cgroup files into runc's `types.Stats`
//! (the `data` of `runc events --stats`): the same field names, the same
//! `omitempty` behaviour and the same unit conversions. Every reader takes the
//! directory it reads, and a missing file only leaves its fields zero: a
//! container without a controller still gets stats.
//!
//! [`events`] prints those stats every interval and an `oom` event whenever
//! the kernel's OOM killer fires in the cgroup (v1: eventfd registered on
//! memory.oom_control; v2: the `oom_kill` counter of memory.events, which
//! the kernel signals with POLLPRI).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::Serialize;

use super::{Cgroup, CgroupError, Mode};

/// How often the event loop asks whether the container is still alive.
const ALIVE_CHECK: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// runc's types.Stats (field order, names and omitempty as runc encodes them)

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    cpu: Cpu,
    cpuset: CpuSet,
    memory: Memory,
    pids: Pids,
    blkio: Blkio,
    hugetlb: BTreeMap<String, Hugetlb>,
    intel_rdt: IntelRdt,
    /// runc only fills this for its own veth setups: `null` for OCI containers.
    network_interfaces: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    major: u64,
    #[serde(skip_serializing_if = "zero")]
    minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    op: String,
    #[serde(skip_serializing_if = "zero")]
    value: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_serviced_recursive: Vec<BlkioEntry>,
    /// runc spells this one without the "d".
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
struct Pids {
    #[serde(skip_serializing_if = "zero")]
    current: u64,
    #[serde(skip_serializing_if = "zero")]
    limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_time: u64,
}

/// CPU times, all in nanoseconds.
#[derive(Debug, Default, Serialize)]
struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_user: Vec<u64>,
    kernel: u64,
    user: u64,
}

#[derive(Debug, Default, Serialize)]
struct Cpu {
    usage: CpuUsage,
    throttling: Throttling,
}

#[derive(Debug, Default, Serialize)]
struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cpus: Vec<u16>,
    cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mems: Vec<u16>,
    mem_hardwall: u64,
    mem_exclusive: u64,
    memory_migrate: u64,
    memory_spread_page: u64,
    memory_spread_slab: u64,
    memory_pressure: u64,
    sched_load_balance: u64,
    sched_relax_domain_level: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
struct MemoryEntry {
    limit: u64,
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
struct Memory {
    #[serde(skip_serializing_if = "zero")]
    cache: u64,
    usage: MemoryEntry,
    swap: MemoryEntry,
    kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    raw: BTreeMap<String, u64>,
}

/// keel has no Intel RDT support: runc prints `{}` then.
#[derive(Debug, Default, Serialize)]
struct IntelRdt {}

/// runc's `types.Event`: `data` is left out for `oom`.
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Stats>,
}

// ---------------------------------------------------------------------------
// The whole cgroup

/// runc's `types.Stats` as JSON: cpu, cpuset, memory, pids, blkio, hugetlb
/// (plus runc's empty `intel_rdt` and null `network_interfaces`).
pub fn stats(cg: &Cgroup) -> Result<serde_json::Value, CgroupError> {
    let s = collect(cg);
    serde_json::to_value(&s).map_err(|e| CgroupError::Invalid {
        field: "stats".into(),
        msg: e.to_string(),
    })
}

/// Every controller's stats. v1 controllers are read from their hierarchy;
/// in hybrid mode a controller that has no v1 hierarchy (hugetlb is often
/// left to the unified one) is read from the unified directory instead.
fn collect(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    if cg.mode == Mode::Unified {
        if let Some(dir) = cg.unified.as_deref() {
            cpu_v2(dir, &mut s.cpu);
            s.memory = memory_v2(dir);
            s.pids = pids_v2(dir);
            s.blkio = io_v2(dir);
            s.hugetlb = hugetlb_v2(dir);
        }
        return s;
    }
    let unified = cg.unified.as_deref();
    let v1 = |c: &str| cg.v1_dir(c);
    if let Some(d) = v1("cpuacct") {
        cpuacct_v1(d, &mut s.cpu);
    }
    if let Some(d) = v1("cpu") {
        cpu_stat_v1(d, &mut s.cpu);
    }
    if v1("cpu").is_none() && v1("cpuacct").is_none() {
        if let Some(u) = unified {
            cpu_v2(u, &mut s.cpu);
        }
    }
    if let Some(d) = v1("cpuset") {
        s.cpuset = cpuset_v1(d);
    }
    match (v1("memory"), unified) {
        (Some(d), _) => s.memory = memory_v1(d),
        (None, Some(u)) => s.memory = memory_v2(u),
        _ => {}
    }
    match (v1("pids"), unified) {
        (Some(d), _) => s.pids = pids_v1(d),
        (None, Some(u)) if u.join("pids.current").exists() => s.pids = pids_v2(u),
        _ => {}
    }
    match (v1("blkio"), unified) {
        (Some(d), _) => s.blkio = blkio_v1(d),
        (None, Some(u)) => s.blkio = io_v2(u),
        _ => {}
    }
    match (v1("hugetlb"), unified) {
        (Some(d), _) => s.hugetlb = hugetlb_v1(d),
        (None, Some(u)) => s.hugetlb = hugetlb_v2(u),
        _ => {}
    }
    s
}

// ---------------------------------------------------------------------------
// File parsing

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

/// A cgroup number as runc reads it: "max" is u64::MAX, a negative number 0.
fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    match s.parse::<u64>() {
        Ok(v) => Some(v),
        Err(_) => s.parse::<i64>().ok().filter(|v| *v < 0).map(|_| 0),
    }
}

fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file).and_then(|s| parse_uint(&s))
}

/// "key value" lines (cpu.stat, memory.stat, memory.events...); bad lines are skipped.
fn parse_kv(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = parse_uint(it.next()?)?;
        Some((k, v))
    })
}

fn read_key(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = read(dir, file)?;
    let v = parse_kv(&text).find(|(k, _)| *k == key).map(|(_, v)| v);
    v
}

/// A cpuset list ("0-3,5") as every member, as runc reports cpus and mems.
fn parse_cpu_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) else {
            continue;
        };
        if lo <= hi {
            out.extend(lo..=hi);
        }
    }
    out
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| t as u64)
        .unwrap_or(100)
}

fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)).min(u128::from(u64::MAX)) as u64
}

// ---------------------------------------------------------------------------
// CPU

/// v1 cpuacct: totals and per-CPU times in ns, user/system split in USER_HZ ticks.
fn cpuacct_v1(dir: &Path, cpu: &mut Cpu) {
    let u = &mut cpu.usage;
    if let Some(text) = read(dir, "cpuacct.stat") {
        let hz = clock_ticks();
        for (k, v) in parse_kv(&text) {
            match k {
                "user" => u.user = ticks_to_ns(v, hz),
                "system" => u.kernel = ticks_to_ns(v, hz),
                _ => {}
            }
        }
    }
    if let Some(v) = read_u64(dir, "cpuacct.usage") {
        u.total = v;
    }
    if let Some(text) = read(dir, "cpuacct.usage_percpu") {
        u.percpu = text.split_whitespace().filter_map(parse_uint).collect();
    }
    // "cpu user system" then one line per CPU.
    if let Some(text) = read(dir, "cpuacct.usage_all") {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [_, user, system] = f[..] {
                if let (Some(user), Some(system)) = (parse_uint(user), parse_uint(system)) {
                    u.percpu_user.push(user);
                    u.percpu_kernel.push(system);
                }
            }
        }
    }
}

/// v1 cpu.stat: throttling (throttled_time already in ns).
fn cpu_stat_v1(dir: &Path, cpu: &mut Cpu) {
    let Some(text) = read(dir, "cpu.stat") else {
        return;
    };
    let t = &mut cpu.throttling;
    for (k, v) in parse_kv(&text) {
        match k {
            "nr_periods" => t.periods = v,
            "nr_throttled" => t.throttled_periods = v,
            "throttled_time" => t.throttled_time = v,
            _ => {}
        }
    }
}

/// v2 cpu.stat: microseconds, reported in ns.
fn cpu_v2(dir: &Path, cpu: &mut Cpu) {
    let Some(text) = read(dir, "cpu.stat") else {
        return;
    };
    let us = |v: u64| v.saturating_mul(1000);
    for (k, v) in parse_kv(&text) {
        match k {
            "usage_usec" => cpu.usage.total = us(v),
            "user_usec" => cpu.usage.user = us(v),
            "system_usec" => cpu.usage.kernel = us(v),
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_usec" => cpu.throttling.throttled_time = us(v),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// cpuset (v1 only, as in runc)

fn cpuset_v1(dir: &Path) -> CpuSet {
    let n = |f: &str| read_u64(dir, f).unwrap_or(0);
    CpuSet {
        cpus: read(dir, "cpuset.cpus")
            .map(|s| parse_cpu_list(&s))
            .unwrap_or_default(),
        cpu_exclusive: n("cpuset.cpu_exclusive"),
        mems: read(dir, "cpuset.mems")
            .map(|s| parse_cpu_list(&s))
            .unwrap_or_default(),
        mem_hardwall: n("cpuset.mem_hardwall"),
        mem_exclusive: n("cpuset.mem_exclusive"),
        memory_migrate: n("cpuset.memory_migrate"),
        memory_spread_page: n("cpuset.memory_spread_page"),
        memory_spread_slab: n("cpuset.memory_spread_slab"),
        memory_pressure: n("cpuset.memory_pressure"),
        sched_load_balance: n("cpuset.sched_load_balance"),
        sched_relax_domain_level: read(dir, "cpuset.sched_relax_domain_level")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------
// Memory

fn memory_stat(dir: &Path) -> BTreeMap<String, u64> {
    read(dir, "memory.stat")
        .map(|t| parse_kv(&t).map(|(k, v)| (k.to_string(), v)).collect())
        .unwrap_or_default()
}

/// One v1 counter family: `memory[.name].{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes}`.
fn memory_entry_v1(dir: &Path, prefix: &str) -> MemoryEntry {
    let n = |f: &str| read_u64(dir, &format!("{prefix}.{f}")).unwrap_or(0);
    MemoryEntry {
        limit: n("limit_in_bytes"),
        usage: n("usage_in_bytes"),
        max: n("max_usage_in_bytes"),
        failcnt: n("failcnt"),
    }
}

fn memory_v1(dir: &Path) -> Memory {
    let raw = memory_stat(dir);
    Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: memory_entry_v1(dir, "memory"),
        swap: memory_entry_v1(dir, "memory.memsw"),
        kernel: memory_entry_v1(dir, "memory.kmem"),
        kernel_tcp: memory_entry_v1(dir, "memory.kmem.tcp"),
        raw,
    }
}

/// v2: usage from memory.current/max (memory.peak as max, memory.events
/// "max" as failcnt); swap as v1 reports it, memory plus swap.
fn memory_v2(dir: &Path) -> Memory {
    let raw = memory_stat(dir);
    let usage = MemoryEntry {
        limit: read_u64(dir, "memory.max").unwrap_or(0),
        usage: read_u64(dir, "memory.current").unwrap_or(0),
        max: read_u64(dir, "memory.peak").unwrap_or(0),
        failcnt: read_key(dir, "memory.events", "max").unwrap_or(0),
    };
    // Without swap accounting (no memory.swap.current) runc starts from zero.
    let mut swap = match read_u64(dir, "memory.swap.current") {
        Some(current) => MemoryEntry {
            limit: read_u64(dir, "memory.swap.max").unwrap_or(0),
            usage: current,
            max: read_u64(dir, "memory.swap.peak").unwrap_or(0),
            failcnt: read_key(dir, "memory.swap.events", "max").unwrap_or(0),
        },
        None => MemoryEntry::default(),
    };
    swap.usage = swap.usage.saturating_add(usage.usage);
    if swap.limit != u64::MAX {
        swap.limit = swap.limit.saturating_add(usage.limit);
    }
    Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    }
}

// ---------------------------------------------------------------------------
// pids

/// "max" (no limit) is reported as 0, as runc does.
fn pids_limit(dir: &Path) -> u64 {
    read_u64(dir, "pids.max")
        .filter(|v| *v != u64::MAX)
        .unwrap_or(0)
}

fn pids_v1(dir: &Path) -> Pids {
    Pids {
        current: read_u64(dir, "pids.current").unwrap_or(0),
        limit: pids_limit(dir),
    }
}

/// Without the pids controller, runc counts cgroup.procs instead.
fn pids_v2(dir: &Path) -> Pids {
    match read_u64(dir, "pids.current") {
        Some(current) => Pids {
            current,
            limit: pids_limit(dir),
        },
        None => Pids {
            current: read(dir, "cgroup.procs")
                .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
                .unwrap_or(0),
            limit: 0,
        },
    }
}

// ---------------------------------------------------------------------------
// blkio / io

/// One v1 blkio file: "MAJ:MIN Op value" or "MAJ:MIN value" lines ("Total" skipped).
fn blkio_file(dir: &Path, file: &str) -> Vec<BlkioEntry> {
    let Some(text) = read(dir, file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split([' ', ':']).filter(|s| !s.is_empty()).collect();
            let (op, value) = match f.len() {
                3 => ("", f[2]),
                4 => (f[2], f[3]),
                _ => return None,
            };
            Some(BlkioEntry {
                major: f[0].parse().ok()?,
                minor: f[1].parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

type BlkioField = fn(&mut Blkio) -> &mut Vec<BlkioEntry>;

/// v1 blkio, in runc's order: the BFQ debug files, BFQ, CFQ, the recursive
/// throttle files, then the plain throttle files. A group is used when its
/// first file has entries.
fn blkio_v1(dir: &Path) -> Blkio {
    let sectors: BlkioField = |b| &mut b.sectors_recursive;
    let service_time: BlkioField = |b| &mut b.io_service_time_recursive;
    let wait_time: BlkioField = |b| &mut b.io_wait_time_recursive;
    let merged: BlkioField = |b| &mut b.io_merged_recursive;
    let queued: BlkioField = |b| &mut b.io_queued_recursive;
    let time: BlkioField = |b| &mut b.io_time_recursive;
    let serviced: BlkioField = |b| &mut b.io_serviced_recursive;
    let bytes: BlkioField = |b| &mut b.io_service_bytes_recursive;
    let groups: [&[(&str, BlkioField)]; 5] = [
        &[
            ("blkio.bfq.sectors_recursive", sectors),
            ("blkio.bfq.io_service_time_recursive", service_time),
            ("blkio.bfq.io_wait_time_recursive", wait_time),
            ("blkio.bfq.io_merged_recursive", merged),
            ("blkio.bfq.io_queued_recursive", queued),
            ("blkio.bfq.time_recursive", time),
            ("blkio.bfq.io_serviced_recursive", serviced),
            ("blkio.bfq.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.bfq.io_serviced_recursive", serviced),
            ("blkio.bfq.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.sectors_recursive", sectors),
            ("blkio.io_service_time_recursive", service_time),
            ("blkio.io_wait_time_recursive", wait_time),
            ("blkio.io_merged_recursive", merged),
            ("blkio.io_queued_recursive", queued),
            ("blkio.time_recursive", time),
            ("blkio.io_serviced_recursive", serviced),
            ("blkio.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.throttle.io_serviced_recursive", serviced),
            ("blkio.throttle.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.throttle.io_serviced", serviced),
            ("blkio.throttle.io_service_bytes", bytes),
        ],
    ];
    let mut b = Blkio::default();
    for group in groups {
        for (i, (file, field)) in group.iter().enumerate() {
            let entries = blkio_file(dir, file);
            if entries.is_empty() {
                if i == 0 {
                    break;
                }
                return b;
            }
            *field(&mut b) = entries;
            if i == group.len() - 1 {
                return b;
            }
        }
    }
    b
}

/// v2 io.stat mapped onto v1's tables: rbytes/wbytes → ioServiceBytesRecursive,
/// rios/wios → ioServicedRecursive ("Read"/"Write"); other keys have no v1 table.
fn io_v2(dir: &Path) -> Blkio {
    let mut b = Blkio::default();
    let Some(text) = read(dir, "io.stat") else {
        return b;
    };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for item in it {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (op, table) = match key {
                "rbytes" => ("Read", &mut b.io_service_bytes_recursive),
                "wbytes" => ("Write", &mut b.io_service_bytes_recursive),
                "rios" => ("Read", &mut b.io_serviced_recursive),
                "wios" => ("Write", &mut b.io_serviced_recursive),
                _ => continue,
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    b
}

// ---------------------------------------------------------------------------
// hugetlb

/// The page sizes ("2MB", "1GB") that have a `hugetlb.<size>.<suffix>` file in `dir`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name
                .strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

fn hugetlb_v1(dir: &Path) -> BTreeMap<String, Hugetlb> {
    hugetlb_sizes(dir, "usage_in_bytes")
        .into_iter()
        .map(|size| {
            let n = |f: &str| read_u64(dir, &format!("hugetlb.{size}.{f}")).unwrap_or(0);
            let h = Hugetlb {
                usage: n("usage_in_bytes"),
                max: n("max_usage_in_bytes"),
                failcnt: n("failcnt"),
            };
            (size, h)
        })
        .collect()
}

/// v2 has no maximum usage: `max` stays empty (as in runc); failcnt is events' "max".
fn hugetlb_v2(dir: &Path) -> BTreeMap<String, Hugetlb> {
    hugetlb_sizes(dir, "current")
        .into_iter()
        .map(|size| {
            let h = Hugetlb {
                usage: read_u64(dir, &format!("hugetlb.{size}.current")).unwrap_or(0),
                max: 0,
                failcnt: read_key(dir, &format!("hugetlb.{size}.events"), "max").unwrap_or(0),
            };
            (size, h)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Events

fn emit(
    out: &mut dyn Write,
    kind: &str,
    id: &str,
    data: Option<&Stats>,
) -> Result<(), CgroupError> {
    let ev = Event { kind, id, data };
    let line = serde_json::to_string(&ev).map_err(|e| CgroupError::Invalid {
        field: "events".into(),
        msg: e.to_string(),
    })?;
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| CgroupError::sys("writing event to", Path::new("<output>"), e))
}

/// runc's `events`: with `stats_once` one stats event; otherwise a stats
/// event every `interval` (the first after one interval) and an `oom` event
/// as soon as the OOM killer fires in the cgroup, until `alive()` is false.
/// One JSON object per line, flushed at once.
pub fn events(
    cg: &Cgroup,
    id: &str,
    interval: Duration,
    stats_once: bool,
    alive: &dyn Fn() -> bool,
    out: &mut dyn Write,
) -> Result<(), CgroupError> {
    if stats_once {
        return emit(out, "stats", id, Some(&collect(cg)));
    }
    let interval = interval.max(Duration::from_millis(1));
    let mut watch = OomWatch::new(cg);
    // A stream: its warnings cannot wait for the end.
    crate::logging::flush_warnings();
    let mut next = Instant::now() + interval;
    while alive() {
        let now = Instant::now();
        if now >= next {
            emit(out, "stats", id, Some(&collect(cg)))?;
            next += interval;
            if next <= now {
                next = now + interval;
            }
            continue;
        }
        if watch.wait((next - now).min(ALIVE_CHECK)) {
            emit(out, "oom", id, None)?;
        }
    }
    Ok(())
}

/// The OOM source of a cgroup.
enum OomWatch {
    None,
    /// v1: an eventfd registered through cgroup.event_control on memory.oom_control.
    V1 {
        efd: EventFd,
        _oom_control: File,
        event_control: PathBuf,
    },
    /// v2: memory.events, kept open (the kernel signals changes with POLLPRI
    /// to the readers of an open file) and its last oom_kill count.
    V2 {
        file: File,
        last: u64,
    },
}

impl OomWatch {
    fn new(cg: &Cgroup) -> OomWatch {
        let res = match (cg.v1_dir("memory"), cg.mode, cg.unified.as_deref()) {
            (Some(dir), _, _) => Self::v1(dir),
            (None, Mode::Unified, Some(dir)) => Self::v2(dir),
            _ => Ok(OomWatch::None),
        };
        res.unwrap_or_else(|e| {
            crate::logging::warn(&format!("events: no OOM notifications: {e}"));
            OomWatch::None
        })
    }

    fn v1(dir: &Path) -> Result<OomWatch, CgroupError> {
        let oc_path = dir.join("memory.oom_control");
        let oom_control =
            File::open(&oc_path).map_err(|e| CgroupError::sys("opening", &oc_path, e))?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(
            |errno| CgroupError::Sys {
                op: "eventfd for",
                path: oc_path.clone(),
                errno,
            },
        )?;
        let event_control = dir.join("cgroup.event_control");
        let reg = format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd());
        fs::write(&event_control, reg)
            .map_err(|e| CgroupError::sys("registering OOM event in", &event_control, e))?;
        Ok(OomWatch::V1 {
            efd,
            _oom_control: oom_control,
            event_control,
        })
    }

    fn v2(dir: &Path) -> Result<OomWatch, CgroupError> {
        let path = dir.join("memory.events");
        let mut file = match File::open(&path) {
            Ok(f) => f,
            // No memory controller in this cgroup: nothing to watch.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OomWatch::None),
            Err(e) => return Err(CgroupError::sys("opening", &path, e)),
        };
        let last = reread(&mut file).map_err(|e| CgroupError::sys("reading", &path, e))?;
        Ok(OomWatch::V2 { file, last })
    }

    /// Wait up to `timeout` for an OOM kill; true when there was one.
    fn wait(&mut self, timeout: Duration) -> bool {
        // Round up: a zero timeout would spin until the next tick.
        let ms = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .min(u128::from(u16::MAX)) as u16;
        let (oom, gone) = match self {
            OomWatch::None => {
                std::thread::sleep(timeout);
                (false, false)
            }
            OomWatch::V1 {
                efd, event_control, ..
            } => {
                let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
                let ready =
                    matches!(nix::poll::poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0);
                if ready && efd.read().is_ok() {
                    // The kernel also signals the eventfd when the cgroup is removed.
                    match event_control.exists() {
                        true => (true, false),
                        false => (false, true),
                    }
                } else {
                    (false, false)
                }
            }
            OomWatch::V2 { file, last } => {
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
                let _ = nix::poll::poll(&mut fds, PollTimeout::from(ms));
                // Re-read every time: that also re-arms the kernel's notification.
                match reread(file) {
                    Ok(n) => {
                        let fired = n > *last;
                        *last = n;
                        (fired, false)
                    }
                    Err(_) => (false, true),
                }
            }
        };
        if gone {
            *self = OomWatch::None;
        }
        oom
    }
}

/// The oom_kill count of memory.events text.
fn oom_kill_of(text: &str) -> u64 {
    parse_kv(text)
        .find(|(k, _)| *k == "oom_kill")
        .map(|(_, v)| v)
        .unwrap_or(0)
}

/// The v2 OOM kill counter of a cgroup directory (0 when unreadable).
pub fn oom_count(dir: &Path) -> u64 {
    read(dir, "memory.events")
        .map(|t| oom_kill_of(&t))
        .unwrap_or(0)
}

fn reread(file: &mut File) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(oom_kill_of(&text))
}

// ---------------------------------------------------------------------------
// --interval

/// A Go duration ("5s", "100ms", "1m30s", "1.5h"; units ns, us/µs, ms, s, m, h)
/// as `runc events --interval` takes it; it must be greater than zero.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let not_positive = || "duration interval must be greater than 0".to_string();
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Err(not_positive());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let n = digits(rest);
        let (int, r) = rest.split_at(n);
        rest = r;
        let mut frac = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = digits(r);
            frac = &r[..n];
            rest = &r[n..];
            if int.is_empty() && frac.is_empty() {
                return Err(invalid());
            }
        } else if int.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, r) = rest.split_at(unit_len);
        rest = r;
        let mult: u128 = match unit {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut v = whole.checked_mul(mult).ok_or_else(invalid)?;
        if !frac.is_empty() {
            let kept = &frac[..frac.len().min(18)];
            let f: u128 = kept.parse().map_err(|_| invalid())?;
            v += f * mult / 10u128.pow(kept.len() as u32);
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    if neg || total == 0 {
        return Err(not_positive());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::V1Dir;
    use serde_json::{json, Value};
    use std::cell::Cell;

    /// A temporary directory tree, removed on drop.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let p = std::env::temp_dir().join(format!("keel-stats-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Fixture(p)
        }
        fn dir(&self, sub: &str) -> PathBuf {
            let d = if sub.is_empty() {
                self.0.clone()
            } else {
                self.0.join(sub)
            };
            fs::create_dir_all(&d).unwrap();
            d
        }
        fn write(&self, sub: &str, files: &[(&str, &str)]) -> PathBuf {
            let d = self.dir(sub);
            for (f, text) in files {
                fs::write(d.join(f), text).unwrap();
            }
            d
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn unified(dir: &Path) -> Cgroup {
        Cgroup {
            mode: Mode::Unified,
            rel: PathBuf::from("/c1"),
            v1: Vec::new(),
            unified: Some(dir.to_path_buf()),
            made: Vec::new(),
        }
    }

    fn v2_fixture(name: &str) -> (Fixture, PathBuf) {
        let fx = Fixture::new(name);
        let d = fx.write(
            "",
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\ncore_sched.force_idle_usec 0\n\
                     nr_periods 10\nnr_throttled 3\nthrottled_usec 250\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "4194304\n"),
                ("memory.max", "max\n"),
                ("memory.peak", "8388608\n"),
                (
                    "memory.stat",
                    "anon 1048576\nfile 2097152\nkernel 4096\nshmem 0\npgfault 1234\nworkingset_refault_anon 0\n",
                ),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 7\noom 0\noom_kill 0\noom_group_kill 0\n",
                ),
                ("memory.swap.current", "1024\n"),
                ("memory.swap.max", "max\n"),
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
                (
                    "io.stat",
                    "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                     253:1 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 2\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                ("hugetlb.1GB.current", "0\n"),
                ("hugetlb.1GB.max", "max\n"),
                ("hugetlb.1GB.events", "max 0\n"),
                ("cgroup.procs", "1\n5\n9\n"),
            ],
        );
        (fx, d)
    }

    #[test]
    fn v2_stats_in_runc_shape() {
        let (_fx, d) = v2_fixture("v2");
        let v = stats(&unified(&d)).unwrap();
        assert_eq!(
            v["cpu"],
            json!({
                "usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
                "throttling": {"periods": 10, "throttledPeriods": 3, "throttledTime": 250_000}
            })
        );
        let m = &v["memory"];
        assert_eq!(m["cache"], 2_097_152);
        assert_eq!(
            m["usage"],
            json!({"limit": u64::MAX, "usage": 4_194_304u64, "max": 8_388_608u64, "failcnt": 7})
        );
        // v1-compatible swap: memory + swap; an unlimited swap stays unlimited.
        assert_eq!(
            m["swap"],
            json!({"limit": u64::MAX, "usage": 4_195_328u64, "failcnt": 0})
        );
        assert_eq!(m["kernel"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(m["kernelTCP"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(m["raw"]["anon"], 1_048_576);
        assert_eq!(m["raw"]["pgfault"], 1234);
        assert_eq!(m["raw"].as_object().unwrap().len(), 6);
        // pids.max "max" is reported as no limit (omitted).
        assert_eq!(v["pids"], json!({"current": 3}));
        assert_eq!(
            v["blkio"],
            json!({
                "ioServiceBytesRecursive": [
                    {"major": 8, "op": "Read", "value": 4096},
                    {"major": 8, "op": "Write", "value": 8192},
                    {"major": 253, "minor": 1, "op": "Read", "value": 512},
                    {"major": 253, "minor": 1, "op": "Write"}
                ],
                "ioServicedRecursive": [
                    {"major": 8, "op": "Read", "value": 1},
                    {"major": 8, "op": "Write", "value": 2},
                    {"major": 253, "minor": 1, "op": "Read", "value": 1},
                    {"major": 253, "minor": 1, "op": "Write"}
                ]
            })
        );
        assert_eq!(
            v["hugetlb"],
            json!({"1GB": {"failcnt": 0}, "2MB": {"usage": 2_097_152, "failcnt": 2}})
        );
        assert_eq!(v["intel_rdt"], json!({}));
        assert_eq!(v["network_interfaces"], Value::Null);
        // No cpuset stats on v2 (runc has none either): the zero struct.
        assert_eq!(v["cpuset"]["cpu_exclusive"], 0);
        assert!(v["cpuset"].get("cpus").is_none());
    }

    #[test]
    fn v2_swap_limit_adds_memory_limit() {
        let fx = Fixture::new("v2swap");
        let d = fx.write(
            "",
            &[
                ("memory.current", "100\n"),
                ("memory.max", "1000\n"),
                ("memory.swap.current", "10\n"),
                ("memory.swap.max", "500\n"),
            ],
        );
        let v = stats(&unified(&d)).unwrap();
        assert_eq!(
            v["memory"]["usage"],
            json!({"limit": 1000, "usage": 100, "failcnt": 0})
        );
        assert_eq!(
            v["memory"]["swap"],
            json!({"limit": 1500, "usage": 110, "failcnt": 0})
        );
        assert!(v["memory"].get("raw").is_none());
        assert!(v["memory"].get("cache").is_none());
    }

    #[test]
    fn v2_pids_without_controller_count_procs() {
        let fx = Fixture::new("v2pids");
        let d = fx.write("", &[("cgroup.procs", "1\n5\n9\n")]);
        let v = stats(&unified(&d)).unwrap();
        assert_eq!(v["pids"], json!({"current": 3}));
    }

    fn v1_fixture(name: &str) -> (Fixture, Cgroup) {
        let fx = Fixture::new(name);
        let hz = clock_ticks();
        let cpuacct = fx.write(
            "cpuacct/c1",
            &[
                ("cpuacct.usage", "3000000000\n"),
                ("cpuacct.usage_percpu", "1000000000 2000000000 \n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 600000000 400000000\n1 1500000000 500000000\n",
                ),
                (
                    "cpuacct.stat",
                    &format!("user {}\nsystem {}\n", 2 * hz, hz / 2),
                ),
            ],
        );
        let cpu = fx.write(
            "cpu/c1",
            &[(
                "cpu.stat",
                "nr_periods 20\nnr_throttled 5\nthrottled_time 123456\nnr_bursts 0\nburst_time 0\n",
            )],
        );
        let memory = fx.write(
            "memory/c1",
            &[
                ("memory.usage_in_bytes", "5242880\n"),
                ("memory.max_usage_in_bytes", "10485760\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.failcnt", "0\n"),
                ("memory.memsw.usage_in_bytes", "5246976\n"),
                ("memory.memsw.max_usage_in_bytes", "10489856\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.failcnt", "0\n"),
                ("memory.kmem.usage_in_bytes", "65536\n"),
                ("memory.kmem.max_usage_in_bytes", "131072\n"),
                ("memory.kmem.failcnt", "0\n"),
                ("memory.kmem.tcp.usage_in_bytes", "0\n"),
                ("memory.kmem.tcp.max_usage_in_bytes", "0\n"),
                ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.tcp.failcnt", "0\n"),
                (
                    "memory.stat",
                    "cache 1048576\nrss 4194304\nmapped_file 0\npgpgin 100\n\
                     hierarchical_memory_limit 9223372036854771712\ntotal_cache 1048576\n",
                ),
            ],
        );
        let pids = fx.write("pids/c1", &[("pids.current", "2\n"), ("pids.max", "64\n")]);
        let blkio = fx.write(
            "blkio/c1",
            &[
                // CFQ/BFQ files absent or empty: runc falls through to throttle.
                ("blkio.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.throttle.io_serviced_recursive", "Total 0\n"),
                (
                    "blkio.throttle.io_serviced",
                    "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 30\nTotal 30\n",
                ),
                (
                    "blkio.throttle.io_service_bytes",
                    "8:0 Read 40960\n8:0 Write 81920\n8:0 Total 122880\nTotal 122880\n",
                ),
            ],
        );
        let hugetlb = fx.write(
            "hugetlb/c1",
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
            ],
        );
        let cpuset = fx.write(
            "cpuset/c1",
            &[
                ("cpuset.cpus", "0-2,5\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.cpu_exclusive", "0\n"),
                ("cpuset.mem_hardwall", "1\n"),
                ("cpuset.sched_load_balance", "1\n"),
                ("cpuset.sched_relax_domain_level", "-1\n"),
            ],
        );
        let dir = |name: &str, path: PathBuf| V1Dir {
            name: name.into(),
            controllers: vec![name.into()],
            path,
        };
        let cg = Cgroup {
            mode: Mode::Legacy,
            rel: PathBuf::from("/c1"),
            v1: vec![
                dir("cpu", cpu),
                dir("cpuacct", cpuacct),
                dir("memory", memory),
                dir("pids", pids),
                dir("blkio", blkio),
                dir("hugetlb", hugetlb),
                dir("cpuset", cpuset),
            ],
            unified: None,
            made: Vec::new(),
        };
        (fx, cg)
    }

    #[test]
    fn v1_stats_in_runc_shape() {
        let (_fx, cg) = v1_fixture("v1");
        let v = stats(&cg).unwrap();
        assert_eq!(
            v["cpu"],
            json!({
                "usage": {
                    "total": 3_000_000_000u64,
                    "percpu": [1_000_000_000u64, 2_000_000_000u64],
                    "percpu_kernel": [400_000_000u64, 500_000_000u64],
                    "percpu_user": [600_000_000u64, 1_500_000_000u64],
                    "kernel": 500_000_000u64,
                    "user": 2_000_000_000u64
                },
                "throttling": {"periods": 20, "throttledPeriods": 5, "throttledTime": 123_456}
            })
        );
        let m = &v["memory"];
        assert_eq!(m["cache"], 1_048_576);
        let lim = 9_223_372_036_854_771_712u64;
        assert_eq!(
            m["usage"],
            json!({"limit": lim, "usage": 5_242_880, "max": 10_485_760, "failcnt": 0})
        );
        assert_eq!(
            m["swap"],
            json!({"limit": lim, "usage": 5_246_976, "max": 10_489_856, "failcnt": 0})
        );
        // memory.kmem.limit_in_bytes is gone on new kernels: limit 0, the rest read.
        assert_eq!(
            m["kernel"],
            json!({"limit": 0, "usage": 65536, "max": 131_072, "failcnt": 0})
        );
        assert_eq!(m["kernelTCP"], json!({"limit": lim, "failcnt": 0}));
        assert_eq!(m["raw"]["rss"], 4_194_304);
        assert_eq!(m["raw"]["hierarchical_memory_limit"], lim);
        assert_eq!(v["pids"], json!({"current": 2, "limit": 64}));
        assert_eq!(
            v["blkio"],
            json!({
                "ioServiceBytesRecursive": [
                    {"major": 8, "op": "Read", "value": 40960},
                    {"major": 8, "op": "Write", "value": 81920},
                    {"major": 8, "op": "Total", "value": 122_880}
                ],
                "ioServicedRecursive": [
                    {"major": 8, "op": "Read", "value": 10},
                    {"major": 8, "op": "Write", "value": 20},
                    {"major": 8, "op": "Sync", "value": 30},
                    {"major": 8, "op": "Async"},
                    {"major": 8, "op": "Discard"},
                    {"major": 8, "op": "Total", "value": 30}
                ]
            })
        );
        assert_eq!(
            v["hugetlb"],
            json!({"2MB": {"usage": 4_194_304, "max": 6_291_456, "failcnt": 1}})
        );
        assert_eq!(
            v["cpuset"],
            json!({
                "cpus": [0, 1, 2, 5], "cpu_exclusive": 0, "mems": [0], "mem_hardwall": 1,
                "mem_exclusive": 0, "memory_migrate": 0, "memory_spread_page": 0,
                "memory_spread_slab": 0, "memory_pressure": 0, "sched_load_balance": 1,
                "sched_relax_domain_level": -1
            })
        );
    }

    #[test]
    fn v1_blkio_prefers_cfq_then_recursive_throttle() {
        let fx = Fixture::new("blkio");
        let d = fx.write(
            "",
            &[
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:16 Read 3\nTotal 3\n",
                ),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:16 Read 12288\nTotal 12288\n",
                ),
                ("blkio.throttle.io_service_bytes", "8:0 Read 1\n"),
            ],
        );
        let b = blkio_v1(&d);
        assert_eq!(b.io_serviced_recursive.len(), 1);
        assert_eq!(b.io_service_bytes_recursive[0].minor, 16);
        assert_eq!(b.io_service_bytes_recursive[0].value, 12288);
        // CFQ present: all eight tables from it (sectors lines have no op).
        fs::write(d.join("blkio.sectors_recursive"), "8:0 24\nTotal 24\n").unwrap();
        for f in [
            "io_service_time_recursive",
            "io_wait_time_recursive",
            "io_merged_recursive",
            "io_queued_recursive",
            "time_recursive",
            "io_serviced_recursive",
            "io_service_bytes_recursive",
        ] {
            fs::write(d.join(format!("blkio.{f}")), "8:0 Read 7\nTotal 7\n").unwrap();
        }
        let v = serde_json::to_value(blkio_v1(&d)).unwrap();
        assert_eq!(v["sectorsRecursive"], json!([{"major": 8, "value": 24}]));
        assert_eq!(
            v["ioQueueRecursive"],
            json!([{"major": 8, "op": "Read", "value": 7}])
        );
        assert_eq!(v.as_object().unwrap().len(), 8);
    }

    #[test]
    fn missing_controllers_are_not_errors() {
        let fx = Fixture::new("empty");
        let gone = fx.0.join("does-not-exist");
        for cg in [
            unified(&gone),
            Cgroup {
                mode: Mode::Hybrid,
                rel: PathBuf::from("/c1"),
                v1: vec![V1Dir {
                    name: "memory".into(),
                    controllers: vec!["memory".into()],
                    path: gone.clone(),
                }],
                unified: Some(gone.clone()),
                made: Vec::new(),
            },
        ] {
            let v = stats(&cg).unwrap();
            assert_eq!(
                v["cpu"],
                json!({"usage": {"kernel": 0, "user": 0}, "throttling": {}})
            );
            assert_eq!(v["memory"]["usage"], json!({"limit": 0, "failcnt": 0}));
            assert_eq!(v["pids"], json!({}));
            assert_eq!(v["blkio"], json!({}));
            assert_eq!(v["hugetlb"], json!({}));
        }
    }

    #[test]
    fn hybrid_reads_unified_for_controllers_without_v1() {
        let fx = Fixture::new("hybrid");
        let mem = fx.write("memory/c1", &[("memory.usage_in_bytes", "42\n")]);
        let uni = fx.write(
            "unified/c1",
            &[
                ("hugetlb.2MB.current", "0\n"),
                ("hugetlb.2MB.events", "max 3\n"),
            ],
        );
        let cg = Cgroup {
            mode: Mode::Hybrid,
            rel: PathBuf::from("/c1"),
            v1: vec![V1Dir {
                name: "memory".into(),
                controllers: vec!["memory".into()],
                path: mem,
            }],
            unified: Some(uni),
            made: Vec::new(),
        };
        let v = stats(&cg).unwrap();
        assert_eq!(v["memory"]["usage"]["usage"], 42);
        assert_eq!(v["hugetlb"], json!({"2MB": {"failcnt": 3}}));
    }

    #[test]
    fn stats_once_prints_one_event_line() {
        let (_fx, d) = v2_fixture("once");
        let mut out = Vec::new();
        let alive = || panic!("not asked with --stats");
        events(
            &unified(&d),
            "c1",
            Duration::from_secs(5),
            true,
            &alive,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 1);
        // runc's field order.
        assert!(
            text.starts_with(
                r#"{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":1500000,"#
            ),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["data"]["cpu"]["usage"]["total"], 1_500_000);
        let keys = [
            "\"cpu\"",
            "\"cpuset\"",
            "\"memory\"",
            "\"pids\"",
            "\"blkio\"",
            "\"hugetlb\"",
            "\"intel_rdt\"",
        ];
        let pos: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.trim_end().ends_with(r#""network_interfaces":null}}"#),
            "{text}"
        );
    }

    #[test]
    fn oom_counter_from_memory_events() {
        let fx = Fixture::new("oomcount");
        let d = fx.dir("");
        assert_eq!(oom_count(&d), 0);
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_count(&d), 1);
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_count(&d), 2);
    }

    #[test]
    fn event_loop_reports_stats_and_v2_oom() {
        let (_fx, d) = v2_fixture("loop");
        let events_file = d.join("memory.events");
        let calls = Cell::new(0u32);
        let start = Instant::now();
        let alive = || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                fs::write(
                    &events_file,
                    "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
                )
                .unwrap();
            }
            start.elapsed() < Duration::from_millis(700)
        };
        let mut out = Vec::new();
        events(
            &unified(&d),
            "c1",
            Duration::from_millis(150),
            false,
            &alive,
            &mut out,
        )
        .unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ooms: Vec<&Value> = lines.iter().filter(|v| v["type"] == "oom").collect();
        assert_eq!(ooms.len(), 1, "{lines:?}");
        assert_eq!(*ooms[0], json!({"type": "oom", "id": "c1"}));
        let stats: Vec<&Value> = lines.iter().filter(|v| v["type"] == "stats").collect();
        assert!((3..=5).contains(&stats.len()), "{lines:?}");
        assert!(stats
            .iter()
            .all(|v| v["id"] == "c1" && v["data"]["pids"]["current"] == 3));
        // Seen at the first wake-up, before the first tick's stats.
        assert_eq!(lines[0]["type"], "oom", "{lines:?}");
    }

    #[test]
    fn event_loop_ends_when_container_is_gone() {
        let fx = Fixture::new("gone");
        let mut out = Vec::new();
        let t = Instant::now();
        events(
            &unified(&fx.0),
            "c1",
            Duration::from_secs(5),
            false,
            &|| false,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    /// A real v1 OOM through eventfd + cgroup.event_control (root on a v1 memory hierarchy only).
    #[test]
    fn v1_oom_is_reported_from_the_kernel() {
        let root = Path::new("/sys/fs/cgroup/memory");
        if !nix::unistd::geteuid().is_root() || !root.join("cgroup.event_control").exists() {
            eprintln!("skipped: needs root and a cgroup v1 memory hierarchy");
            return;
        }
        let dir = root.join(format!("keel-stats-oom-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.limit_in_bytes"), "16777216").unwrap();
        let _ = fs::write(dir.join("memory.swappiness"), "0");
        let cg = Cgroup {
            mode: Mode::Legacy,
            rel: PathBuf::from("/x"),
            v1: vec![V1Dir {
                name: "memory".into(),
                controllers: vec!["memory".into()],
                path: dir.clone(),
            }],
            unified: None,
            made: Vec::new(),
        };
        let procs = dir.join("cgroup.procs");
        let script = format!(
            "echo $$ > {} && exec dd if=/dev/zero of=/dev/null bs=256M count=1",
            procs.display()
        );
        let child = std::cell::RefCell::new(
            std::process::Command::new("sh")
                .args(["-c", &script])
                .spawn()
                .unwrap(),
        );
        let exited = Cell::new(None::<Instant>);
        let start = Instant::now();
        let alive = || {
            if exited.get().is_none() && child.borrow_mut().try_wait().unwrap().is_some() {
                exited.set(Some(Instant::now()));
            }
            let lingering = exited
                .get()
                .is_some_and(|t| t.elapsed() > Duration::from_millis(300));
            !lingering && start.elapsed() < Duration::from_secs(10)
        };
        let mut out = Vec::new();
        let res = events(&cg, "c1", Duration::from_secs(60), false, &alive, &mut out);
        let _ = child.borrow_mut().kill();
        let status = child.borrow_mut().wait().unwrap();
        let _ = fs::remove_dir(&dir);
        res.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!status.success(), "dd should have been OOM-killed");
        assert!(!text.is_empty(), "no OOM event");
        for line in text.lines() {
            assert_eq!(line, r#"{"type":"oom","id":"c1"}"#);
        }
    }

    #[test]
    fn intervals_parse_like_go_durations() {
        let ok = |s: &str| parse_interval(s).unwrap();
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("100ms"), Duration::from_millis(100));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("2h45m"), Duration::from_secs(2 * 3600 + 45 * 60));
        assert_eq!(ok("500us"), Duration::from_micros(500));
        assert_eq!(ok("500µs"), Duration::from_micros(500));
        assert_eq!(ok("10ns"), Duration::from_nanos(10));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("+3s"), Duration::from_secs(3));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    }

    #[test]
    fn bad_intervals_are_refused_with_go_messages() {
        let err = |s: &str| parse_interval(s).unwrap_err();
        assert_eq!(err("5"), "time: missing unit in duration \"5\"");
        assert_eq!(err("5x"), "time: unknown unit \"x\" in duration \"5x\"");
        assert_eq!(err(""), "time: invalid duration \"\"");
        assert_eq!(err("s"), "time: invalid duration \"s\"");
        assert_eq!(err("."), "time: invalid duration \".\"");
        assert_eq!(err("1s-"), "time: unknown unit \"s-\" in duration \"1s-\"");
        assert_eq!(err("1s2"), "time: missing unit in duration \"1s2\"");
        assert_eq!(err("-"), "time: invalid duration \"-\"");
        assert_eq!(err("3000000h"), "time: invalid duration \"3000000h\"");
        for s in ["0", "0s", "-5s", "0ms"] {
            assert_eq!(err(s), "duration interval must be greater than 0", "{s}");
        }
    }

    #[test]
    fn numbers_parse_like_runc() {
        assert_eq!(parse_uint("max\n"), Some(u64::MAX));
        assert_eq!(parse_uint(" 12 "), Some(12));
        assert_eq!(parse_uint("-1"), Some(0));
        assert_eq!(parse_uint("abc"), None);
        assert_eq!(parse_cpu_list("0-3,5\n"), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<u16>::new());
        assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
    }
}
