//! keel's global allocator: a bump arena in .bss in front of the C allocator.
//!
//! A keel command lives for a few milliseconds and allocates a few hundred
//! KiB, mostly short-lived (config parsing, paths, messages). musl's malloc
//! returns freed memory to the kernel eagerly, so a `run` made about a hundred
//! mmap/munmap pairs (each munmap a TLB flush); glibc's costs less but still
//! touches its own metadata. Here allocations are carved from a static arena
//! (untouched pages cost no memory), `dealloc` only gives back the most recent
//! block, and `realloc` of the most recent block grows it in place. Once the
//! arena is used up, everything goes to the C allocator, so long-running
//! commands (`events`, the foreground `run` loop) never grow without bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// malloc's guarantee on x86-64, which code handed our memory may count on
/// (nix reads a `cmsghdr` out of a `Vec<u8>`).
const MIN_ALIGN: usize = 16;

/// The arena of the keel binary's allocator (src/main.rs).
pub const ARENA_SIZE: usize = 1 << 20;

/// `N` bytes handed out front to back; `top` is the offset of the first free one.
#[repr(C, align(4096))]
pub struct Arena<const N: usize> {
    top: AtomicUsize,
    bytes: UnsafeCell<[u8; N]>,
}

// SAFETY: the bytes are handed out in disjoint blocks through `top`, an atomic.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            top: AtomicUsize::new(0),
            bytes: UnsafeCell::new([0; N]),
        }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    fn holds(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.base() && p < self.base() + N
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The arena first, then the C allocator.
pub struct BumpThenSystem<const N: usize>(pub Arena<N>);

// SAFETY: blocks come from disjoint ranges of the arena (claimed by a CAS on
// `top`) or from System; each is freed by the allocator it came from.
unsafe impl<const N: usize> GlobalAlloc for BumpThenSystem<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let a = &self.0;
        let mut top = a.top.load(Ordering::Relaxed);
        loop {
            let align = layout.align().max(MIN_ALIGN);
            let start = (a.base() + top).next_multiple_of(align) - a.base();
            let end = match start.checked_add(layout.size()) {
                Some(e) if e <= N => e,
                // SAFETY: the caller's layout, passed on.
                _ => return unsafe { System.alloc(layout) },
            };
            match a
                .top
                .compare_exchange_weak(top, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (a.base() + start) as *mut u8,
                Err(t) => top = t,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let a = &self.0;
        if !a.holds(ptr) {
            // SAFETY: not ours, so System's, with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // The most recent block is given back; others stay until exit.
        let start = ptr as usize - a.base();
        let _ = a.top.compare_exchange(
            start + layout.size(),
            start,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let a = &self.0;
        if !a.holds(ptr) {
            // SAFETY: System's block, with its layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let start = ptr as usize - a.base();
        // The most recent block grows or shrinks where it is.
        if start + new_size <= N
            && a.top
                .compare_exchange(
                    start + layout.size(),
                    start + new_size,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return ptr;
        }
        // SAFETY: align comes from a valid layout; new_size is the caller's.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block for the new layout.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: ptr is ours, with this layout.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private arena: the tests' own allocations do not land in it.
    fn arena() -> &'static BumpThenSystem<8192> {
        Box::leak(Box::new(BumpThenSystem(Arena::new())))
    }

    #[test]
    fn last_block_is_reused_and_grows_in_place() {
        let a = arena();
        let l = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: valid layouts; blocks freed with the layout they were made with.
        unsafe {
            let p = a.alloc(l);
            assert!(a.0.holds(p));
            p.write_bytes(7, 24);
            let q = a.realloc(p, l, 4096);
            assert_eq!(p, q, "the last block grows in place");
            assert_eq!(*q.add(23), 7);
            let l2 = Layout::from_size_align(4096, 8).unwrap();
            a.dealloc(q, l2);
            let r = a.alloc(l);
            assert_eq!(r, p, "the freed last block is handed out again");
            a.dealloc(r, l);
        }
    }

    #[test]
    fn older_blocks_stay_and_a_full_arena_falls_back_to_the_system() {
        let a = arena();
        let l = Layout::from_size_align(2000, 8).unwrap();
        // SAFETY: valid layouts, each freed with its own.
        unsafe {
            let p = a.alloc(l);
            let q = a.alloc(l);
            a.dealloc(p, l);
            let r = a.alloc(l);
            assert!(a.0.holds(r) && r != p && r != q, "p was not the last block");
            let s = a.alloc(l);
            assert!(a.0.holds(s));
            let t = a.alloc(l);
            assert!(
                !t.is_null() && !a.0.holds(t),
                "8192 bytes hold four blocks of 2000"
            );
            for x in [q, r, s, t] {
                a.dealloc(x, l);
            }
        }
    }

    #[test]
    fn blocks_are_aligned_as_malloc_aligns() {
        let a = arena();
        // SAFETY: valid layouts, each freed with its own.
        unsafe {
            let one = Layout::from_size_align(1, 1).unwrap();
            let p = a.alloc(one);
            let q = a.alloc(one);
            assert_eq!(p as usize % 16, 0);
            assert_eq!(q as usize % 16, 0, "a byte after a byte");
            a.dealloc(q, one);
            a.dealloc(p, one);
        }
    }

    #[test]
    fn too_large_goes_to_the_system() {
        let a = arena();
        let l = Layout::from_size_align(8193, 8).unwrap();
        // SAFETY: valid layout, freed with it.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null() && !a.0.holds(p));
            a.dealloc(p, l);
        }
    }
}
