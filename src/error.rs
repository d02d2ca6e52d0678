//! Error types below the CLI. A syscall error always names what was being
//! done and on which path: `mount proc on /b/rootfs/proc: EPERM: Operation not permitted`.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// A failed system call: the operation, the path it was about, and the errno.
#[derive(Debug)]
pub struct SysError {
    pub op: String,
    pub path: Option<PathBuf>,
    pub errno: Errno,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} {}: {}", self.op, p.display(), self.errno),
            None => write!(f, "{}: {}", self.op, self.errno),
        }
    }
}

impl std::error::Error for SysError {}

impl SysError {
    pub fn new(op: impl Into<String>, path: Option<&Path>, errno: Errno) -> Self {
        SysError {
            op: op.into(),
            path: path.map(Path::to_path_buf),
            errno,
        }
    }
}

/// `result.at("mkdir", path)?` turns an `Errno` into a [`SysError`].
pub trait At<T> {
    fn at(self, op: &str, path: impl AsRef<Path>) -> Result<T, SysError>;
    fn op(self, op: &str) -> Result<T, SysError>;
}

impl<T> At<T> for Result<T, Errno> {
    fn at(self, op: &str, path: impl AsRef<Path>) -> Result<T, SysError> {
        self.map_err(|errno| SysError::new(op, Some(path.as_ref()), errno))
    }
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|errno| SysError::new(op, None, errno))
    }
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, op: &str, path: impl AsRef<Path>) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(op, Some(path.as_ref()), io_errno(&e)))
    }
    fn op(self, op: &str) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(op, None, io_errno(&e)))
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

/// The stage of container set-up that a child error happened in.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Namespaces = 1,
    Rootfs = 2,
    Devices = 3,
    PivotRoot = 4,
    Process = 5,
    Identity = 6,
    Exec = 7,
    Terminal = 8,
    Hooks = 9,
}

impl Stage {
    pub fn from_u8(v: u8) -> Option<Stage> {
        use Stage::*;
        [
            Namespaces, Rootfs, Devices, PivotRoot, Process, Identity, Exec, Terminal, Hooks,
        ]
        .into_iter()
        .find(|s| *s as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Namespaces => "joining namespaces",
            Stage::Rootfs => "preparing the rootfs",
            Stage::Devices => "creating devices",
            Stage::PivotRoot => "switching root",
            Stage::Process => "setting up the process",
            Stage::Identity => "switching user and capabilities",
            Stage::Exec => "starting the container process",
            Stage::Terminal => "setting up the terminal",
            Stage::Hooks => "running hooks",
        }
    }
}

/// An error that happened in the container's init before exec, as it
/// crosses the sync socket. The child builds it without formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildError {
    pub stage: Stage,
    pub op: String,
    pub path: String,
    /// 0 when the error is not an errno (e.g. "executable not found").
    pub errno: i32,
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.name(), self.op)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        if self.errno != 0 {
            write!(f, ": {}", Errno::from_raw(self.errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for ChildError {}
