//! `keel features`: the runtime-spec features document (features.md and
//! features-linux.md), printed on stdout and nothing else.
//!
//! Every list is derived from what keel's own code accepts, not written down
//! separately: mount options from [`crate::mountopts`], capabilities that both
//! the `caps` crate and oci-spec know, seccomp architectures that keel's
//! seccomp compiler takes on this build of libseccomp, seccomp flags that this
//! kernel takes. Callers act on the document (containerd enables read-only
//! recursive mounts for CRI only when `mountOptions` has "rro", and user
//! namespaces only when `mountExtensions.idmap.enabled` is true), so a claim
//! that is not true breaks containers; tests/features.rs checks each claim
//! against a container that uses the feature.

use std::io::Write;

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Hooks keel runs (src/hooks.rs), in lifecycle order.
pub const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// `linux.namespaces[].type` values keel creates and joins (src/namespaces.rs).
pub const NAMESPACES: [&str; 8] = [
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// Whether idmapped mounts (`idmap`/`ridmap`, mount `uidMappings`/`gidMappings`)
/// are implemented: yes, through `mount_setattr(MOUNT_ATTR_IDMAP)` on bind
/// mounts (src/userns.rs); tests/userns.rs checks them.
pub const IDMAP_MOUNTS: bool = true;

/// `process.apparmorProfile` is applied at execve (src/attrs.rs).
pub const APPARMOR: bool = true;
/// `process.selinuxLabel` and `linux.mountLabel` are refused: keel does not label.
pub const SELINUX: bool = false;
/// `linux.intelRdt` is refused (src/spec.rs): keel has no resctrl support.
pub const INTEL_RDT: bool = false;

/// `linux.netDevices` is refused (src/spec.rs): keel moves no host device.
pub const NET_DEVICES: bool = false;

/// Mount options that only idmapped mounts use.
const IDMAP_OPTIONS: [&str; 2] = ["idmap", "ridmap"];

/// `linux.seccomp` actions (src/seccomp.rs maps every one).
pub const SECCOMP_ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// `linux.seccomp.syscalls[].args[].op` values.
pub const SECCOMP_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Every `linux.seccomp.architectures` value of the spec; the document lists
/// those that keel's compiler accepts here.
const SECCOMP_ARCHS: [&str; 24] = [
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// `linux.seccomp.flags` values and the `SECCOMP_FILTER_FLAG_*` bits keel
/// passes for them. WAIT_KILLABLE_RECV is only meaningful (and only taken by
/// the kernel) together with a notification listener.
const SECCOMP_FLAGS: [(&str, u32); 4] = [
    ("SECCOMP_FILTER_FLAG_LOG", crate::sys::seccomp::FLAG_LOG),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        crate::sys::seccomp::FLAG_SPEC_ALLOW,
    ),
    ("SECCOMP_FILTER_FLAG_TSYNC", crate::sys::seccomp::FLAG_TSYNC),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        crate::sys::seccomp::FLAG_WAIT_KILLABLE_RECV | crate::sys::seccomp::FLAG_NEW_LISTENER,
    ),
];

/// Annotation keys of the document.
pub const VERSION_ANNOTATION: &str = "io.github.keel.version";
pub const COMMIT_ANNOTATION: &str = "io.github.keel.commit";
pub const LIBSECCOMP_ANNOTATION: &str = "io.github.seccomp.libseccomp.version";

/// The commit keel was built from, as `keel --version` prints it.
pub fn commit() -> &'static str {
    option_env!("KEEL_COMMIT").unwrap_or("unknown")
}

/// `mountOptions`: every option name keel recognises, sorted, except those of
/// idmapped mounts while they are not implemented.
pub fn mount_options() -> Vec<&'static str> {
    crate::mountopts::known_options()
        .into_iter()
        .filter(|o| IDMAP_MOUNTS || !IDMAP_OPTIONS.contains(o))
        .collect()
}

/// `linux.capabilities`: the capabilities keel can put in a set, i.e. those
/// that oci-spec decodes from config.json and the `caps` crate applies, sorted.
pub fn capabilities() -> Vec<String> {
    let mut names: Vec<String> = caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .filter(|name| serde_json::from_value::<oci_spec::runtime::Capability>(json!(name)).is_ok())
        .collect();
    names.sort_unstable();
    names
}

/// The seccomp architectures keel's compiler accepts with the libseccomp it
/// is built with: a profile naming only that architecture compiles.
pub fn seccomp_archs() -> Vec<&'static str> {
    SECCOMP_ARCHS
        .into_iter()
        .filter(|arch| {
            let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]});
            serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(profile)
                .ok()
                .is_some_and(|s| crate::seccomp::compile(&s).is_ok())
        })
        .collect()
}

/// The seccomp flags this kernel accepts (keel loads programs with seccomp(2)
/// itself, so libseccomp's view of the kernel does not matter).
pub fn seccomp_supported_flags() -> Vec<&'static str> {
    SECCOMP_FLAGS
        .into_iter()
        .filter(|&(_, bits)| crate::sys::seccomp::flags_supported(bits))
        .map(|(name, _)| name)
        .collect()
}

fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The document, in runtime-spec's field order (serde_json's maps would sort it).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    oci_version_min: &'static str,
    oci_version_max: &'static str,
    hooks: &'static [&'static str],
    mount_options: Vec<&'static str>,
    linux: Linux,
    annotations: BTreeMap<&'static str, String>,
    potentially_unsafe_config_annotations: [&'static str; 0],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Linux {
    namespaces: &'static [&'static str],
    capabilities: Vec<String>,
    cgroup: Cgroup,
    seccomp: Seccomp,
    apparmor: Enabled,
    selinux: Enabled,
    intel_rdt: Enabled,
    memory_policy: MemoryPolicy,
    mount_extensions: MountExtensions,
    net_devices: Enabled,
}

#[derive(serde::Serialize)]
struct MemoryPolicy {
    modes: &'static [&'static str],
    flags: &'static [&'static str],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Cgroup {
    v1: bool,
    v2: bool,
    systemd: bool,
    systemd_user: bool,
    rdma: bool,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Seccomp {
    enabled: bool,
    actions: &'static [&'static str],
    operators: &'static [&'static str],
    archs: Vec<&'static str>,
    known_flags: Vec<&'static str>,
    supported_flags: Vec<&'static str>,
}

#[derive(serde::Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(serde::Serialize)]
struct MountExtensions {
    idmap: Enabled,
}

fn build() -> Document {
    Document {
        oci_version_min: "1.0.0",
        oci_version_max: crate::OCI_VERSION,
        hooks: &HOOKS,
        mount_options: mount_options(),
        linux: Linux {
            namespaces: &NAMESPACES,
            capabilities: capabilities(),
            cgroup: Cgroup {
                v1: true,
                v2: true,
                systemd: false,
                systemd_user: false,
                rdma: true,
            },
            seccomp: Seccomp {
                enabled: true,
                actions: &SECCOMP_ACTIONS,
                operators: &SECCOMP_OPERATORS,
                archs: seccomp_archs(),
                known_flags: SECCOMP_FLAGS.iter().map(|&(name, _)| name).collect(),
                supported_flags: seccomp_supported_flags(),
            },
            // runtime-spec: whether support is built in, whatever the host
            // has. keel applies process.apparmorProfile (src/attrs.rs; on a
            // host without AppArmor the field is refused by name), refuses
            // every SELinux label, and refuses linux.intelRdt (src/spec.rs).
            apparmor: Enabled { enabled: APPARMOR },
            selinux: Enabled { enabled: SELINUX },
            intel_rdt: Enabled { enabled: INTEL_RDT },
            memory_policy: MemoryPolicy {
                modes: &crate::attrs::MEMPOLICY_MODES,
                flags: &crate::attrs::MEMPOLICY_FLAGS,
            },
            mount_extensions: MountExtensions {
                idmap: Enabled {
                    enabled: IDMAP_MOUNTS,
                },
            },
            net_devices: Enabled {
                enabled: NET_DEVICES,
            },
        },
        annotations: BTreeMap::from([
            (COMMIT_ANNOTATION, commit().to_owned()),
            (VERSION_ANNOTATION, crate::VERSION.to_owned()),
            (LIBSECCOMP_ANNOTATION, libseccomp_version()),
        ]),
        // keel reads no annotation of config.json.
        potentially_unsafe_config_annotations: [],
    }
}

/// The whole document as JSON (`keel features` prints the same, in the spec's field order).
pub fn document() -> Value {
    serde_json::to_value(build()).expect("the features document serializes")
}

/// `keel features`.
pub fn print() -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &build())?;
    writeln!(out)?;
    out.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_the_spec_type() {
        let doc = document();
        let f: oci_spec::runtime::Features =
            serde_json::from_value(doc.clone()).expect("decodes as runtime-spec features");
        assert_eq!(f.oci_version_min(), "1.0.0");
        assert_eq!(f.oci_version_max(), crate::OCI_VERSION);
        let linux = f.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 8);
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.actions().as_ref().unwrap().len(), 9);
        assert!(seccomp
            .archs()
            .as_ref()
            .unwrap()
            .contains(&oci_spec::runtime::Arch::ScmpArchX86_64));
        assert_eq!(doc["annotations"][VERSION_ANNOTATION], crate::VERSION);
    }

    #[test]
    fn every_name_is_one_that_config_json_decodes() {
        for ns in NAMESPACES {
            serde_json::from_value::<oci_spec::runtime::LinuxNamespaceType>(json!(ns))
                .unwrap_or_else(|e| panic!("{ns}: {e}"));
        }
        for a in SECCOMP_ACTIONS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompAction>(json!(a))
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        for o in SECCOMP_OPERATORS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompOperator>(json!(o))
                .unwrap_or_else(|e| panic!("{o}: {e}"));
        }
        for a in SECCOMP_ARCHS {
            serde_json::from_value::<oci_spec::runtime::Arch>(json!(a))
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        for (f, _) in SECCOMP_FLAGS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompFilterFlag>(json!(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn mount_options_have_the_recursive_ones_and_tmpcopyup() {
        let opts = mount_options();
        for o in [
            "rro",
            "rrw",
            "rnosuid",
            "rsuid",
            "rnodev",
            "rdev",
            "rnoexec",
            "rexec",
            "rnodiratime",
            "rdiratime",
            "rrelatime",
            "rnorelatime",
            "rnoatime",
            "ratime",
            "rstrictatime",
            "rnostrictatime",
            "rnosymfollow",
            "rsymfollow",
            "tmpcopyup",
            "bind",
            "rbind",
            "rprivate",
        ] {
            assert!(opts.contains(&o), "{o} missing from {opts:?}");
        }
        for o in IDMAP_OPTIONS {
            assert_eq!(opts.contains(&o), IDMAP_MOUNTS, "{o}");
        }
        let mut sorted = opts.clone();
        sorted.sort_unstable();
        assert_eq!(opts, sorted);
    }

    #[test]
    fn capabilities_are_complete() {
        let c = capabilities();
        for name in [
            "CAP_CHOWN",
            "CAP_SYS_ADMIN",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        ] {
            assert!(c.iter().any(|n| n == name), "{name} missing from {c:?}");
        }
        assert!(c.len() >= 41, "{c:?}");
    }

    #[test]
    fn seccomp_probes_are_sane() {
        let archs = seccomp_archs();
        for a in [
            "SCMP_ARCH_NATIVE",
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32",
        ] {
            assert!(archs.contains(&a), "{a} missing from {archs:?}");
        }
        // Kernels since 4.17 take these three; keel needs newer ones anyway.
        let flags = seccomp_supported_flags();
        for f in [
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_TSYNC",
        ] {
            assert!(flags.contains(&f), "{f} missing from {flags:?}");
        }
        assert!(!crate::sys::seccomp::flags_supported(1 << 30));
    }
}
