//! `keel features`: every claim of the document, checked against a container
//! that uses the feature. Each list in the document must be covered by a
//! table here, so that an option or a name keel starts to advertise without a
//! test fails these tests.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use common::Bundle;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

/// `keel features`, with no global flags (as containerd's shim runs it):
/// only the document on stdout, nothing on stderr.
fn features() -> Value {
    let out = common::keel_cmd()
        .arg("features")
        .output()
        .expect("run keel features");
    assert!(out.status.success(), "keel features: {out:?}");
    assert!(out.stderr.is_empty(), "{}", common::text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keel features: not JSON ({e}): {}",
            common::text(&out.stdout)
        )
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// `sh -c script` in the bundle's container: (exit code, stdout, stderr).
fn sh(b: &mut Bundle, script: &str) -> (i32, String, String) {
    b.run(&["sh", "-c", script])
}

/// Host mounts a test makes; unmounted on drop (also when the test panics),
/// before the bundle directory holding them is removed.
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn tmpfs(&mut self, target: &Path, flags: MsFlags) {
        fs::create_dir_all(target).unwrap();
        mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some("size=1m"))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", target.display()));
        self.0.push(target.to_owned());
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("make {} private: {e}", target.display()));
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug)]
struct MountInfo {
    per_mount: Vec<String>,
    optional: Vec<String>,
    super_opts: Vec<String>,
}

impl MountInfo {
    fn has(&self, opt: &str) -> bool {
        self.per_mount.iter().any(|o| o == opt)
    }
    fn sb_has(&self, opt: &str) -> bool {
        self.super_opts.iter().any(|o| o == opt)
    }
    fn tagged(&self, prefix: &str) -> bool {
        self.optional.iter().any(|o| o.starts_with(prefix))
    }
}

/// The container's mountinfo, by mount point (the last mount wins).
fn parse_mountinfo(text: &str) -> BTreeMap<String, MountInfo> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < sep + 4 || sep < 6 {
            continue;
        }
        let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        out.insert(
            f[4].to_owned(),
            MountInfo {
                per_mount: split(f[5]),
                optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
                super_opts: split(f[sep + 3]),
            },
        );
    }
    out
}

#[test]
fn document_shape_versions_and_annotations() {
    if !common::require_root() {
        return;
    }
    let f = features();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    let version = common::keel_cmd().arg("--version").output().unwrap();
    let version = common::text(&version.stdout);
    let line = |prefix: &str| {
        version
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {version}"))
            .trim()
            .to_owned()
    };
    assert_eq!(
        f["annotations"]["io.github.keel.version"],
        line("keel version ")
    );
    assert_eq!(f["annotations"]["io.github.keel.commit"], line("commit:"));
    assert_eq!(f["ociVersionMax"], line("spec:"));
    assert_eq!(f["potentiallyUnsafeConfigAnnotations"], json!([]));
    // Configs written for both ends of the range run.
    for v in ["ociVersionMin", "ociVersionMax"] {
        let mut b = Bundle::new("feat-version");
        b.set("/ociVersion", f[v].clone());
        let (code, out, err) = sh(&mut b, "echo ran");
        assert_eq!((code, out.as_str()), (0, "ran\n"), "{v}: {err}");
    }
}

#[test]
fn every_hook_runs() {
    if !common::require_root() {
        return;
    }
    let hooks = strings(&features()["hooks"]);
    let mut b = Bundle::new("feat-hooks");
    let log = b.dir.join("hooks.log");
    // The bundle dir is the container's /tmp, for startContainer (after pivot_root).
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "bind", "source": b.dir, "options": ["rbind"]}),
    );
    for h in &hooks {
        let target = if h == "startContainer" {
            PathBuf::from("/tmp/hooks.log")
        } else {
            log.clone()
        };
        let script = format!("echo {h} >> {}", target.display());
        b.set(
            &format!("/hooks/{h}"),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
        );
    }
    let (code, _, err) = sh(&mut b, "true");
    assert_eq!(code, 0, "{err}");
    let ran = fs::read_to_string(&log).unwrap_or_default();
    let ran: Vec<&str> = ran.lines().collect();
    assert_eq!(ran, hooks, "hooks that ran, in order, vs the document");
}

#[test]
fn every_namespace_is_created() {
    if !common::require_root() {
        return;
    }
    let namespaces = strings(&features()["linux"]["namespaces"]);
    assert_eq!(namespaces.len(), 8, "{namespaces:?}");
    for ns in &namespaces {
        let file = match ns.as_str() {
            "mount" => "mnt",
            "network" => "net",
            other => other,
        };
        let host = fs::read_link(format!("/proc/self/ns/{file}"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut b = Bundle::new(&format!("feat-ns-{ns}"));
        let mut list = b.config["linux"]["namespaces"].as_array().unwrap().clone();
        if !list.iter().any(|n| n["type"] == ns.as_str()) {
            list.push(json!({"type": ns}));
        }
        b.set("/linux/namespaces", json!(list));
        if ns == "user" {
            let map = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
            b.set("/linux/uidMappings", map.clone());
            b.set("/linux/gidMappings", map);
        }
        let (code, out, err) = sh(&mut b, &format!("readlink /proc/self/ns/{file}"));
        assert_eq!(code, 0, "{ns}: {err}");
        assert!(out.starts_with(&format!("{file}:[")), "{ns}: {out:?} {err}");
        assert_ne!(
            out.trim(),
            host.to_str().unwrap(),
            "{ns}: not a new namespace"
        );
    }
}

/// A capability mask (as in /proc/<pid>/status) from names.
fn cap_mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(|n| caps::Capability::from_str(n).unwrap_or_else(|e| panic!("{n}: {e}")))
        .fold(0, |m, c| m | 1u64 << c.index())
}

fn status_mask(status: &str, field: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn every_capability_is_applied() {
    if !common::require_root() {
        return;
    }
    let listed = strings(&features()["linux"]["capabilities"]);
    // The host may lack some (CI: CAP_SYS_RESOURCE): only those we hold can be given.
    let ours = status_mask(&fs::read_to_string("/proc/self/status").unwrap(), "CapEff:");
    let usable: Vec<String> = listed
        .iter()
        .filter(|n| ours & cap_mask(&[n.to_string()]) != 0)
        .cloned()
        .collect();
    assert!(usable.len() + 2 >= listed.len(), "{usable:?}");
    let mut b = Bundle::new("feat-caps");
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        b.set(&format!("/process/capabilities/{set}"), json!(usable));
    }
    let (code, out, err) = sh(&mut b, "grep ^Cap /proc/self/status");
    assert_eq!(code, 0, "{err}");
    let want = cap_mask(&usable);
    for field in ["CapBnd:", "CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(status_mask(&out, field), want, "{field}\n{out}");
    }
}

/// What a `mount(2)` flag option or a propagation option, given alone to a
/// new tmpfs, shows in the container's mountinfo.
fn flag_option_shows(opt: &str, m: &MountInfo) -> Option<bool> {
    Some(match opt {
        "defaults" => m.has("rw") && m.has("relatime"),
        "ro" => m.has("ro"),
        "rw" => m.has("rw"),
        "nosuid" => m.has("nosuid"),
        "suid" => !m.has("nosuid"),
        "nodev" => m.has("nodev"),
        "dev" => !m.has("nodev"),
        "noexec" => m.has("noexec"),
        "exec" => !m.has("noexec"),
        "noatime" => m.has("noatime"),
        "atime" => !m.has("noatime"),
        "nodiratime" => m.has("nodiratime"),
        "diratime" => !m.has("nodiratime"),
        "relatime" => m.has("relatime"),
        // Only clears MS_RELATIME (as in runc); with no access-time mode left the
        // kernel's default for a new mount is relatime again.
        "norelatime" => !m.has("noatime"),
        "strictatime" => !m.has("relatime") && !m.has("noatime"),
        "nostrictatime" => m.has("relatime"),
        "nosymfollow" => m.has("nosymfollow"),
        "symfollow" => !m.has("nosymfollow"),
        "sync" => m.sb_has("sync"),
        "async" => !m.sb_has("sync"),
        "dirsync" => m.sb_has("dirsync"),
        "mand" => m.sb_has("mand"),
        "nomand" => !m.sb_has("mand"),
        "lazytime" => m.sb_has("lazytime"),
        "nolazytime" => !m.sb_has("lazytime"),
        // Not visible in mountinfo: accepted is all that can be seen.
        "iversion" | "noiversion" | "silent" | "loud" => true,
        "shared" | "rshared" => m.tagged("shared:"),
        "private" | "rprivate" => !m.tagged("shared:") && !m.tagged("master:"),
        // A fresh mount has no master to follow: it ends up private.
        "slave" | "rslave" => !m.tagged("shared:"),
        "unbindable" | "runbindable" => m.tagged("unbindable"),
        _ => return None,
    })
}

/// What a recursive option does to the submounts of an rbind: `plain` was
/// mounted with the defaults, `flagged` with every attribute the clearing
/// options clear (ro, nosuid, nodev, noexec, nodiratime, nosymfollow, noatime).
fn recursive_option_shows(opt: &str, plain: &MountInfo, flagged: &MountInfo) -> Option<bool> {
    Some(match opt {
        "rro" => plain.has("ro"),
        "rrw" => flagged.has("rw"),
        "rnosuid" => plain.has("nosuid"),
        "rsuid" => !flagged.has("nosuid"),
        "rnodev" => plain.has("nodev"),
        "rdev" => !flagged.has("nodev"),
        "rnoexec" => plain.has("noexec"),
        "rexec" => !flagged.has("noexec"),
        "rnodiratime" => plain.has("nodiratime"),
        "rdiratime" => !flagged.has("nodiratime"),
        "rnosymfollow" => plain.has("nosymfollow"),
        "rsymfollow" => !flagged.has("nosymfollow"),
        "rnoatime" => plain.has("noatime"),
        "ratime" => !flagged.has("noatime") && flagged.has("relatime"),
        "rrelatime" => flagged.has("relatime"),
        "rnorelatime" => !plain.has("relatime") && !plain.has("noatime"),
        "rstrictatime" => !plain.has("relatime") && !plain.has("noatime"),
        "rnostrictatime" => plain.has("relatime"),
        _ => return None,
    })
}

#[test]
fn every_mount_option_works() {
    if !common::require_root() {
        return;
    }
    let options = strings(&features()["mountOptions"]);
    let mut b = Bundle::new("feat-mountopts");
    let mut host = HostMounts(Vec::new());

    // The host side of the bind mounts: a file, and two submounts.
    let src = b.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("top"), "top").unwrap();
    host.tmpfs(&src.join("plain"), MsFlags::empty());
    fs::write(src.join("plain/sub"), "sub").unwrap();
    host.tmpfs(
        &src.join("flagged"),
        MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_NOATIME
            | MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
    );

    // One container, one mount per option, under a tmpfs at /tmp.
    b.set(
        "/mounts/-",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    let mut covered = Vec::new();
    let mut recursive = Vec::new();
    for opt in &options {
        let dest = format!("/tmp/o/{opt}");
        let m = if flag_option_shows(opt, &dummy()).is_some() {
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [opt]})
        } else if recursive_option_shows(opt, &dummy(), &dummy()).is_some() {
            recursive.push(opt.clone());
            json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", opt]})
        } else {
            match opt.as_str() {
                "bind" | "rbind" => {
                    json!({"destination": dest, "type": "bind", "source": src, "options": [opt]})
                }
                // A remount of the mount just made at the same place.
                "remount" => {
                    b.set(
                        "/mounts/-",
                        json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}),
                    );
                    json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["remount", "ro"]})
                }
                // Its own test below: it needs the previous contents of the target.
                "tmpcopyup" => continue,
                // Their own test below: they need mappings.
                "idmap" | "ridmap" => continue,
                other => panic!("mountOptions has {other:?}, which no table here tests"),
            }
        };
        covered.push(opt.clone());
        b.set("/mounts/-", m);
    }
    let (code, out, err) = sh(
        &mut b,
        "cat /proc/self/mountinfo; echo ---; cat /tmp/o/bind/top /tmp/o/rbind/top /tmp/o/rbind/plain/sub; \
         cat /tmp/o/bind/plain/sub 2>/dev/null || echo no-sub",
    );
    assert_eq!(code, 0, "{err}");
    let (info, files) = out.split_once("---\n").unwrap();
    let info = parse_mountinfo(info);
    assert_eq!(files, "toptopsubno-sub\n", "bind and rbind: {files:?}");
    for opt in &covered {
        let at = |sub: &str| {
            info.get(&format!("/tmp/o/{opt}{sub}"))
                .unwrap_or_else(|| panic!("{opt}: no mount at /tmp/o/{opt}{sub}"))
        };
        let ok = match opt.as_str() {
            "bind" | "rbind" => true,
            "remount" => at("").has("ro"),
            _ if recursive.contains(opt) => {
                recursive_option_shows(opt, at("/plain"), at("/flagged")).unwrap()
            }
            _ => flag_option_shows(opt, at("")).unwrap(),
        };
        assert!(ok, "{opt}: {:?}", info.get(&format!("/tmp/o/{opt}")));
    }
    drop(host);
}

fn dummy() -> MountInfo {
    MountInfo {
        per_mount: Vec::new(),
        optional: Vec::new(),
        super_opts: Vec::new(),
    }
}

#[test]
fn tmpcopyup_copies_the_contents() {
    if !common::require_root() {
        return;
    }
    assert!(strings(&features()["mountOptions"]).contains(&"tmpcopyup".to_owned()));
    // The shared rootfs is read-only: /etc becomes a writable copy.
    let mut b = Bundle::new("feat-tmpcopyup");
    b.set(
        "/mounts/-",
        json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}),
    );
    let (code, out, err) = sh(
        &mut b,
        "head -1 /etc/passwd; echo x >> /etc/passwd && echo written; grep ' /etc ' /proc/self/mounts",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("root:"), "{out}");
    assert!(out.contains("written\n"), "{out}{err}");
    assert!(out.contains("tmpfs /etc tmpfs"), "{out}");
}

#[test]
fn idmapped_mounts_work_as_advertised() {
    if !common::require_root() {
        return;
    }
    let f = features();
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    let options = strings(&f["mountOptions"]);
    for opt in ["idmap", "ridmap"] {
        assert!(options.contains(&opt.to_owned()), "{opt} is not advertised");
        // A host file owned by root, seen through the mapping 0 -> 1000 (no user namespace).
        let mut b = Bundle::new("feat-idmap");
        let src = b.dir.join("idmap-src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        let map = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        b.set(
            "/mounts/-",
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["rbind", opt],
                   "uidMappings": map, "gidMappings": map}),
        );
        let (code, out, err) = sh(&mut b, "stat -c %u:%g /mnt/f");
        assert_eq!(code, 0, "{opt}: {err}");
        assert_eq!(out.trim(), "1000:1000", "{opt}");
    }
}

/// The container's cgroup directory for a v1 controller or ("", the v2 one).
fn host_cgroup(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        if controller.is_empty() && ctrls.is_empty() {
            let base = if Path::new("/sys/fs/cgroup/unified").is_dir() {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            return Some(PathBuf::from(format!("{base}{path}")));
        }
        if !controller.is_empty() && ctrls.split(',').any(|c| c == controller) {
            return Some(PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}")));
        }
    }
    None
}

/// Whether the host's only cgroup hierarchy is v2 (hack/test-v2.sh's guest).
fn v2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn cgroup_claims() {
    if !common::require_root() {
        return;
    }
    let cg = features()["linux"]["cgroup"].clone();
    assert_eq!(
        cg,
        json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true})
    );
    let mut b = Bundle::new("feat-cgroup");
    b.set("/linux/resources/memory/limit", json!(64 << 20));
    b.set("/linux/resources/pids/limit", json!(42));
    b.args(&["sleep", "100"]);
    b.run_detached();
    let pid = b.pid();
    // The container has its own directory in the unified hierarchy (on a
    // hybrid host too).
    let unified = host_cgroup(pid, "").expect("no v2 line in /proc/<pid>/cgroup");
    assert!(unified.is_dir(), "{}", unified.display());
    assert!(unified.ends_with(&b.id), "{}", unified.display());
    let read = |p: PathBuf| {
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_owned()
    };
    if v2_only() {
        // v2: the limits are in the unified hierarchy (hack/test-v2.sh runs
        // this test in a v2-only guest).
        assert_eq!(read(unified.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(unified.join("pids.max")), "42");
    } else {
        // v1 (hybrid or legacy hosts): the limits are in the v1 hierarchies.
        let mem = host_cgroup(pid, "memory").expect("no v1 memory hierarchy");
        assert_eq!(
            read(mem.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        let pids = host_cgroup(pid, "pids").expect("no v1 pids hierarchy");
        assert_eq!(read(pids.join("pids.max")), "42");
    }
    b.kill("SIGKILL");
    b.wait_for_status("stopped");
    b.delete();
    // systemd: false. The driver is refused, whichever way it is asked for.
    for flags in [
        &["--systemd-cgroup"][..],
        &["--cgroup-manager", "systemd"][..],
        &["--cgroup-manager", "disabled"][..],
    ] {
        let b = Bundle::new("feat-systemd");
        b.write();
        let dir = b.dir.to_str().unwrap().to_owned();
        let mut args = flags.to_vec();
        args.extend(["run", "--bundle", &dir, &b.id]);
        let out = b.keel(&args);
        assert!(!out.status.success(), "{flags:?} was accepted");
        let err = common::text(&out.stderr);
        assert!(err.contains("not supported yet"), "{flags:?}: {err}");
        // The systemd driver's refusal names the unit the path would have been.
        if flags[0] != "--cgroup-manager" || flags[1] == "systemd" {
            let unit = format!("unit keel-{}.scope in system.slice", b.id);
            assert!(err.contains(&unit), "{flags:?}: {err}");
        }
    }
    rdma_claim();
}

/// rdma: true. What can be checked without an RDMA device: hack/test-v2.sh's
/// guest has the rdma controller but no device (its kernel has no soft-RoCE
/// module loaded, and no network device to bind one to), and the kernel
/// refuses an rdma.max line for an unknown device with ENODEV. So: the
/// controller is there (v2-only hosts), keel's write of rdma.max reaches the
/// kernel (the refusal names the field, the file and ENODEV), and a name
/// that cannot be a device is refused before anything is made. With a real
/// device (/sys/class/infiniband), the limit is read back. The exact line
/// keel writes is checked by the unit tests in src/cgroups.
fn rdma_claim() {
    let bad = |dev: &str| {
        let mut b = Bundle::new("feat-rdma");
        b.set(
            &format!("/linux/resources/rdma/{dev}"),
            json!({"hcaHandles": 3, "hcaObjects": 100}),
        );
        create_fails(&mut b)
    };
    let err = bad("bad dev");
    assert!(
        err.contains("linux.resources.rdma") && err.contains("not an RDMA device name"),
        "{err}"
    );
    if !v2_only() {
        if !Path::new("/sys/fs/cgroup/rdma").is_dir() {
            eprintln!("feat-cgroup: no rdma hierarchy on this host; rdma is checked in hack/test-v2.sh's guest");
        }
        return;
    }
    let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
    assert!(
        controllers.split_whitespace().any(|c| c == "rdma"),
        "no rdma controller: {controllers}"
    );
    let device = fs::read_dir("/sys/class/infiniband")
        .into_iter()
        .flatten()
        .flatten()
        .next()
        .map(|e| e.file_name().into_string().unwrap());
    match device {
        Some(dev) => {
            let mut b = Bundle::new("feat-rdma");
            b.set(
                &format!("/linux/resources/rdma/{dev}"),
                json!({"hcaHandles": 3, "hcaObjects": 100}),
            );
            b.args(&["sleep", "100"]);
            b.run_detached();
            let dir = host_cgroup(b.pid(), "").unwrap();
            let max = fs::read_to_string(dir.join("rdma.max")).unwrap();
            assert!(
                max.contains(&format!("{dev} hca_handle=3 hca_object=100")),
                "{max}"
            );
            b.kill("SIGKILL");
            b.wait_for_status("stopped");
            b.delete();
        }
        None => {
            let err = bad("keeltest0");
            assert!(
                err.contains("linux.resources.rdma.keeltest0")
                    && err.contains("rdma.max")
                    && err.contains("ENODEV"),
                "{err}"
            );
        }
    }
}

#[test]
fn cgroup_manager_cgroupfs_is_the_default() {
    if !common::require_root() {
        return;
    }
    let mut b = Bundle::new("feat-cgroupfs");
    b.args(&["echo", "ran"]);
    b.write();
    let dir = b.dir.to_str().unwrap().to_owned();
    let id = b.id.clone();
    let out = b.keel(&["--cgroup-manager", "cgroupfs", "run", "--bundle", &dir, &id]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert_eq!(common::text(&out.stdout), "ran\n");
}

/// `keel create` of the bundle, expected to fail: its stderr.
fn create_fails(b: &mut Bundle) -> String {
    b.write();
    let dir = b.dir_str();
    let out = b.keel(&["create", "--bundle", &dir, &b.id]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "create succeeded; stderr: {err}");
    err
}

#[test]
fn lsm_and_intel_rdt_claims() {
    if !common::require_root() {
        return;
    }
    let linux = features()["linux"].clone();
    // runtime-spec: "enabled" says that support is built in, whatever the host has.
    assert_eq!(linux["apparmor"], json!({"enabled": true}));
    assert_eq!(linux["selinux"], json!({"enabled": false}));
    assert_eq!(linux["intelRdt"], json!({"enabled": false}));
    let host = keel::attrs::Host::probe();

    // apparmor: the profile reaches the code that applies it, for the init
    // and for exec: on a host without AppArmor that code's own refusal.
    let no_apparmor = "process.apparmorProfile: AppArmor is not enabled on this host";
    let mut b = Bundle::new("feat-apparmor");
    b.set("/process/apparmorProfile", json!("unconfined"));
    if host.apparmor {
        let (code, out, err) = sh(&mut b, "cat /proc/self/attr/current");
        assert_eq!((code, out.trim()), (0, "unconfined"), "{err}");
    } else {
        let err = create_fails(&mut b);
        assert!(err.contains(no_apparmor), "{err}");
    }
    let mut b = Bundle::new("feat-apparmor-exec");
    b.args(&["sleep", "1000"]);
    b.run_detached();
    let file = b.dir.join("process.json");
    let process = json!({"args": ["cat", "/proc/self/attr/current"], "cwd": "/",
        "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"], "apparmorProfile": "unconfined"});
    fs::write(&file, process.to_string()).unwrap();
    let out = b.keel(&["exec", "--process", file.to_str().unwrap(), &b.id]);
    let (o, e) = (common::text(&out.stdout), common::text(&out.stderr));
    if host.apparmor {
        assert!(out.status.success(), "exec --process: {e}");
        assert_eq!(o.trim(), "unconfined");
    } else {
        assert!(!out.status.success(), "exec --process succeeded: {o}");
        assert!(e.contains(no_apparmor), "exec --process: {e}");
    }

    // selinux: false; every label is refused, by its field, with or without SELinux.
    for (ptr, field) in [
        ("/process/selinuxLabel", "process.selinuxLabel: "),
        ("/linux/mountLabel", "linux.mountLabel: "),
    ] {
        let mut b = Bundle::new("feat-selinux");
        b.set(ptr, json!("system_u:system_r:container_t:s0"));
        let err = create_fails(&mut b);
        assert!(err.contains(field), "{field}: {err}");
    }

    // intelRdt: false; refused, not ignored.
    let mut b = Bundle::new("feat-rdt");
    b.set(
        "/linux/intelRdt",
        json!({"closID": "keel-test", "l3CacheSchema": "L3:0=f"}),
    );
    let err = create_fails(&mut b);
    assert!(err.contains("linux.intelRdt: "), "{err}");

    // netDevices: false; refused, not ignored.
    assert_eq!(linux["netDevices"], json!({"enabled": false}));
    let mut b = Bundle::new("feat-netdev");
    b.set("/linux/netDevices", json!({"keeltest0": {"name": "eth1"}}));
    let err = create_fails(&mut b);
    assert!(err.contains("linux.netDevices: "), "{err}");
}

/// The kernel's name of a memory policy mode in numa_maps (mm/mempolicy.c).
fn numa_maps_mode(mode: &str) -> &'static str {
    match mode {
        "MPOL_DEFAULT" => "default",
        "MPOL_PREFERRED" => "prefer",
        "MPOL_BIND" => "bind",
        "MPOL_INTERLEAVE" => "interleave",
        "MPOL_LOCAL" => "local",
        "MPOL_PREFERRED_MANY" => "prefer (many)",
        "MPOL_WEIGHTED_INTERLEAVE" => "weighted interleave",
        other => panic!("memoryPolicy mode {other} advertised but not covered by this test"),
    }
}

/// Every memoryPolicy mode and flag the document lists, set on a container:
/// the init's task policy (the first line of numa_maps) shows it.
#[test]
fn every_memory_policy_mode_and_flag_applies() {
    if !common::require_root() {
        return;
    }
    let doc = features();
    let policy = &doc["linux"]["memoryPolicy"];
    // The line after its address: the policy ("prefer (many):0") has spaces.
    let first_policy = |config: Value| -> String {
        let mut b = Bundle::new("feat-mpol");
        b.set("/linux/memoryPolicy", config.clone());
        let (code, out, err) = sh(&mut b, "head -n1 /proc/self/numa_maps");
        assert_eq!(code, 0, "{config}: {err}");
        out.split_once(' ')
            .unwrap_or_else(|| panic!("{config}: no policy in {out:?}"))
            .1
            .to_owned()
    };
    for mode in strings(&policy["modes"]) {
        let shown = numa_maps_mode(&mode);
        let config = if matches!(mode.as_str(), "MPOL_DEFAULT" | "MPOL_LOCAL") {
            json!({"mode": mode})
        } else {
            json!({"mode": mode, "nodes": "0"})
        };
        let got = first_policy(config);
        let want = if shown == "default" || shown == "local" {
            format!("{shown} ")
        } else {
            format!("{shown}:0 ")
        };
        assert!(got.starts_with(&want), "memoryPolicy mode {mode}: {got}");
    }
    for flag in strings(&policy["flags"]) {
        let shown = match flag.as_str() {
            "MPOL_F_STATIC_NODES" => "static",
            "MPOL_F_RELATIVE_NODES" => "relative",
            "MPOL_F_NUMA_BALANCING" => "balancing",
            other => panic!("memoryPolicy flag {other} advertised but not covered by this test"),
        };
        let got = first_policy(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": [flag]}));
        let want = format!("bind={shown}:0 ");
        assert!(got.starts_with(&want), "memoryPolicy flag {flag}: {got}");
    }
}

/// A seccomp profile (default ALLOW) with one rule for mkdir/mkdirat.
fn mkdir_rule(rule: Value) -> Value {
    let mut r = json!({"names": ["mkdir", "mkdirat"]});
    for (k, v) in rule.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [r]})
}

/// A listening socket for SCMP_ACT_NOTIFY: the runtime's connect and send
/// complete without an accept, and no notification comes for `acct`.
fn listener(b: &Bundle) -> (UnixListener, PathBuf) {
    let path = b.dir.join("agent.sock");
    (UnixListener::bind(&path).expect("bind"), path)
}

const MKDIR: &str = "mkdir /dev/shm/x; echo rc=$?";

#[test]
fn every_seccomp_action_acts() {
    if !common::require_root() {
        return;
    }
    let seccomp = features()["linux"]["seccomp"].clone();
    assert_eq!(seccomp["enabled"], true);
    for action in strings(&seccomp["actions"]) {
        let mut b = Bundle::new("feat-sc-action");
        let _agent;
        let (want_out, want_err) = match action.as_str() {
            "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" => ("rc=0", ""),
            "SCMP_ACT_ERRNO" => ("rc=1", "Address family not supported"),
            "SCMP_ACT_TRACE" => ("rc=1", "Function not implemented"),
            // SIGSYS: 128 + 31.
            "SCMP_ACT_KILL"
            | "SCMP_ACT_KILL_THREAD"
            | "SCMP_ACT_KILL_PROCESS"
            | "SCMP_ACT_TRAP" => ("rc=159", ""),
            "SCMP_ACT_NOTIFY" => ("rc=0", ""),
            other => panic!("actions has {other:?}, which no table here tests"),
        };
        if action == "SCMP_ACT_NOTIFY" {
            let (l, path) = listener(&b);
            _agent = l;
            b.set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
                       "syscalls": [{"names": ["acct"], "action": action}]}),
            );
        } else {
            b.set(
                "/linux/seccomp",
                mkdir_rule(json!({"action": action, "errnoRet": 97})),
            );
        }
        // KILL_THREAD/TRAP kill the forked mkdir, not the shell.
        let (code, out, err) = sh(&mut b, MKDIR);
        assert_eq!(code, 0, "{action}: {out}{err}");
        assert!(out.contains(want_out), "{action}: {out}{err}");
        assert!(err.contains(want_err), "{action}: {err}");
    }
}

#[test]
fn every_seccomp_operator_matches() {
    if !common::require_root() {
        return;
    }
    let seccomp = features()["linux"]["seccomp"].clone();
    // socket(AF_INET = 2, ...) is refused with EAFNOSUPPORT by each condition.
    for op in strings(&seccomp["operators"]) {
        let arg = match op.as_str() {
            "SCMP_CMP_EQ" | "SCMP_CMP_LE" | "SCMP_CMP_GE" => json!({"value": 2}),
            "SCMP_CMP_NE" => json!({"value": 10}),
            "SCMP_CMP_LT" => json!({"value": 3}),
            "SCMP_CMP_GT" => json!({"value": 1}),
            "SCMP_CMP_MASKED_EQ" => json!({"value": 0xff, "valueTwo": 2}),
            other => panic!("operators has {other:?}, which no table here tests"),
        };
        let mut arg = arg;
        arg["index"] = json!(0);
        arg["op"] = json!(op);
        let mut b = Bundle::new("feat-sc-op");
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"],
                   "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [arg]}]}),
        );
        let (code, out, err) = sh(&mut b, "nc 127.0.0.1 1 </dev/null; echo rc=$?");
        assert_eq!(code, 0, "{op}: {err}");
        assert!(out.contains("rc=1"), "{op}: {out}");
        assert!(err.contains("Address family not supported"), "{op}: {err}");
    }
}

#[test]
fn every_seccomp_arch_and_flag_loads() {
    if !common::require_root() {
        return;
    }
    let seccomp = features()["linux"]["seccomp"].clone();
    let archs = strings(&seccomp["archs"]);
    assert!(archs.contains(&"SCMP_ARCH_X86_64".to_owned()), "{archs:?}");
    // The native architecture is always in the filter: mkdir is refused whatever is listed.
    for arch in archs {
        let mut b = Bundle::new("feat-sc-arch");
        let mut p = mkdir_rule(json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 97}));
        p["architectures"] = json!([arch]);
        b.set("/linux/seccomp", p);
        let (code, out, err) = sh(&mut b, MKDIR);
        assert_eq!(code, 0, "{arch}: {err}");
        assert!(out.contains("rc=1"), "{arch}: {out}{err}");
    }
    let known = strings(&seccomp["knownFlags"]);
    let supported = strings(&seccomp["supportedFlags"]);
    assert!(
        supported.iter().all(|f| known.contains(f)),
        "{supported:?} {known:?}"
    );
    for flag in supported {
        let mut b = Bundle::new("feat-sc-flag");
        let (_agent, path) = listener(&b);
        let mut p = mkdir_rule(json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 97}));
        p["flags"] = json!([flag]);
        // WAIT_KILLABLE_RECV only applies to a filter with a listener.
        if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" {
            p["listenerPath"] = json!(path);
            p["syscalls"]
                .as_array_mut()
                .unwrap()
                .push(json!({"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}));
        }
        b.set("/linux/seccomp", p);
        let (code, out, err) = sh(&mut b, MKDIR);
        assert_eq!(code, 0, "{flag}: {err}");
        assert!(out.contains("rc=1"), "{flag}: {out}{err}");
    }
}
