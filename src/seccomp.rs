//! `linux.seccomp`: compiled to classic BPF in the parent with libseccomp
//! (before clone), cached under `<root>/seccomp-cache/`, and loaded by the
//! container's init with a raw seccomp(2) ([`crate::sys::seccomp`]), which
//! never calls libseccomp.
//!
//! The rules follow runc (libcontainer/seccomp/seccomp_linux.go):
//! * `SCMP_ACT_KILL` is KILL_THREAD; ERRNO and TRACE return `errnoRet`, EPERM by default.
//! * Unknown syscall *names* are skipped (profiles name the syscalls of every arch);
//!   unknown actions, operators, architectures and flags are errors naming the field.
//! * A rule whose action is the default action is skipped.
//! * Conditions of one rule are ANDed; when two of them test the same argument, each
//!   condition becomes a rule of its own (ORed), as libseccomp refuses the pair.
//! * NOTIFY is refused as the default action and on `write`.
//! * No `flags` at all means SECCOMP_FILTER_FLAG_SPEC_ALLOW; an empty list means none.
//!
//! See docs/security.md ("Seccomp") for where the init loads the program.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use libseccomp::{ScmpSyscall, ScmpVersion};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::error::SysError;
use crate::sys::seccomp as sc;

/// A compiled filter, ready for seccomp(2).
#[derive(Clone)]
pub struct Program {
    /// The BPF program, as libseccomp exported it (native byte order).
    pub filter: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` to pass to seccomp(2), NEW_LISTENER included when `notify`.
    pub flags: u32,
    /// Some rule uses SCMP_ACT_NOTIFY: loading returns a listener fd for `listener_path`.
    pub notify: bool,
    pub listener_path: Option<PathBuf>,
    pub listener_metadata: String,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("instructions", &self.filter.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .field("listener_path", &self.listener_path)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A value the runtime cannot use; `field` is its JSON path.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// libseccomp refused or failed.
    #[error("linux.seccomp: {0}")]
    Library(String),
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// The message for a value oci-spec could not decode at `field` (a path under
/// `linux.seccomp`), e.g. `unknown action "SCMP_ACT_FOO"`; `None` if `field` is
/// not an enumerated seccomp field.
pub fn unknown_value(field: &str, name: &str) -> Option<String> {
    let what = if field == "linux.seccomp.defaultAction" || field.ends_with("].action") {
        "action"
    } else if field.ends_with("].op") {
        "operator"
    } else if field.starts_with("linux.seccomp.architectures[") {
        "architecture"
    } else if field.starts_with("linux.seccomp.flags[") {
        "flag"
    } else {
        return None;
    };
    Some(format!("unknown {what} {name:?}"))
}

// ---------------------------------------------------------------------------------------------
// Checking: everything but the syscall names, without libseccomp.
// ---------------------------------------------------------------------------------------------

/// One `syscalls[]` entry that survives: its index, action, names and conditions.
struct Rule<'a> {
    index: usize,
    action: ScmpAction,
    names: &'a [String],
    conds: Vec<ScmpArgCompare>,
    /// Two conditions test the same argument: one rule per condition.
    split: bool,
}

struct Checked<'a> {
    default: ScmpAction,
    arches: Vec<(usize, Arch, ScmpArch)>,
    rules: Vec<Rule<'a>>,
    flags: u32,
    notify: bool,
}

fn errno_ret(v: Option<u32>, field: &str) -> Result<u16, SeccompError> {
    match v {
        None => Ok(libc::EPERM as u16),
        Some(n) => {
            u16::try_from(n).map_err(|_| invalid(field, format!("{n} is out of range (0-65535)")))
        }
    }
}

fn action(
    a: LinuxSeccompAction,
    ret: Option<u32>,
    ret_field: &str,
) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno_ret(ret, ret_field)? as i32),
        A::ScmpActTrace => ScmpAction::Trace(errno_ret(ret, ret_field)?),
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActNotify => ScmpAction::Notify,
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn condition(a: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare, SeccompError> {
    use LinuxSeccompOperator as O;
    let index = a.index();
    if index > 5 {
        return Err(invalid(
            format!("{field}.index"),
            format!("{index} is out of range (0-5)"),
        ));
    }
    let (op, datum) = match a.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        O::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        // value is the mask, valueTwo the datum: (arg & value) == valueTwo.
        O::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

fn flag_bit(f: LinuxSeccompFilterFlag) -> u32 {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sc::FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => sc::FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sc::FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => sc::FLAG_WAIT_KILLABLE_RECV,
    }
}

fn check(s: &LinuxSeccomp) -> Result<Checked<'_>, SeccompError> {
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == ScmpAction::Notify {
        return Err(invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let arches = s
        .architectures()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, &a)| (i, a, arch(a)))
        .collect();
    let mut rules = Vec::new();
    let mut notify = false;
    for (i, call) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(
            call.action(),
            call.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        let mut conds = Vec::new();
        let mut seen = [0u8; 6];
        for (j, a) in call.args().iter().flatten().enumerate() {
            conds.push(condition(a, &format!("{field}.args[{j}]"))?);
            seen[a.index()] += 1;
        }
        if act == ScmpAction::Notify {
            if call.names().iter().any(|n| n == "write") {
                return Err(invalid(
                    format!("{field}.names"),
                    "SCMP_ACT_NOTIFY cannot be used for \"write\" (the runtime writes after loading the filter)",
                ));
            }
            notify = true;
        }
        if act == default {
            continue;
        }
        rules.push(Rule {
            index: i,
            action: act,
            names: call.names(),
            conds,
            split: seen.iter().any(|&n| n > 1),
        });
    }
    if notify
        && s.listener_path()
            .as_ref()
            .map_or(true, |p| p.as_os_str().is_empty())
    {
        return Err(invalid(
            "linux.seccomp.listenerPath",
            "required when a rule uses SCMP_ACT_NOTIFY",
        ));
    }
    let mut flags = match s.flags() {
        // runc: no flags at all means SPEC_ALLOW; an empty list means none.
        None => sc::FLAG_SPEC_ALLOW,
        Some(v) => v.iter().fold(0, |acc, &f| acc | flag_bit(f)),
    };
    if notify {
        flags |= sc::FLAG_NEW_LISTENER;
        // The kernel refuses TSYNC with NEW_LISTENER unless told how to report failure.
        if flags & sc::FLAG_TSYNC != 0 {
            flags |= sc::FLAG_TSYNC_ESRCH;
        }
    } else {
        // Only meaningful (and only accepted) with a listener, as libseccomp does.
        flags &= !sc::FLAG_WAIT_KILLABLE_RECV;
    }
    Ok(Checked {
        default,
        arches,
        rules,
        flags,
        notify,
    })
}

// ---------------------------------------------------------------------------------------------
// Compiling with libseccomp.
// ---------------------------------------------------------------------------------------------

fn library_version() -> String {
    ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn lib_err(what: &str) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError + '_ {
    move |e| SeccompError::Library(format!("{what}: {e}"))
}

/// Build the filter with libseccomp and export it as BPF.
fn build(c: &Checked<'_>) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut ctx = ScmpFilterContext::new(c.default).map_err(lib_err("creating the filter"))?;
    for &(i, name, a) in &c.arches {
        ctx.add_arch(a).map_err(|e| {
            invalid(
                format!("linux.seccomp.architectures[{i}]"),
                format!(
                    "{name} is not supported by libseccomp {}: {e}",
                    library_version()
                ),
            )
        })?;
    }
    let mut skipped: Vec<&str> = Vec::new();
    for r in &c.rules {
        for name in r.names {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                skipped.push(name);
                continue;
            };
            let fail = |e: libseccomp::error::SeccompError| {
                invalid(
                    format!("linux.seccomp.syscalls[{}]", r.index),
                    format!("adding a rule for {name:?}: {e}"),
                )
            };
            if r.split {
                for cond in &r.conds {
                    ctx.add_rule_conditional(r.action, nr, std::slice::from_ref(cond))
                        .map_err(fail)?;
                }
            } else {
                ctx.add_rule_conditional(r.action, nr, &r.conds)
                    .map_err(fail)?;
            }
        }
    }
    if !skipped.is_empty() {
        crate::logging::debug(&format!(
            "seccomp: skipped {} syscall names unknown to libseccomp {}: {}",
            skipped.len(),
            library_version(),
            skipped.join(" ")
        ));
    }
    let mem =
        nix::sys::memfd::memfd_create(c"keel-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Library(format!("memfd_create: {e}")))?;
    ctx.export_bpf(mem.as_fd())
        .map_err(lib_err("exporting the filter"))?;
    let mut f = fs::File::from(mem);
    let mut bytes = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut bytes))
        .map_err(|e| SeccompError::Library(format!("reading the exported filter: {e}")))?;
    let filter = decode(&bytes)
        .ok_or_else(|| SeccompError::Library("libseccomp exported a truncated filter".into()))?;
    if filter.is_empty() || filter.len() > sc::MAX_INSNS {
        return Err(SeccompError::Library(format!(
            "the filter has {} instructions; the kernel accepts 1 to {}",
            filter.len(),
            sc::MAX_INSNS
        )));
    }
    Ok(filter)
}

/// `struct sock_filter` is {u16 code, u8 jt, u8 jf, u32 k} in native byte order.
fn decode(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.len() % 8 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|b| libc::sock_filter {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            })
            .collect(),
    )
}

fn encode(filter: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(filter.len() * 8);
    for i in filter {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

fn program(s: &LinuxSeccomp, c: &Checked<'_>, filter: Vec<libc::sock_filter>) -> Program {
    Program {
        filter,
        flags: c.flags,
        notify: c.notify,
        listener_path: s.listener_path().clone(),
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
    }
}

/// Compile `linux.seccomp` (no cache).
pub fn compile(s: &LinuxSeccomp) -> Result<Program, SeccompError> {
    let c = check(s)?;
    let filter = build(&c)?;
    Ok(program(s, &c, filter))
}

// ---------------------------------------------------------------------------------------------
// The cache: <root>/seccomp-cache/<key>.bpf
// ---------------------------------------------------------------------------------------------

/// Where compiled programs are kept for the state root `root`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("seccomp-cache")
}

const MAGIC: &[u8; 8] = b"KEELBPF\n";
/// Bumped whenever the compilation above changes what a profile compiles to.
const FORMAT: u32 = 1;
const HEADER: usize = 32;

/// FNV-1a, 64 bits: stable across builds and platforms, no dependency.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Key of a profile: its canonical JSON (oci-spec's field order, not the
/// file's), the cache format, libseccomp's version and the machine.
pub fn cache_key(s: &LinuxSeccomp) -> u64 {
    let mut data = format!(
        "keel-seccomp {FORMAT} libseccomp {} arch {}\n",
        library_version(),
        std::env::consts::ARCH
    )
    .into_bytes();
    data.extend_from_slice(&serde_json::to_vec(s).unwrap_or_default());
    fnv1a64(&data)
}

/// Why a cache file was not used.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheMiss {
    Absent,
    Corrupt(String),
}

/// The file: magic, format (u32 LE), instruction count (u32 LE), key (u64 LE),
/// FNV-1a of the body (u64 LE), then the instructions.
pub fn encode_cache(key: u64, filter: &[libc::sock_filter]) -> Vec<u8> {
    let body = encode(filter);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(filter.len() as u32).to_le_bytes());
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&fnv1a64(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

pub fn decode_cache(key: u64, data: &[u8]) -> Result<Vec<libc::sock_filter>, CacheMiss> {
    let bad = |why: &str| CacheMiss::Corrupt(why.to_string());
    if data.len() < HEADER || &data[..8] != MAGIC {
        return Err(bad("bad magic"));
    }
    let u32_at = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    let u64_at = |o: usize| (u32_at(o) as u64) | ((u32_at(o + 4) as u64) << 32);
    if u32_at(8) != FORMAT {
        return Err(bad("other format version"));
    }
    let count = u32_at(12) as usize;
    if u64_at(16) != key {
        return Err(bad("other key"));
    }
    let body = &data[HEADER..];
    if count == 0 || count > sc::MAX_INSNS || body.len() != count * 8 {
        return Err(bad("bad length"));
    }
    if fnv1a64(body) != u64_at(24) {
        return Err(bad("bad checksum"));
    }
    decode(body).ok_or_else(|| bad("bad length"))
}

fn read_cache(path: &Path, key: u64) -> Result<Vec<libc::sock_filter>, CacheMiss> {
    match fs::read(path) {
        Ok(data) => decode_cache(key, &data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CacheMiss::Absent),
        Err(e) => Err(CacheMiss::Corrupt(e.to_string())),
    }
}

/// Written to a temporary file and renamed: readers see no file or a whole one.
fn write_cache(
    dir: &Path,
    path: &Path,
    key: u64,
    filter: &[libc::sock_filter],
) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{key:016x}.{}.{:x}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    let r = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&encode_cache(key, filter)))
        .and_then(|_| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Compile `linux.seccomp`, reusing `<cache>/<key>.bpf` when it is intact.
/// The profile is checked every time; cache trouble is logged (`--debug`),
/// never fatal.
pub fn compile_cached(s: &LinuxSeccomp, cache: Option<&Path>) -> Result<Program, SeccompError> {
    let c = check(s)?;
    let Some(dir) = cache else {
        let filter = build(&c)?;
        return Ok(program(s, &c, filter));
    };
    let key = cache_key(s);
    let path = dir.join(format!("{key:016x}.bpf"));
    match read_cache(&path, key) {
        Ok(filter) => {
            crate::logging::debug(&format!("seccomp: cache hit {key:016x}"));
            return Ok(program(s, &c, filter));
        }
        Err(CacheMiss::Absent) => {
            crate::logging::debug(&format!("seccomp: cache miss {key:016x}"));
        }
        Err(CacheMiss::Corrupt(why)) => {
            crate::logging::debug(&format!(
                "seccomp: cache corrupt {key:016x} ({why}): rebuilding"
            ));
        }
    }
    let filter = build(&c)?;
    if let Err(e) = write_cache(dir, &path, key, &filter) {
        crate::logging::debug(&format!(
            "seccomp: cannot write cache {}: {e}",
            path.display()
        ));
    }
    Ok(program(s, &c, filter))
}

// ---------------------------------------------------------------------------------------------
// Loading (in the container's init) and the listener (in the parent).
// ---------------------------------------------------------------------------------------------

/// Load `p` into the calling thread; with NOTIFY rules, the listener fd.
pub fn install(p: &Program) -> Result<Option<OwnedFd>, Errno> {
    sc::set_mode_filter(&p.filter, p.flags)
}

/// The container as the seccomp agent is told about it: runtime-spec's `State`
/// (runc sends no `rootfs`, `created` or `owner`).
#[derive(Debug, serde::Serialize)]
pub struct AgentState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    /// The container's init, also for a process started by `exec`.
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'a str, &'a str>,
}

/// runc's ContainerProcessState, sent to the seccomp agent with the listener
/// fd: `pid` is the process that loaded the filter (the init at create, the
/// new process for exec).
pub fn process_state(p: &Program, pid: i32, state: &AgentState<'_>) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if !p.listener_metadata.is_empty() {
        doc["metadata"] = serde_json::json!(p.listener_metadata);
    }
    doc
}

/// Connect to `listenerPath` and send the listener fd (SCM_RIGHTS) with the
/// state JSON as the payload, in one message, as runc does.
pub fn send_to_listener(
    p: &Program,
    listener: BorrowedFd<'_>,
    state: &serde_json::Value,
) -> Result<(), SysError> {
    let path = p.listener_path.as_deref().unwrap_or(Path::new(""));
    let op = "sending the seccomp listener to";
    let io = |e: std::io::Error| {
        SysError::new(
            op,
            Some(path),
            e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO),
        )
    };
    let mut sock = UnixStream::connect(path).map_err(io)?;
    let payload = serde_json::to_vec(state).unwrap_or_default();
    let fds = [listener.as_raw_fd()];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(|e| SysError::new(op, Some(path), e))?,
        }
    };
    sock.write_all(&payload[sent..]).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn rule(action: &str, extra: &str) -> LinuxSeccomp {
        profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l.sock",
                "syscalls":[{{"names":["mkdir","mkdirat"],"action":"{action}"{extra}}}]}}"#
        ))
    }

    /// The k of every `ret` instruction (BPF_RET|BPF_K = 0x06).
    fn returns(p: &Program) -> Vec<u32> {
        p.filter
            .iter()
            .filter(|i| i.code == 0x06)
            .map(|i| i.k)
            .collect()
    }

    #[test]
    fn every_action_compiles_to_its_return_value() {
        let cases: &[(&str, &str, u32)] = &[
            ("SCMP_ACT_KILL", "", 0x0000_0000),
            ("SCMP_ACT_KILL_THREAD", "", 0x0000_0000),
            ("SCMP_ACT_KILL_PROCESS", "", 0x8000_0000),
            ("SCMP_ACT_TRAP", "", 0x0003_0000),
            ("SCMP_ACT_ERRNO", "", 0x0005_0000 | 1),
            ("SCMP_ACT_ERRNO", r#","errnoRet":38"#, 0x0005_0000 | 38),
            ("SCMP_ACT_TRACE", "", 0x7ff0_0000 | 1),
            ("SCMP_ACT_TRACE", r#","errnoRet":7"#, 0x7ff0_0000 | 7),
            ("SCMP_ACT_LOG", "", 0x7ffc_0000),
            ("SCMP_ACT_NOTIFY", "", 0x7fc0_0000),
        ];
        for &(action, extra, ret) in cases {
            let p = compile(&rule(action, extra)).unwrap();
            let r = returns(&p);
            assert!(r.contains(&ret), "{action}{extra}: {ret:#x} not in {r:x?}");
            assert!(r.contains(&0x7fff_0000), "{action}: default ALLOW missing");
            assert_eq!(p.notify, action == "SCMP_ACT_NOTIFY");
        }
        // ALLOW as a rule under an ERRNO default.
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        let r = returns(&p);
        assert!(
            r.contains(&0x7fff_0000) && r.contains(&(0x0005_0000 | 38)),
            "{r:x?}"
        );
    }

    #[test]
    fn every_operator_compiles() {
        for op in [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ] {
            let p = compile(&profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["socket"],
                    "action":"SCMP_ACT_ERRNO","errnoRet":97,
                    "args":[{{"index":0,"value":2,"valueTwo":2,"op":"{op}"}},
                            {{"index":2,"value":0,"op":"SCMP_CMP_EQ"}}]}}]}}"#
            )))
            .unwrap_or_else(|e| panic!("{op}: {e}"));
            assert!(returns(&p).contains(&(0x0005_0000 | 97)), "{op}");
            // An argument test loads the syscall's argument words (BPF_LD|BPF_W|BPF_ABS).
            assert!(
                p.filter.iter().any(|i| i.code == 0x20 && i.k == 16),
                "{op}: no arg0 load"
            );
        }
    }

    #[test]
    fn same_argument_twice_becomes_separate_rules() {
        // Docker's socket rule: arg0 < 38 || arg0 == 39 || arg0 > 40.
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["socket"],"action":"SCMP_ACT_ALLOW",
                "args":[{"index":0,"value":38,"op":"SCMP_CMP_LT"},{"index":0,"value":39,"op":"SCMP_CMP_EQ"},
                        {"index":0,"value":40,"op":"SCMP_CMP_GT"}]}]}"#,
        ))
        .unwrap();
        assert!(returns(&p).contains(&0x7fff_0000));
    }

    #[test]
    fn unknown_syscall_names_are_skipped() {
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["no_such_syscall_xyz"],"action":"SCMP_ACT_ERRNO","errnoRet":5}]}"#,
        ))
        .unwrap();
        assert!(!returns(&p).contains(&(0x0005_0000 | 5)));
        // Names of other arches are known to libseccomp and compile too.
        compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["chown32","socketcall","_llseek","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
    }

    #[test]
    fn unknown_values_name_the_field() {
        // oci-spec refuses the value while decoding; spec.rs asks unknown_value for the text.
        assert_eq!(
            unknown_value("linux.seccomp.syscalls[3].action", "SCMP_ACT_FOO").unwrap(),
            "unknown action \"SCMP_ACT_FOO\""
        );
        assert_eq!(
            unknown_value("linux.seccomp.defaultAction", "X").unwrap(),
            "unknown action \"X\""
        );
        assert_eq!(
            unknown_value("linux.seccomp.syscalls[0].args[1].op", "SCMP_CMP_FOO").unwrap(),
            "unknown operator \"SCMP_CMP_FOO\""
        );
        assert_eq!(
            unknown_value("linux.seccomp.architectures[2]", "SCMP_ARCH_FOO").unwrap(),
            "unknown architecture \"SCMP_ARCH_FOO\""
        );
        assert_eq!(
            unknown_value("linux.seccomp.flags[0]", "F").unwrap(),
            "unknown flag \"F\""
        );
        assert_eq!(unknown_value("linux.namespaces[0].type", "x"), None);
        let bad = serde_json::from_str::<LinuxSeccomp>(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_FOO"}]}"#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn config_with_an_unknown_action_names_the_field() {
        let dir = temp_dir("spec");
        fs::create_dir_all(&dir).unwrap();
        let mut p: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/seccomp-docker.json")).unwrap();
        p["syscalls"][3]["action"] = "SCMP_ACT_FOO".into();
        let cfg = serde_json::json!({"ociVersion": "1.0.2", "linux": {"seccomp": p}});
        fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = crate::spec::load(&dir).unwrap_err().to_string();
        assert_eq!(
            e,
            r#"config.json: linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO""#
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refused_profiles_name_the_field() {
        let err = |json: &str| compile(&profile(json)).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/l"}"#),
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"
        );
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ALLOW"},
                {"names":["openat","write"],"action":"SCMP_ACT_NOTIFY"}]}"#
        )
        .starts_with(
            "linux.seccomp.syscalls[1].names: SCMP_ACT_NOTIFY cannot be used for \"write\""
        ));
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#
            ),
            "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY"
        );
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO",
                "args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#
            ),
            "linux.seccomp.syscalls[0].args[0].index: 6 is out of range (0-5)"
        );
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#
            ),
            "linux.seccomp.syscalls[0].errnoRet: 70000 is out of range (0-65535)"
        );
    }

    #[test]
    fn rule_with_the_default_action_is_skipped() {
        let only_default = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#)).unwrap();
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        assert_eq!(p.filter.len(), only_default.filter.len());
        // A different errno is a different action.
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":2}]}"#,
        ))
        .unwrap();
        assert!(p.filter.len() > only_default.filter.len());
    }

    #[test]
    fn flags() {
        let f = |extra: &str, action: &str| {
            compile(&profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/l"{extra},
                    "syscalls":[{{"names":["mkdir"],"action":"{action}"}}]}}"#
            )))
            .unwrap()
            .flags
        };
        assert_eq!(f("", "SCMP_ACT_ERRNO"), sc::FLAG_SPEC_ALLOW);
        assert_eq!(f(r#","flags":[]"#, "SCMP_ACT_ERRNO"), 0);
        assert_eq!(
            f(
                r#","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]"#,
                "SCMP_ACT_ERRNO"
            ),
            sc::FLAG_TSYNC | sc::FLAG_LOG
        );
        assert_eq!(
            f(
                r#","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]"#,
                "SCMP_ACT_NOTIFY"
            ),
            sc::FLAG_TSYNC
                | sc::FLAG_TSYNC_ESRCH
                | sc::FLAG_NEW_LISTENER
                | sc::FLAG_WAIT_KILLABLE_RECV
        );
    }

    #[test]
    fn architectures_are_added() {
        let one = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#)).unwrap();
        let three = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert!(three.filter.len() > one.filter.len());
    }

    #[test]
    fn docker_profile_fixture_compiles() {
        let json = include_str!("../tests/fixtures/seccomp-docker.json");
        let s = profile(json);
        let p = compile(&s).unwrap();
        assert!(
            p.filter.len() > 100 && p.filter.len() <= sc::MAX_INSNS,
            "{}",
            p.filter.len()
        );
        assert_eq!(p.flags, sc::FLAG_SPEC_ALLOW);
        assert!(!p.notify);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("keel-seccomp-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let s = rule("SCMP_ACT_ERRNO", r#","errnoRet":100"#);
        let dir = temp_dir("cache");
        let key = cache_key(&s);
        let path = dir.join(format!("{key:016x}.bpf"));
        assert_eq!(read_cache(&path, key), Err(CacheMiss::Absent));
        let first = compile_cached(&s, Some(&dir)).unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(&data[..8], MAGIC);
        assert_eq!(data.len(), HEADER + first.filter.len() * 8);
        let again = read_cache(&path, key).unwrap();
        assert_eq!(encode(&again), encode(&first.filter));

        // Each kind of damage is detected.
        let mut flipped = data.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert_eq!(
            decode_cache(key, &flipped),
            Err(CacheMiss::Corrupt("bad checksum".into()))
        );
        assert_eq!(
            decode_cache(key, &data[..data.len() - 8]),
            Err(CacheMiss::Corrupt("bad length".into()))
        );
        assert_eq!(
            decode_cache(key, b"garbage"),
            Err(CacheMiss::Corrupt("bad magic".into()))
        );
        assert_eq!(
            decode_cache(key ^ 1, &data),
            Err(CacheMiss::Corrupt("other key".into()))
        );
        let mut version = data.clone();
        version[8] ^= 0xff;
        assert_eq!(
            decode_cache(key, &version),
            Err(CacheMiss::Corrupt("other format version".into()))
        );

        // A corrupt file is rebuilt in place.
        fs::write(&path, &flipped).unwrap();
        let rebuilt = compile_cached(&s, Some(&dir)).unwrap();
        assert_eq!(encode(&rebuilt.filter), encode(&first.filter));
        assert_eq!(fs::read(&path).unwrap(), data);
        // Nothing but the cache file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cache_key_depends_on_the_profile_only() {
        let a = rule("SCMP_ACT_ERRNO", "");
        let b = rule("SCMP_ACT_ERRNO", r#","errnoRet":1"#);
        let c = rule("SCMP_ACT_ERRNO", r#","errnoRet":2"#);
        // Same meaning written differently still differs in JSON: only equal JSON shares a key.
        assert_eq!(cache_key(&a), cache_key(&a.clone()));
        assert_ne!(cache_key(&b), cache_key(&c));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn listener_fd_crosses_the_sync_channel() {
        let (parent, child) = crate::sync::pair().unwrap();
        let f = fs::File::open("/dev/null").unwrap();
        child.send_seccomp_fd(f.as_fd()).unwrap();
        match parent.expect("seccomp-fd").unwrap() {
            crate::sync::Msg::SeccompFd(fd) => assert!(fd.as_raw_fd() > 2),
            m => panic!("got {m:?}"),
        }
    }

    #[test]
    fn listener_gets_the_fd_and_the_state() {
        use std::os::unix::net::UnixListener;
        let dir = temp_dir("listener");
        fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("agent.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let mut p = compile(&rule("SCMP_ACT_NOTIFY", "")).unwrap();
        p.listener_path = Some(sock.clone());
        let state = serde_json::json!({"fds": ["seccompFd"], "big": "x".repeat(300_000)});
        let f = fs::File::open("/dev/null").unwrap();
        let sender = {
            let (p, state) = (p.clone(), state.clone());
            std::thread::spawn(move || send_to_listener(&p, f.as_fd(), &state))
        };
        let (mut conn, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (n, fds) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let m = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .unwrap();
            let mut fds = Vec::new();
            for c in m.cmsgs().unwrap() {
                if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            (m.bytes, fds)
        };
        assert_eq!(fds.len(), 1);
        drop(crate::sys::own_fd(fds[0]));
        let mut data = buf[..n].to_vec();
        conn.read_to_end(&mut data).unwrap();
        sender.join().unwrap().unwrap();
        let got: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(got, state);
        fs::remove_dir_all(&dir).unwrap();
        // No listener: the error names the path.
        let e = send_to_listener(&p, fs::File::open("/dev/null").unwrap().as_fd(), &state)
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.sock: ENOENT"), "{e}");
    }

    #[test]
    fn process_state_has_runc_fields() {
        let mut p = compile(&rule("SCMP_ACT_NOTIFY", "")).unwrap();
        p.listener_metadata = "meta".into();
        let state = AgentState {
            oci_version: "1.0.2",
            id: "c1",
            status: "running",
            pid: 42,
            bundle: Path::new("/b"),
            annotations: [("a", "b")].into(),
        };
        let v = process_state(&p, 43, &state);
        assert_eq!(v["ociVersion"], crate::OCI_VERSION);
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 43);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(
            v["state"],
            serde_json::json!({"ociVersion": "1.0.2", "id": "c1", "status": "running",
                "pid": 42, "bundle": "/b", "annotations": {"a": "b"}})
        );
        p.listener_metadata.clear();
        let v = process_state(
            &p,
            43,
            &AgentState {
                annotations: BTreeMap::new(),
                ..state
            },
        );
        assert!(v.get("metadata").is_none(), "{v}");
        assert!(v["state"].get("annotations").is_none(), "{v}");
    }
}
