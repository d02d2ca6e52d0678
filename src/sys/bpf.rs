//! bpf(2), as much as cgroup device filters need: load a program, attach it to
//! a cgroup, list what a cgroup has attached, and detach.
//!
//! The attribute structs are prefixes of the kernel's `union bpf_attr` for each
//! command; the kernel zero-fills what we do not pass and refuses non-zero
//! bytes in fields the command does not use, so the structs have no padding
//! (every byte is a named, initialised field).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `struct bpf_insn`: opcode, destination and source registers, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg:4, src_reg:4 as a C bitfield (dst in the low nibble on little-endian).
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl BpfInsn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        #[cfg(target_endian = "little")]
        let regs = (dst & 0xf) | ((src & 0xf) << 4);
        #[cfg(target_endian = "big")]
        let regs = ((dst & 0xf) << 4) | (src & 0xf);
        BpfInsn {
            code,
            regs,
            off,
            imm,
        }
    }

    pub const fn dst(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs & 0xf;
        #[cfg(target_endian = "big")]
        return self.regs >> 4;
    }

    pub const fn src(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs >> 4;
        #[cfg(target_endian = "big")]
        return self.regs & 0xf;
    }
}

// Instruction classes, sizes, modes, operations and sources (linux/bpf_common.h, linux/bpf.h).
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_W: u8 = 0x00;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_AND: u8 = 0x50;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

/// `struct bpf_cgroup_dev_ctx.access_type`: device type in the low 16 bits...
pub const BPF_DEVCG_DEV_BLOCK: u32 = 1;
pub const BPF_DEVCG_DEV_CHAR: u32 = 2;
/// ...and the requested access in the high 16 bits.
pub const BPF_DEVCG_ACC_MKNOD: u32 = 1;
pub const BPF_DEVCG_ACC_READ: u32 = 2;
pub const BPF_DEVCG_ACC_WRITE: u32 = 4;

pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `enum bpf_attach_type`.
pub const BPF_CGROUP_DEVICE: u32 = 6;
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
pub const BPF_F_REPLACE: u32 = 1 << 2;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_OBJ_NAME_LEN: usize = 16;

/// bpf(cmd, attr, size) for an attribute struct `T` that we own for the call.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a valid, exclusively borrowed, fully initialised
    // prefix of `union bpf_attr` for `cmd`, and we pass its exact size. Any
    // pointers inside it point to buffers that the caller keeps alive and
    // sized as the attribute says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(rc)
}

fn own(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a fresh fd just returned by bpf(2), owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_PROG_LOAD. `name` is truncated to 15 bytes (the kernel accepts
/// `[A-Za-z0-9_.]`); with `log`, the verifier writes its log there.
pub fn prog_load(
    prog_type: u32,
    insns: &[BpfInsn],
    license: &CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, Errno> {
    let mut prog_name = [0u8; BPF_OBJ_NAME_LEN];
    for (d, s) in prog_name
        .iter_mut()
        .zip(name.bytes().take(BPF_OBJ_NAME_LEN - 1))
    {
        *d = s;
    }
    let (log_level, log_size, log_buf) = match log {
        Some(buf) if !buf.is_empty() => {
            buf[0] = 0;
            (
                1,
                buf.len().min(u32::MAX as usize) as u32,
                buf.as_mut_ptr() as u64,
            )
        }
        _ => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // The verifier can be interrupted (EAGAIN, EINTR); retry a few times as libbpf does.
    let mut tries = 0;
    loop {
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => return Ok(own(fd)),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) if tries < 5 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

#[repr(C, align(8))]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// relative_fd/relative_id (6.6+); spelled out so that no padding byte goes uninitialised.
    relative_fd: u32,
}

/// BPF_PROG_ATTACH of `prog` to the cgroup `target`; with BPF_F_REPLACE in
/// `flags`, `replace` is the attached program that `prog` atomically replaces.
pub fn prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: replace.map(|f| f.as_raw_fd() as u32).unwrap_or(0),
        relative_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// BPF_PROG_DETACH of `prog` from the cgroup `target`.
pub fn prog_detach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: 0,
        replace_bpf_fd: 0,
        relative_fd: 0,
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

#[repr(C, align(8))]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// BPF_PROG_QUERY: the ids of the programs attached to the cgroup `target`
/// itself (not inherited from its ancestors) for `attach_type`.
pub fn prog_query(target: BorrowedFd<'_>, attach_type: u32) -> Result<Vec<u32>, Errno> {
    let mut ids: Vec<u32> = vec![0; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: target.as_raw_fd() as u32,
            attach_type,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            _pad: 0,
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel stores the real count; grow and ask again (more may be attached meanwhile).
            Err(Errno::ENOSPC) => {
                let want = (attr.prog_cnt as usize).max(ids.len() * 2);
                ids.resize(want, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

#[repr(C, align(8))]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    _pad: u32,
}

/// BPF_PROG_GET_FD_BY_ID.
pub fn prog_get_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
        _pad: 0,
    };
    bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(AttachAttr, replace_bpf_fd), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        // No padding: the sizes are the sums of the fields.
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 24);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 16);
        let i = BpfInsn::new(0x61, 3, 1, -2, 7);
        assert_eq!((i.dst(), i.src(), i.off, i.imm), (3, 1, -2, 7));
    }
}
