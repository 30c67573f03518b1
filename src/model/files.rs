//! Open files: how reads and writes on a handle become RETR, STOR and APPE.
//!
//! - Reads stream one RETR per handle from the requested offset. Slightly out-of-order requests
//!   (the kernel's parallel readahead) are served from a small window of recent bytes; small
//!   forward gaps are read through; anything else restarts the RETR with REST.
//! - Writes that arrive as one sequential stream go straight into STOR (new or truncated files)
//!   or APPE (writes at the end of an existing file, `>>`). Anything else (writes in the middle,
//!   truncation to a non-zero size, mixed reads and writes) switches the handle to a spool: a
//!   temp file holding the whole file, uploaded with STOR at flush.
//! - flush/fsync/release commit: the upload is finished (226) and its size checked with SIZE,
//!   so close() returning 0 means the server holds the file; a failure is returned to close().

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::fs::{FsResult, Model, errno};
use super::pool::{Lease, Purpose};
use super::readahead::StreamReader;
use crate::ftp::{Download, FtpError, Op, Upload};

/// Marks "no size override" in [`OpenFile::dirty_size`].
const NO_SIZE: u64 = u64::MAX;

struct Writer {
    up: Upload<Lease>,
    pos: u64,
}

struct Spool {
    file: File,
    len: u64,
    dirty: bool,
}

enum State {
    Idle,
    Reading(StreamReader),
    Writing(Writer),
    Spooled(Spool),
}

struct Io {
    state: State,
    /// Size of the file on the server, as far as we know.
    server_size: Option<u64>,
    /// Modification time to set after the next commit (futimens on a file being written).
    pending_mtime: Option<SystemTime>,
    /// Error of a failed write, reported by the next flush.
    error: Option<i32>,
}

/// One open file handle.
pub struct OpenFile {
    pub ino: u64,
    path: Mutex<Option<String>>,
    pub writable: bool,
    append: bool,
    /// The server's copy is to be replaced by what this handle holds (new file, or truncated to
    /// zero) even if nothing is written.
    pending_create: AtomicBool,
    /// Logical size while the handle holds changes the server does not have yet.
    dirty_size: AtomicU64,
    /// Modification time requested while the data is still on its way (shown by stat).
    mtime_override: Mutex<Option<SystemTime>>,
    /// Another handle uploaded this file: its new size + 1 (0 = nothing new). Applied by this
    /// handle's next operation, which drops what it cached of the old content.
    remote_changed: AtomicU64,
    io: Mutex<Io>,
}

impl OpenFile {
    pub fn path(&self) -> Option<String> {
        self.path.lock().clone()
    }

    fn set_dirty_size(&self, size: Option<u64>) {
        self.dirty_size.store(size.unwrap_or(NO_SIZE), Ordering::Relaxed);
    }

    fn dirty_size(&self) -> Option<u64> {
        let s = self.dirty_size.load(Ordering::Relaxed);
        (s != NO_SIZE).then_some(s)
    }

    fn is_dirty(&self) -> bool {
        self.dirty_size().is_some() || self.pending_create.load(Ordering::Relaxed)
    }
}

/// All open handles.
#[derive(Default)]
pub struct Handles {
    map: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next: AtomicU64,
}

impl Handles {
    /// Registers a handle. `created` means the file does not exist on the server yet.
    pub fn open(&self, ino: u64, path: &str, writable: bool, append: bool, created: bool, server_size: Option<u64>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let f = OpenFile {
            ino,
            path: Mutex::new(Some(path.to_string())),
            writable,
            append,
            pending_create: AtomicBool::new(created),
            dirty_size: AtomicU64::new(if created { 0 } else { NO_SIZE }),
            mtime_override: Mutex::new(None),
            remote_changed: AtomicU64::new(0),
            io: Mutex::new(Io { state: State::Idle, server_size, pending_mtime: None, error: None }),
        };
        self.map.lock().insert(fh, Arc::new(f));
        fh
    }

    pub fn get(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.map.lock().get(&fh).cloned().ok_or(libc::EBADF)
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.map.lock().remove(&fh)
    }

    fn matching(&self, pred: impl Fn(&str) -> bool) -> Vec<Arc<OpenFile>> {
        self.map.lock().values().filter(|f| f.path.lock().as_deref().is_some_and(&pred)).cloned().collect()
    }

    /// The size a path has while an open handle holds unsaved changes to it.
    pub fn open_size(&self, path: &str) -> Option<u64> {
        self.matching(|p| p == path).iter().filter_map(|f| f.dirty_size()).max()
    }

    /// A modification time set on `path` through a handle whose data is not uploaded yet.
    pub fn open_mtime(&self, path: &str) -> Option<SystemTime> {
        self.matching(|p| p == path).iter().find_map(|f| *f.mtime_override.lock())
    }

    /// True when a handle created `path` and nothing has been uploaded yet.
    pub fn is_pending(&self, path: &str) -> bool {
        self.matching(|p| p == path).iter().any(|f| f.pending_create.load(Ordering::Relaxed))
    }

    /// `path` was deleted: handles on it keep working locally but upload nothing.
    pub fn mark_unlinked(&self, path: &str) {
        for f in self.matching(|p| p == path) {
            *f.path.lock() = None;
        }
    }

    /// Paths of open handles follow a rename.
    pub fn renamed(&self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        for f in self.matching(|p| p == from || p.starts_with(&prefix)) {
            let mut p = f.path.lock();
            if let Some(old) = p.as_ref() {
                *p = Some(format!("{to}{}", &old[from.len()..]));
            }
        }
    }

    /// Commits every dirty handle at or under `path` (before a rename moves it).
    pub fn commit_all_under(&self, model: &Model, path: &str) -> FsResult<()> {
        let prefix = format!("{path}/");
        for f in self.matching(|p| p == path || p.starts_with(&prefix)) {
            if f.is_dirty() {
                commit(model, &f)?;
            }
        }
        Ok(())
    }

    /// Stops one download whose handle is not in a read call right now, returning its
    /// connection to the pool. True if one was stopped.
    pub fn preempt_idle_reader(&self) -> bool {
        let files: Vec<Arc<OpenFile>> = self.map.lock().values().cloned().collect();
        for f in files {
            if let Some(mut io) = f.io.try_lock() {
                if matches!(&io.state, State::Reading(_)) {
                    io.state = State::Idle;
                    return true;
                }
            }
        }
        false
    }

    /// Tells the other handles on `path` that `origin` just put a new version of it on the server.
    fn notify_commit(&self, path: &str, size: u64, origin: &OpenFile) {
        for f in self.matching(|p| p == path) {
            if !std::ptr::eq(Arc::as_ptr(&f), origin) {
                f.remote_changed.store(size + 1, Ordering::Relaxed);
            }
        }
    }

    /// Handles open for writing on `path`.
    pub fn writers_of(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.matching(|p| p == path).into_iter().filter(|f| f.writable).collect()
    }
}

/// Applies another handle's upload to this one: cached content (a download in progress, a clean
/// spool) is dropped and the known server size updated. Unsaved changes of this handle stay;
/// whichever handle closes last decides the content, as with two editors.
fn apply_remote_change(f: &OpenFile, io: &mut Io) {
    let v = f.remote_changed.swap(0, Ordering::Relaxed);
    if v == 0 {
        return;
    }
    io.server_size = Some(v - 1);
    let clean = match &io.state {
        State::Reading(_) | State::Idle => true,
        State::Spooled(s) => !s.dirty,
        State::Writing(_) => false,
    };
    if clean {
        io.state = State::Idle;
        f.pending_create.store(false, Ordering::Relaxed);
    }
}

fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// A connection for a transfer. When every transfer slot is taken, a download that is not being
/// read right now (a file left open) gives its connection up; it resumes with REST when read.
fn transfer_lease(model: &Model) -> Result<Lease, FtpError> {
    loop {
        if let Some(lease) = model.pool.get_timeout(Purpose::Transfer, Duration::from_millis(100))? {
            return Ok(lease);
        }
        if model.handles.preempt_idle_reader() {
            log::debug!("paused an idle download to free a connection");
        }
    }
}

/// Starts a transfer on a transfer connection, once more on a fresh one if the pooled
/// connection turned out to be broken.
fn start_transfer<T>(model: &Model, start: impl Fn(Lease) -> Result<T, FtpError>) -> Result<T, FtpError> {
    match start(transfer_lease(model)?) {
        Err(e) if e.is_reconnectable() => start(transfer_lease(model)?),
        other => other,
    }
}

fn start_download(model: &Model, remote: &str, offset: u64) -> Result<Download<Lease>, FtpError> {
    start_transfer(model, |lease| Download::start(lease, remote, offset))
}

fn start_upload(model: &Model, remote: &str, append: bool) -> Result<Upload<Lease>, FtpError> {
    start_transfer(model, |lease| Upload::start(lease, remote, append))
}

/// Reads `size` bytes at `off` through handle `f` and hands them to `out` (fewer at the end of
/// the file).
pub fn read(model: &Model, f: &OpenFile, off: u64, size: usize, out: &mut dyn FnMut(&[u8])) -> FsResult<()> {
    let mut io = f.io.lock();
    apply_remote_change(f, &mut io);
    if matches!(io.state, State::Writing(_)) {
        commit_locked(model, f, &mut io)?;
    }
    if let State::Spooled(s) = &io.state {
        let end = (off + size as u64).min(s.len);
        let mut buf = vec![0u8; end.saturating_sub(off) as usize];
        s.file.read_exact_at(&mut buf, off).map_err(|e| io_errno(&e))?;
        out(&buf);
        return Ok(());
    }
    if f.pending_create.load(Ordering::Relaxed) {
        out(&[]);
        return Ok(());
    }
    let path = f.path().ok_or(libc::ENOENT)?;
    let mut retried = false;
    loop {
        if let State::Reading(r) = &mut io.state {
            if r.can_serve(off) {
                match r.read_at(off, size, out) {
                    Ok(()) => return Ok(()),
                    Err(e) if retried => return Err(io_errno(&e)),
                    Err(e) => {
                        log::info!("download of {path} broke ({e}); resuming at {off}");
                        retried = true;
                    }
                }
            }
        }
        io.state = State::Idle;
        let dl = start_download(model, &model.remote(&path), off).map_err(|e| errno(&e, Op::Read))?;
        io.state = State::Reading(StreamReader::start(dl, off).map_err(|e| io_errno(&e))?);
    }
}

/// Writes `data` at `off` through handle `f`.
pub fn write(model: &Model, f: &OpenFile, off: u64, data: &[u8]) -> FsResult<usize> {
    let mut io = f.io.lock();
    apply_remote_change(f, &mut io);
    if let Some(e) = io.error {
        return Err(e);
    }
    let res = write_locked(model, f, &mut io, off, data);
    if let Err(e) = res {
        io.error = Some(e);
        io.state = State::Idle;
    }
    res
}

fn write_locked(model: &Model, f: &OpenFile, io: &mut Io, off: u64, data: &[u8]) -> FsResult<usize> {
    let end = off + data.len() as u64;
    if let State::Writing(w) = &mut io.state {
        if w.pos == off {
            w.up.write_all(data).map_err(|e| io_errno(&e))?;
            w.pos = end;
            f.set_dirty_size(Some(end.max(f.dirty_size().unwrap_or(0))));
            return Ok(data.len());
        }
        // Not sequential any more: save what was streamed, then spool.
        commit_locked(model, f, io)?;
    }
    if matches!(io.state, State::Reading(_)) {
        io.state = State::Idle;
    }
    if matches!(io.state, State::Idle) {
        let path = f.path();
        let pending = f.pending_create.load(Ordering::Relaxed);
        let appendable = !pending && (f.append || io.server_size == Some(off)) && !model.appe_refused();
        if let Some(path) = path.filter(|_| (pending && off == 0) || appendable) {
            match start_upload(model, &model.remote(&path), appendable) {
                Ok(up) => {
                    io.state = State::Writing(Writer { up, pos: off });
                    return write_locked(model, f, io, off, data);
                }
                // Some servers refuse APPE (proftpd without AllowStoreRestart): append through
                // a temp copy and STOR instead, from now on.
                Err(e) if appendable && matches!(e.code(), Some(450..=452 | 500..=504 | 550)) => {
                    log::info!("server refused APPE ({e}); appending through a temp copy");
                    model.note_appe_refused();
                }
                Err(e) => return Err(errno(&e, Op::Write)),
            }
        }
        io.state = State::Spooled(load_spool(model, f)?);
    }
    if let State::Spooled(s) = &mut io.state {
        s.file.write_all_at(data, off).map_err(|e| io_errno(&e))?;
        s.len = s.len.max(end);
        s.dirty = true;
        f.set_dirty_size(Some(s.len));
        return Ok(data.len());
    }
    Err(libc::EIO)
}

/// A spool holding the file's current content (downloaded unless the file is pending creation).
fn load_spool(model: &Model, f: &OpenFile) -> FsResult<Spool> {
    let mut file = tempfile::tempfile().map_err(|e| io_errno(&e))?;
    let mut len = 0;
    if !f.pending_create.load(Ordering::Relaxed) {
        if let Some(path) = f.path() {
            let mut dl = start_download(model, &model.remote(&path), 0).map_err(|e| errno(&e, Op::Read))?;
            len = io::copy(&mut dl, &mut file).map_err(|e| io_errno(&e))?;
            dl.finish().map_err(|e| errno(&e, Op::Read))?;
        }
    }
    Ok(Spool { file, len, dirty: false })
}

/// Sets the size of the file behind handle `f` (ftruncate, or O_TRUNC at open).
pub fn truncate(model: &Model, f: &OpenFile, size: u64) -> FsResult<()> {
    let mut io = f.io.lock();
    apply_remote_change(f, &mut io);
    if let State::Writing(w) = &io.state {
        if w.pos == size {
            return Ok(());
        }
        commit_locked(model, f, &mut io)?;
    }
    if matches!(io.state, State::Reading(_)) {
        io.state = State::Idle;
    }
    if size == 0 && !matches!(io.state, State::Spooled(_)) {
        // Nothing to download: the file will be replaced by what gets written (maybe nothing).
        f.pending_create.store(true, Ordering::Relaxed);
        f.set_dirty_size(Some(0));
        return Ok(());
    }
    if matches!(io.state, State::Idle) {
        io.state = State::Spooled(load_spool(model, f)?);
    }
    if let State::Spooled(s) = &mut io.state {
        s.file.set_len(size).map_err(|e| io_errno(&e))?;
        s.len = size;
        s.dirty = true;
        f.set_dirty_size(Some(size));
    }
    Ok(())
}

/// Remembers a modification time to set once the handle's data is on the server.
pub fn defer_mtime(f: &OpenFile, t: SystemTime) {
    *f.mtime_override.lock() = Some(t);
    f.io.lock().pending_mtime = Some(t);
}

/// Makes the server hold everything written through `f` (flush, fsync, release).
pub fn commit(model: &Model, f: &OpenFile) -> FsResult<()> {
    let mut io = f.io.lock();
    commit_locked(model, f, &mut io)
}

fn verify_size(model: &Model, lease: &mut Lease, remote: &str, expected: u64) -> FsResult<()> {
    if !model.features.size {
        return Ok(());
    }
    // The 226 already came; if the connection breaks now, ask again on another one.
    let size = match lease.size(remote) {
        Err(e) if e.is_reconnectable() => model.pool.run(true, |c| c.size(remote)),
        other => other,
    };
    match size {
        Ok(n) if n == expected => Ok(()),
        Ok(n) => {
            log::error!("{remote}: server has {n} bytes after upload, expected {expected}");
            Err(libc::EIO)
        }
        Err(e) => Err(errno(&e, Op::Write)),
    }
}

fn commit_locked(model: &Model, f: &OpenFile, io: &mut Io) -> FsResult<()> {
    if let Some(e) = io.error.take() {
        f.set_dirty_size(None);
        return Err(e);
    }
    let Some(path) = f.path() else {
        // Deleted while open: like a local file, its data goes nowhere.
        io.state = State::Idle;
        f.pending_create.store(false, Ordering::Relaxed);
        f.set_dirty_size(None);
        return Ok(());
    };
    let remote = model.remote(&path);
    let written = match std::mem::replace(&mut io.state, State::Idle) {
        State::Writing(w) => {
            // STOR started at 0 and APPE at the old end: either way the file ends at `pos`.
            let expected = w.pos;
            // The streamed bytes are gone from here whatever happens next: never upload the
            // "pending" empty version over them later.
            f.pending_create.store(false, Ordering::Relaxed);
            let (mut lease, res) = w.up.into_connection();
            let checked = res.map_err(|e| errno(&e, Op::Write)).and_then(|_| verify_size(model, &mut lease, &remote, expected));
            if let Err(e) = checked {
                f.set_dirty_size(None);
                model.dirs.invalidate(crate::model::inodes::split_path(&path).0);
                return Err(e);
            }
            Some(expected)
        }
        State::Spooled(mut s) => {
            let res = if s.dirty { upload_spool(model, &mut s, &remote).map(|_| Some(s.len)) } else { Ok(None) };
            let len = s.len;
            io.state = State::Spooled(s);
            res?.map(|_| len)
        }
        other => {
            io.state = other;
            if f.pending_create.load(Ordering::Relaxed) {
                let up = start_upload(model, &remote, false).map_err(|e| errno(&e, Op::Write))?;
                let (mut lease, res) = up.into_connection();
                res.map_err(|e| errno(&e, Op::Write))?;
                verify_size(model, &mut lease, &remote, 0)?;
                Some(0)
            } else {
                None
            }
        }
    };
    if let Some(size) = written {
        io.server_size = Some(size);
        f.pending_create.store(false, Ordering::Relaxed);
        f.set_dirty_size(None);
        model.note_written(&path, size);
        model.handles.notify_commit(&path, size, f);
    }
    if let Some(t) = io.pending_mtime.take() {
        let res = model.set_mtime(&path, t);
        *f.mtime_override.lock() = None;
        res?;
    }
    Ok(())
}

fn upload_spool(model: &Model, s: &mut Spool, remote: &str) -> FsResult<()> {
    s.file.seek(SeekFrom::Start(0)).map_err(|e| io_errno(&e))?;
    let mut up = start_upload(model, remote, false).map_err(|e| errno(&e, Op::Write))?;
    let copied = io::copy(&mut (&s.file).take(s.len), &mut up);
    if let Err(e) = copied {
        return Err(io_errno(&e));
    }
    let (mut lease, res) = up.into_connection();
    res.map_err(|e| errno(&e, Op::Write))?;
    verify_size(model, &mut lease, remote, s.len)?;
    s.dirty = false;
    Ok(())
}

/// Sets the size of a path that has no writable handle open.
pub fn truncate_path(model: &Model, path: &str, size: u64) -> FsResult<()> {
    let current = model.entry(path)?.size.unwrap_or(0);
    if size == current {
        return Ok(());
    }
    let remote = model.remote(path);
    let tmp = Handles::default();
    let grow = size > current;
    let fh = tmp.open(0, path, true, grow, size == 0, Some(current));
    let f = tmp.get(fh)?;
    if grow {
        // Append zeros: no need to move the existing bytes.
        let zeros = vec![0u8; 64 * 1024];
        let mut left = size - current;
        let mut off = current;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            write(model, &f, off, &zeros[..n])?;
            off += n as u64;
            left -= n as u64;
        }
    } else if size > 0 {
        truncate(model, &f, size)?;
    }
    let res = commit(model, &f);
    log::debug!("truncate {remote} to {size}: {res:?}");
    res
}
