//! How the process uses memory, so that a mount that runs for days keeps a flat resident size,
//! and what it can tell about it (`ftpfs stats`, the soak of `scripts/soak.sh`).
//!
//! - Transparent huge pages are turned off for the process ([`configure`]). Each of fuser's 32
//!   request threads owns a 16 MiB buffer of which a request touches a few pages, and each
//!   thread has its stack and often a glibc arena: sparse regions. Where the kernel's THP mode
//!   is `always` (a machine setting, `madvise` on some hosts and `always` on others),
//!   khugepaged collapses every such region that has one page in use into a 2 MiB page, a few
//!   seconds apart: the resident size climbs from ~20 MiB to ~70 MiB over minutes without a
//!   byte more in use, which is what made the soak's level differ between machines and runs.
//!   An I/O-bound daemon gains nothing from huge pages.
//! - Blocks of 4 MiB and more are always mapped on their own (glibc's mmap threshold, fixed).
//!   Left to itself, glibc raises the threshold each time a large mapped block is freed, up to
//!   32 MiB; from then on the request threads' 16 MiB buffers come from the arenas, and `calloc`
//!   clears (so makes resident) the whole of any buffer placed on memory used before: three
//!   such buffers were the other 48 MiB of the soak's 70 MiB runs. A fixed threshold also
//!   keeps glibc's trim threshold at its 128 KiB default.
//! - Memory freed by bursts (a big listing parsed, thousands of names looked up) is given back
//!   to the system ([`release_free_memory`]). (Limiting the arenas with mallopt was tried: it
//!   made each request thread's 16 MiB FUSE buffer resident, 100 MiB for an idle mount.)
//! - [`usage`] reads what the allocator has handed out and not got back: the measure of a leak
//!   that the resident size blurs with fragmentation and with when memory was last trimmed.
//! - `FTPFS_TEST_LEAK_BYTES=N` (at most 64 KiB) makes the requests answered through the
//!   adapter's `answer!` (all but read, readdir and a few others) leak N bytes each
//!   ([`leak_for_tests`]): the soak's own test, showing that it fails on a leak. Logged as a
//!   warning at start-up when set; unset, it costs one load of a static per request.
//!
//! The allocator parts need glibc (the figures, glibc 2.33 or later); huge pages, the resident
//! size and the test leak work with any libc on Linux.

use std::sync::LazyLock;

/// Blocks at least this large are always mapped on their own (see [`configure`]).
const MMAP_THRESHOLD: usize = 4 << 20;

/// Turns transparent huge pages off for this process and the children it forks (the mount's
/// background process), and fixes glibc's mmap threshold. Best effort: an old kernel without
/// the knob keeps its default. Call before any thread starts.
pub fn configure() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only.
    // (Logging is not set up yet: a kernel without the knob, before 3.15, simply keeps its own.)
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
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

/// What the allocator has handed out and not got back, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Small and medium blocks, in the allocator's arenas.
    pub in_arenas: u64,
    /// Large blocks, each mapped on its own (fuser's request buffers among them: mapped in
    /// full, resident only where a request touched them).
    pub mapped: u64,
    /// What the arenas hold from the system, used or not.
    pub arenas_held: u64,
}

/// glibc's `mallinfo2`, found when the process runs (it came with glibc 2.33: linking to it
/// would keep the binary from starting on an older glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
static MALLINFO2: LazyLock<Option<unsafe extern "C" fn() -> libc::mallinfo2>> = LazyLock::new(|| {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
    // SAFETY: a symbol named mallinfo2 in glibc has exactly this signature.
    (!f.is_null())
        .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn() -> libc::mallinfo2>(f) })
});

/// The allocator's figures now (`None` without glibc 2.33 or later).
pub fn usage() -> Option<Usage> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mallinfo2 = (*MALLINFO2)?;
        // SAFETY: mallinfo2 takes each arena's lock in turn and returns a plain struct.
        let m = unsafe { mallinfo2() };
        Some(Usage { in_arenas: m.uordblks as u64, mapped: m.hblkhd as u64, arenas_held: m.arena as u64 })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// The resident size of this process, in bytes (`None` where /proc cannot tell).
pub fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The most `FTPFS_TEST_LEAK_BYTES` may ask for, per request.
const TEST_LEAK_MAX: usize = 64 << 10;

/// Bytes to leak per request: `FTPFS_TEST_LEAK_BYTES`, for the soak's own test only, and said
/// in the log when set.
static TEST_LEAK: LazyLock<usize> = LazyLock::new(|| {
    let n = std::env::var("FTPFS_TEST_LEAK_BYTES").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let n = n.min(TEST_LEAK_MAX);
    if n > 0 {
        log::warn!("FTPFS_TEST_LEAK_BYTES: leaking {n} bytes per request (a test of the soak, never for use)");
    }
    n
});

/// Reads `FTPFS_TEST_LEAK_BYTES` now (so its warning is logged at start-up).
pub fn arm_leak_for_tests() {
    LazyLock::force(&TEST_LEAK);
}

/// Leaks what `FTPFS_TEST_LEAK_BYTES` asks for (nothing when it is unset).
pub fn leak_for_tests() {
    let n = *TEST_LEAK;
    if n > 0 {
        // Written to, so that the pages are resident as a real leak's would be; black_box keeps
        // the compiler from proving the block unused and removing it.
        std::mem::forget(std::hint::black_box(vec![0x5au8; n]));
    }
}
