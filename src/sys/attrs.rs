//! Process attributes that neither `nix` nor `std` cover: personality(2),
//! sched_setattr(2), ioprio_set(2)/ioprio_get(2), sched_setaffinity(2) with a
//! mask of any size, set_mempolicy(2). The values are computed by
//! [`crate::attrs`] in the parent; these wrappers only make the calls.

use nix::errno::Errno;

/// `struct sched_attr` of sched_setattr(2) (SCHED_ATTR_SIZE_VER1, 56 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// personality(2) with `persona`.
pub fn personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: one integer argument; no memory is touched.
    let rc = unsafe { libc::personality(persona) };
    Errno::result(rc).map(drop)
}

/// sched_setattr(0, attr, 0): the calling thread's policy and parameters.
pub fn sched_setattr(attr: &SchedAttr) -> Result<(), Errno> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a valid sched_attr whose `size` field says how large it is.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) };
    Errno::result(rc).map(drop)
}

/// `IOPRIO_WHO_PROCESS` of linux/ioprio.h.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio): the calling thread.
pub fn ioprio_set(ioprio: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, ioprio) };
    Errno::result(rc).map(drop)
}

/// ioprio_get(IOPRIO_WHO_PROCESS, pid) (0: the calling thread).
pub fn ioprio_get(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid) };
    Errno::result(rc).map(|v| v as libc::c_int)
}

/// sched_setaffinity(0, mask): bit n of word n/64 is CPU n.
pub fn sched_setaffinity(mask: &[u64]) -> Result<(), Errno> {
    // SAFETY: the pointer and byte length describe `mask`, which the kernel only reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            std::mem::size_of_val(mask),
            mask.as_ptr(),
        )
    };
    Errno::result(rc).map(drop)
}

/// set_mempolicy(mode | flags, nodes, maxnode). An empty `nodes` passes NULL
/// (MPOL_DEFAULT, MPOL_LOCAL, an empty MPOL_PREFERRED).
pub fn set_mempolicy(mode: libc::c_int, nodes: &[u64]) -> Result<(), Errno> {
    let (ptr, maxnode) = if nodes.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits.
        (nodes.as_ptr(), nodes.len() as libc::c_ulong * 64 + 1)
    };
    // SAFETY: `ptr` is NULL or points at `nodes`, which holds at least maxnode - 1 bits.
    let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    Errno::result(rc).map(drop)
}
