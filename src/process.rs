//! The container's process: args, env, cwd, user, umask, rlimits and
//! oom_score_adj, turned into C strings in the parent and applied by the child.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd::{access, setgroups, setresgid, setresuid, AccessFlags, Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use crate::child::{Ctx, Fail};
use crate::sys;

#[derive(Debug, Default)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// Where to look for args[0] (PATH from the container's env), in order.
    pub candidates: Vec<CString>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub rlimits: Vec<(libc::c_int, &'static str, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    pub no_new_privs: bool,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    /// HOME is absent from env: the child adds it from the container's /etc/passwd.
    pub needs_home: bool,
}

/// The rlimit's number and its name (for messages).
pub fn rlimit_resource(t: PosixRlimitType) -> (libc::c_int, &'static str) {
    use PosixRlimitType::*;
    let (r, name) = match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    };
    (r as libc::c_int, name)
}

fn cstr(s: &str, field: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{field}: contains a NUL byte"))
}

pub fn plan(p: &Process) -> Result<ProcessPlan, String> {
    let args = p
        .args()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, a)| cstr(a, &format!("process.args[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    // Later entries win, as runc's env de-duplication does.
    let mut env: Vec<(String, String)> = Vec::new();
    for e in p.env().as_deref().unwrap_or_default() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let needs_home = !env.iter().any(|(k, _)| k == "HOME");
    let env = env
        .iter()
        .enumerate()
        .map(|(i, (k, v))| cstr(&format!("{k}={v}"), &format!("process.env[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let arg0 = args.first().map(|a| a.as_bytes()).unwrap_or_default();
    let candidates = if arg0.contains(&b'/') {
        vec![CString::new(arg0).unwrap_or_default()]
    } else {
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| {
                let mut v = d.as_bytes().to_vec();
                v.push(b'/');
                v.extend_from_slice(arg0);
                CString::new(v).unwrap_or_default()
            })
            .collect()
    };
    let user = p.user();
    let rlimits = p
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let (res, name) = rlimit_resource(r.typ());
            (res, name, r.soft(), r.hard())
        })
        .collect();
    Ok(ProcessPlan {
        args,
        env,
        candidates,
        cwd: CString::new(p.cwd().as_os_str().as_bytes())
            .map_err(|_| "process.cwd: contains a NUL byte")?,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022),
        rlimits,
        oom_score_adj: p.oom_score_adj(),
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        console_size: p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16)),
        needs_home,
    })
}

// ---------------------------------------------------------------------------
// Child side.

pub fn set_oom_score_adj(v: i32) -> Result<(), Fail> {
    std::fs::write("/proc/self/oom_score_adj", v.to_string())
        .map_err(|e| Fail::io("writing", b"/proc/self/oom_score_adj", &e))
}

pub fn set_rlimits(p: &ProcessPlan) -> Result<(), Fail> {
    for &(res, name, soft, hard) in &p.rlimits {
        sys::setrlimit(res, soft, hard).ctx("setrlimit", name.as_bytes())?;
    }
    Ok(())
}

/// setgroups, setresgid, setresuid (in that order: after setuid we could not change groups).
pub fn switch_user(p: &ProcessPlan, setgroups_allowed: bool) -> Result<(), Fail> {
    // (uid_t)-1 tells setresuid/setresgid "leave unchanged": the process would stay root.
    if p.uid == u32::MAX || p.gid == u32::MAX || p.additional_gids.contains(&u32::MAX) {
        return Err(Fail::new(
            "refusing id 4294967295, which the kernel reads as \"unchanged\":",
            b"process.user",
            Errno::EINVAL,
        ));
    }
    if setgroups_allowed {
        let gids: Vec<Gid> = p
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&gids).ctx("setgroups", b"")?;
    }
    let g = Gid::from_raw(p.gid);
    setresgid(g, g, g).ctx("setresgid", p.gid.to_string().as_bytes())?;
    let u = Uid::from_raw(p.uid);
    setresuid(u, u, u).ctx("setresuid", p.uid.to_string().as_bytes())?;
    Ok(())
}

/// chdir into process.cwd and check that we really are inside the container.
pub fn enter_cwd(p: &ProcessPlan) -> Result<(), Fail> {
    nix::unistd::chdir(p.cwd.as_c_str()).ctx("chdir to cwd", p.cwd.as_bytes())?;
    let here = nix::unistd::getcwd().ctx("getcwd after chdir to", p.cwd.as_bytes())?;
    if !here.is_absolute() {
        return Err(Fail::new(
            "cwd is outside the container:",
            p.cwd.as_bytes(),
            Errno::EPERM,
        ));
    }
    Ok(())
}

/// The executable for args[0]: the first candidate that is an executable regular file.
pub fn find_executable(p: &ProcessPlan) -> Result<&CStr, Fail> {
    for c in &p.candidates {
        if let Ok(st) = nix::sys::stat::stat(c.as_c_str()) {
            if st.st_mode & libc::S_IFMT == libc::S_IFREG
                && access(c.as_c_str(), AccessFlags::X_OK).is_ok()
            {
                return Ok(c.as_c_str());
            }
        }
    }
    let arg0 = p.args.first().map(|a| a.as_bytes()).unwrap_or_default();
    if arg0.contains(&b'/') {
        Err(Fail::new("no executable file at", arg0, Errno::ENOENT))
    } else {
        Err(Fail::msg("executable file not found in $PATH:", arg0))
    }
}

/// HOME from the container's /etc/passwd for our uid, or "/" (runc's rule).
pub fn home_env(uid: u32) -> CString {
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    CString::new(format!("HOME={home}")).unwrap_or_default()
}

/// NUL-terminated pointer array over C strings that the caller keeps alive.
pub fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_of(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn path_lookup_uses_container_env() {
        let p = plan(&proc_of(
            r#"{"cwd":"/","args":["sh","-c","x"],"env":["PATH=/a:/b","X=1","X=2"],"user":{"uid":0,"gid":0}}"#,
        ))
        .unwrap();
        let c: Vec<&[u8]> = p.candidates.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(c, vec![&b"/a/sh"[..], &b"/b/sh"[..]]);
        let env: Vec<&[u8]> = p.env.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(
            env,
            vec![&b"PATH=/a:/b"[..], &b"X=2"[..]],
            "later entries win"
        );
        assert!(p.needs_home);
        assert_eq!(p.umask, 0o022);
    }

    #[test]
    fn absolute_arg0_is_taken_as_is() {
        let p = plan(&proc_of(
            r#"{"cwd":"/","args":["/bin/true"],"user":{"uid":1,"gid":2,"umask":63}}"#,
        ))
        .unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.candidates[0].as_bytes(), b"/bin/true");
        assert_eq!((p.uid, p.gid, p.umask), (1, 2, 0o77));
    }
}
