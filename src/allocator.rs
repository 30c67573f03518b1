//! How the process uses glibc's allocator: memory freed by bursts (a big listing parsed,
//! thousands of names looked up) is given back to the system, so a mount that runs for days
//! keeps a flat resident size. Elsewhere (not glibc) this does nothing. (Limiting the arenas
//! with mallopt was tried: it made each request thread's 16 MiB FUSE buffer resident, 100 MiB
//! for an idle mount.)

/// Gives memory the allocator holds but no longer uses back to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
