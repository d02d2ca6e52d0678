//! keel's command line; everything else lives in the library.

/// A bump arena before the C allocator (src/sys/alloc.rs): keel's commands are
/// short, and freeing memory back to the kernel cost more than it saved.
#[global_allocator]
static ALLOC: keel::sys::alloc::BumpThenSystem<{ keel::sys::alloc::ARENA_SIZE }> =
    keel::sys::alloc::BumpThenSystem(keel::sys::alloc::Arena::new());

fn main() {
    std::process::exit(keel::cli::main());
}
