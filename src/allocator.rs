//! How the process uses glibc's allocator: few arenas, and memory freed by bursts (a big
//! listing parsed, thousands of names looked up) given back to the system, so a mount that runs
//! for days keeps a flat resident size. Elsewhere (not glibc) these do nothing.

/// Arenas at most: with one per thread (32 serve the kernel), each keeps its own freed memory.
const ARENAS: i32 = 4;

/// Limits the allocator's arenas; called once at start, before threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives memory the allocator holds but no longer uses back to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
