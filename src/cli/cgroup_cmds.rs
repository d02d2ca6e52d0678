//! Commands that work on a container's cgroup: ps, pause/resume, update, events.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use crate::cgroups::{stats, Cgroup};
use crate::state::{ContainerDir, State, Status};

fn running(dir: &ContainerDir) -> Result<(State, Status, Cgroup)> {
    let st = dir.load()?;
    let status = dir.status(&st);
    let cg = st
        .cgroup
        .clone()
        .ok_or_else(|| anyhow!("container {:?} has no cgroup recorded", st.id))?;
    Ok((st, status, cg))
}

/// `ps`: json is the array of pids in the cgroup (containerd parses it); table
/// runs ps(1) with the given args (default -ef) and keeps the container's lines.
pub fn ps(dir: &ContainerDir, format: &str, args: &[String]) -> Result<i32> {
    let (_, status, cg) = running(dir)?;
    let pids = if status == Status::Stopped {
        Vec::new()
    } else {
        cg.pids()?
    };
    let mut out = std::io::stdout().lock();
    match format {
        "json" => {
            serde_json::to_writer(&mut out, &pids)?;
            writeln!(out)?;
        }
        "table" => {
            let args: Vec<String> = if args.is_empty() {
                vec!["-ef".into()]
            } else {
                args.to_vec()
            };
            let o = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("running ps")?;
            if !o.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&o.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            writeln!(out, "{header}")?;
            for l in lines {
                let pid = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    writeln!(out, "{l}")?;
                }
            }
        }
        other => bail!("invalid format option {other:?} (want table or json)"),
    }
    Ok(0)
}

/// `pause` (freeze = true) and `resume`.
pub fn pause(dir: &ContainerDir, freeze: bool) -> Result<i32> {
    let (st, status, cg) = running(dir)?;
    match (freeze, status) {
        (true, Status::Running | Status::Created) | (false, Status::Paused) => {}
        (false, _) => bail!("container not paused: {:?}", st.id),
        (true, _) => bail!("container not running: {:?}", st.id),
    }
    cg.freeze(freeze).with_context(|| {
        format!(
            "{} container {:?}",
            if freeze { "pausing" } else { "resuming" },
            st.id
        )
    })?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    pub id: String,
    /// JSON LinuxResources from a file, or "-" for stdin (other flags are then ignored)
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-burst")]
    pub cpu_burst: Option<u64>,
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    pub cpu_idle: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a k/m/g suffix; -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "kernel-memory", hide = true)]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (runc's flag; keel has no intelRdt support)
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (runc's flag; keel has no intelRdt support)
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
}

/// "512m", "1G", "-1", "1024" → bytes (Docker's RAMInBytes: binary units).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size {s:?}")),
    };
    Ok((n * mult) as i64)
}

/// The flags as a LinuxResources JSON object (only the fields given).
fn resources_from_flags(a: &UpdateArgs) -> Result<Value> {
    let mut mem = Map::new();
    let bytes = |v: &Option<String>, flag: &str| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| parse_bytes(s).map_err(|e| anyhow!("--{flag}: {e}")))
            .transpose()
    };
    if let Some(v) = bytes(&a.memory, "memory")? {
        mem.insert("limit".into(), v.into());
    }
    if let Some(v) = bytes(&a.memory_reservation, "memory-reservation")? {
        mem.insert("reservation".into(), v.into());
    }
    if let Some(v) = bytes(&a.memory_swap, "memory-swap")? {
        mem.insert("swap".into(), v.into());
    }
    if let Some(v) = bytes(&a.kernel_memory, "kernel-memory")? {
        mem.insert("kernel".into(), v.into());
    }
    if let Some(v) = bytes(&a.kernel_memory_tcp, "kernel-memory-tcp")? {
        mem.insert("kernelTCP".into(), v.into());
    }
    let mut cpu = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            cpu.insert(k.into(), v);
        }
    };
    put("shares", a.cpu_share.map(Into::into));
    put("quota", a.cpu_quota.map(Into::into));
    put("period", a.cpu_period.map(Into::into));
    put("burst", a.cpu_burst.map(Into::into));
    put("realtimeRuntime", a.cpu_rt_runtime.map(Into::into));
    put("realtimePeriod", a.cpu_rt_period.map(Into::into));
    put("idle", a.cpu_idle.map(Into::into));
    put("cpus", a.cpuset_cpus.clone().map(Into::into));
    put("mems", a.cpuset_mems.clone().map(Into::into));
    let mut r = Map::new();
    if !mem.is_empty() {
        r.insert("memory".into(), Value::Object(mem));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = a.pids_limit {
        r.insert("pids".into(), json!({ "limit": p }));
    }
    if let Some(w) = a.blkio_weight {
        r.insert("blockIO".into(), json!({ "weight": w }));
    }
    Ok(Value::Object(r))
}

/// `update`: apply new limits to a running (or created, paused) container.
pub fn update(dir: &ContainerDir, a: &UpdateArgs) -> Result<i32> {
    for (flag, v) in [
        ("l3-cache-schema", &a.l3_cache_schema),
        ("mem-bw-schema", &a.mem_bw_schema),
    ] {
        if v.is_some() {
            bail!("--{flag}: linux.intelRdt is not supported by keel (no resctrl support)");
        }
    }
    let (st, status, cg) = running(dir)?;
    if status == Status::Stopped {
        bail!("container not running: {:?}", st.id);
    }
    let (value, from_file) = match &a.resources {
        Some(p) => {
            let mut text = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading resources from stdin")?;
            } else {
                text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
            }
            let v: Value = serde_json::from_str(&text).context("parsing resources JSON")?;
            (v, true)
        }
        None => (resources_from_flags(a)?, false),
    };
    let de = to_resources(value)?;
    let with_devices = from_file && de.devices().as_ref().is_some_and(|d| !d.is_empty());
    cg.apply(&de, with_devices)
        .with_context(|| format!("updating container {:?}", st.id))?;
    Ok(0)
}

fn to_resources(v: Value) -> Result<LinuxResources> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| anyhow!("resources: {}: {}", e.path(), e.inner()))
}

/// `events`: stats (once with --stats, else every interval) and OOM events.
pub fn events(dir: &ContainerDir, once: bool, interval: &str) -> Result<i32> {
    let (st, status, cg) = running(dir)?;
    if status == Status::Stopped {
        bail!("container not running: {:?}", st.id);
    }
    let interval = stats::parse_interval(interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let alive = || crate::state::is_alive(st.pid, st.start_time);
    let mut out = std::io::stdout().lock();
    stats::events(&cg, &st.id, interval, once, &alive, &mut out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Value> {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: UpdateArgs,
        }
        let t = <T as clap::Parser>::try_parse_from(
            std::iter::once("update").chain(args.iter().copied()),
        )?;
        resources_from_flags(&t.a)
    }

    #[test]
    fn update_flags_become_linux_resources() {
        let v = flags(&[
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--memory-reservation",
            "32m",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "-1",
            "--cpu-period",
            "100000",
            "--cpuset-cpus",
            "0",
            "--cpuset-mems",
            "0",
            "--pids-limit",
            "-1",
            "--blkio-weight",
            "300",
            "c1",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({
                "memory": {"limit": 64 << 20, "swap": -1, "reservation": 32 << 20},
                "cpu": {"shares": 512, "quota": -1, "period": 100000, "cpus": "0", "mems": "0"},
                "pids": {"limit": -1},
                "blockIO": {"weight": 300},
            })
        );
        // Every object deserializes as LinuxResources.
        to_resources(v).unwrap();
        assert_eq!(flags(&["c1"]).unwrap(), json!({}));
        let e = flags(&["--memory", "12x", "c1"]).unwrap_err();
        assert!(e.to_string().starts_with("--memory: "), "{e}");
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2kb").unwrap(), 2048);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("12x").is_err());
    }
}
