//! The fuser adapter: kernel requests in, model calls out, replies back.
//!
//! This is the only place that knows fuser's types. It maps inode numbers to paths, converts
//! model attributes to `FileAttr`, and turns the model's errno results into replies. It never
//! panics on anything the kernel, the network or the user controls.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use crate::model::cache::DirListing;
use crate::model::inodes::{child_path, split_path};
use crate::model::{FsResult, Kind, Model, ROOT_INO, Stat};

/// Files at least this large are read with FOPEN_DIRECT_IO.
const DIRECT_IO_FROM: u64 = 4 << 20;

/// The filesystem handed to fuser.
pub struct FtpFs {
    model: Arc<Model>,
    ttl: Duration,
    /// Size and mtime of each file at its last open, for FOPEN_KEEP_CACHE.
    seen: Mutex<HashMap<u64, (u64, SystemTime)>>,
    /// Directory handles: a snapshot of the listing taken at opendir, so offsets stay stable.
    dirs: Mutex<HashMap<u64, (String, Arc<DirListing>)>>,
    /// The listing each directory inode was last opened with (FOPEN_CACHE_DIR reuse).
    served_dirs: Mutex<HashMap<u64, Arc<DirListing>>>,
    next_dir: AtomicU64,
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn name_str(name: &OsStr) -> FsResult<&str> {
    name.to_str().ok_or(libc::EINVAL)
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

impl FtpFs {
    pub fn new(model: Arc<Model>) -> FtpFs {
        let ttl = model.config().cache_timeout;
        FtpFs {
            model,
            ttl,
            seen: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            served_dirs: Mutex::new(HashMap::new()),
            next_dir: AtomicU64::new(1),
        }
    }

    fn attr(&self, ino: u64, st: &Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: st.size,
            blocks: st.size.div_ceil(512),
            atime: st.mtime,
            mtime: st.mtime,
            ctime: st.mtime,
            crtime: st.mtime,
            kind: file_type(st.kind),
            perm: st.perm,
            nlink: if st.kind == Kind::Dir { 2 } else { 1 },
            uid: st.uid,
            gid: st.gid,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    /// Stats `path` and counts a kernel lookup on it.
    fn entry_for(&self, path: &str) -> FsResult<FileAttr> {
        let st = self.model.stat(path)?;
        let ino = self.model.lookup_ino(path);
        Ok(self.attr(ino, &st))
    }

    fn do_setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> FsResult<FileAttr> {
        let path = self.model.path_of(ino)?;
        // "Now" is what the server sets anyway when data lands, so only explicit times are sent.
        let when = match mtime {
            Some(TimeOrNow::SpecificTime(t)) => Some(t),
            _ => None,
        };
        let st = self.model.setattr(ino, &path, fh.map(|f| f.0), mode, size, when)?;
        Ok(self.attr(ino, &st))
    }

    /// How the kernel should cache an open file. Large files are streamed past the page cache
    /// (FOPEN_DIRECT_IO: one copy less, at the speed of the network); smaller ones go through
    /// it, and keep what is cached across opens (FOPEN_KEEP_CACHE) while size and mtime are the
    /// same as at the previous open.
    fn cache_flags(&self, ino: u64, st: &Stat, writable: bool) -> FopenFlags {
        if !writable && st.size >= DIRECT_IO_FROM {
            return FopenFlags::FOPEN_DIRECT_IO;
        }
        let mut seen = self.seen.lock();
        let same = seen.get(&ino) == Some(&(st.size, st.mtime));
        seen.insert(ino, (st.size, st.mtime));
        if same && !writable { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() }
    }

    fn do_open(&self, ino: u64, flags: i32) -> FsResult<(u64, FopenFlags)> {
        let path = self.model.path_of(ino)?;
        let writable = (flags & libc::O_ACCMODE) != libc::O_RDONLY;
        let (fh, st) = self.model.open_file(ino, &path, flags)?;
        Ok((fh, self.cache_flags(ino, &st, writable)))
    }

    fn do_create(&self, parent: u64, name: &OsStr, flags: i32, mode: u32, umask: u32) -> FsResult<(FileAttr, u64)> {
        let path = self.model.child(parent, name_str(name)?)?;
        let ino = self.model.lookup_ino(&path);
        match self.model.create_file(ino, &path, flags, mode & !umask) {
            Ok((fh, st)) => Ok((self.attr(ino, &st), fh)),
            Err(e) => {
                // The kernel counts no lookup for a failed create.
                self.model.inodes.lock().forget(ino, 1);
                Err(e)
            }
        }
    }

    fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> FsResult<()> {
        let from = self.model.child(parent, name_str(name)?)?;
        let to = self.model.child(newparent, name_str(newname)?)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(libc::EINVAL);
        }
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && self.model.stat(&to).is_ok() {
            return Err(libc::EEXIST);
        }
        self.model.rename(&from, &to)
    }

    fn do_readdir(&self, fh: u64, offset: u64, reply: &mut ReplyDirectory) -> FsResult<()> {
        let (dir, listing) = self.dirs.lock().get(&fh).cloned().ok_or(libc::EBADF)?;
        let (parent, _) = split_path(&dir);
        let mut inodes = self.model.inodes.lock();
        let self_ino = inodes.get(&dir).unwrap_or(ROOT_INO);
        let parent_ino = if dir.is_empty() { ROOT_INO } else { inodes.get(parent).unwrap_or(ROOT_INO) };
        let specials = [(self_ino, FileType::Directory, "."), (parent_ino, FileType::Directory, "..")];
        let entries = listing.entries();
        let total = entries.len() as u64 + 2;
        for i in offset..total {
            let full = if i < 2 {
                let (ino, kind, name) = specials[i as usize];
                reply.add(INodeNo(ino), i + 1, kind, name)
            } else {
                let e = &entries[(i - 2) as usize];
                let ino = inodes.peek_or_assign(&child_path(&dir, &e.name));
                let kind = file_type(self.model.stat_of(e).kind);
                reply.add(INodeNo(ino), i + 1, kind, &e.name)
            };
            if full {
                break;
            }
        }
        Ok(())
    }
}

impl FtpFs {
    /// readdir with attributes: `ls -l` then needs no lookup per entry. Every entry but `.` and
    /// `..` counts as a kernel lookup.
    fn do_readdirplus(&self, fh: u64, offset: u64, reply: &mut ReplyDirectoryPlus) -> FsResult<()> {
        let (dir, listing) = self.dirs.lock().get(&fh).cloned().ok_or(libc::EBADF)?;
        let entries = listing.entries();
        let total = entries.len() as u64 + 2;
        for i in offset..total {
            let full = if i < 2 {
                let name = if i == 0 { "." } else { ".." };
                let path = if i == 0 { dir.clone() } else { split_path(&dir).0.to_string() };
                let st = self.model.stat(&path).or_else(|_| self.model.stat(""))?;
                let ino = self.model.inodes.lock().get(&path).unwrap_or(ROOT_INO);
                reply.add(INodeNo(ino), i + 1, name, &self.ttl, &self.attr(ino, &st), Generation(0))
            } else {
                let e = &entries[(i - 2) as usize];
                let path = child_path(&dir, &e.name);
                let st = self.model.stat_entry(&path, e);
                let ino = self.model.lookup_ino(&path);
                let full = reply.add(INodeNo(ino), i + 1, &e.name, &self.ttl, &self.attr(ino, &st), Generation(0));
                if full {
                    // Not sent: the kernel will not count this lookup.
                    self.model.inodes.lock().forget(ino, 1);
                }
                full
            };
            if full {
                break;
            }
        }
        Ok(())
    }
}

/// Replies with an errno or a value.
macro_rules! answer {
    ($reply:expr, $res:expr, |$v:ident| $ok:expr) => {
        match $res {
            Ok($v) => $ok,
            Err(e) => $reply.error(err(e)),
        }
    };
}

impl Filesystem for FtpFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Each is optional: an old kernel without one simply goes without.
        for cap in [
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // O_TRUNC comes with open() instead of a later setattr without a file handle, so the
            // truncation belongs to the handle that asked for it.
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            if config.add_capabilities(cap).is_err() {
                log::debug!("kernel lacks {cap:?}");
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.model.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let res = name_str(name).and_then(|n| self.model.child(parent.0, n)).and_then(|p| self.entry_for(&p));
        answer!(reply, res, |a| reply.entry(&self.ttl, &a, Generation(0)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut inodes = self.model.inodes.lock();
        inodes.forget(ino.0, nlookup);
        if inodes.path(ino.0).is_none() {
            self.served_dirs.lock().remove(&ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.model.path_of(ino.0).and_then(|p| self.model.stat(&p));
        answer!(reply, res, |st| reply.attr(&self.ttl, &self.attr(ino.0, &st)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // uid/gid changes are accepted and ignored: FTP has no chown (documented).
        let res = self.do_setattr(ino.0, mode, size, mtime, fh);
        answer!(reply, res, |a| reply.attr(&self.ttl, &a));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = self.model.path_of(ino.0).and_then(|p| self.model.readlink(&p));
        answer!(reply, res, |t| reply.data(t.as_bytes()));
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let res = name_str(name)
            .and_then(|n| self.model.child(parent.0, n))
            .and_then(|p| self.model.mkdir(&p, mode & !umask).map(|_| p))
            .and_then(|p| self.entry_for(&p));
        answer!(reply, res, |a| reply.entry(&self.ttl, &a, Generation(0)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = name_str(name).and_then(|n| self.model.child(parent.0, n)).and_then(|p| self.model.unlink(&p));
        answer!(reply, res, |_v| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = name_str(name).and_then(|n| self.model.child(parent.0, n)).and_then(|p| self.model.rmdir(&p));
        answer!(reply, res, |_v| reply.ok());
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        // FTP has no command to create symbolic links.
        reply.error(err(libc::EPERM));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = self.do_rename(parent.0, name, newparent.0, newname, flags);
        answer!(reply, res, |_v| reply.ok());
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let res = self.do_open(ino.0, flags.0);
        answer!(reply, res, |v| reply.opened(FileHandle(v.0), v.1));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut reply = Some(reply);
        let res = self.model.read(fh.0, offset, size as usize, &mut |data| {
            if let Some(r) = reply.take() {
                r.data(data);
            }
        });
        if let (Err(e), Some(r)) = (res, reply.take()) {
            r.error(err(e));
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let res = self.model.write(fh.0, offset, data);
        answer!(reply, res, |n| reply.written(n as u32));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let res = self.model.flush(fh.0);
        answer!(reply, res, |_v| reply.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let res = self.model.release(fh.0);
        if let Err(e) = res {
            log::error!("upload at release failed: errno {e}");
        }
        answer!(reply, res, |_v| reply.ok());
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let res = self.model.flush(fh.0);
        answer!(reply, res, |_v| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = self.model.path_of(ino.0).and_then(|p| {
            let listing = self.model.list_dir(&p)?;
            // The kernel may keep its copy of the entries while the listing is the very one it
            // saw last time (not refetched, not patched by a change of ours).
            let mut served = self.served_dirs.lock();
            let unchanged = served.get(&ino.0).is_some_and(|prev| Arc::ptr_eq(prev, &listing));
            served.insert(ino.0, listing.clone());
            drop(served);
            let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
            self.dirs.lock().insert(fh, (p, listing));
            let flags = if unchanged {
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::FOPEN_CACHE_DIR
            };
            Ok((fh, flags))
        });
        answer!(reply, res, |v| reply.opened(FileHandle(v.0), v.1));
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.do_readdir(fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        match self.do_readdirplus(fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dirs.lock().remove(&fh.0);
        reply.ok();
    }

    // Extended attributes: FTP has none. ENOSYS makes the kernel stop asking (and tells
    // callers EOPNOTSUPP, which cp -a and rsync -X handle).
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(err(libc::ENOSYS));
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(err(libc::ENOSYS));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(err(libc::ENOSYS));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(err(libc::ENOSYS));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // FTP cannot tell free space: report a large, plausible filesystem.
        let blocks = 1u64 << 32;
        reply.statfs(blocks, blocks / 2, blocks / 2, 1 << 24, 1 << 23, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let res = self.model.path_of(ino.0).and_then(|p| self.model.stat(&p)).and_then(|_| {
            if mask.contains(AccessFlags::W_OK) && self.model.config().read_only { Err(libc::EROFS) } else { Ok(()) }
        });
        answer!(reply, res, |_v| reply.ok());
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let res = self.do_create(parent.0, name, flags, mode, umask);
        answer!(reply, res, |v| reply.created(&self.ttl, &v.0, Generation(0), FileHandle(v.1), FopenFlags::empty()));
    }
}
