//! The filesystem model's public face: every request the kernel makes, by inode number and file
//! handle, answered with attributes or an errno. The adapter only translates fuser's types to
//! these calls; every decision (what an open flag means, how the kernel may cache a file, which
//! handle a truncation belongs to, when a time is applied) is made here, where tests of the model
//! see it.
//!
//! Metadata changes (mkdir, rmdir, unlink, rename, chmod) are in [`super::namespace`]; reads and
//! writes through a handle in [`super::handle_io`]. Everything reaches the server only through
//! the [`Backend`] trait.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::FsResult;
use super::cache::DirListing;
use super::core::{Core, ModelConfig};
use super::deferred;
use super::files::OpenFile;
use super::handle_io;
use super::inodes::{Inodes, ROOT_INO, child_path, split_path};
use super::writeback::replay::Replay;
use crate::backend::{Backend, Entry, EntryKind};

/// The longest name (bytes) of one path component, as on local filesystems: longer ones are
/// ENAMETOOLONG before anything is sent.
const NAME_MAX: usize = 255;

/// Files at least this large are read past the kernel's page cache (direct I/O).
const DIRECT_IO_FROM: u64 = 4 << 20;

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
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    /// The last change of the data or of the attributes: the mtime, or later when we changed
    /// the mode, a time or the name ourselves (FTP servers do not show a ctime).
    pub ctime: SystemTime,
    /// Links: 1 for files; 2 for directories, plus their subdirectories when known.
    pub nlink: u32,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// An opened file: its handle and how the kernel may cache it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep what it cached of the file from earlier opens.
    pub keep_cache: bool,
    /// Reads bypass the kernel's page cache (large files streamed once).
    pub direct_io: bool,
    /// Its close has nothing to upload or report (read-only, not truncating): the kernel need
    /// not wait for a flush at each close.
    pub no_flush: bool,
}

/// An opened directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedDir {
    pub fh: u64,
    /// The kernel may keep its cached entries from the previous open.
    pub keep_cache: bool,
}

/// One directory entry for readdir: `next` is the offset of the entry after it.
#[derive(Clone, Debug)]
pub struct DirItem<'a> {
    pub ino: u64,
    pub next: u64,
    pub kind: Kind,
    pub name: &'a str,
    /// Attributes (readdirplus only).
    pub stat: Option<Stat>,
}

/// A modification time requested by setattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// "Now": what the server sets anyway when data lands; nothing is sent.
    Now,
    At(SystemTime),
}

/// The model: shared by all worker threads.
pub struct Model {
    pub(super) core: Arc<Core>,
    pub(super) inodes: Mutex<Inodes>,
    /// Size and mtime of each file at its last open (keep_cache decisions).
    seen: Mutex<HashMap<u64, (u64, SystemTime)>>,
    /// Directory handles: the listing snapshot taken at opendir, so offsets stay stable.
    dir_handles: Mutex<HashMap<u64, (String, Arc<DirListing>)>>,
    /// The version of the listing each directory inode was last opened with (keep_cache for
    /// directories).
    served_dirs: Mutex<HashMap<u64, u64>>,
    next_dir: AtomicU64,
    /// The last digest asked of the server (see `model::xattr`).
    pub(super) last_digest: Mutex<Option<LastDigest>>,
}

/// A digest the server gave of a file, kept a moment for `model::xattr`.
pub(super) struct LastDigest {
    pub path: String,
    pub algorithm: crate::checksum::Algorithm,
    pub hex: String,
    /// When it was asked for (a change of ours after that makes it stale).
    pub at: SystemTime,
}

impl Model {
    pub fn new(cfg: ModelConfig, backend: Arc<dyn Backend>) -> Model {
        let core = Arc::new(Core::new(cfg, backend));
        let weak = Arc::downgrade(&core);
        crate::stats::gauge("write-back", move || weak.upgrade().map(|c| c.writeback.describe()));
        crate::stats::gauge("read-ahead", || Some(super::readahead::describe()));
        Model {
            core,
            inodes: Mutex::new(Inodes::new()),
            seen: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            served_dirs: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(1),
            last_digest: Mutex::new(None),
        }
    }

    /// How long the kernel may trust attributes and names.
    pub fn ttl(&self) -> Duration {
        self.core.cfg.cache_timeout
    }

    /// Refuses names that cannot be sent safely, would escape their directory, or that the
    /// server's character set cannot carry.
    pub(super) fn check_name(&self, name: &str) -> FsResult<()> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if !crate::ftp::listing::is_acceptable_name(name) || !self.core.backend.can_name(name) {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    /// Refuses a change on a read-only mount (EROFS), and while the server is away
    /// (EHOSTDOWN), before anything of ours is touched.
    pub(super) fn refuse_if_read_only(&self) -> FsResult<()> {
        if self.core.cfg.read_only {
            return Err(libc::EROFS);
        }
        if self.core.backend.is_offline() {
            return Err(libc::EHOSTDOWN);
        }
        Ok(())
    }

    /// The path of an inode.
    pub(super) fn path_of(&self, ino: u64) -> FsResult<String> {
        self.inodes.lock().path(ino).map(str::to_string).ok_or(libc::ENOENT)
    }

    /// The path of `name` in directory `parent`, the name checked.
    pub(super) fn child(&self, parent: u64, name: &str) -> FsResult<String> {
        self.check_name(name)?;
        Ok(child_path(&self.path_of(parent)?, name))
    }

    /// Stats `path` and counts a kernel lookup on it.
    pub(super) fn looked_up(&self, path: &str) -> FsResult<Stat> {
        let mut st = self.stat(path)?;
        st.ino = self.inodes.lock().lookup(path);
        Ok(st)
    }

    /// lookup: the attributes of `name` in `parent`, counting a kernel lookup.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Stat> {
        self.looked_up(&self.child(parent, name)?)
    }

    /// forget: the kernel dropped `count` references to `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        let mut inodes = self.inodes.lock();
        inodes.forget(ino, count);
        if inodes.path(ino).is_none() {
            self.served_dirs.lock().remove(&ino);
            self.seen.lock().remove(&ino);
        }
    }

    /// getattr.
    pub fn getattr(&self, ino: u64) -> FsResult<Stat> {
        Ok(Stat { ino, ..self.stat(&self.path_of(ino)?)? })
    }

    /// access: the path exists; writing is refused on a read-only mount.
    pub fn access(&self, ino: u64, write: bool) -> FsResult<()> {
        self.getattr(ino)?;
        if write { self.refuse_if_read_only() } else { Ok(()) }
    }

    /// Attributes of a path; callers answering the kernel set `ino` (they know the number).
    pub(super) fn stat(&self, path: &str) -> FsResult<Stat> {
        if path.is_empty() {
            return Ok(self.root_stat());
        }
        let e = self.core.entry(path)?;
        Ok(self.stat_entry(path, &e))
    }

    /// Attributes of the entry listed for `path`, with what open handles hold but the server has
    /// not got yet (size of unsaved writes, a time set before the upload lands).
    fn stat_entry(&self, path: &str, e: &Entry) -> Stat {
        let hidden;
        let e = match &e.kind {
            EntryKind::Symlink(Some(t)) if self.target_hidden(path, t) => {
                hidden = Entry { kind: EntryKind::Symlink(None), ..e.clone() };
                &hidden
            }
            _ => e,
        };
        let mut st = self.stat_of(e);
        match st.kind {
            Kind::File => {
                let (size, mtime) = self.core.handles.open_overrides(path);
                if let Some(size) = size {
                    st.size = size;
                }
                if let Some(t) = mtime {
                    st.mtime = t;
                }
            }
            Kind::Dir => st.nlink = self.core.dirs.subdirs(path).map_or(2, |n| 2 + n as u32),
            Kind::Symlink => {}
        }
        st.ctime = st.mtime.max(self.core.changed_at(path).unwrap_or(st.mtime));
        st
    }

    fn root_stat(&self) -> Stat {
        let cfg = &self.core.cfg;
        let now = SystemTime::now();
        Stat {
            ino: ROOT_INO,
            kind: Kind::Dir,
            size: 4096,
            mtime: now,
            ctime: now,
            nlink: self.core.dirs.subdirs("").map_or(2, |n| 2 + n as u32),
            perm: (0o755 & !cfg.umask) as u16,
            uid: cfg.uid,
            gid: cfg.gid,
        }
    }

    /// Turns a listing entry into attributes (inode number 0: not looked up).
    fn stat_of(&self, e: &Entry) -> Stat {
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
        let cfg = &self.core.cfg;
        let perm = match kind {
            Kind::Symlink => 0o777,
            _ => (e.mode.unwrap_or(default_mode) & 0o7777 & !cfg.umask) as u16,
        };
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        Stat { ino: 0, kind, size, mtime, ctime: mtime, nlink, perm, uid: cfg.uid, gid: cfg.gid }
    }

    /// readlink.
    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        let path = self.path_of(ino)?;
        if path.is_empty() {
            return Err(libc::EINVAL);
        }
        match self.core.entry(&path)?.kind {
            EntryKind::Symlink(Some(t)) if !self.target_hidden(&path, &t) => Ok(t),
            _ => Err(libc::EINVAL),
        }
    }

    /// Whether the target `t` of the link at `path` is kept from the kernel (see
    /// `model::symlink`).
    fn target_hidden(&self, path: &str, t: &str) -> bool {
        !self.core.cfg.raw_link_targets && super::link_targets::leads_out(split_path(path).0, t)
    }

    /// How the kernel may cache an open file. Large files are streamed past the page cache
    /// (one copy less, at the speed of the network); smaller ones go through it, and keep what
    /// is cached across opens while size and mtime are the same as at the previous open.
    fn cache_mode(&self, ino: u64, st: &Stat, writable: bool) -> (bool, bool) {
        if !writable && st.size >= DIRECT_IO_FROM {
            return (false, true);
        }
        let mut seen = self.seen.lock();
        let same = seen.get(&ino) == Some(&(st.size, st.mtime));
        seen.insert(ino, (st.size, st.mtime));
        (same && !writable, false)
    }

    /// open: a handle on an existing file (emptied by it with O_TRUNC). A writer makes other
    /// writers of the path keep their own copy ([`handle_io::pin_writers`]).
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        let path = self.path_of(ino)?;
        let writable = (flags & libc::O_ACCMODE) != libc::O_RDONLY;
        let append = flags & libc::O_APPEND != 0;
        // O_TRUNC (atomic with open, also with O_RDONLY as Linux does): this handle empties the
        // file, as if it had created it.
        let truncate = flags & libc::O_TRUNC != 0;
        // A reader of a file whose write-back is on its way reads what was written; anything
        // else waits for it to land first, so nothing changes around it.
        if !writable
            && !truncate
            && let Some((copy, len)) = self.core.writeback.pending_copy(&path)
        {
            return self.open_pending_copy(ino, &path, copy, len);
        }
        self.core.writeback.wait_for(|p| p == path)?;
        let entry = if path.is_empty() { Err(libc::EISDIR) } else { self.core.entry(&path) }?;
        if entry.is_dir() {
            return Err(libc::EISDIR);
        }
        if writable || truncate {
            self.refuse_if_read_only()?;
        }
        let server_size = if truncate { Some(0) } else { entry.size };
        let handles = &self.core.handles;
        let fh = handles.open(&path, writable, append, truncate, server_size);
        if let Ok(f) = handles.get(fh) {
            let mut io = f.io.lock();
            io.listed_mtime = entry.mtime;
            // Only where size and time tell versions apart: an exact time (see the disk cache).
            if !writable && !truncate && entry.mtime_exact {
                io.cached_version = match (entry.size, entry.mtime) {
                    (Some(size), Some(mtime)) => {
                        Some(crate::disk_cache::Version { size, mtime, nanos: entry.mtime_nanos })
                    }
                    _ => None,
                };
            }
            drop(io);
            if truncate {
                // Emptying the file changes it now (its mtime and ctime).
                f.note_modified();
                self.core.note_change(&path);
            }
        }
        let st = self.stat_entry(&path, &entry);
        if writable && let Err(e) = handle_io::pin_writers(&self.core, &path) {
            handles.remove(fh);
            return Err(e);
        }
        let (keep_cache, direct_io) = self.cache_mode(ino, &st, writable);
        Ok(Opened { fh, keep_cache, direct_io, no_flush: !writable && !truncate })
    }

    /// A read-only handle on `path` serving `copy` (`len` bytes), the version of the file that
    /// waits for its write-back upload.
    fn open_pending_copy(&self, ino: u64, path: &str, copy: std::fs::File, len: u64) -> FsResult<Opened> {
        let entry = self.core.entry(path)?;
        let fh = self.core.handles.open(path, false, false, false, Some(len));
        handle_io::serve_copy(&self.core, fh, copy, len)?;
        let st = self.stat_entry(path, &entry);
        let (keep_cache, direct_io) = self.cache_mode(ino, &st, false);
        Ok(Opened { fh, keep_cache, direct_io, no_flush: true })
    }

    /// create: a writable handle on a new (or, with O_TRUNC, emptied) file with permission bits
    /// `mode & !umask`. The kernel counts a lookup on the new inode only when this succeeds.
    pub fn create(&self, parent: u64, name: &str, flags: i32, mode: u32, umask: u32) -> FsResult<(Stat, u64)> {
        let path = self.child(parent, name)?;
        self.core.writeback.wait_for(|p| p == path)?;
        let ino = self.inodes.lock().lookup(&path);
        let res = self.create_file(&path, flags, mode & !umask);
        if res.is_err() {
            self.inodes.lock().forget(ino, 1);
        }
        res.map(|(mut st, fh)| {
            st.ino = ino;
            (st, fh)
        })
    }

    /// Keeps the content of files read through the mount in `cache` (on local disk, across
    /// mounts) and serves reads from it while the server's file is the version it holds.
    pub fn use_disk_cache(&self, cache: Arc<crate::disk_cache::DiskCache>) {
        let kept = cache.clone();
        // A listing one of our changes patched or dropped is stale on disk too.
        self.core.dirs.set_listener(move |dir, tree| kept.forget_listing(dir, tree));
        let _ = self.core.disk_cache.set(cache);
    }

    /// Empties the disk cache; the bytes it held (`None`: there is none).
    pub fn clear_disk_cache(&self) -> Option<u64> {
        let cache = self.core.disk_cache()?;
        let held = cache.bytes();
        cache.clear();
        Some(held)
    }

    /// read through handle `fh`: `out` gets the bytes (fewer at the end of the file).
    pub fn read(&self, fh: u64, off: u64, size: usize, out: &mut dyn FnMut(&[u8])) -> FsResult<()> {
        let f = self.core.handles.get(fh)?;
        handle_io::read(&self.core, &f, off, size, out)
    }

    /// write through handle `fh`.
    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> FsResult<usize> {
        let f = self.core.handles.get(fh)?;
        handle_io::write(&self.core, &f, off, data)
    }

    /// flush (each close of a descriptor): the server holds what `fh` wrote when this returns
    /// Ok. With write-back, a handle's version is journaled for its release to defer, and the
    /// close of a writer reports (once) an earlier write-back of the file that failed, as fsync
    /// does: whoever writes the file next learns that a version of it did not land.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.core.handles.get(fh)?;
        let wb = &self.core.writeback;
        if wb.enabled()
            && handle_io::can_write_back(&f)
            && let Some(path) = f.path()
            && deferred::journal_at_close(&self.core, &f, &path)
        {
            return wb.take_failure(&path).map_or(Ok(()), Err);
        }
        self.commit_now(&f)?;
        match f.path() {
            Some(path) if f.writable => wb.take_failure(&path).map_or(Ok(()), Err),
            _ => Ok(()),
        }
    }

    /// Uploads what handle `f` holds now, without the write-back queue: older versions of its
    /// file still queued land first, and none lands after it (a version not journaled at a
    /// close takes a new place in the order of closes).
    fn commit_now(&self, f: &OpenFile) -> FsResult<()> {
        let wb = &self.core.writeback;
        if !wb.enabled() || !f.is_dirty() {
            return handle_io::commit(&self.core, f);
        }
        if let Some(path) = f.path() {
            wb.wait_for(|p| p == path)?;
            if f.append {
                handle_io::land_closed_versions(&self.core, f, &path);
            }
        }
        // Its place in the order before it uploads: a failure leaves it there (newer than the
        // closes before it), so its release neither takes it for overtaken nor drops it.
        let seq = wb.next_close();
        f.close_seq.store(seq, Ordering::Relaxed);
        f.mark_journal_started();
        handle_io::commit(&self.core, f)?;
        handle_io::landed_outside_queue(&self.core, f, seq);
        Ok(())
    }

    /// fsync: the server holds what `fh` wrote, and any write-back of its file has landed; a
    /// write-back of the file that failed since the last fsync is reported here.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let f = self.core.handles.get(fh)?;
        let wb = &self.core.writeback;
        // Older versions of the file waiting in the write-back queue land first, and none
        // lands over this one afterwards (not even one closed before it and released after).
        self.commit_now(&f)?;
        let Some(path) = f.path() else { return Ok(()) };
        wb.wait_for(|p| p == path)?;
        wb.take_failure(&path).map_or(Ok(()), Err)
    }

    /// release: commits and forgets the handle. Data that could not be uploaded is kept in
    /// `cache_dir` (and logged).
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Ok(f) = self.core.handles.get(fh) else { return Ok(()) };
        let wb = &self.core.writeback;
        // No wait for the path's earlier uploads here (a release waiting would hold one of the
        // kernel's few background slots, and every read behind it): the queue itself lands the
        // closes of one file one at a time, in their order, and drops a version a later close
        // overtook.
        if wb.enabled()
            && let Some(path) = f.path()
            && handle_io::can_write_back(&f)
            && deferred::defer(&self.core, fh, f.clone(), &path)
        {
            return Ok(());
        }
        // Not deferred (queue full, journal failing, unmounting): a version of this handle goes
        // up now, so older versions of the file still queued land first, not over it.
        let seq = f.close_or(|| wb.next_close());
        let dirty = wb.enabled() && f.is_dirty();
        if dirty && let Some(path) = f.path() {
            let _ = wb.wait_for(|p| p == path);
            if wb.is_superseded(&path, seq) {
                // A later close of the file landed or is on its way: this older version never
                // lands over it, also when it uploads itself.
                log::debug!("{path}: a later close supersedes this one; not uploaded");
                f.forget_journal();
                let handles = &self.core.handles;
                return handle_io::retire(&self.core, &f, false, || drop(handles.remove(fh)));
            }
        }
        // Still registered while it uploads: a rename or delete of its path waits for it, and
        // an unmount still counts it as open.
        f.mark_journal_started();
        let res = handle_io::commit(&self.core, &f);
        if dirty && res.is_ok() {
            handle_io::landed_outside_queue(&self.core, &f, seq);
        }
        if let Err(e) = res {
            log::error!("{}: upload at close failed: errno {e}", f.path().unwrap_or_default());
            super::rescue::rescue(&self.core, &f);
        }
        // Uploaded here (or kept by the rescue, or detached): not for the next mount.
        f.forget_journal();
        let handles = &self.core.handles;
        let late = handle_io::retire(&self.core, &f, res.is_ok(), || drop(handles.remove(fh)));
        if let Err(e) = &late {
            log::error!("{}: upload of a late change at close failed: errno {e}", f.path().unwrap_or_default());
            super::rescue::rescue(&self.core, &f);
        }
        res.and(late)
    }

    /// setattr: size (through the handle given, or else a writer's handle of the path, so the
    /// truncation belongs to the data it cuts), mode, modification time. A time set while a
    /// handle still holds unsaved data is applied after that upload, which would otherwise undo
    /// it (cp -p, futimens). Returns the new attributes.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SetTime>,
    ) -> FsResult<Stat> {
        let path = self.path_of(ino)?;
        if mode.is_some() || size.is_some() || matches!(mtime, Some(SetTime::At(_))) {
            self.refuse_if_read_only()?;
        }
        if mode.is_some() || size.is_some() || mtime.is_some() {
            // A write-back on its way lands first: its data is not cut, its mode and time are
            // not set on a handle that is about to go.
            self.core.writeback.wait_for(|p| p == path)?;
        }
        let handles = &self.core.handles;
        if let Some(size) = size {
            let given = fh.and_then(|fh| handles.get(fh).ok()).filter(|f| f.writable);
            // truncate(2) by path goes into a writer's own version only while that writer holds
            // unsaved data (its upload at close would undo the truncation otherwise). A writer
            // with nothing unsaved may be one already closed whose release is on its way: its
            // state is about to go, and a truncation put there would be lost.
            let holder = || handles.writers_of(&path).into_iter().find(|f| f.is_dirty());
            match given.or_else(holder) {
                // Released meanwhile (its close uploaded what it held): the server's file is
                // truncated instead.
                Some(f) => match handle_io::truncate(&self.core, &f, size) {
                    Err(libc::ESTALE) => handle_io::truncate_path(&self.core, &path, size)?,
                    other => other?,
                },
                None => handle_io::truncate_path(&self.core, &path, size)?,
            }
        }
        if let Some(mode) = mode {
            self.chmod(&path, mode)?;
        }
        // "Now" on a file that a handle still open on it uploaded a moment ago, with nothing
        // new held for it: the server's time of that upload is "now" already (as NFS takes
        // "now" from the server's clock), and asking again would cost a round trip (touch
        // uploads at its first close, then sets the time).
        let just_uploaded = || {
            let writers = handles.writers_of(&path);
            !writers.iter().any(|f| f.is_dirty())
                && writers.iter().any(|f| f.uploaded_at.lock().is_some_and(|t| t.elapsed() < Duration::from_secs(1)))
        };
        let when = match mtime {
            Some(SetTime::Now) if just_uploaded() => None,
            Some(SetTime::At(t)) => Some(t),
            // "Now" with no data on its way: set like any time (shown now even where the
            // server cannot be told); with data on its way, the upload sets it anyway.
            Some(SetTime::Now) if handles.holders_of_unsaved(&path).is_empty() => Some(SystemTime::now()),
            _ => None,
        };
        if let Some(when) = when {
            // utimensat(2): EACCES for "now" (times NULL), EPERM for a time of the caller's.
            let now = matches!(mtime, Some(SetTime::Now));
            let refusal = |e: i32| if now && e == libc::EPERM { libc::EACCES } else { e };
            let holders = handles.holders_of_unsaved(&path);
            if holders.is_empty() {
                self.core.set_mtime(&path, when).map_err(refusal)?;
                // Its time is this one now, not the moment of an upload.
                for f in handles.writers_of(&path) {
                    *f.uploaded_at.lock() = None;
                }
            } else if let Some(e) = self.core.times_refused() {
                // Known now: refused before it is deferred to the upload, whose close must
                // not fail over a time once the data has landed.
                return Err(refusal(e));
            }
            for f in holders {
                handle_io::defer_mtime(&f, when);
            }
        }
        if mode.is_some() || size.is_some() || mtime.is_some() {
            self.core.note_change(&path);
        }
        let mut st = self.stat(&path)?;
        st.ino = ino;
        if let Some(when) = when {
            st.mtime = when;
        }
        Ok(st)
    }

    /// opendir: a snapshot of the listing, so offsets stay stable while it is read. The kernel
    /// may keep its cached entries while the listing is the very one it saw last time (not
    /// fetched again, not patched by a change of ours).
    pub fn opendir(&self, ino: u64) -> FsResult<OpenedDir> {
        let path = self.path_of(ino)?;
        // Told before the listing too: during a walk, the siblings are fetched meanwhile.
        self.core.backend.opened_dir(&path);
        let listing = self.core.list_dir(&path)?;
        self.core.backend.opened_dir(&path);
        let mut served = self.served_dirs.lock();
        let keep_cache = served.get(&ino) == Some(&listing.version());
        served.insert(ino, listing.version());
        drop(served);
        let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
        self.dir_handles.lock().insert(fh, (path, listing));
        Ok(OpenedDir { fh, keep_cache })
    }

    /// readdir(plus) from `offset`: hands entries to `add` until it says the reply is full
    /// (true). With `plus`, every entry but `.` and `..` counts a kernel lookup, except the one
    /// that did not fit.
    pub fn readdir(&self, fh: u64, offset: u64, plus: bool, add: &mut dyn FnMut(DirItem) -> bool) -> FsResult<()> {
        let (dir, listing) = self.dir_handles.lock().get(&fh).cloned().ok_or(libc::EBADF)?;
        let (parent, _) = split_path(&dir);
        let parent = if dir.is_empty() { "" } else { parent };
        let total = listing.len() as u64 + 2;
        for i in offset..total {
            let full = if i < 2 {
                let (path, name) = if i == 0 { (dir.as_str(), ".") } else { (parent, "..") };
                let ino = self.inodes.lock().get(path).unwrap_or(ROOT_INO);
                let stat = match plus {
                    true => Some(Stat { ino, ..self.stat(path).or_else(|_| self.stat(""))? }),
                    false => None,
                };
                add(DirItem { ino, next: i + 1, kind: Kind::Dir, name, stat })
            } else {
                let Some(e) = listing.at((i - 2) as usize) else { break };
                let path = child_path(&dir, &e.name);
                let mut st = self.stat_entry(&path, &e);
                let ino =
                    if plus { self.inodes.lock().lookup(&path) } else { self.inodes.lock().peek_or_assign(&path) };
                st.ino = ino;
                let kind = st.kind;
                let full = add(DirItem { ino, next: i + 1, kind, name: &e.name, stat: plus.then_some(st) });
                if full && plus {
                    // Not sent: the kernel will not count this lookup.
                    self.inodes.lock().forget(ino, 1);
                }
                full
            };
            if full {
                break;
            }
        }
        Ok(())
    }

    /// releasedir.
    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.lock().remove(&fh);
    }

    /// Closes idle connections (at unmount).
    pub fn shutdown(&self) {
        if let Some(cache) = self.core.disk_cache() {
            cache.save_all();
        }
        self.core.backend.close_idle();
    }

    /// Uploads what an earlier mount's write-back left in its journal `dir` (before serving),
    /// oldest first; returns how many files landed. What fails stays there.
    /// [`Model::recover_journal`] before there is a model (`-o delay_connect`: before requests
    /// reach the server, so no newer write of ours lands first): the paths `backend` took up.
    pub fn recover_journal_alone(
        backend: &dyn Backend,
        cache_dir: &std::path::Path,
        dir: &std::path::Path,
    ) -> Vec<String> {
        let replay = Replay { backend, cache_dir, wait: backend.wait_limit() };
        super::writeback::replay::recover(&replay, dir)
    }

    /// A file an earlier mount's journal just landed (`path`): what this mount kept of it and
    /// of its directory's listing is stale.
    pub fn forget_landed(&self, path: &str) {
        self.core.note_change(path);
        self.core.invalidate_parent(path);
    }

    pub fn recover_journal(&self, dir: &std::path::Path) -> usize {
        let core = &self.core;
        let replay = Replay { backend: core.backend.as_ref(), cache_dir: &core.cfg.cache_dir, wait: core.wait_limit() };
        let landed = super::writeback::replay::recover(&replay, dir);
        for path in &landed {
            core.invalidate_parent(path);
        }
        landed.len()
    }

    /// The write-back queue in one line, as `ftpfs stats` shows it.
    #[cfg(test)]
    pub(super) fn describe_writeback(&self) -> String {
        self.core.writeback.describe()
    }

    /// How many file handles are open.
    pub fn open_handles(&self) -> usize {
        self.core.handles.all().len()
    }

    /// Unmounting (the mount went away): uploads what open handles still hold, waiting for
    /// write-backs while they make progress, then fails every request still waiting for a
    /// connection and every later one.
    pub fn stop(&self) {
        self.stop_within(None);
    }

    /// [`Model::stop`], done within `bound` at the latest when one is given (a signal: the
    /// system may kill the process soon after); what is still on its way then stays in the
    /// write-back journal for the next mount.
    pub fn stop_within(&self, bound: Option<Duration>) {
        let core = &self.core;
        let now = std::time::Instant::now();
        // Unbounded in practice: a year.
        let deadline = now + bound.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        core.writeback.wait_all(core.wait_limit(), deadline, || core.sent.load(Ordering::Relaxed));
        let left = deadline.min(std::time::Instant::now() + core.wait_limit());
        handle_io::commit_everything(core, left);
        // A handle whose data landed (here, or by a release racing the unmount) needs its
        // journal entry no more: the next mount would upload it again.
        for f in core.handles.all() {
            if !f.queued.load(Ordering::Relaxed) && !f.is_dirty() {
                f.forget_journal();
            }
        }
        core.backend.shut_down();
    }
}
