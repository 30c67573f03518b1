//! The fuser adapter: kernel requests in, model calls out, replies back.
//!
//! This is the only place that knows fuser's types, and it only translates: arguments to model
//! calls, model results to `FileAttr`, flags and errno replies. Every decision is the model's.
//! It never panics on anything the kernel, the network or the user controls.
//!
//! It answers ENOSYS only where the kernel should stop asking for good (extended attributes,
//! and the calls fuser answers by default: fallocate, lseek, copy_file_range, fsyncdir, …): the
//! kernel takes ENOSYS from open, create, flush, fsync, access, rename with flags and others as
//! "never implemented" for the rest of the mount, so no result of the model is passed on as
//! ENOSYS ([`err`]).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::model::{DirItem, FsResult, Kind, Model, Opened, SetTime, Stat};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// The filesystem handed to fuser.
pub struct FtpFs {
    model: Arc<Model>,
    ttl: Duration,
    /// Run when the session ends (the kernel unmounted), before fuser drops its mount.
    at_end: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// The reply for an errno from the model. Never ENOSYS: from open the kernel would take it as
/// "no open needed" and let every later open succeed without a handle, from create fall back
/// to mknod for every later file, from flush or fsync report success for every later close
/// or fsync. The model means "not supported here": EOPNOTSUPP.
fn err(e: i32) -> Errno {
    if e == libc::ENOSYS {
        log::warn!("ENOSYS from the model, answered as EOPNOTSUPP (ENOSYS would switch the call off for good)");
        return Errno::from_i32(libc::EOPNOTSUPP);
    }
    Errno::from_i32(e)
}

/// ENOSYS on purpose: the kernel stops sending this call for the rest of the mount.
fn never_implemented() -> Errno {
    Errno::from_i32(libc::ENOSYS)
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

fn attr(st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(st.ino),
        size: st.size,
        blocks: st.size.div_ceil(512),
        atime: st.mtime,
        mtime: st.mtime,
        ctime: st.ctime,
        crtime: st.mtime,
        kind: file_type(st.kind),
        perm: st.perm,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        rdev: 0,
        blksize: 128 * 1024,
        flags: 0,
    }
}

fn open_flags(o: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if o.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    flags
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
        TimeOrNow::Now => SetTime::Now,
    }
}

impl FtpFs {
    pub fn new(model: Arc<Model>) -> FtpFs {
        let ttl = model.ttl();
        FtpFs { model, ttl, at_end: parking_lot::Mutex::new(None) }
    }

    /// `at_end` runs when the session ends, before fuser drops (and unmounts) its mount.
    pub fn with_end(self, at_end: impl FnOnce() + Send + 'static) -> FtpFs {
        *self.at_end.lock() = Some(Box::new(at_end));
        self
    }

    fn rename_flags(flags: RenameFlags) -> FsResult<bool> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(libc::EINVAL);
        }
        Ok(flags.contains(RenameFlags::RENAME_NOREPLACE))
    }
}

/// Replies with an errno or a value.
macro_rules! answer {
    ($reply:expr, $res:expr, |$v:ident| $ok:expr) => {
        crate::allocator::leak_for_tests();
        match $res {
            Ok($v) => $ok,
            Err(e) => $reply.error(err(e)),
        }
    };
}

/// `ftpfs refresh`: the model forgets what it cached at `path` (see [`Model::refresh`]) and the
/// kernel the names, attributes and pages it holds there, so that the next access asks. The
/// kernel answers ENOENT for what it does not hold: nothing to do there.
pub fn refresh(model: &Model, kernel: &fuser::Notifier, path: &str, recursive: bool) -> Result<String, String> {
    let shown = if path.is_empty() { "the whole mount".to_string() } else { format!("{path:?}") };
    let done = model.refresh(path, recursive).map_err(|e| format!("cannot refresh {shown}: {e}"))?;
    let told = |res: std::io::Result<()>| match res {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
        Err(e) => {
            log::debug!("refresh: the kernel refused an invalidation: {e}");
            false
        }
    };
    let names = done.names.iter().filter(|(dir, name)| told(kernel.inval_entry(INodeNo(*dir), OsStr::new(name))));
    let names = names.count();
    let inodes = done.inodes.iter().filter(|&&ino| told(kernel.inval_inode(INodeNo(ino), 0, 0))).count();
    log::info!(
        "refreshed {shown}{}: {inodes} inodes and {names} names dropped from the kernel's caches",
        if recursive { " and below" } else { "" }
    );
    Ok(format!("refreshed {shown}{}\n", if recursive { " and everything below it" } else { "" }))
}

impl Filesystem for FtpFs {
    // Not FUSE_CACHE_SYMLINKS: the kernel would keep a link's target past a rename, which
    // changes what the target must be (relative to the link; kept from the kernel when it would
    // lead out of the mount), and readlink is answered from memory anyway.
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
        match self.at_end.lock().take() {
            // (It ends the model itself, after what must go first.)
            Some(at_end) => at_end(),
            None => self.model.shutdown(),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let res = name_str(name).and_then(|n| self.model.lookup(parent.0, n));
        answer!(reply, res, |st| reply.entry(&self.ttl, &attr(&st), Generation(0)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.model.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.model.getattr(ino.0);
        answer!(reply, res, |st| reply.attr(&self.ttl, &attr(&st)));
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
        let res = self.model.setattr(ino.0, fh.map(|f| f.0), mode, size, mtime.map(set_time));
        answer!(reply, res, |st| reply.attr(&self.ttl, &attr(&st)));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = self.model.readlink(ino.0);
        answer!(reply, res, |t| reply.data(t.as_bytes()));
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let res = name_str(name).and_then(|n| self.model.mkdir(parent.0, n, mode, umask));
        answer!(reply, res, |st| reply.entry(&self.ttl, &attr(&st), Generation(0)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = name_str(name).and_then(|n| self.model.unlink(parent.0, n));
        answer!(reply, res, |_v| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = name_str(name).and_then(|n| self.model.rmdir(parent.0, n));
        answer!(reply, res, |_v| reply.ok());
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        // FTP has no hard links. link(2): EPERM "The filesystem containing oldpath and newpath
        // does not support the creation of hard links" (fuser's default would be ENOSYS).
        reply.error(err(libc::EPERM));
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through create; FTP cannot make fifos, sockets or device nodes.
        // mknod(2): EPERM "... if the filesystem containing pathname does not support the type
        // of node requested" (fuser's default would be ENOSYS).
        reply.error(err(libc::EPERM));
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let target = target.to_str().ok_or(libc::EINVAL);
        let res = name_str(link_name).and_then(|n| self.model.symlink(parent.0, n, target?));
        answer!(reply, res, |st| reply.entry(&self.ttl, &attr(&st), Generation(0)));
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
        let res = Self::rename_flags(flags).and_then(|noreplace| {
            self.model.rename(parent.0, name_str(name)?, newparent.0, name_str(newname)?, noreplace)
        });
        answer!(reply, res, |_v| reply.ok());
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let res = self.model.open(ino.0, flags.0);
        answer!(reply, res, |o| reply.opened(FileHandle(o.fh), open_flags(&o)));
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
        answer!(reply, res, |_v| reply.ok());
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let res = self.model.fsync(fh.0);
        answer!(reply, res, |_v| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = self.model.opendir(ino.0);
        answer!(reply, res, |d| {
            let flags = match d.keep_cache {
                true => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                false => FopenFlags::FOPEN_CACHE_DIR,
            };
            reply.opened(FileHandle(d.fh), flags)
        });
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let res = self.model.readdir(fh.0, offset, false, &mut |item: DirItem| {
            reply.add(INodeNo(item.ino), item.next, file_type(item.kind), item.name)
        });
        answer!(reply, res, |_v| reply.ok());
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let ttl = self.ttl;
        let res = self.model.readdir(fh.0, offset, true, &mut |item: DirItem| match &item.stat {
            Some(st) => reply.add(INodeNo(item.ino), item.next, item.name, &ttl, &attr(st), Generation(0)),
            None => true,
        });
        answer!(reply, res, |_v| reply.ok());
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.model.releasedir(fh.0);
        reply.ok();
    }

    // Extended attributes: only the server's digests, by name (see `model::xattr`). Setting
    // and removing are never possible: ENOSYS makes the kernel stop asking (and tells callers
    // EOPNOTSUPP, which cp -a and rsync -X handle): on purpose, unlike [`err`].
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: fuser::ReplyXattr) {
        match name.to_str().map_or(Err(libc::ENODATA), |n| self.model.getxattr(ino.0, n)) {
            Ok(value) if size == 0 => reply.size(value.len() as u32),
            Ok(value) if value.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(value) => reply.data(&value),
            Err(libc::ENOSYS) => reply.error(never_implemented()),
            Err(e) => reply.error(err(e)),
        }
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
        reply.error(never_implemented());
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        // The digests are not listed: copies would have the server hash every file.
        match size {
            0 => reply.size(0),
            _ => reply.data(&[]),
        }
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(never_implemented());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // FTP cannot tell free space: report a large, plausible filesystem.
        let blocks = 1u64 << 32;
        reply.statfs(blocks, blocks / 2, blocks / 2, 1 << 24, 1 << 23, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let res = self.model.access(ino.0, mask.contains(AccessFlags::W_OK));
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
        let res = name_str(name).and_then(|n| self.model.create(parent.0, n, flags, mode, umask));
        answer!(reply, res, |v| reply.created(
            &self.ttl,
            &attr(&v.0),
            Generation(0),
            FileHandle(v.1),
            FopenFlags::empty()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_never_switches_a_call_off() {
        assert_eq!(err(libc::ENOSYS), Errno::from_i32(libc::EOPNOTSUPP));
        for e in [libc::ENOENT, libc::EACCES, libc::EPERM, libc::EIO, libc::EOPNOTSUPP, libc::EDQUOT] {
            assert_eq!(err(e), Errno::from_i32(e));
        }
        assert_eq!(never_implemented(), Errno::from_i32(libc::ENOSYS));
    }
}
