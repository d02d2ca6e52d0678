//! keel: an OCI container runtime.
//!
//! The parent validates the config and builds a [`plan::Plan`] before it clones;
//! the child ([`child`]) only executes that plan. Only [`sys`] may use `unsafe`.
#![deny(unsafe_code)]

pub mod attrs;
pub mod caps;
pub mod cgroups;
pub mod child;
pub mod cli;
pub mod devices;
pub mod error;
pub mod exec;
pub mod exeseal;
pub mod features;
pub mod hooks;
pub mod launch;
pub mod logging;
pub mod mountopts;
pub mod mounts;
pub mod namespaces;
pub mod notify;
pub mod plan;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
pub mod terminal;
pub mod userns;

/// Version line printed by `keel --version`, in runc's layout.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The runtime-spec version keel implements.
pub const OCI_VERSION: &str = "1.2.1";
