//! The bundle's `config.json`: loading with errors that name the JSON field, checks that
//! need no side effects, container id rules and the `keel spec` template.
//!
//! Everything here runs in the parent before any namespace or mount exists, so a bad
//! config is refused with a message naming the field (`linux.namespaces[2].type: ...`)
//! instead of failing half way through container setup.

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Linux, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, Process, Spec,
};

/// An unusable config: `field` is the JSON path (e.g. "linux.namespaces[2].type"), `msg` says
/// what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading {}: {}", path.display(), errno_text(err))]
    Read { path: PathBuf, err: std::io::Error },
    /// The container id is not from config.json, so its error is shown without that prefix.
    #[error("{}", invalid_display(.field, .msg))]
    Invalid { field: String, msg: String },
    /// Malformed JSON; the message carries serde's line and column.
    #[error("config.json: {0}")]
    Syntax(String),
}

/// "ENOENT: No such file or directory", like every other error keel prints.
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).to_string(),
        None => e.to_string(),
    }
}

fn invalid_display(field: &str, msg: &str) -> String {
    if field == "id" {
        msg.to_string()
    } else {
        format!("config.json: {field}: {msg}")
    }
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Reads `<bundle>/config.json`. A type error names the field it is in, e.g.
/// `config.json: process.user.uid: invalid type: string "x", expected u32`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let data = fs::read(&path).map_err(|err| SpecError::Read { path, err })?;
    parse(&data)
}

fn parse(data: &[u8]) -> Result<Spec, SpecError> {
    let spec: Spec = decode(data, "process.scheduler.flags").map_err(|e| {
        // Without a field path, line and column are the only way to find the problem.
        if e.is_syntax() {
            SpecError::Syntax(e.err.to_string())
        } else {
            invalid(&e.field, describe(&e.field, &e.err))
        }
    })?;
    check_device_numbers_present(data, &spec)?;
    Ok(spec)
}

/// A JSON document that did not decode: serde's error and the path of the
/// field it is about (`.` when there is none).
#[derive(Debug)]
pub struct DecodeError {
    pub field: String,
    pub err: serde_json::Error,
}

impl DecodeError {
    /// Malformed JSON (trailing garbage included) rather than a bad value.
    pub fn is_syntax(&self) -> bool {
        self.err.is_syntax() || self.err.is_eof() || self.field == "."
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for DecodeError {
    fn from(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        DecodeError {
            field: e.path().to_string(),
            err: e.into_inner(),
        }
    }
}

/// Decodes a whole JSON document (config.json, `exec --process`). runtime-spec
/// names two of the scheduler flags at `flags` (`process.scheduler.flags`,
/// `scheduler.flags`) otherwise than oci-spec 0.10 does; a document that uses
/// those names is decoded again, through a `serde_json::Value` in which they
/// are rewritten. Only then do keys given twice take the last value (as in Go)
/// instead of being refused.
pub fn decode<T: serde::de::DeserializeOwned>(data: &[u8], flags: &str) -> Result<T, DecodeError> {
    let e = match decode_slice(data) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let spec_name = e
        .field
        .strip_prefix(flags)
        .is_some_and(|i| i.starts_with('['))
        && unknown_variant(&e.err.to_string())
            .is_some_and(|n| crate::attrs::sched_flag_alias(n).is_some());
    if !spec_name {
        return Err(e);
    }
    let mut doc: serde_json::Value = decode_slice(data)?;
    let pointer = format!("/{}", flags.replace('.', "/"));
    for f in doc
        .pointer_mut(&pointer)
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(name) = f.as_str().and_then(crate::attrs::sched_flag_alias) {
            *f = name.into();
        }
    }
    Ok(serde_path_to_error::deserialize(doc)?)
}

fn decode_slice<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let v = serde_path_to_error::deserialize(&mut de)?;
    // Trailing garbage after the object is malformed JSON too.
    de.end().map_err(|err| DecodeError {
        field: ".".into(),
        err,
    })?;
    Ok(v)
}

/// What is wrong with the value at `field` (a config.json path), without
/// serde's line and column.
pub fn describe(field: &str, err: &serde_json::Error) -> String {
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let msg = full.strip_suffix(&position).unwrap_or(&full);
    // serde lists oci-spec's Rust-side variant names, which helps nobody; say what is wrong.
    match unknown_variant(msg) {
        Some(name) if field.starts_with("linux.namespaces[") && field.ends_with("].type") => {
            format!("unknown namespace {name:?}")
        }
        Some(name) if field.starts_with("linux.seccomp.") => {
            crate::seccomp::unknown_value(field, name).unwrap_or_else(|| msg.to_string())
        }
        Some(name) if crate::attrs::unknown_value(field, name).is_some() => {
            crate::attrs::unknown_value(field, name).unwrap_or_default()
        }
        // oci-spec says "no variant for CAP_FOO (converted to FOO)".
        None if field.starts_with("process.capabilities.")
            && msg.starts_with("no variant for ") =>
        {
            let name = msg["no variant for ".len()..]
                .split(' ')
                .next()
                .unwrap_or_default();
            format!("unknown capability {name:?}")
        }
        _ => msg.to_string(),
    }
}

/// The name in serde's "unknown variant `foo`, expected one of ...".
fn unknown_variant(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown variant `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// oci-spec defaults a missing device major/minor to 0, which would silently create the wrong
/// node, so their presence is checked on the raw JSON.
fn check_device_numbers_present(data: &[u8], spec: &Spec) -> Result<(), SpecError> {
    let needs_numbers = |t: LinuxDeviceType| {
        matches!(
            t,
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U
        )
    };
    let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    if !devices.is_some_and(|d| d.iter().any(|d| needs_numbers(d.typ()))) {
        return Ok(());
    }
    let raw: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| SpecError::Syntax(e.to_string()))?;
    let Some(raw_devices) = raw["linux"]["devices"].as_array() else {
        return Ok(());
    };
    for (i, (dev, raw_dev)) in devices.into_iter().flatten().zip(raw_devices).enumerate() {
        if !needs_numbers(dev.typ()) {
            continue;
        }
        for key in ["major", "minor"] {
            if raw_dev.get(key).is_none() {
                return Err(invalid(
                    format!("linux.devices[{i}].{key}"),
                    format!(
                        "missing: a {:?} device needs a {key} number",
                        dev.typ().as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Everything that can be checked without side effects (it only looks at the rootfs).
/// `need_process` is true for create/run. Returns the first problem found.
pub fn validate(spec: &Spec, bundle: &Path, need_process: bool) -> Result<(), SpecError> {
    if spec.version().is_empty() {
        return Err(invalid("ociVersion", "must not be empty"));
    }
    check_root(spec, bundle)?;
    if need_process {
        check_process(spec.process().as_ref())?;
    }
    let linux = spec.linux().as_ref();
    let ns = Namespaces(
        linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default(),
    );
    check_namespaces(&ns)?;
    if let Some(linux) = linux {
        check_id_mappings(linux, &ns)?;
        check_time_offsets(linux, &ns)?;
    }
    check_uts_names(spec, &ns)?;
    check_mounts(spec)?;
    if let Some(linux) = linux {
        check_path_lists(linux, &ns)?;
        check_rootfs_propagation(linux)?;
        check_sysctl(linux, &ns)?;
        check_devices(linux)?;
        check_intel_rdt(linux)?;
        check_net_devices(linux)?;
    }
    Ok(())
}

/// The rootfs directory: `root.path`, relative to the bundle when not absolute
/// (`<bundle>/rootfs` if `root` is missing, which [`validate`] refuses).
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map_or(Path::new("rootfs"), |r| r.path());
    // join() keeps an absolute root.path as it is.
    bundle.join(root)
}

fn check_root(spec: &Spec, bundle: &Path) -> Result<(), SpecError> {
    let Some(root) = spec.root() else {
        return Err(invalid(
            "root",
            "missing: the container needs a root filesystem",
        ));
    };
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path", "must not be empty"));
    }
    let rootfs = rootfs_path(spec, bundle);
    let problem = match fs::metadata(&rootfs) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(invalid("root.path", format!("rootfs {rootfs:?} {problem}")))
}

fn check_process(process: Option<&Process>) -> Result<(), SpecError> {
    let Some(p) = process else {
        return Err(invalid(
            "process",
            "missing: create and run need a process to start",
        ));
    };

    let args = p.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid(
            "process.args",
            "must not be empty: there is no program to run",
        ));
    }
    if args[0].is_empty() {
        return Err(invalid(
            "process.args[0]",
            "the program to run must not be empty",
        ));
    }
    // execve() takes C strings: a NUL would silently cut the argument.
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(invalid(format!("process.args[{i}]"), "contains a NUL byte"));
    }

    let cwd = p.cwd();
    if cwd.as_os_str().is_empty() {
        return Err(invalid("process.cwd", "must not be empty"));
    }
    if !cwd.is_absolute() {
        return Err(invalid("process.cwd", not_absolute(cwd)));
    }

    for (i, var) in p.env().iter().flatten().enumerate() {
        let problem = if var.contains('\0') {
            "contains a NUL byte".to_string()
        } else {
            match var.split_once('=') {
                None => format!("{var:?} is not in NAME=value form"),
                Some(("", _)) => format!("{var:?} has an empty variable name"),
                Some(_) => continue,
            }
        };
        return Err(invalid(format!("process.env[{i}]"), problem));
    }

    let mut seen = Vec::new();
    for (i, rl) in p.rlimits().iter().flatten().enumerate() {
        if seen.contains(&rl.typ()) {
            return Err(invalid(
                format!("process.rlimits[{i}].type"),
                format!("{} is listed twice", rl.typ()),
            ));
        }
        seen.push(rl.typ());
        if rl.soft() > rl.hard() {
            return Err(invalid(
                format!("process.rlimits[{i}]"),
                format!(
                    "{}: soft limit {} is above the hard limit {}",
                    rl.typ(),
                    rl.soft(),
                    rl.hard()
                ),
            ));
        }
    }

    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }

    // (uid_t)-1 means "unchanged" to setresuid: the process would stay root.
    let user = p.user();
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .map(|(f, id)| (format!("process.user.{f}"), id))
        .chain(
            user.additional_gids()
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, g)| (format!("process.user.additionalGids[{i}]"), *g)),
        );
    for (field, id) in ids {
        if id == u32::MAX {
            return Err(invalid(
                &field,
                "4294967295 is (uid_t)-1, which the kernel reads as \"unchanged\"".to_string(),
            ));
        }
    }

    if let Some(umask) = p.user().umask() {
        if umask > 0o7777 {
            return Err(invalid(
                "process.user.umask",
                format!("{umask} ({umask:#o}) is larger than 0o7777"),
            ));
        }
    }
    Ok(())
}

/// `linux.namespaces`, looked up by type. Duplicates are refused first, so the first entry of a
/// type is the only one.
struct Namespaces<'a>(&'a [LinuxNamespace]);

impl Namespaces<'_> {
    fn find(&self, typ: LinuxNamespaceType) -> Option<&LinuxNamespace> {
        self.0.iter().find(|ns| ns.typ() == typ)
    }

    /// Created or joined: what runc's validator checks for sysctls and masked paths.
    fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.find(typ).is_some()
    }

    /// Created by the container rather than joined by path.
    fn is_new(&self, typ: LinuxNamespaceType) -> bool {
        self.find(typ).is_some_and(|ns| ns_path(ns).is_none())
    }
}

/// An empty path means "create", as in runc (Go cannot tell "" from absent).
fn ns_path(ns: &LinuxNamespace) -> Option<&Path> {
    ns.path().as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// The spec's spelling (oci-spec's Display says "mnt" and "net").
fn ns_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

fn check_namespaces(ns: &Namespaces) -> Result<(), SpecError> {
    for (i, entry) in ns.0.iter().enumerate() {
        if ns.0[..i].iter().any(|prev| prev.typ() == entry.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}].type"),
                format!("namespace {:?} is listed twice", ns_name(entry.typ())),
            ));
        }
        if let Some(path) = ns_path(entry) {
            if !path.is_absolute() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    not_absolute(path),
                ));
            }
        }
    }
    Ok(())
}

fn check_id_mappings(linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    let lists = [
        (
            "uidMappings",
            "uid",
            linux.uid_mappings().as_deref().unwrap_or_default(),
        ),
        (
            "gidMappings",
            "gid",
            linux.gid_mappings().as_deref().unwrap_or_default(),
        ),
    ];
    for (name, kind, list) in lists {
        for (i, m) in list.iter().enumerate() {
            if m.size() == 0 {
                return Err(invalid(
                    format!("linux.{name}[{i}].size"),
                    "must be greater than 0",
                ));
            }
        }
        // A joined user namespace already has its mappings; a new one is useless without.
        if ns.is_new(LinuxNamespaceType::User) && list.is_empty() {
            return Err(invalid(
                format!("linux.{name}"),
                format!("missing: a new user namespace needs {kind} mappings"),
            ));
        }
        if !ns.has(LinuxNamespaceType::User) && !list.is_empty() {
            return Err(invalid(
                format!("linux.{name}"),
                "mappings given, but linux.namespaces has no user namespace",
            ));
        }
    }
    Ok(())
}

fn check_time_offsets(linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    // Offsets can only be written before the first process enters the time namespace.
    if !ns.is_new(LinuxNamespaceType::Time) {
        let why = if ns.has(LinuxNamespaceType::Time) {
            "cannot be set on a time namespace joined by path"
        } else {
            "need a new time namespace (add {\"type\": \"time\"} to linux.namespaces)"
        };
        return Err(invalid("linux.timeOffsets", why));
    }
    let mut clocks: Vec<&String> = offsets.keys().collect();
    clocks.sort();
    if let Some(clock) = clocks
        .into_iter()
        .find(|c| !matches!(c.as_str(), "monotonic" | "boottime"))
    {
        return Err(invalid(
            format!("linux.timeOffsets.{clock:?}"),
            format!("unknown clock {clock:?}: only \"monotonic\" and \"boottime\" can be offset"),
        ));
    }
    Ok(())
}

/// Setting the name in a shared or joined UTS namespace would rename someone else's host.
fn check_uts_names(spec: &Spec, ns: &Namespaces) -> Result<(), SpecError> {
    let names = [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ];
    for (field, value) in names {
        if value.as_deref().unwrap_or_default().is_empty() || ns.is_new(LinuxNamespaceType::Uts) {
            continue;
        }
        let why = if ns.has(LinuxNamespaceType::Uts) {
            format!("cannot set the {field} of a UTS namespace joined by path")
        } else {
            format!(
                "setting the {field} needs a private UTS namespace (add {{\"type\": \"uts\"}} to linux.namespaces)"
            )
        };
        return Err(invalid(field, why));
    }
    Ok(())
}

fn check_mounts(spec: &Spec) -> Result<(), SpecError> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination();
        if dest.as_os_str().is_empty() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                "must not be empty",
            ));
        }
        if !dest.is_absolute() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                not_absolute(dest),
            ));
        }
        let typ = m.typ().as_deref().unwrap_or_default();
        let options = m.options().as_deref().unwrap_or_default();
        let idmapped = options.iter().any(|o| o == "idmap" || o == "ridmap")
            || m.uid_mappings().is_some()
            || m.gid_mappings().is_some();
        if idmapped && !crate::features::IDMAP_MOUNTS {
            return Err(invalid(
                format!("mounts[{i}]"),
                "idmapped mounts (idmap, ridmap, uidMappings, gidMappings) are not supported yet",
            ));
        }
        // As in runc, the bind option makes any type a bind mount, and type "bind" alone does too.
        let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let source = m
                .source()
                .as_deref()
                .map(Path::as_os_str)
                .unwrap_or_default();
            if source.is_empty() {
                return Err(invalid(
                    format!("mounts[{i}].source"),
                    "missing: a bind mount needs a source",
                ));
            }
        } else if typ.is_empty() {
            return Err(invalid(
                format!("mounts[{i}].type"),
                "missing: only bind mounts may leave out the type",
            ));
        }
    }
    Ok(())
}

fn check_path_lists(linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    let lists = [
        (
            "maskedPaths",
            linux.masked_paths().as_deref().unwrap_or_default(),
        ),
        (
            "readonlyPaths",
            linux.readonly_paths().as_deref().unwrap_or_default(),
        ),
    ];
    for (name, list) in lists {
        for (i, path) in list.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(invalid(
                    format!("linux.{name}[{i}]"),
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
        // Without a mount namespace these mounts would land on the host.
        if !list.is_empty() && !ns.has(LinuxNamespaceType::Mount) {
            return Err(invalid(
                format!("linux.{name}"),
                "needs a mount namespace (add {\"type\": \"mount\"} to linux.namespaces)",
            ));
        }
    }
    Ok(())
}

fn check_rootfs_propagation(linux: &Linux) -> Result<(), SpecError> {
    const MODES: [&str; 8] = [
        "shared",
        "slave",
        "private",
        "unbindable",
        "rshared",
        "rslave",
        "rprivate",
        "runbindable",
    ];
    match linux.rootfs_propagation().as_deref() {
        None | Some("") => Ok(()),
        Some(mode) if MODES.contains(&mode) => Ok(()),
        Some(mode) => Err(invalid(
            "linux.rootfsPropagation",
            format!("{mode:?} is not one of {}", MODES.join(", ")),
        )),
    }
}

/// runc's allow-list: a sysctl is only settable when the container has its own copy of it.
fn check_sysctl(linux: &Linux, ns: &Namespaces) -> Result<(), SpecError> {
    const IPC_SYSCTLS: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let Some(sysctl) = linux.sysctl() else {
        return Ok(());
    };
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort(); // the first error must not depend on HashMap order
    for key in keys {
        let name = key.replace('/', ".");
        let field = format!("linux.sysctl.{key:?}");
        let needed = if IPC_SYSCTLS.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            LinuxNamespaceType::Ipc
        } else if name.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if name == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else if name.starts_with("user.") {
            LinuxNamespaceType::User
        } else if name == "kernel.hostname" {
            return Err(invalid(field, "not allowed: use the hostname field"));
        } else {
            return Err(invalid(field, "not in a separate kernel namespace"));
        };
        if !ns.has(needed) {
            return Err(invalid(
                field,
                format!(
                    "needs a private {} namespace (none in linux.namespaces)",
                    ns_name(needed)
                ),
            ));
        }
    }
    Ok(())
}

fn check_devices(linux: &Linux) -> Result<(), SpecError> {
    for (i, dev) in linux.devices().iter().flatten().enumerate() {
        let path = dev.path();
        if !path.is_absolute() {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                not_absolute(path),
            ));
        }
        // Lexically, so "/dev/../etc/shadow" cannot escape.
        let clean = lexical_clean(path);
        if !clean.starts_with("/dev") || clean == Path::new("/dev") {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                format!("{path:?} is not under /dev"),
            ));
        }
        let typ = dev.typ();
        match typ {
            LinuxDeviceType::P => {}
            LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U => {
                for (key, n) in [("major", dev.major()), ("minor", dev.minor())] {
                    if !(0..=i64::from(u32::MAX)).contains(&n) {
                        return Err(invalid(
                            format!("linux.devices[{i}].{key}"),
                            format!("{n} is out of range"),
                        ));
                    }
                }
            }
            LinuxDeviceType::A => {
                return Err(invalid(
                    format!("linux.devices[{i}].type"),
                    format!(
                        "{:?} is not a device node type (want c, b, u or p)",
                        typ.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// keel has no resctrl support (`keel features`: intelRdt.enabled false);
/// running without the requested cache or memory-bandwidth partition would
/// be silently weaker, so refuse it, as runc does where RDT is unavailable.
fn check_intel_rdt(linux: &Linux) -> Result<(), SpecError> {
    match linux.intel_rdt() {
        Some(_) => Err(invalid(
            "linux.intelRdt",
            "Intel RDT (resctrl) is not supported by keel",
        )),
        None => Ok(()),
    }
}

/// keel moves no host network device into the container (`keel features`:
/// netDevices.enabled false); a container that runs without the device it
/// asked for would fail later and less clearly.
fn check_net_devices(linux: &Linux) -> Result<(), SpecError> {
    match linux.net_devices() {
        Some(devs) if !devs.is_empty() => Err(invalid(
            "linux.netDevices",
            "moving host network devices into the container is not supported by keel",
        )),
        _ => Ok(()),
    }
}

fn not_absolute(path: &Path) -> String {
    format!("{path:?} is not an absolute path")
}

/// Resolves "." and ".." without touching the filesystem ("/.." stays "/").
fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Container ids
// ---------------------------------------------------------------------------------------------

/// runc's id rules: non-empty, only `[A-Za-z0-9_+\-.]`, not "." or "..", at most 1024 bytes.
/// The id becomes a directory name under the state root, hence the strictness.
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.');
    let why = if id.is_empty() {
        "must not be empty"
    } else if id.len() > 1024 {
        "is longer than 1024 bytes"
    } else if id == "." || id == ".." {
        "must not be \".\" or \"..\""
    } else if id.contains('/') {
        "must not contain \"/\""
    } else if !id.bytes().all(allowed) {
        "may only contain letters, digits, \"_\", \"+\", \"-\" and \".\""
    } else {
        return Ok(());
    };
    Err(invalid("id", format!("invalid container id {id:?}: {why}")))
}

// ---------------------------------------------------------------------------------------------
// `keel spec`
// ---------------------------------------------------------------------------------------------

/// The config.json that runc 1.1's `runc spec` writes (`runc spec --rootless` when `rootless`,
/// mapping container root to `uid`/`gid`), as runc prints it: Go's field order, tab indent, no
/// trailing newline. Like runc, a cgroup namespace is added on cgroup v2 hosts only.
pub fn default_spec_json(rootless: bool, uid: u32, gid: u32) -> String {
    render(&runc_template(rootless, uid, gid, host_is_cgroup2()))
}

/// runc's `cgroups.IsCgroup2UnifiedMode()`.
fn host_is_cgroup2() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs("/sys/fs/cgroup").is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// A JSON value whose objects keep their key order: Go marshals struct fields in declaration
/// order, and serde_json's Value sorts keys unless a crate feature is on.
enum Json {
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

fn str_list(items: &[&str]) -> Json {
    Json::Arr(items.iter().map(|s| Json::Str(s.to_string())).collect())
}

/// Specconv's Example() followed, for rootless, by its ToRootless().
fn runc_template(rootless: bool, uid: u32, gid: u32, cgroupns: bool) -> Json {
    use Json::{Arr, Bool, Num, Obj, Str};

    let caps = || str_list(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let process = Obj(vec![
        ("terminal", Bool(true)),
        ("user", Obj(vec![("uid", Num(0)), ("gid", Num(0))])),
        ("args", str_list(&["sh"])),
        (
            "env",
            str_list(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ]),
        ),
        ("cwd", Str("/".into())),
        (
            "capabilities",
            Obj(vec![
                ("bounding", caps()),
                ("effective", caps()),
                ("permitted", caps()),
            ]),
        ),
        (
            "rlimits",
            Arr(vec![Obj(vec![
                ("type", Str("RLIMIT_NOFILE".into())),
                ("hard", Num(1024)),
                ("soft", Num(1024)),
            ])]),
        ),
        ("noNewPrivileges", Bool(true)),
    ]);

    // (destination, type, source, options)
    let mut mounts: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        ("/proc", "proc", "proc", vec![]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            vec!["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            vec!["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            vec!["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            vec!["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    let mut namespaces = vec!["pid", "network", "ipc", "uts", "mount"];
    if cgroupns {
        namespaces.push("cgroup");
    }

    if rootless {
        // ToRootless: no network namespace (a rootless user cannot configure one), a user
        // namespace last, sysfs (which needs a network namespace to mount) replaced by a
        // read-only rbind of the host's, and no uid=/gid= options (unmapped ids).
        namespaces.retain(|n| *n != "network" && *n != "user");
        namespaces.push("user");
        for m in &mut mounts {
            if m.0 == "/sys" {
                *m = (
                    "/sys",
                    "none",
                    "/sys",
                    vec!["rbind", "nosuid", "noexec", "nodev", "ro"],
                );
            } else {
                m.3.retain(|o| !o.starts_with("gid=") && !o.starts_with("uid="));
            }
        }
    }

    let mounts = mounts
        .into_iter()
        .map(|(dest, typ, source, options)| {
            let mut fields = vec![
                ("destination", Str(dest.into())),
                ("type", Str(typ.into())),
                ("source", Str(source.into())),
            ];
            if !options.is_empty() {
                fields.push(("options", str_list(&options)));
            }
            Obj(fields)
        })
        .collect();

    let mapping = |host_id: u32| {
        Arr(vec![Obj(vec![
            ("containerID", Num(0)),
            ("hostID", Num(host_id.into())),
            ("size", Num(1)),
        ])])
    };
    let mut linux = Vec::new();
    if rootless {
        linux.push(("uidMappings", mapping(uid)));
        linux.push(("gidMappings", mapping(gid)));
    } else {
        // ToRootless drops resources: an unprivileged user cannot write the device cgroup.
        let deny_all = Obj(vec![("allow", Bool(false)), ("access", Str("rwm".into()))]);
        linux.push(("resources", Obj(vec![("devices", Arr(vec![deny_all]))])));
    }
    linux.push((
        "namespaces",
        Arr(namespaces
            .into_iter()
            .map(|n| Obj(vec![("type", Str(n.into()))]))
            .collect()),
    ));
    linux.push((
        "maskedPaths",
        str_list(&[
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]),
    ));
    linux.push((
        "readonlyPaths",
        str_list(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]),
    ));

    Obj(vec![
        ("ociVersion", Str("1.0.2-dev".into())),
        ("process", process),
        (
            "root",
            Obj(vec![
                ("path", Str("rootfs".into())),
                ("readonly", Bool(true)),
            ]),
        ),
        ("hostname", Str("runc".into())),
        ("mounts", Arr(mounts)),
        ("linux", Obj(linux)),
    ])
}

/// Go's `json.MarshalIndent(v, "", "\t")` layout.
fn render(value: &Json) -> String {
    fn write(out: &mut String, value: &Json, depth: usize) {
        let indent = |out: &mut String, depth: usize| {
            for _ in 0..depth {
                out.push('\t');
            }
        };
        match value {
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    indent(out, depth + 1);
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push_str("{\n");
                for (i, (key, item)) in fields.iter().enumerate() {
                    indent(out, depth + 1);
                    out.push_str(&format!("\"{key}\": "));
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(&mut out, value, 0);
    out
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A bundle directory with an empty `rootfs/`, removed on drop. Unique per test so tests
    /// can run in parallel.
    struct Bundle(PathBuf);

    impl Bundle {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "keel-spec-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(dir.join("rootfs")).unwrap();
            Bundle(dir)
        }

        fn write(&self, config: &str) {
            fs::write(self.0.join("config.json"), config).unwrap();
        }
    }

    impl Drop for Bundle {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// runc's default config (no cgroup namespace, so results do not depend on the host).
    fn base() -> Value {
        serde_json::from_str(&render(&runc_template(false, 0, 0, false))).unwrap()
    }

    /// Writes `config` into a fresh bundle, then loads and validates it for create/run.
    fn check(config: &Value) -> Result<Spec, SpecError> {
        let bundle = Bundle::new();
        bundle.write(&config.to_string());
        let spec = load(&bundle.0)?;
        validate(&spec, &bundle.0, true)?;
        Ok(spec)
    }

    #[track_caller]
    fn assert_err(config: &Value, expected: &str) {
        match check(config) {
            Ok(_) => panic!("config was accepted; expected error containing {expected:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains(expected),
                    "error {text:?} does not contain {expected:?}"
                );
            }
        }
    }

    fn push(config: &mut Value, list: &str, item: Value) {
        config["linux"][list].as_array_mut().unwrap().push(item);
    }

    fn namespaces(config: &mut Value, types: &[&str]) {
        config["linux"]["namespaces"] = types.iter().map(|t| json!({ "type": t })).collect();
    }

    // --- load ---

    #[test]
    fn type_error_names_the_field_without_position() {
        let mut c = base();
        c["process"]["user"]["uid"] = json!("x");
        let err = check(&c).unwrap_err();
        assert!(matches!(err, SpecError::Invalid { .. }));
        assert_eq!(
            err.to_string(),
            "config.json: process.user.uid: invalid type: string \"x\", expected u32"
        );
    }

    #[test]
    fn unknown_namespace_is_named() {
        let mut c = base();
        c["linux"]["namespaces"][2]["type"] = json!("foo");
        let err = check(&c).unwrap_err().to_string();
        assert!(
            err.contains("linux.namespaces[2].type: unknown namespace \"foo\""),
            "{err}"
        );
        assert!(!err.contains("line"), "{err}");
    }

    #[test]
    fn malformed_json_is_syntax_error_with_line() {
        let bundle = Bundle::new();
        bundle.write("{\n  \"ociVersion\": \"1.0.2\"\n  \"root\": {}\n}\n");
        let err = load(&bundle.0).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SpecError::Syntax(_)), "{text}");
        assert!(
            text.starts_with("config.json: ") && text.contains("at line 3 column 3"),
            "{text}"
        );
    }

    #[test]
    fn trailing_garbage_is_syntax_error() {
        let bundle = Bundle::new();
        bundle.write("{\"ociVersion\": \"1.0.2\"} x");
        assert!(matches!(load(&bundle.0), Err(SpecError::Syntax(_))));
    }

    fn sched_flags(spec: &Spec) -> Vec<String> {
        let s = spec
            .process()
            .as_ref()
            .unwrap()
            .scheduler()
            .clone()
            .unwrap();
        let v = serde_json::to_value(s.flags()).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scheduler_flags_take_runtime_spec_names() {
        let mut c = base();
        c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "flags": [
            "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_KEEP_POLICY"]});
        // Only the flags are rewritten: the same string elsewhere is data.
        c["process"]["args"] = json!(["echo", "SCHED_FLAG_RESET_ON_FORK"]);
        c["annotations"] = json!({"SCHED_FLAG_DL_OVERRUN": "SCHED_FLAG_DL_OVERRUN"});
        let spec = check(&c).unwrap();
        assert_eq!(
            sched_flags(&spec),
            [
                "SCHED_RESET_ON_FORK",
                "SCHED_FLAG_D_L_OVERRUN",
                "SCHED_FLAG_KEEP_POLICY"
            ]
        );
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_deref().unwrap()[1], "SCHED_FLAG_RESET_ON_FORK");
        assert_eq!(
            spec.annotations().as_ref().unwrap()["SCHED_FLAG_DL_OVERRUN"],
            "SCHED_FLAG_DL_OVERRUN"
        );
        // oci-spec's own spelling still works (process.json is saved with it).
        c["process"]["scheduler"]["flags"] = json!(["SCHED_RESET_ON_FORK"]);
        assert_eq!(sched_flags(&check(&c).unwrap()), ["SCHED_RESET_ON_FORK"]);
    }

    #[test]
    fn scheduler_flag_errors_name_the_field() {
        let mut c = base();
        c["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "flags": ["X"]});
        assert_eq!(
            check(&c).unwrap_err().to_string(),
            "config.json: process.scheduler.flags[0]: unknown flag \"X\""
        );
        // After a runtime-spec name (the second decoding), the same message.
        c["process"]["scheduler"]["flags"] = json!(["SCHED_FLAG_RESET_ON_FORK", "X"]);
        assert_eq!(
            check(&c).unwrap_err().to_string(),
            "config.json: process.scheduler.flags[1]: unknown flag \"X\""
        );
        // ... and so does any other bad field.
        c["process"]["scheduler"]["flags"] = json!(["SCHED_FLAG_RESET_ON_FORK"]);
        c["linux"]["namespaces"][2]["type"] = json!("foo");
        assert_eq!(
            check(&c).unwrap_err().to_string(),
            "config.json: linux.namespaces[2].type: unknown namespace \"foo\""
        );
        // Malformed JSON after the flags is still a syntax error.
        let bundle = Bundle::new();
        bundle.write(
            r#"{"ociVersion": "1.0.2", "process": {"scheduler": {"policy": "SCHED_OTHER",
                "flags": ["SCHED_FLAG_RESET_ON_FORK"]}}} x"#,
        );
        assert!(matches!(load(&bundle.0), Err(SpecError::Syntax(_))));
    }

    #[test]
    fn missing_config_is_read_error() {
        let bundle = Bundle::new();
        let err = load(&bundle.0).unwrap_err();
        assert!(matches!(err, SpecError::Read { .. }));
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn device_major_minor_are_required() {
        let mut c = base();
        c["linux"]["devices"] = json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/fifo", "type": "p"},
            {"path": "/dev/null2", "type": "c", "major": 1}
        ]);
        assert_err(&c, "linux.devices[2].minor: missing");
    }

    // --- validate: top level and root ---

    #[test]
    fn default_spec_is_valid() {
        let spec = check(&base()).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("runc"));
        let mut c = base();
        namespaces(&mut c, &["pid", "network", "ipc", "uts", "mount", "cgroup"]);
        check(&c).unwrap();
    }

    #[test]
    fn oci_version_required() {
        let mut c = base();
        c["ociVersion"] = json!("");
        assert_err(&c, "config.json: ociVersion: must not be empty");
    }

    #[test]
    fn root_required() {
        let mut c = base();
        c.as_object_mut().unwrap().remove("root");
        assert_err(&c, "config.json: root: missing");
        c["root"] = json!({"path": ""});
        assert_err(&c, "root.path: must not be empty");
    }

    #[test]
    fn rootfs_must_be_a_directory() {
        let bundle = Bundle::new();
        let mut c = base();
        c["root"]["path"] = json!("nope");
        bundle.write(&c.to_string());
        let spec = load(&bundle.0).unwrap();
        let err = validate(&spec, &bundle.0, true).unwrap_err().to_string();
        let missing = bundle.0.join("nope");
        assert!(
            err.contains(&format!("root.path: rootfs {missing:?} does not exist")),
            "{err}"
        );

        fs::write(&missing, "").unwrap();
        let err = validate(&spec, &bundle.0, true).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn rootfs_path_is_relative_to_bundle() {
        let mut c = base();
        let spec: Spec = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(rootfs_path(&spec, Path::new("/b")), Path::new("/b/rootfs"));
        c["root"]["path"] = json!("/abs/root");
        let spec: Spec = serde_json::from_value(c).unwrap();
        assert_eq!(rootfs_path(&spec, Path::new("/b")), Path::new("/abs/root"));
    }

    // --- validate: process ---

    #[test]
    fn process_required_only_for_create_and_run() {
        let mut c = base();
        c.as_object_mut().unwrap().remove("process");
        assert_err(
            &c,
            "config.json: process: missing: create and run need a process to start",
        );
        let bundle = Bundle::new();
        bundle.write(&c.to_string());
        let spec = load(&bundle.0).unwrap();
        validate(&spec, &bundle.0, false).unwrap();
    }

    #[test]
    fn process_args_required() {
        let mut c = base();
        c["process"]["args"] = json!([]);
        assert_err(&c, "process.args: must not be empty");
        c["process"]["args"] = json!(["sh", "a\u{0}b"]);
        assert_err(&c, "process.args[1]: contains a NUL byte");
    }

    #[test]
    fn process_cwd_absolute() {
        let mut c = base();
        c["process"]["cwd"] = json!("work");
        assert_err(&c, "process.cwd: \"work\" is not an absolute path");
    }

    #[test]
    fn process_env_form() {
        let mut c = base();
        c["process"]["env"] = json!(["A=1", "NOVALUE"]);
        assert_err(&c, "process.env[1]: \"NOVALUE\" is not in NAME=value form");
        c["process"]["env"] = json!(["=x"]);
        assert_err(&c, "process.env[0]: \"=x\" has an empty variable name");
        c["process"]["env"] = json!(["A=1", "B=2", "C=\u{0}"]);
        assert_err(&c, "process.env[2]: contains a NUL byte");
        c["process"]["env"] = json!(["A=", "B==c"]);
        check(&c).unwrap();
    }

    #[test]
    fn rlimit_soft_above_hard() {
        let mut c = base();
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 2048}
        ]);
        assert_err(
            &c,
            "process.rlimits[1]: RLIMIT_NOFILE: soft limit 2048 is above the hard limit 1024",
        );
    }

    #[test]
    fn rlimit_listed_twice() {
        let mut c = base();
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 10, "soft": 10},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            {"type": "RLIMIT_NOFILE", "hard": 20, "soft": 20}
        ]);
        assert_err(&c, "process.rlimits[2].type: RLIMIT_NOFILE is listed twice");
    }

    #[test]
    fn oom_score_adj_range() {
        let mut c = base();
        c["process"]["oomScoreAdj"] = json!(-1000);
        check(&c).unwrap();
        c["process"]["oomScoreAdj"] = json!(1001);
        assert_err(&c, "process.oomScoreAdj: 1001 is outside -1000..1000");
    }

    #[test]
    fn umask_range() {
        let mut c = base();
        c["process"]["user"]["umask"] = json!(0o7777);
        check(&c).unwrap();
        c["process"]["user"]["umask"] = json!(0o10000);
        assert_err(
            &c,
            "process.user.umask: 4096 (0o10000) is larger than 0o7777",
        );
    }

    #[test]
    fn uid_minus_one_is_refused() {
        let mut c = base();
        c["process"]["user"] = json!({"uid": 4294967294u32, "gid": 0, "additionalGids": [1]});
        check(&c).unwrap();
        c["process"]["user"]["gid"] = json!(4294967295u32);
        assert_err(&c, "process.user.gid: 4294967295 is (uid_t)-1");
        c["process"]["user"]["gid"] = json!(0);
        c["process"]["user"]["additionalGids"] = json!([1, 4294967295u32]);
        assert_err(&c, "process.user.additionalGids[1]: 4294967295");
    }

    #[test]
    fn terminal_and_console_size_are_fine() {
        let mut c = base();
        c["process"]["terminal"] = json!(false);
        c["process"]["consoleSize"] = json!({"height": 24, "width": 80});
        check(&c).unwrap();
    }

    // --- validate: namespaces ---

    #[test]
    fn namespace_listed_twice() {
        let mut c = base();
        push(&mut c, "namespaces", json!({"type": "pid"}));
        assert_err(
            &c,
            "linux.namespaces[5].type: namespace \"pid\" is listed twice",
        );
    }

    #[test]
    fn namespace_path_absolute() {
        let mut c = base();
        c["linux"]["namespaces"][1]["path"] = json!("proc/1/ns/net");
        assert_err(
            &c,
            "linux.namespaces[1].path: \"proc/1/ns/net\" is not an absolute path",
        );
        // An empty path means "create", as in runc.
        c["linux"]["namespaces"][1]["path"] = json!("");
        check(&c).unwrap();
    }

    #[test]
    fn new_user_namespace_needs_mappings() {
        let mut c = base();
        push(&mut c, "namespaces", json!({"type": "user"}));
        assert_err(
            &c,
            "linux.uidMappings: missing: a new user namespace needs uid mappings",
        );
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        assert_err(&c, "linux.gidMappings: missing");
        // Joining a user namespace brings its own mappings.
        let mut c = base();
        push(
            &mut c,
            "namespaces",
            json!({"type": "user", "path": "/proc/1/ns/user"}),
        );
        check(&c).unwrap();
    }

    #[test]
    fn mappings_need_user_namespace() {
        let mut c = base();
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        assert_err(
            &c,
            "linux.uidMappings: mappings given, but linux.namespaces has no user namespace",
        );
    }

    #[test]
    fn mapping_size_positive() {
        let mut c = base();
        push(&mut c, "namespaces", json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        c["linux"]["gidMappings"] = json!([
            {"containerID": 0, "hostID": 1000, "size": 1},
            {"containerID": 1, "hostID": 100000, "size": 0}
        ]);
        assert_err(&c, "linux.gidMappings[1].size: must be greater than 0");
    }

    #[test]
    fn time_offsets_need_new_time_namespace() {
        let mut c = base();
        c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 10}});
        assert_err(&c, "linux.timeOffsets: need a new time namespace");
        push(
            &mut c,
            "namespaces",
            json!({"type": "time", "path": "/proc/1/ns/time"}),
        );
        assert_err(
            &c,
            "linux.timeOffsets: cannot be set on a time namespace joined by path",
        );
        c["linux"]["namespaces"][5] = json!({"type": "time"});
        check(&c).unwrap();
    }

    #[test]
    fn time_offsets_only_known_clocks() {
        let mut c = base();
        push(&mut c, "namespaces", json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}, "realtime": {"secs": 1}});
        assert_err(
            &c,
            "linux.timeOffsets.\"realtime\": unknown clock \"realtime\"",
        );
    }

    #[test]
    fn hostname_needs_new_uts_namespace() {
        let mut c = base();
        namespaces(&mut c, &["pid", "mount"]);
        assert_err(
            &c,
            "config.json: hostname: setting the hostname needs a private UTS namespace",
        );
        push(
            &mut c,
            "namespaces",
            json!({"type": "uts", "path": "/proc/1/ns/uts"}),
        );
        assert_err(
            &c,
            "hostname: cannot set the hostname of a UTS namespace joined by path",
        );
        c["hostname"] = json!("");
        check(&c).unwrap();
    }

    #[test]
    fn domainname_needs_new_uts_namespace() {
        let mut c = base();
        namespaces(&mut c, &["pid", "mount"]);
        c.as_object_mut().unwrap().remove("hostname");
        c["domainname"] = json!("example.org");
        assert_err(
            &c,
            "config.json: domainname: setting the domainname needs a private UTS namespace",
        );
    }

    // --- validate: mounts and paths ---

    #[test]
    fn mount_destination_absolute() {
        let mut c = base();
        c["mounts"][3]["destination"] = json!("foo");
        assert_err(&c, "mounts[3].destination: \"foo\" is not an absolute path");
    }

    #[test]
    fn bind_mount_type_and_source() {
        let mut c = base();
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/a", "source": "/tmp", "options": ["rbind"]}));
        mounts.push(json!({"destination": "/b", "type": "none", "source": "/tmp", "options": ["bind", "ro"]}));
        mounts.push(json!({"destination": "/c", "type": "bind", "source": "/tmp"}));
        check(&c).unwrap();

        c["mounts"][8]["source"] = json!("");
        assert_err(&c, "mounts[8].source: missing: a bind mount needs a source");

        let mut c = base();
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/d", "source": "x"}));
        assert_err(
            &c,
            "mounts[7].type: missing: only bind mounts may leave out the type",
        );
    }

    #[test]
    fn masked_and_readonly_paths_absolute() {
        let mut c = base();
        push(&mut c, "maskedPaths", json!("proc/kcore"));
        assert_err(
            &c,
            "linux.maskedPaths[10]: \"proc/kcore\" is not an absolute path",
        );
        let mut c = base();
        c["linux"]["readonlyPaths"][2] = json!("irq");
        assert_err(
            &c,
            "linux.readonlyPaths[2]: \"irq\" is not an absolute path",
        );
    }

    #[test]
    fn masked_paths_need_mount_namespace() {
        let mut c = base();
        namespaces(&mut c, &["pid", "uts"]);
        assert_err(&c, "linux.maskedPaths: needs a mount namespace");
        c["linux"]["maskedPaths"] = json!([]);
        assert_err(&c, "linux.readonlyPaths: needs a mount namespace");
    }

    #[test]
    fn rootfs_propagation_values() {
        let mut c = base();
        c["linux"]["rootfsPropagation"] = json!("rslave");
        check(&c).unwrap();
        c["linux"]["rootfsPropagation"] = json!("recursive");
        assert_err(
            &c,
            "linux.rootfsPropagation: \"recursive\" is not one of shared, slave",
        );
    }

    // --- validate: sysctl ---

    #[test]
    fn sysctl_allowed_with_namespaces() {
        let mut c = base();
        push(&mut c, "namespaces", json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        c["linux"]["sysctl"] = json!({
            "kernel.shmmax": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "1",
            "net.ipv4.ip_forward": "1", "net/ipv4/ping_group_range": "0 0",
            "kernel.domainname": "x", "user.max_user_namespaces": "1"
        });
        check(&c).unwrap();
    }

    #[test]
    fn sysctl_ipc_needs_ipc_namespace() {
        let mut c = base();
        namespaces(&mut c, &["pid", "network", "uts", "mount"]);
        c["linux"]["sysctl"] = json!({"fs/mqueue/queues_max": "1"});
        assert_err(
            &c,
            "linux.sysctl.\"fs/mqueue/queues_max\": needs a private ipc namespace",
        );
        c["linux"]["sysctl"] = json!({"kernel.sem": "1"});
        assert_err(
            &c,
            "linux.sysctl.\"kernel.sem\": needs a private ipc namespace",
        );
    }

    #[test]
    fn sysctl_net_needs_network_namespace() {
        let mut c = base();
        namespaces(&mut c, &["pid", "ipc", "uts", "mount"]);
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        assert_err(
            &c,
            "linux.sysctl.\"net.ipv4.ip_forward\": needs a private network namespace",
        );
        // A joined network namespace is the container's own too.
        push(
            &mut c,
            "namespaces",
            json!({"type": "network", "path": "/run/netns/x"}),
        );
        check(&c).unwrap();
    }

    #[test]
    fn sysctl_domainname_needs_uts_and_hostname_refused() {
        let mut c = base();
        namespaces(&mut c, &["pid", "mount"]);
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["sysctl"] = json!({"kernel.domainname": "x"});
        assert_err(
            &c,
            "linux.sysctl.\"kernel.domainname\": needs a private uts namespace",
        );
        let mut c = base();
        c["linux"]["sysctl"] = json!({"kernel.hostname": "x"});
        assert_err(
            &c,
            "linux.sysctl.\"kernel.hostname\": not allowed: use the hostname field",
        );
    }

    #[test]
    fn sysctl_user_needs_user_namespace() {
        let mut c = base();
        c["linux"]["sysctl"] = json!({"user.max_user_namespaces": "1"});
        assert_err(
            &c,
            "linux.sysctl.\"user.max_user_namespaces\": needs a private user namespace",
        );
    }

    #[test]
    fn sysctl_not_namespaced() {
        let mut c = base();
        c["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
        assert_err(
            &c,
            "linux.sysctl.\"vm.swappiness\": not in a separate kernel namespace",
        );
    }

    // --- validate: devices ---

    #[test]
    fn device_path_under_dev() {
        let mut c = base();
        c["linux"]["devices"] =
            json!([{"path": "/dev/../etc/shadow", "type": "c", "major": 1, "minor": 3}]);
        assert_err(
            &c,
            "linux.devices[0].path: \"/dev/../etc/shadow\" is not under /dev",
        );
        c["linux"]["devices"][0]["path"] = json!("dev/null");
        assert_err(
            &c,
            "linux.devices[0].path: \"dev/null\" is not an absolute path",
        );
        c["linux"]["devices"][0]["path"] = json!("/dev/./sub/null");
        check(&c).unwrap();
    }

    #[test]
    fn device_type_is_a_node_type() {
        let mut c = base();
        c["linux"]["devices"] = json!([
            {"path": "/dev/fifo", "type": "p"},
            {"path": "/dev/all", "type": "a", "major": 1, "minor": 1}
        ]);
        assert_err(&c, "linux.devices[1].type: \"a\" is not a device node type");
        c["linux"]["devices"][1]["type"] = json!("x");
        assert_err(&c, "linux.devices[1].type: unknown variant `x`");
    }

    #[test]
    fn device_numbers_in_range() {
        let mut c = base();
        c["linux"]["devices"] = json!([{"path": "/dev/sda", "type": "b", "major": -8, "minor": 0}]);
        assert_err(&c, "linux.devices[0].major: -8 is out of range");
    }

    #[test]
    fn intel_rdt_is_refused() {
        let mut c = base();
        c["linux"]["intelRdt"] = json!({"closID": "x"});
        assert_err(
            &c,
            "linux.intelRdt: Intel RDT (resctrl) is not supported by keel",
        );
    }

    #[test]
    fn net_devices_are_refused() {
        let mut c = base();
        c["linux"]["netDevices"] = json!({"eth1": {"name": "eth0"}});
        assert_err(
            &c,
            "linux.netDevices: moving host network devices into the container is not supported by keel",
        );
    }

    // --- ids ---

    #[test]
    fn container_ids() {
        for ok in ["a", "my-ctr_1.2+x", "...", &"x".repeat(1024)] {
            validate_id(ok).unwrap();
        }
        let cases = [
            ("", "must not be empty"),
            (".", "must not be"),
            ("..", "must not be"),
            ("a/b", "must not contain \"/\""),
            ("a b", "may only contain"),
            ("é", "may only contain"),
        ];
        for (id, why) in cases {
            let err = validate_id(id).unwrap_err();
            let text = err.to_string();
            assert!(matches!(&err, SpecError::Invalid { field, .. } if field == "id"));
            assert!(
                text.starts_with(&format!("invalid container id {id:?}: ")),
                "{text}"
            );
            assert!(text.contains(why), "{text}");
        }
        assert!(validate_id(&"x".repeat(1025))
            .unwrap_err()
            .to_string()
            .contains("longer than 1024 bytes"));
    }

    // --- keel spec ---

    #[test]
    fn default_spec_matches_runc_layout() {
        let text = render(&runc_template(false, 0, 0, false));
        let expected = [
            "{",
            "\t\"ociVersion\": \"1.0.2-dev\",",
            "\t\"process\": {",
            "\t\t\"terminal\": true,",
            "\t\t\"user\": {",
            "\t\t\t\"uid\": 0,",
            "\t\t\t\"gid\": 0",
            "\t\t},",
            "\t\t\"args\": [",
            "\t\t\t\"sh\"",
            "\t\t],",
        ];
        assert!(text.starts_with(&(expected.join("\n") + "\n")), "{text}");
        assert!(text.ends_with("\t\t]\n\t}\n}"), "{text}");
        for part in [
            "\t\"hostname\": \"runc\",\n",
            "\t\t{\n\t\t\t\"destination\": \"/proc\",\n\t\t\t\"type\": \"proc\",\n\t\t\t\"source\": \"proc\"\n\t\t},\n",
            "\t\t\"resources\": {\n\t\t\t\"devices\": [\n\t\t\t\t{\n\t\t\t\t\t\"allow\": false,\n\t\t\t\t\t\"access\": \"rwm\"\n",
            "\t\t\t\t\"type\": \"RLIMIT_NOFILE\",\n\t\t\t\t\"hard\": 1024,\n\t\t\t\t\"soft\": 1024\n",
        ] {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }

        let v: Value = serde_json::from_str(&text).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(v["process"]["capabilities"].as_object().unwrap().len(), 3);
        assert_eq!(v["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(
            v["mounts"][2]["options"]
                .as_array()
                .unwrap()
                .last()
                .unwrap(),
            "gid=5"
        );
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(v["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        assert!(keys(&v["linux"]).iter().all(|k| !k.contains("Mappings")));

        let with_cgroupns: Value =
            serde_json::from_str(&render(&runc_template(false, 0, 0, true))).unwrap();
        assert_eq!(with_cgroupns["linux"]["namespaces"][5]["type"], "cgroup");
    }

    #[test]
    fn rootless_spec_follows_to_rootless() {
        let v: Value =
            serde_json::from_str(&render(&runc_template(true, 1000, 1001, true))).unwrap();
        let linux = &v["linux"];
        assert_eq!(
            linux["uidMappings"],
            json!([{"containerID": 0, "hostID": 1000, "size": 1}])
        );
        assert_eq!(
            linux["gidMappings"],
            json!([{"containerID": 0, "hostID": 1001, "size": 1}])
        );
        assert!(linux.get("resources").is_none());
        let ns: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup", "user"]);
        assert_eq!(
            v["mounts"][5],
            json!({"destination": "/sys", "type": "none", "source": "/sys",
                   "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        );
        assert!(!v["mounts"][2]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("gid=5")));
        assert_eq!(v["mounts"][6]["destination"], "/sys/fs/cgroup");
    }

    #[test]
    fn default_spec_round_trips_through_load() {
        for rootless in [false, true] {
            let bundle = Bundle::new();
            let text = default_spec_json(rootless, 1000, 1000);
            bundle.write(&text);
            let spec = load(&bundle.0).unwrap();
            validate(&spec, &bundle.0, true).unwrap();
            assert_eq!(spec.version(), "1.0.2-dev");
            assert_eq!(rootfs_path(&spec, &bundle.0), bundle.0.join("rootfs"));
            let process = spec.process().as_ref().unwrap();
            assert_eq!(process.args().as_deref().unwrap(), ["sh"]);
            assert_eq!(process.terminal(), Some(true));
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(linux.uid_mappings().is_some(), rootless);
            assert_eq!(spec.mounts().as_ref().unwrap().len(), 7);
        }
    }
}
