//! The state directory: `<root>/<id>/` holds `state.json` (written atomically),
//! `exec.fifo` (present from create until start) and is the lock for commands on
//! the id. Liveness comes from the kernel: the init's pid *and* its start time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{At, SysError};

pub const DEFAULT_ROOT: &str = "/run/keel";
pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
/// The container's `process` from config.json: `exec`'s defaults.
pub const PROCESS_FILE: &str = "process.json";
/// The container's `linux.seccomp`: `exec` applies the same filter.
pub const SECCOMP_FILE: &str = "seccomp.json";

/// What keel records about a container (its own format, not the OCI state).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat at create: a recycled pid has another.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The container has no pid namespace of its own (kill --all and delete must reach every process).
    #[serde(default)]
    pub shared_pidns: bool,
    /// The container's cgroup paths, so that later commands never re-read config.json.
    #[serde(default)]
    pub cgroup: Option<crate::cgroups::Cgroup>,
    /// The poststart and poststop hooks (only those), for `start` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// `linux.memoryPolicy`: every process of the container gets it, so `exec` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_policy: Option<oci_spec::runtime::LinuxMemoryPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container does not exist: {0:?}")]
    NotExist(String),
    #[error("container with id {0:?} already exists")]
    Exists(String),
    #[error("reading state of container {id}: {msg}")]
    Corrupt { id: String, msg: String },
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// The state root (`--root`) and one container's directory in it.
pub struct Root {
    pub path: PathBuf,
}

/// A container's directory, locked (flock) for as long as this lives.
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    _lock: Flock<fs::File>,
}

impl Root {
    pub fn new(path: &Path) -> Self {
        Root {
            path: path.to_path_buf(),
        }
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Claim `id`: mkdir is the atomic test-and-set (runc's 0711 mode).
    pub fn claim(&self, id: &str) -> Result<ContainerDir, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .at("creating state root", &self.path)?;
        let path = self.dir_of(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => {
                return Err(Err::<(), _>(e)
                    .at("creating state dir", &path)
                    .unwrap_err()
                    .into())
            }
        }
        lock(id, path)
    }

    /// Open and lock an existing container's directory.
    pub fn open(&self, id: &str) -> Result<ContainerDir, StateError> {
        let path = self.dir_of(id);
        if !path.join(STATE_FILE).exists() {
            return Err(StateError::NotExist(id.to_string()));
        }
        lock(id, path)
    }

    /// Ids of every container in the root, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = match fs::read_dir(&self.path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join(STATE_FILE).exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }
}

fn lock(id: &str, path: PathBuf) -> Result<ContainerDir, StateError> {
    let f = fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::NotExist(id.to_string()),
        _ => Err::<(), _>(e)
            .at("opening state dir", &path)
            .unwrap_err()
            .into(),
    })?;
    let lock = Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .at("locking state dir", &path)?;
    Ok(ContainerDir {
        id: id.to_string(),
        path,
        _lock: lock,
    })
}

impl ContainerDir {
    pub fn fifo(&self) -> PathBuf {
        self.path.join(FIFO)
    }

    /// The lock's fd: the container's init must close its copy so that it does
    /// not hold the lock while it waits for `start`.
    pub fn lock_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self._lock.as_fd()
    }

    pub fn load(&self) -> Result<State, StateError> {
        let p = self.path.join(STATE_FILE);
        let data = fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StateError::NotExist(self.id.clone()),
            _ => Err::<(), _>(e).at("reading", &p).unwrap_err().into(),
        })?;
        serde_json::from_slice(&data).map_err(|e| StateError::Corrupt {
            id: self.id.clone(),
            msg: format!("{}: {e}", p.display()),
        })
    }

    /// Write `name` in the state dir as JSON (temp file, then rename).
    pub fn save_json<T: Serialize>(&self, name: &str, v: &T) -> Result<(), StateError> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let data = serde_json::to_vec(v).expect("serialisable");
        fs::write(&tmp, data).at("writing", &tmp)?;
        fs::rename(&tmp, self.path.join(name)).at("renaming", &tmp)?;
        Ok(())
    }

    pub fn load_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StateError> {
        let p = self.path.join(name);
        let data = fs::read(&p).at("reading", &p)?;
        serde_json::from_slice(&data).map_err(|e| StateError::Corrupt {
            id: self.id.clone(),
            msg: format!("{}: {e}", p.display()),
        })
    }

    /// Write state.json: temp file, then rename, so readers see old or new.
    pub fn save(&self, st: &State) -> Result<(), StateError> {
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(st).expect("state serialises");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .at("creating", &tmp)?;
        f.write_all(&data).at("writing", &tmp)?;
        fs::rename(&tmp, self.path.join(STATE_FILE)).at("renaming", &tmp)?;
        Ok(())
    }

    /// Remove the whole directory (the lock goes with it).
    pub fn remove(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.path).at("removing state dir", &self.path)?;
        Ok(())
    }

    pub fn status(&self, st: &State) -> Status {
        if !is_alive(st.pid, st.start_time) {
            Status::Stopped
        } else if self.fifo().exists() {
            Status::Created
        } else if st.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            Status::Paused
        } else {
            Status::Running
        }
    }
}

/// Field 22 (starttime) of /proc/<pid>/stat, and whether the task is a zombie.
pub fn proc_start_time(pid: i32) -> Result<(u64, bool), Errno> {
    let s = crate::sys::read_small(format!("/proc/{pid}/stat")).map_err(|_| Errno::ESRCH)?;
    // comm may hold spaces and parens: fields restart after the last ')'.
    let rest = &s[s.rfind(')').ok_or(Errno::EINVAL)? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next().ok_or(Errno::EINVAL)?;
    // rest starts at field 3, so starttime (22) is the 20th from here.
    let start = fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .ok_or(Errno::EINVAL)?;
    Ok((start, state == "Z" || state == "X"))
}

pub fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(proc_start_time(pid), Ok((t, false)) if t == start_time)
}

/// A pidfd for the container's init, only if it is still the same process.
pub fn open_init(st: &State) -> Option<OwnedFd> {
    let fd = crate::sys::pidfd_open(st.pid).ok()?;
    // Checked after opening: the pidfd pins the process, so it cannot be recycled in between.
    is_alive(st.pid, st.start_time).then_some(fd)
}

/// RFC 3339 UTC time with nanoseconds, as Go's time.Time marshals.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The OCI state document that `keel state` prints, in runc's field order.
#[derive(Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    id: &'a str,
    pid: i32,
    status: &'static str,
    bundle: &'a Path,
    rootfs: &'a Path,
    created: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    owner: &'a str,
}

impl<'a> OciState<'a> {
    /// `list` shows who owns the container, as runc's does.
    pub fn with_owner(mut self, owner: &'a str) -> Self {
        self.owner = owner;
        self
    }
}

/// runc leaves `owner` empty in `state` (its `list` fills it from the dir's uid).
pub fn oci_state(st: &State, status: Status) -> OciState<'_> {
    OciState {
        oci_version: &st.oci_version,
        id: &st.id,
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status: status.as_str(),
        bundle: &st.bundle,
        rootfs: &st.rootfs,
        created: &st.created,
        annotations: &st.annotations,
        owner: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        let (t, zombie) = proc_start_time(me).unwrap();
        assert!(!zombie);
        assert!(is_alive(me, t));
        assert!(
            !is_alive(me, t + 1),
            "another start time is another process"
        );
    }

    #[test]
    fn claim_is_exclusive_and_save_is_readable() {
        let dir = std::env::temp_dir().join(format!("keel-unit-state-{}", std::process::id()));
        let root = Root::new(&dir);
        let c = root.claim("a").unwrap();
        assert!(matches!(root.claim("a"), Err(StateError::Exists(_))));
        let st = State {
            oci_version: "1.2.1".into(),
            id: "a".into(),
            pid: 1,
            start_time: 2,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(SystemTime::now()),
            owner: "root".into(),
            annotations: BTreeMap::new(),
            shared_pidns: false,
            cgroup: None,
            hooks: None,
            memory_policy: None,
        };
        c.save(&st).unwrap();
        assert_eq!(c.load().unwrap().pid, 1);
        assert_eq!(root.list(), vec!["a".to_string()]);
        c.remove().unwrap();
        assert!(matches!(root.open("a"), Err(StateError::NotExist(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
