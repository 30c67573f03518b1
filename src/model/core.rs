//! What every part of the model shares: the backend, the listing cache, the registry of open
//! handles, and the few operations on them that both the metadata side ([`super::fs`]) and the
//! handle I/O side ([`super::handle_io`]) need (listing a directory, the entry of a path,
//! recording what an upload changed, setting a mode or a time).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use parking_lot::Mutex;

use super::FsResult;
use super::cache::{DirCache, DirListing};
use super::files::Handles;
use super::inodes::split_path;
use super::writeback::WriteBack;
use crate::backend::{Backend, Entry, EntryKind, FsError};
use crate::stats::{self, Counter};

/// Settings of the model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub cache_timeout: Duration,
    pub uid: u32,
    pub gid: u32,
    /// Bits cleared from every permission shown.
    pub umask: u32,
    pub read_only: bool,
    /// Where temp copies of files being changed at random offsets live.
    pub cache_dir: std::path::PathBuf,
    /// Write-back's journal directory (`None`: close() waits for the upload).
    pub writeback: Option<std::path::PathBuf>,
    /// How many write-back uploads run at once.
    pub writeback_uploads: usize,
    /// Uploads are atomic (the backend renames a whole upload over the file at its end): a
    /// file is never streamed, since a stream may be finished early and go on with APPE (when
    /// a reader or another transfer needs it), which would show a part of the file.
    pub atomic_upload: bool,
    /// A file time the server cannot set is ignored (logged) instead of failing with EPERM.
    pub ignore_time_errors: bool,
    /// Link targets are shown exactly as the server has them (`no_transform_symlinks`); else a
    /// target that would lead out of the mount is not shown (see `model::symlink`).
    pub raw_link_targets: bool,
}

#[cfg(test)]
impl ModelConfig {
    /// The settings of the model's tests: owner 0, no umask, read-write, listings trusted for
    /// `ttl`, temp copies in `cache_dir`, no write-back.
    pub(super) fn for_tests(cache_dir: &std::path::Path, ttl: Duration) -> ModelConfig {
        ModelConfig {
            cache_timeout: ttl,
            uid: 0,
            gid: 0,
            umask: 0,
            read_only: false,
            cache_dir: cache_dir.to_path_buf(),
            writeback: None,
            writeback_uploads: 1,
            atomic_upload: false,
            ignore_time_errors: false,
            raw_link_targets: false,
        }
    }
}

/// Names of one directory looked up alone (MLST) within the cache timeout before the directory
/// is listed instead: a few names cost less alone, many cost less with one listing.
pub(super) const SINGLE_LOOKUPS: u32 = 8;

/// Paths whose last change of ours is remembered (for their ctime), the most recent ones.
const CHANGES_KEPT: usize = 4096;

/// How many times a listing spoiled by a concurrent change of ours is fetched again before it
/// is used without being cached.
const LIST_TRIES: usize = 3;

/// A listing this long leaves megabytes of parsing behind: they go back to the system.
const MANY_ENTRIES: usize = 10_000;

/// The shared state.
pub struct Core {
    pub(super) cfg: ModelConfig,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) dirs: DirCache,
    /// Content kept on local disk across mounts (`-o disk_cache`), set once at start.
    pub(super) disk_cache: std::sync::OnceLock<Arc<crate::disk_cache::DiskCache>>,
    pub(super) handles: Handles,
    pub(super) writeback: WriteBack,
    /// Directories whose names were looked up alone lately: since when, and how many.
    single_lookups: Mutex<LruCache<String, (Instant, u32)>>,
    /// When we last changed a path's attributes or name (its ctime; servers show none).
    changed: Mutex<LruCache<String, SystemTime>>,
    /// Bytes handed to uploads so far: how the unmount tells a long upload that moves from one
    /// that is stuck.
    pub(super) sent: std::sync::atomic::AtomicU64,
    /// The log said once that times cannot be set on this server.
    told_times_unsettable: std::sync::atomic::AtomicBool,
    /// The permission bits the server gives the files it makes.
    pub(super) new_file_mode: super::new_file_mode::NewFileMode,
}

impl Core {
    pub(super) fn new(cfg: ModelConfig, backend: Arc<dyn Backend>) -> Core {
        let dirs = DirCache::new(cfg.cache_timeout, 4096, super::cache::MAX_CACHED_ENTRIES);
        let writeback = WriteBack::new(cfg.writeback.clone(), cfg.writeback_uploads);
        let single_lookups = Mutex::new(LruCache::new(NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN)));
        let changed = Mutex::new(LruCache::new(NonZeroUsize::new(CHANGES_KEPT).unwrap_or(NonZeroUsize::MIN)));
        let sent = std::sync::atomic::AtomicU64::new(0);
        Core {
            cfg,
            backend,
            dirs,
            disk_cache: std::sync::OnceLock::new(),
            handles: Handles::default(),
            writeback,
            single_lookups,
            changed,
            sent,
            told_times_unsettable: Default::default(),
            new_file_mode: Default::default(),
        }
    }

    /// How long a request may wait for the server or a connection.
    pub(super) fn wait_limit(&self) -> Duration {
        self.backend.wait_limit()
    }

    /// The listing of a directory, from the cache or the server. A listing that one of our own
    /// changes of the directory overtook is fetched again, and never cached.
    pub(super) fn list_dir(&self, dir: &str) -> FsResult<Arc<DirListing>> {
        if let Some(l) = self.dirs.get_fresh(dir) {
            stats::count(Counter::ListingHit);
            return Ok(l);
        }
        if let Some(l) = self.listing_kept_on_disk(dir) {
            stats::count(Counter::ListingHit);
            return Ok(l);
        }
        stats::count(Counter::ListingMiss);
        let mut spoiled = None;
        for _ in 0..LIST_TRIES {
            let fetch = self.dirs.begin_fetch(dir);
            let t0 = Instant::now();
            let began = SystemTime::now();
            let entries = match self.backend.list(dir) {
                Ok(entries) => entries,
                // The server is away: the listing kept on disk, however old, else EIO.
                Err(FsError::Offline) => return self.listing_while_offline(dir).ok_or(libc::EIO),
                Err(e) => return Err(e.errno()),
            };
            log::debug!("listed {dir:?}: {} entries in {:?}", entries.len(), t0.elapsed());
            let many = entries.len() >= MANY_ENTRIES;
            let kept = self.disk_cache().map(|c| (c, entries.clone()));
            let done = fetch.finish(entries);
            if let (Some((cache, entries)), Ok(l)) = (kept, &done) {
                cache.save_listing(dir, began, &entries);
                // A change of ours since the fetch was stored (its forgetting may have come
                // before this save): the copy on disk goes.
                if self.dirs.version_of(dir) != Some(l.version()) {
                    cache.forget_listing(dir, false);
                }
            }
            if many {
                // The parsing's garbage does not stay in the mount's resident memory.
                crate::allocator::release_free_memory();
            }
            match done {
                Ok(l) => return Ok(l),
                Err(l) => spoiled = Some(l),
            }
        }
        spoiled.ok_or(libc::EIO)
    }

    /// The entry of a path (not the root): from its directory's listing when that is cached;
    /// otherwise asked for alone (MLST) for the first few names of a directory, so that one
    /// name of a huge directory never costs its whole listing; otherwise from the listing.
    pub(super) fn entry(&self, path: &str) -> FsResult<Entry> {
        let (parent, name) = split_path(path);
        let found = match self.dirs.get_fresh(parent) {
            Some(listing) => {
                stats::count(Counter::ListingHit);
                listing.get(name)
            }
            None => match self.listing_kept_on_disk(parent) {
                Some(listing) => listing.get(name),
                None => match self.single_lookup(path) {
                    Some(found) => found,
                    None => match self.list_dir(parent) {
                        Ok(listing) => listing.get(name),
                        // Away, with no listing of the directory kept: what the disk cache
                        // holds of the path itself tells what it is.
                        Err(e) => Some(self.kept_while_offline(path).ok_or(e)?),
                    },
                },
            },
        };
        match found {
            Some(e) => Ok(e),
            // Created through an open handle and not uploaded yet: it exists for us already.
            None if self.handles.is_pending(path) => Ok(fresh_entry(name, EntryKind::File, 0)),
            None => Err(libc::ENOENT),
        }
    }

    /// The entry of `path` asked for alone, while its directory has seen fewer than
    /// [`SINGLE_LOOKUPS`] such lookups within the cache timeout. `None`: not asked (the server
    /// cannot, the directory is better listed, or asking failed).
    fn single_lookup(&self, path: &str) -> Option<Option<Entry>> {
        let (parent, _) = split_path(path);
        {
            let mut seen = self.single_lookups.lock();
            let now = Instant::now();
            let (since, count) = seen.get_or_insert_mut(parent.to_string(), || (now, 0));
            if since.elapsed() >= self.cfg.cache_timeout {
                *since = now;
                *count = 0;
            }
            *count += 1;
            if *count > SINGLE_LOOKUPS {
                return None;
            }
        }
        // Registered like a listing fetch: a change of ours meanwhile makes the answer unsure.
        stats::count(Counter::SingleLookup);
        let fetch = self.dirs.begin_fetch(parent);
        let answer = self.backend.stat_one(path);
        if fetch.spoiled() {
            return None;
        }
        match answer {
            // A link's target comes with listings only.
            Ok(Some(e)) if e.kind == EntryKind::Symlink(None) => None,
            Ok(found) => found.map(Some),
            Err(FsError::NotFound) => Some(None),
            Err(e) => {
                log::debug!("{path}: looking up one name failed ({e}); listing its directory");
                None
            }
        }
    }

    /// What handle `f` held reached the server as version `seq` of its file (a queued upload,
    /// fsync, a release that uploads itself, a creation landed before a rename or a read):
    /// write-back never lands an older close after it, and the journal entries of older closes
    /// and its own go (a crash would replay them over it).
    pub(super) fn note_landed(&self, f: &super::files::OpenFile, seq: u64) {
        if let Some(path) = f.path() {
            self.writeback.note_landed(&path, seq);
            self.handles.forget_older_journals(&path, f, seq);
        }
        f.forget_journal();
    }

    /// We changed `path`'s attributes or name now (its ctime).
    pub(super) fn note_change(&self, path: &str) {
        self.changed.lock().put(path.to_string(), SystemTime::now());
        // What the disk cache holds of this file (not below it: a directory's time changes
        // with every name made in it) is no longer the file's content.
        if let Some(cache) = self.disk_cache() {
            cache.forget_file(path);
        }
    }

    /// The listing of `dir` an earlier mount kept on disk, while younger than `cache_timeout`
    /// (trusted as if this mount had fetched it then), now cached in memory.
    fn listing_kept_on_disk(&self, dir: &str) -> Option<Arc<DirListing>> {
        let cache = self.disk_cache()?;
        // Registered like a fetch: a change of ours meanwhile keeps it out of the cache.
        let fetch = self.dirs.begin_fetch(dir);
        let (fetched, entries) = cache.listing_younger_than(dir, self.cfg.cache_timeout)?;
        let age = SystemTime::now().duration_since(fetched).ok()?;
        fetch.finish_aged(entries, age)
    }

    /// While the server is away: the listing of `dir` kept on disk, whatever its age (not
    /// cached in memory: the next access asks the server again, or fails as fast).
    fn listing_while_offline(&self, dir: &str) -> Option<Arc<DirListing>> {
        let (_, entries) = self.disk_cache()?.listing(dir)?;
        Some(Arc::new(DirListing::new(entries)))
    }

    /// While the server is away: `path` as the disk cache knows it, a directory whose listing
    /// it keeps or a file whose content it keeps.
    fn kept_while_offline(&self, path: &str) -> Option<Entry> {
        if !self.backend.is_offline() {
            return None;
        }
        let cache = self.disk_cache()?;
        let name = split_path(path).1;
        if cache.has_listing(path) {
            return Some(Entry::new(name, EntryKind::Dir));
        }
        let v = cache.kept_version(path)?;
        Some(Entry {
            size: Some(v.size),
            mtime: Some(v.mtime),
            mtime_nanos: v.nanos,
            mtime_exact: true,
            ..Entry::new(name, EntryKind::File)
        })
    }

    /// The disk cache, with `-o disk_cache`.
    pub(super) fn disk_cache(&self) -> Option<&crate::disk_cache::DiskCache> {
        self.disk_cache.get().map(|c| c.as_ref())
    }

    /// When we last changed `path`'s attributes or name, if recently.
    pub(super) fn changed_at(&self, path: &str) -> Option<SystemTime> {
        self.changed.lock().peek(path).copied()
    }

    /// We changed what directory `dir` holds: its mtime and ctime are now, until its own
    /// directory is listed again (the server moved them too).
    pub(super) fn touch_dir(&self, dir: &str) {
        self.note_change(dir);
        if dir.is_empty() {
            return;
        }
        let (parent, name) = split_path(dir);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.dirs.update(parent, name, |e| {
            e.mtime = Some(now.as_secs() as i64);
            e.mtime_nanos = now.subsec_nanos();
        });
    }

    /// The errno of a refusal of `path` that the server gave as "not found", from what the
    /// server lists now: vsftpd answers one text ("550 Failed to open file.", "Delete operation
    /// failed.") for a missing file, a directory and a file the FTP user may not touch. Gone:
    /// ENOENT; there, of the kind the operation wants (`dir`): EACCES; of the other kind:
    /// EISDIR or ENOTDIR. Any other refusal keeps its own errno.
    pub(super) fn refused_errno(&self, path: &str, e: FsError, dir: bool) -> i32 {
        if e != FsError::NotFound {
            return e.errno();
        }
        self.invalidate_parent(path);
        match self.entry(path) {
            Ok(found) if found.is_dir() == dir => libc::EACCES,
            Ok(_) if dir => libc::ENOTDIR,
            Ok(_) => libc::EISDIR,
            Err(_) => libc::ENOENT,
        }
    }

    /// Forgets the listing of the directory holding `path` (after a change we cannot describe).
    pub(super) fn invalidate_parent(&self, path: &str) {
        self.dirs.invalidate(split_path(path).0);
    }

    /// A new temp file in `cache_dir` for a spool (deleted when closed).
    pub(super) fn temp_file(&self) -> FsResult<std::fs::File> {
        crate::private_files::private_tempfile(&self.cfg.cache_dir).map_err(|e| {
            log::warn!("cannot make a temp file in {}: {e}", self.cfg.cache_dir.display());
            e.raw_os_error().unwrap_or(libc::EIO)
        })
    }

    /// Records a new size, and as mtime the moment of our last change of it (`when`; `None`:
    /// the time recorded when we created it stays), for a file we just uploaded.
    pub(super) fn note_written(&self, path: &str, size: u64, when: Option<SystemTime>) {
        let (parent, name) = split_path(path);
        if let Some(cache) = self.disk_cache() {
            cache.forget_file(path);
        }
        let stamp = |e: &mut Entry| {
            // Our own guess of the server's time until a listing tells it.
            e.mtime_exact = false;
            e.size = Some(size);
            if let Some(t) = when {
                let t = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                e.mtime = Some(t.as_secs() as i64);
                e.mtime_nanos = t.subsec_nanos();
            }
        };
        let mut found = false;
        self.dirs.update(parent, name, |e| {
            stamp(e);
            found = true;
        });
        if !found {
            let mut fresh = fresh_entry(name, EntryKind::File, size);
            stamp(&mut fresh);
            self.dirs.upsert(parent, fresh);
        }
    }

    /// Sets permission bits on the server now; a server without the command ignores them
    /// (documented).
    pub(super) fn chmod_now(&self, path: &str, mode: u32) -> FsResult<()> {
        if !self.backend.can_chmod() {
            return Ok(());
        }
        match self.backend.chmod(path, mode & 0o7777) {
            Ok(()) => {
                self.noted_mode(path, mode);
                Ok(())
            }
            Err(FsError::Unsupported) => Ok(()),
            Err(e) => Err(e.errno()),
        }
    }

    /// The errno a file time would fail with here before anything is asked: the server has no
    /// way to set times (known by now) and `ignore_time_errors` is off.
    pub(super) fn times_refused(&self) -> Option<i32> {
        (!self.backend.can_set_mtime() && !self.cfg.ignore_time_errors).then_some(libc::EPERM)
    }

    /// Sets the modification time on the server. Where the server has no way to set times a
    /// file's time fails with EPERM (never a success for a time that was not set), unless
    /// `ignore_time_errors`. Several servers (vsftpd, pyftpdlib) set times on files only: a
    /// directory keeps its server-side time (which every change inside it moves anyway) rather
    /// than failing tar or cp -a (documented).
    pub(super) fn set_mtime(&self, path: &str, mtime: SystemTime) -> FsResult<()> {
        let secs = unix_secs(mtime);
        let is_dir = || path.is_empty() || self.entry(path).is_ok_and(|e| e.is_dir());
        let res =
            if self.backend.can_set_mtime() { self.backend.set_mtime(path, secs) } else { Err(FsError::Unsupported) };
        match res {
            Ok(()) => {}
            Err(e) if is_dir() && e.is_definite() => {
                log::debug!("setting the time of directory {path} refused ({e}); ignored");
                return Ok(());
            }
            // No way to set times here (or found out only now: the two-argument MDTM not
            // understood).
            Err(FsError::Unsupported) if self.cfg.ignore_time_errors => {
                log::debug!("the server cannot set the time of {path}; ignored (ignore_time_errors)");
                return Ok(());
            }
            Err(FsError::Unsupported) => {
                if !self.told_times_unsettable.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::warn!(
                        "the server offers no way to set file times (no MFMT, no two-argument MDTM): \
                         setting them fails with EPERM (-o ignore_time_errors ignores them)"
                    );
                }
                return Err(libc::EPERM);
            }
            Err(e) => return Err(e.errno()),
        }
        self.noted_mtime(path, secs);
        Ok(())
    }

    /// The server set `path`'s time to `secs` (seconds since the epoch): shown from now on.
    pub(super) fn noted_mtime(&self, path: &str, secs: i64) {
        let (parent, name) = split_path(path);
        self.dirs.update(parent, name, |e| {
            e.mtime = Some(secs);
            e.mtime_nanos = 0;
        });
    }

    /// The server set `path`'s permission bits to `mode`: shown from now on.
    pub(super) fn noted_mode(&self, path: &str, mode: u32) {
        let (parent, name) = split_path(path);
        self.dirs.update(parent, name, |e| e.mode = Some(mode & 0o7777));
    }
}

/// Seconds since the epoch of `t` (negative before it), as the server takes a file's time.
pub(super) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A new entry for something we just created.
pub(super) fn fresh_entry(name: &str, kind: EntryKind, size: u64) -> Entry {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Entry {
        name: name.to_string(),
        kind,
        size: Some(size),
        mtime: Some(now.as_secs() as i64),
        mtime_nanos: now.subsec_nanos(),
        mode: None,
        // Our clock's guess until the server's listing tells.
        mtime_exact: false,
    }
}
