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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::FsResult;
use super::gate::UploadGate;
use super::inodes::is_at_or_under;
pub use super::open_file::OpenFile;

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
    pub fn open(&self, path: &str, writable: bool, append: bool, created: bool, server_size: Option<u64>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let f = OpenFile::new(path, writable, append, created, server_size);
        self.map.lock().insert(fh, Arc::new(f));
        fh
    }

    pub fn get(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.map.lock().get(&fh).cloned().ok_or(libc::EBADF)
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<OpenFile>> {
        let f = self.map.lock().remove(&fh)?;
        f.released.store(true, std::sync::atomic::Ordering::Relaxed);
        Some(f)
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

    /// Version `seq` of `path` landed (through `landed`): the journal entries of other
    /// handles' older closes of it go (a crash would replay them over it).
    pub(super) fn forget_older_journals(&self, path: &str, landed: &OpenFile, seq: u64) {
        for g in self.others_on(path, landed) {
            // Its entry holds its last close; what it holds now may be newer, but that is not
            // journaled yet either way.
            let closed = g.close_seq.load(std::sync::atomic::Ordering::Relaxed);
            if closed != 0 && closed < seq {
                g.forget_journal_older_than(seq);
            }
        }
    }

    /// Handles open at or under `path` (a file, or a directory and everything in it).
    pub(super) fn at_or_under(&self, path: &str) -> Vec<Arc<OpenFile>> {
        self.matching(|p| is_at_or_under(p, path))
    }

    /// What handles open on `path` show beyond the server: the size while a handle holds
    /// unsaved changes, and a modification time set through a handle whose data is not
    /// uploaded yet (stat of every entry of a listing asks, so it is one pass).
    pub fn open_overrides(&self, path: &str) -> (Option<u64>, Option<SystemTime>) {
        let map = self.map.lock();
        if map.is_empty() {
            return (None, None);
        }
        let mut size = None;
        let mut mtime = None;
        for f in map.values().filter(|f| f.path.lock().as_deref() == Some(path)) {
            size = size.max(f.dirty_size());
            mtime = mtime.or(*f.mtime_override.lock());
        }
        (size, mtime)
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
