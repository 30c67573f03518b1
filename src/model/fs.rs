//! The filesystem model: remote paths, attributes from cached listings, and the metadata
//! operations (lookup, stat, readdir, mkdir, rmdir, unlink, rename, chmod, utimes, truncate).
//!
//! Everything here speaks paths relative to the mount root and errno values; it reaches the server
//! only through the connection pool, and knows nothing of FUSE.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::cache::{DirCache, DirListing};
use super::files::Handles;
use super::handle_io;
use super::inodes::{Inodes, child_path, is_at_or_under, split_path};
use super::pool::Pool;
use crate::ftp::{
    Entry, EntryKind, Features, FtpError, ListContext, Op, command::check_arg, listing::is_acceptable_name,
};

/// errno-valued results, as the kernel wants them.
pub type FsResult<T> = Result<T, i32>;

/// Settings of the model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// The remote directory mounted at the root, absolute (`/` or `/some/dir`).
    pub remote_root: String,
    pub cache_timeout: Duration,
    pub uid: u32,
    pub gid: u32,
    /// Bits cleared from every permission shown.
    pub umask: u32,
    pub read_only: bool,
    /// Use MLSD when the server offers it.
    pub use_mlsd: bool,
    /// Offset of the server's LIST times from UTC, seconds.
    pub list_tz_offset: i64,
    /// Where temp copies of files being changed at random offsets live.
    pub cache_dir: std::path::PathBuf,
}

/// What create() found at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// Nothing: a new file, made on the server at the first commit.
    New,
    /// A file that is emptied (O_TRUNC) at the first commit.
    Truncated,
    /// A file another client made that our listing did not show yet: opened, not replaced.
    Existing(u64),
}

/// Permission bits a server gives new files and directories when nobody asks (umask 022).
const DEFAULT_FILE_MODE: u32 = 0o644;
const DEFAULT_DIR_MODE: u32 = 0o755;

/// What kind of object a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Attributes of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// The model: shared by all worker threads.
pub struct Model {
    pub(super) cfg: ModelConfig,
    pub(super) pool: Arc<Pool>,
    pub(super) features: Features,
    pub inodes: Mutex<Inodes>,
    pub(super) dirs: DirCache,
    pub(super) handles: Handles,
    /// SITE CHMOD turned out to be unsupported.
    chmod_unsupported: std::sync::atomic::AtomicBool,
    /// APPE turned out to be refused.
    appe_refused: std::sync::atomic::AtomicBool,
    /// MLSD is advertised but not understood: LIST is used instead.
    mlsd_broken: std::sync::atomic::AtomicBool,
}

/// Maps a wire error to errno for an operation, logging it.
pub(super) fn errno(e: &FtpError, op: Op) -> i32 {
    let n = e.errno(op);
    log::debug!("{op:?} failed: {e} → errno {n}");
    n
}

impl Model {
    pub fn new(cfg: ModelConfig, pool: Arc<Pool>, features: Features) -> Model {
        let dirs = DirCache::new(cfg.cache_timeout, 4096);
        Model {
            cfg,
            pool,
            features,
            inodes: Mutex::new(Inodes::new()),
            dirs,
            handles: Handles::default(),
            chmod_unsupported: std::sync::atomic::AtomicBool::new(false),
            appe_refused: std::sync::atomic::AtomicBool::new(false),
            mlsd_broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The server path of a mount-relative path.
    pub fn remote(&self, rel: &str) -> String {
        let root = self.cfg.remote_root.trim_end_matches('/');
        if rel.is_empty() {
            if root.is_empty() { "/".to_string() } else { root.to_string() }
        } else {
            format!("{root}/{rel}")
        }
    }

    /// Refuses names that cannot be sent safely or would escape their directory.
    pub fn check_name(name: &str) -> FsResult<()> {
        if !is_acceptable_name(name) || check_arg(name).is_err() {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    pub(super) fn refuse_if_read_only(&self) -> FsResult<()> {
        if self.cfg.read_only { Err(libc::EROFS) } else { Ok(()) }
    }

    /// The listing of a directory, from the cache or the server.
    pub fn list_dir(&self, dir: &str) -> FsResult<Arc<DirListing>> {
        if let Some(l) = self.dirs.get_fresh(dir) {
            return Ok(l);
        }
        let remote = self.remote(dir);
        let broken = &self.mlsd_broken;
        let mut mlsd =
            self.cfg.use_mlsd && self.features.mlst.is_some() && !broken.load(std::sync::atomic::Ordering::Relaxed);
        let ctx = ListContext { tz_offset: self.cfg.list_tz_offset, ..ListContext::now_utc() };
        let listed = self.pool.run(true, |c| if mlsd { c.mlsd(&remote) } else { c.list(&remote, &ctx) });
        let listed = match listed {
            // Advertised but not understood: use LIST from now on.
            Err(e) if mlsd && matches!(e.code(), Some(500..=504)) => {
                log::warn!("server advertises MLSD but refuses it ({e}); using LIST");
                broken.store(true, std::sync::atomic::Ordering::Relaxed);
                mlsd = false;
                self.pool.run(true, |c| c.list(&remote, &ctx))
            }
            other => other,
        };
        let mut entries = listed.map_err(|e| errno(&e, Op::Lookup))?;
        if mlsd && entries.iter().any(|e| e.kind == EntryKind::Symlink(None)) {
            // MLSD (pure-ftpd) may name a link without its target; LIST shows `name -> target`.
            if let Ok(listed) = self.pool.run(true, |c| c.list(&remote, &ctx)) {
                let targets: std::collections::HashMap<String, String> = listed
                    .into_iter()
                    .filter_map(|e| match e.kind {
                        EntryKind::Symlink(Some(t)) => Some((e.name, t)),
                        _ => None,
                    })
                    .collect();
                for e in entries.iter_mut().filter(|e| e.kind == EntryKind::Symlink(None)) {
                    if let Some(t) = targets.get(&e.name) {
                        e.kind = EntryKind::Symlink(Some(t.clone()));
                    }
                }
            }
        }
        Ok(self.dirs.put(dir, entries))
    }

    /// The listing entry of a path (not the root).
    pub fn entry(&self, path: &str) -> FsResult<Entry> {
        let (parent, name) = split_path(path);
        let listing = self.list_dir(parent)?;
        match listing.get(name) {
            Some(e) => Ok(e.clone()),
            // Created through an open handle and not uploaded yet: it exists for us already.
            None if self.handles.is_pending(path) => Ok(Self::fresh_entry(name, EntryKind::File, 0)),
            None => Err(libc::ENOENT),
        }
    }

    /// create(): makes a new, still empty file visible before its first upload, or finds that
    /// the file exists on the server already (our listing was older than another client's
    /// change) and must be opened, not replaced.
    fn create_pending(&self, path: &str, exclusive: bool, truncate: bool) -> FsResult<Creation> {
        self.refuse_if_read_only()?;
        let (parent, name) = split_path(path);
        Self::check_name(name)?;
        let listing = self.list_dir(parent)?;
        let existing = match listing.get(name) {
            Some(e) if e.is_dir() => return Err(libc::EISDIR),
            Some(e) => Some(e.size.unwrap_or(0)),
            // Without O_TRUNC a stale listing must not make us replace a file someone else made.
            None if !truncate && listing.fetched.elapsed() > Duration::from_secs(1) && self.features.size => {
                let remote = self.remote(path);
                self.pool.run(true, |c| c.size(&remote)).ok()
            }
            None => None,
        };
        match existing {
            Some(_) if exclusive => Err(libc::EEXIST),
            Some(size) if !truncate => {
                self.dirs.invalidate(parent);
                Ok(Creation::Existing(size))
            }
            found => {
                self.dirs.upsert(parent, Self::fresh_entry(name, EntryKind::File, 0));
                Ok(if found.is_some() { Creation::Truncated } else { Creation::New })
            }
        }
    }

    /// open(): a handle on an existing file (emptied by it with O_TRUNC). A writer makes other
    /// writers of the path keep their own copy ([`handle_io::pin_writers`]). Returns the handle
    /// and the file's attributes.
    pub fn open_file(&self, ino: u64, path: &str, flags: i32) -> FsResult<(u64, Stat)> {
        let writable = (flags & libc::O_ACCMODE) != libc::O_RDONLY;
        let append = flags & libc::O_APPEND != 0;
        let entry = if path.is_empty() { Err(libc::EISDIR) } else { self.entry(path) }?;
        if entry.is_dir() {
            return Err(libc::EISDIR);
        }
        if writable {
            self.refuse_if_read_only()?;
        }
        // O_TRUNC (atomic with open, also with O_RDONLY as Linux does): this handle empties the
        // file, as if it had created it.
        let truncate = flags & libc::O_TRUNC != 0;
        if truncate {
            self.refuse_if_read_only()?;
        }
        let server_size = if truncate { Some(0) } else { entry.size };
        let fh = self.handles.open(ino, path, writable, append, truncate, server_size);
        let st = self.stat_entry(path, &entry);
        if writable && let Err(e) = handle_io::pin_writers(self, path) {
            self.handles.remove(fh);
            return Err(e);
        }
        Ok((fh, st))
    }

    /// create(): a writable handle on a new (or, with O_TRUNC, emptied) file with permission
    /// bits `mode` (already without the caller's umask). A mode that takes bits away from the
    /// server's default is set before any data goes up, so a private file is never readable by
    /// others on the server, even for a moment; one that adds bits is set after the first upload.
    pub fn create_file(&self, ino: u64, path: &str, flags: i32, mode: u32) -> FsResult<(u64, Stat)> {
        let append = flags & libc::O_APPEND != 0;
        let creation = self.create_pending(path, flags & libc::O_EXCL != 0, flags & libc::O_TRUNC != 0)?;
        let (created, server_size) = match creation {
            Creation::Existing(size) => (false, Some(size)),
            Creation::New | Creation::Truncated => (true, Some(0)),
        };
        // Registered first, so no other writer can start a stream between pinning and opening.
        let fh = self.handles.open(ino, path, true, append, created, server_size);
        let f = self.handles.get(fh)?;
        let mode = mode & 0o7777;
        let ready = handle_io::pin_writers(self, path).and_then(|_| {
            if creation != Creation::New || mode == DEFAULT_FILE_MODE || self.chmod_unsupported() {
                return Ok(());
            }
            if mode & DEFAULT_FILE_MODE == DEFAULT_FILE_MODE {
                handle_io::defer_mode(&f, mode);
                return Ok(());
            }
            // Stricter than the default: an empty file with the right mode first; the data then
            // replaces its content (STOR keeps the mode), as from a fresh creation.
            handle_io::commit(self, &f)?;
            self.chmod_on_server(path, mode)?;
            handle_io::mark_created(&f);
            Ok(())
        });
        if let Err(e) = ready {
            self.handles.remove(fh);
            return Err(e);
        }
        Ok((fh, self.stat(path)?))
    }

    /// Reads through handle `fh`.
    pub fn read(&self, fh: u64, off: u64, size: usize, out: &mut dyn FnMut(&[u8])) -> FsResult<()> {
        let f = self.handles.get(fh)?;
        handle_io::read(self, &f, off, size, out)
    }

    /// Writes through handle `fh`.
    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> FsResult<usize> {
        let f = self.handles.get(fh)?;
        handle_io::write(self, &f, off, data)
    }

    /// flush/fsync: the server holds what `fh` wrote when this returns Ok.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.handles.get(fh)?;
        handle_io::commit(self, &f)
    }

    /// release: commits and forgets the handle.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Ok(f) = self.handles.get(fh) else { return Ok(()) };
        // Still registered while it uploads: a rename or delete of its path waits for it, and
        // an unmount still counts it as open.
        let res = handle_io::commit(self, &f);
        if res.is_err() {
            handle_io::rescue(self, &f);
        }
        self.handles.remove(fh);
        res
    }

    /// setattr: size (through the writer's handle when one is open), mode, modification time.
    /// A time set while a handle still holds unsaved data is applied after that upload (which
    /// would otherwise undo it: cp -p, futimens). Returns the new attributes.
    pub fn setattr(
        &self,
        ino: u64,
        path: &str,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> FsResult<Stat> {
        if let Some(size) = size {
            let given = fh.and_then(|fh| self.handles.get(fh).ok()).filter(|f| f.writable);
            match given.or_else(|| self.handles.writers_of(path).into_iter().next()) {
                Some(f) => handle_io::truncate(self, &f, size)?,
                None => handle_io::truncate_path(self, ino, path, size)?,
            }
        }
        if let Some(mode) = mode {
            self.chmod(path, mode)?;
        }
        if let Some(when) = mtime {
            let holders = self.handles.holders_of_unsaved(path);
            if holders.is_empty() {
                self.set_mtime(path, when)?;
            }
            for f in holders {
                handle_io::defer_mtime(&f, when);
            }
        }
        let mut st = self.stat(path)?;
        if let Some(when) = mtime {
            st.mtime = when;
        }
        Ok(st)
    }

    /// Attributes of a path.
    pub fn stat(&self, path: &str) -> FsResult<Stat> {
        if path.is_empty() {
            return Ok(self.root_stat());
        }
        let e = self.entry(path)?;
        Ok(self.stat_entry(path, &e))
    }

    /// Attributes of the entry listed for `path`, with what open handles hold but the server has
    /// not got yet (size of unsaved writes, a time set before the upload lands).
    pub fn stat_entry(&self, path: &str, e: &Entry) -> Stat {
        let mut st = self.stat_of(e);
        if st.kind == Kind::File {
            if let Some(size) = self.handles.open_size(path) {
                st.size = size;
            }
            if let Some(t) = self.handles.open_mtime(path) {
                st.mtime = t;
            }
        }
        st
    }

    fn root_stat(&self) -> Stat {
        Stat {
            kind: Kind::Dir,
            size: 4096,
            mtime: SystemTime::now(),
            perm: (0o755 & !self.cfg.umask) as u16,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    /// Turns a listing entry into attributes.
    pub fn stat_of(&self, e: &Entry) -> Stat {
        let (kind, default_mode, size) = match &e.kind {
            EntryKind::File => (Kind::File, 0o644, e.size.unwrap_or(0)),
            EntryKind::Dir => (Kind::Dir, 0o755, e.size.unwrap_or(4096)),
            EntryKind::Symlink(Some(t)) => (Kind::Symlink, 0o777, t.len() as u64),
            // A link whose target nobody told us: shown as what reading it gives, a file.
            EntryKind::Symlink(None) => (Kind::File, 0o644, e.size.unwrap_or(0)),
        };
        let mtime = match e.mtime {
            Some(s) if s >= 0 => UNIX_EPOCH + Duration::new(s as u64, e.mtime_nanos),
            Some(s) => UNIX_EPOCH - Duration::from_secs(s.unsigned_abs()),
            None => UNIX_EPOCH,
        };
        let perm = match kind {
            Kind::Symlink => 0o777,
            _ => (e.mode.unwrap_or(default_mode) & 0o7777 & !self.cfg.umask) as u16,
        };
        Stat { kind, size, mtime, perm, uid: self.cfg.uid, gid: self.cfg.gid }
    }

    /// The target of a symlink.
    pub fn readlink(&self, path: &str) -> FsResult<String> {
        match self.entry(path)?.kind {
            EntryKind::Symlink(Some(t)) => Ok(t),
            _ => Err(libc::EINVAL),
        }
    }

    /// A new entry for something we just created.
    pub fn fresh_entry(name: &str, kind: EntryKind, size: u64) -> Entry {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Entry {
            name: name.to_string(),
            kind,
            size: Some(size),
            mtime: Some(now.as_secs() as i64),
            mtime_nanos: now.subsec_nanos(),
            mode: None,
            owner: None,
            group: None,
        }
    }

    /// mkdir with permission bits `mode` (already without the caller's umask), set with SITE
    /// CHMOD when they differ from the server's default.
    pub fn mkdir(&self, path: &str, mode: u32) -> FsResult<Stat> {
        self.refuse_if_read_only()?;
        let (parent, name) = split_path(path);
        Self::check_name(name)?;
        let remote = self.remote(path);
        if let (Err(e), retried) = self.pool.run_retrying(|c| c.mkd(&remote).map(drop)) {
            // 550 says little: tell "exists" from "not allowed" by looking.
            self.dirs.invalidate(parent);
            return Err(match self.entry(path) {
                // The first attempt made it before the connection broke.
                Ok(e) if retried && e.is_dir() => return self.stat(path),
                Ok(_) => libc::EEXIST,
                Err(libc::ENOENT) if e.code() == Some(550) => {
                    if self.stat(parent).is_ok() {
                        libc::EACCES
                    } else {
                        libc::ENOENT
                    }
                }
                Err(_) => errno(&e, Op::Mkdir),
            });
        }
        let entry = Self::fresh_entry(name, EntryKind::Dir, 4096);
        self.dirs.upsert(parent, entry);
        self.dirs.put(path, Vec::new());
        let mode = mode & 0o7777;
        if mode != DEFAULT_DIR_MODE {
            self.chmod(path, mode)?;
        }
        self.stat(path)
    }

    pub fn rmdir(&self, path: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let (parent, _) = split_path(path);
        let remote = self.remote(path);
        if let (Err(e), retried) = self.pool.run_retrying(|c| c.rmd(&remote)) {
            self.dirs.invalidate(path);
            self.dirs.invalidate(parent);
            let gone = matches!(self.entry(path), Err(libc::ENOENT));
            if retried && gone {
                // The first attempt made it before the connection broke.
                self.forget_path(path, parent);
                return Ok(());
            }
            return Err(match self.list_dir(path) {
                Ok(l) if !l.entries().is_empty() => libc::ENOTEMPTY,
                Ok(_) => errno(&e, Op::Rmdir),
                Err(libc::ENOENT) => libc::ENOENT,
                Err(_) => errno(&e, Op::Rmdir),
            });
        }
        self.forget_path(path, parent);
        Ok(())
    }

    pub fn unlink(&self, path: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let (parent, _) = split_path(path);
        if self.entry(path).map(|e| e.is_dir()).unwrap_or(false) {
            return Err(libc::EISDIR);
        }
        let remote = self.remote(path);
        // Handles on the file end their streams and upload nothing while DELE runs; then they
        // are detached, as from an unlinked local file.
        handle_io::with_handles_quiet(self, &[path], || {
            match self.pool.run_retrying(|c| c.dele(&remote)) {
                (Ok(()), _) => {}
                (Err(e), retried) => {
                    self.dirs.invalidate(parent);
                    // Gone from the server (the first attempt made it, or the file was a creation
                    // not uploaded yet, which exists only here): deleted. Looked up in the listing
                    // itself, which does not count our pending creations.
                    let (_, name) = split_path(path);
                    let on_server = self.list_dir(parent).map(|l| l.get(name).is_some()).unwrap_or(true);
                    if on_server || !(retried || self.handles.is_pending(path)) {
                        return Err(errno(&e, Op::Delete));
                    }
                }
            }
            self.handles.detach(path);
            self.forget_path(path, parent);
            Ok(())
        })
    }

    fn forget_path(&self, path: &str, parent: &str) {
        let (_, name) = split_path(path);
        self.dirs.remove(parent, name);
        self.dirs.invalidate_tree(path);
        self.inodes.lock().remove_path(path);
    }

    /// Renames `from` to `to`, replacing `to` when it exists (POSIX rename semantics). Handles
    /// open on `from` move with it; handles open on a replaced `to` are detached. A failed rename
    /// never removes anything.
    pub fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let (from_parent, from_name) = split_path(from);
        let (to_parent, to_name) = split_path(to);
        Self::check_name(to_name)?;
        if from == to {
            return Ok(());
        }
        if is_at_or_under(to, from) {
            return Err(libc::EINVAL);
        }
        let source = self.entry(from)?;
        let target = match self.entry(to) {
            Ok(t) => Some(t),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(t) = &target {
            match (source.is_dir(), t.is_dir()) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                (true, true) if !self.list_dir(to)?.entries().is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        // Files still open under the old name land first, so they move with it. Then no
        // handle on either side uploads anything until the paths are updated: nothing can land
        // over the file just renamed into place.
        handle_io::land_creations_under(self, from)?;
        handle_io::with_handles_quiet(self, &[from, to], || {
            self.rename_on_server(from, to, target.as_ref())?;
            self.dirs.remove(to_parent, to_name);
            self.dirs.invalidate_tree(to);
            self.dirs.invalidate_tree(from);
            match self.dirs.remove(from_parent, from_name) {
                Some(mut e) => {
                    e.name = to_name.to_string();
                    self.dirs.upsert(to_parent, e);
                }
                None => self.dirs.invalidate(to_parent),
            }
            self.inodes.lock().rename(from, to);
            self.handles.detach(to);
            self.handles.renamed(from, to);
            Ok(())
        })
    }

    /// RNFR/RNTO; when the server refuses because the target exists, the target is moved aside
    /// under a hidden name, the rename done, and the aside copy deleted, or put back if the
    /// rename still fails.
    fn rename_on_server(&self, from: &str, to: &str, target: Option<&Entry>) -> FsResult<()> {
        let (rfrom, rto) = (self.remote(from), self.remote(to));
        let (direct, retried) = self.pool.run_retrying(|c| c.rename(&rfrom, &rto));
        let Err(e) = direct else { return Ok(()) };
        // What the server holds now tells what the refusal meant.
        self.invalidate_parent(from);
        self.invalidate_parent(to);
        let source_there = self.entry(from).is_ok();
        let target_there = self.entry(to).is_ok();
        if retried && !source_there && target_there {
            // The first attempt made it before the connection broke.
            return Ok(());
        }
        if !source_there {
            return Err(libc::ENOENT);
        }
        let refused_over_existing = target.is_some() && target_there && e.code().is_some_and(|c| c >= 500);
        if !refused_over_existing {
            return Err(errno(&e, Op::Rename));
        }
        log::debug!("rename over existing {rto} refused ({e}); moving the target aside first");
        let (to_parent, _) = split_path(to);
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let aside_rel = child_path(to_parent, &format!(".ftpfs-aside-{}-{stamp}", std::process::id()));
        let aside = self.remote(&aside_rel);
        // Each step's reply may be lost after the server did it: then the server's state decides.
        if let Err(e2) = self.pool.run(false, |c| c.rename(&rto, &aside))
            && !self.moved(to, &aside_rel)
        {
            log::debug!("cannot move {rto} aside: {e2}");
            return Err(errno(&e, Op::Rename));
        }
        if let (Err(e3), _) = self.pool.run_retrying(|c| c.rename(&rfrom, &rto))
            && !self.moved(from, to)
        {
            let (back, _) = self.pool.run_retrying(|c| c.rename(&aside, &rto));
            if back.is_err() && !self.moved(&aside_rel, to) {
                log::error!(
                    "rename {rfrom} → {rto} failed ({e3}) and the old {rto} could not be put back: it is kept as {aside}"
                );
            }
            self.invalidate_parent(to);
            return Err(errno(&e3, Op::Rename));
        }
        let is_dir = target.is_some_and(Entry::is_dir);
        let (removed, _) = self.pool.run_retrying(|c| if is_dir { c.rmd(&aside) } else { c.dele(&aside) });
        if let Err(e5) = removed {
            log::warn!("renamed over {rto}, but its old version left as {aside} could not be deleted: {e5}");
        }
        self.invalidate_parent(to);
        Ok(())
    }

    /// True when, on the server now, `from` is gone and `to` exists: a rename whose reply was
    /// lost took place.
    fn moved(&self, from: &str, to: &str) -> bool {
        self.invalidate_parent(from);
        self.invalidate_parent(to);
        matches!(self.entry(from), Err(libc::ENOENT)) && self.entry(to).is_ok()
    }

    fn chmod_unsupported(&self) -> bool {
        self.chmod_unsupported.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// SITE CHMOD where the server has it; elsewhere a no-op that succeeds (documented). A file
    /// that exists only as a creation not uploaded yet gets its mode after the upload.
    pub fn chmod(&self, path: &str, mode: u32) -> FsResult<()> {
        self.refuse_if_read_only()?;
        if self.chmod_unsupported() {
            return Ok(());
        }
        let creators = self.handles.creators_of(path);
        if creators.is_empty() {
            return self.chmod_on_server(path, mode);
        }
        for f in creators {
            handle_io::defer_mode(&f, mode & 0o7777);
        }
        let (parent, name) = split_path(path);
        self.dirs.update(parent, name, |e| e.mode = Some(mode & 0o7777));
        Ok(())
    }

    /// SITE CHMOD now (no-op success where the server has none).
    pub(super) fn chmod_on_server(&self, path: &str, mode: u32) -> FsResult<()> {
        if self.chmod_unsupported() {
            return Ok(());
        }
        let (parent, name) = split_path(path);
        let remote = self.remote(path);
        match self.pool.run(true, |c| c.site_chmod(&remote, mode)) {
            Ok(()) => {
                self.dirs.update(parent, name, |e| e.mode = Some(mode & 0o7777));
                Ok(())
            }
            Err(e) if matches!(e.code(), Some(500 | 501 | 502 | 504)) => {
                log::info!("server has no SITE CHMOD ({e}); chmod requests are ignored");
                self.chmod_unsupported.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(errno(&e, Op::SetAttr)),
        }
    }

    /// Sets the modification time with MFMT where the server has it; elsewhere ignored.
    pub fn set_mtime(&self, path: &str, mtime: SystemTime) -> FsResult<()> {
        self.refuse_if_read_only()?;
        if !self.features.mfmt {
            return Ok(());
        }
        let secs = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let remote = self.remote(path);
        if let Err(e) = self.pool.run(true, |c| c.mfmt(&remote, secs)) {
            // Several servers (pyftpdlib among them) set times on files only: a directory keeps
            // its server-side time, as documented, rather than failing tar or cp -a.
            let is_dir = path.is_empty() || self.entry(path).is_ok_and(|e| e.is_dir());
            if is_dir && matches!(e.code(), Some(500..=599)) {
                log::debug!("MFMT on directory {remote} refused ({e}); ignored");
                return Ok(());
            }
            return Err(errno(&e, Op::SetAttr));
        }
        let (parent, name) = split_path(path);
        self.dirs.update(parent, name, |e| {
            e.mtime = Some(secs);
            e.mtime_nanos = 0;
        });
        Ok(())
    }

    /// Forgets the listing of the directory holding `path` (after a change we cannot describe).
    pub(super) fn invalidate_parent(&self, path: &str) {
        self.dirs.invalidate(split_path(path).0);
    }

    /// A new temp file in `cache_dir` for a spool (deleted when closed).
    pub(super) fn temp_file(&self) -> FsResult<std::fs::File> {
        tempfile::tempfile_in(&self.cfg.cache_dir).map_err(|e| {
            log::warn!("cannot make a temp file in {}: {e}", self.cfg.cache_dir.display());
            e.raw_os_error().unwrap_or(libc::EIO)
        })
    }

    /// Records a new size (and "now" as mtime) for a file we just wrote.
    pub(super) fn note_written(&self, path: &str, size: u64) {
        let (parent, name) = split_path(path);
        let fresh = Self::fresh_entry(name, EntryKind::File, size);
        let mut found = false;
        self.dirs.update(parent, name, |e| {
            e.size = Some(size);
            e.mtime = fresh.mtime;
            e.mtime_nanos = fresh.mtime_nanos;
            found = true;
        });
        if !found {
            self.dirs.upsert(parent, fresh);
        }
    }

    /// The inode number for `path`, counting a kernel lookup.
    pub fn lookup_ino(&self, path: &str) -> u64 {
        self.inodes.lock().lookup(path)
    }

    /// The path of an inode.
    pub fn path_of(&self, ino: u64) -> FsResult<String> {
        self.inodes.lock().path(ino).map(str::to_string).ok_or(libc::ENOENT)
    }

    /// Joins a directory inode and a name into a path, checking the name (also that the
    /// server's character set can carry it).
    pub fn child(&self, parent_ino: u64, name: &str) -> FsResult<String> {
        Self::check_name(name)?;
        if let Some(enc) = self.pool.options().encoding
            && enc.encode(name).2
        {
            return Err(libc::EINVAL);
        }
        Ok(child_path(&self.path_of(parent_ino)?, name))
    }

    /// True once the server refused APPE: appends then go through a temp copy.
    pub fn appe_refused(&self) -> bool {
        self.appe_refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn note_appe_refused(&self) {
        self.appe_refused.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Closes idle connections (at unmount).
    pub fn shutdown(&self) {
        self.pool.close_idle();
    }

    /// How many file handles are open.
    pub fn open_handles(&self) -> usize {
        self.handles.all().len()
    }

    /// Unmounting (signal, or the mount went away): uploads what open handles still hold, then
    /// fails every request still waiting for a connection and every later one.
    pub fn stop(&self) {
        handle_io::commit_everything(self, std::time::Instant::now() + self.pool.wait_limit());
        self.pool.shut_down();
    }
}
