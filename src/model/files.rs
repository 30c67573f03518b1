//! Open file handles: the registry of what is open on which path, and the rules that keep
//! several handles on one path from losing each other's data.
//!
//! - Only a handle that wrote, created the file, or truncated it ever uploads. A reader never
//!   changes the server.
//! - Uploads to one path are serialised by an [`UploadGate`]: a streaming upload claims its
//!   path; a second upload of the same path waits (bounded) for the claim.
//! - A streaming upload is kept only while its handle is the sole writer of the path. When
//!   another writer opens it, the stream is finished and the handle goes on from a local copy of
//!   its own content ([`crate::model::handle_io::pin_writers`]), so whichever closes last
//!   replaces the file, whole.
//! - A handle is carried along by a rename of its path and detached (uploads nothing) when its
//!   path is deleted or replaced by a rename.
//!
//! How reads and writes on one handle become RETR, STOR and APPE is in
//! [`crate::model::handle_io`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::fs::FsResult;
use super::handle_io::Io;
use super::inodes::is_at_or_under;

/// Marks "no size override" in [`OpenFile::dirty_size`].
const NO_SIZE: u64 = u64::MAX;

/// One open file handle.
pub struct OpenFile {
    pub ino: u64,
    /// Its path; `None` once the file was deleted or replaced (the handle is detached).
    path: Mutex<Option<String>>,
    pub writable: bool,
    pub(super) append: bool,
    /// This handle created the file or truncated it to zero, and the server does not hold that
    /// version yet: commit uploads it even if nothing is written.
    pub(super) created: AtomicBool,
    /// Logical size while the handle holds changes the server does not have yet.
    dirty_size: AtomicU64,
    /// Modification time requested while the data is still on its way (shown by stat).
    pub(super) mtime_override: Mutex<Option<SystemTime>>,
    /// Another handle uploaded this file: its new size + 1 (0 = nothing new). Applied by this
    /// handle's next operation, which drops what it cached of the old content.
    pub(super) remote_changed: AtomicU64,
    /// A streaming upload is running on this handle (readable without the I/O lock).
    pub(super) streaming: AtomicBool,
    pub(super) io: Mutex<Io>,
}

impl OpenFile {
    pub fn path(&self) -> Option<String> {
        self.path.lock().clone()
    }

    pub(super) fn set_dirty_size(&self, size: Option<u64>) {
        self.dirty_size.store(size.unwrap_or(NO_SIZE), Ordering::Relaxed);
    }

    pub(super) fn dirty_size(&self) -> Option<u64> {
        let s = self.dirty_size.load(Ordering::Relaxed);
        (s != NO_SIZE).then_some(s)
    }

    pub(super) fn is_created(&self) -> bool {
        self.created.load(Ordering::Relaxed)
    }

    /// True when closing this handle would upload something.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty_size().is_some() || self.is_created()
    }
}

/// Paths with an upload in progress. A claim is released when its guard drops.
#[derive(Default)]
pub struct UploadGate {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// The right to upload one path, until dropped.
pub struct PathClaim {
    gate: Arc<UploadGate>,
    path: String,
}

impl UploadGate {
    /// Claims `path` if no upload of it is running.
    pub fn try_claim(self: &Arc<Self>, path: &str) -> Option<PathClaim> {
        let mut busy = self.busy.lock();
        busy.insert(path.to_string()).then(|| PathClaim { gate: self.clone(), path: path.to_string() })
    }

    /// Claims `path`, waiting until `deadline` for a running upload of it to end.
    pub fn claim(self: &Arc<Self>, path: &str, deadline: Instant) -> Option<PathClaim> {
        let mut busy = self.busy.lock();
        while busy.contains(path) {
            if self.freed.wait_until(&mut busy, deadline).timed_out() && busy.contains(path) {
                return None;
            }
        }
        busy.insert(path.to_string());
        Some(PathClaim { gate: self.clone(), path: path.to_string() })
    }
}

impl Drop for PathClaim {
    fn drop(&mut self) {
        self.gate.busy.lock().remove(&self.path);
        self.gate.freed.notify_all();
    }
}

/// All open handles.
#[derive(Default)]
pub struct Handles {
    map: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next: AtomicU64,
    pub(super) uploads: Arc<UploadGate>,
}

impl Handles {
    /// Registers a handle. `created` means this handle makes the file (or empties it) and the
    /// server does not have that version yet; only create() and truncation set it, never a plain
    /// open of a path another handle created.
    pub fn open(
        &self,
        ino: u64,
        path: &str,
        writable: bool,
        append: bool,
        created: bool,
        server_size: Option<u64>,
    ) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let f = OpenFile {
            ino,
            path: Mutex::new(Some(path.to_string())),
            writable,
            append,
            created: AtomicBool::new(created),
            dirty_size: AtomicU64::new(if created { 0 } else { NO_SIZE }),
            mtime_override: Mutex::new(None),
            remote_changed: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            io: Mutex::new(Io::new(server_size)),
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

    /// Every open handle.
    pub(super) fn all(&self) -> Vec<Arc<OpenFile>> {
        self.map.lock().values().cloned().collect()
    }

    fn matching(&self, pred: impl Fn(&str) -> bool) -> Vec<Arc<OpenFile>> {
        self.map.lock().values().filter(|f| f.path.lock().as_deref().is_some_and(&pred)).cloned().collect()
    }

    /// Handles open on exactly `path`.
    pub(super) fn on_path(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.matching(|p| p == path)
    }

    /// Handles open on `path` other than `me`.
    pub(super) fn others_on(&self, path: &str, me: &OpenFile) -> Vec<Arc<OpenFile>> {
        self.on_path(path).into_iter().filter(|f| !std::ptr::eq(Arc::as_ptr(f), me)).collect()
    }

    /// Handles open at or under `path` (a file, or a directory and everything in it).
    pub(super) fn at_or_under(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.matching(|p| is_at_or_under(p, path))
    }

    /// The size a path has while an open handle holds unsaved changes to it.
    pub fn open_size(&self, path: &str) -> Option<u64> {
        self.on_path(path).iter().filter_map(|f| f.dirty_size()).max()
    }

    /// A modification time set on `path` through a handle whose data is not uploaded yet.
    pub fn open_mtime(&self, path: &str) -> Option<SystemTime> {
        self.on_path(path).iter().find_map(|f| *f.mtime_override.lock())
    }

    /// True when a handle created `path` and nothing has been uploaded yet.
    pub fn is_pending(&self, path: &str) -> bool {
        self.on_path(path).iter().any(|f| f.is_created())
    }

    /// Handles on `path` that hold data the server does not have yet.
    pub(super) fn holders_of_unsaved(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.on_path(path).into_iter().filter(|f| f.is_dirty()).collect()
    }

    /// Handles on `path` that created it and have not uploaded it yet.
    pub(super) fn creators_of(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.on_path(path).into_iter().filter(|f| f.is_created()).collect()
    }

    /// `path` (and everything under it) was deleted or replaced: handles on it keep working
    /// locally but upload nothing.
    pub fn detach(&self, path: &str) {
        for f in self.at_or_under(path) {
            *f.path.lock() = None;
        }
    }

    /// Paths of open handles follow a rename.
    pub fn renamed(&self, from: &str, to: &str) {
        for f in self.at_or_under(from) {
            let mut p = f.path.lock();
            if let Some(old) = p.as_ref() {
                *p = Some(format!("{to}{}", &old[from.len()..]));
            }
        }
    }

    /// Tells the other handles on `path` that `origin` just put a new version of it on the server.
    pub(super) fn notify_commit(&self, path: &str, size: u64, origin: &OpenFile) {
        for f in self.others_on(path, origin) {
            f.remote_changed.store(size + 1, Ordering::Relaxed);
        }
    }

    /// Handles open for writing on `path`.
    pub fn writers_of(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.on_path(path).into_iter().filter(|f| f.writable).collect()
    }
}
