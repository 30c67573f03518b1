//! One open file handle: who it is ([`OpenFile`]) and its I/O state ([`Io`]: idle, a download
//! being read, an upload being streamed, or a local spool), kept behind the handle's lock.
//! The rules that move a handle between these states are in [`super::handle_io`].

use std::fs::File;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::gate::PathClaim;
use super::readahead::StreamReader;
use crate::backend::WriteStream;

/// Marks "no size override" in [`OpenFile::dirty_size`].
const NO_SIZE: u64 = u64::MAX;

/// The clock [`OpenFile::idle_for`] counts from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn micros_now() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// One open file handle.
pub struct OpenFile {
    /// Its path; `None` once the file was deleted or replaced (the handle is detached).
    pub(super) path: Mutex<Option<String>>,
    pub writable: bool,
    pub(super) append: bool,
    /// This handle created the file or truncated it to zero, and the server does not hold that
    /// version yet: commit uploads it even if nothing is written.
    pub(super) created: AtomicBool,
    /// Created without O_TRUNC from a listing too old to be sure the name was free (another
    /// client may have made it since): its first data asks the server first, and its empty
    /// file is made with an empty APPE, which leaves such a file as it is.
    pub(super) unverified: AtomicBool,
    /// Created with the mode the server is assumed to give new files, before the mount knew
    /// what it gives: its first upload is looked up to learn it ([`super::new_file_mode`]).
    pub(super) learns_mode: AtomicBool,
    /// This handle's last upload made the file (its creation or a truncation to zero) and left
    /// it empty; nothing was written since: a write at 0 may replace it (STOR), as it would
    /// the file still pending.
    pub(super) made_empty: AtomicBool,
    /// When this handle's last upload ended (the server's time of the file is about then).
    pub(super) uploaded_at: Mutex<Option<std::time::Instant>>,
    /// A reader served a version waiting for its write-back: it keeps reading that version
    /// whatever lands on the server meanwhile (an older version may land first).
    pub(super) serves_copy: AtomicBool,
    /// Logical size while the handle holds changes the server does not have yet.
    dirty_size: AtomicU64,
    /// Modification time requested while the data is still on its way (shown by stat).
    pub(super) mtime_override: Mutex<Option<SystemTime>>,
    /// Another handle uploaded this file: its new size + 1 (0 = nothing new). Applied by this
    /// handle's next operation, which drops what it cached of the old content.
    pub(super) remote_changed: AtomicU64,
    /// A streaming upload is running on this handle (readable without the I/O lock).
    pub(super) streaming: AtomicBool,
    /// The handle left the registry (released): what is put in it now is never uploaded.
    pub(super) released: AtomicBool,
    /// Write-back: its release is queued; the queue uploads it (or leaves it in the journal),
    /// nothing else does.
    pub(super) queued: AtomicBool,
    /// Written or truncated since its last close(2) was journaled: what it holds is newer than
    /// that close.
    pub(super) changed_since_close: AtomicBool,
    /// Write-back: the order of this handle's last close(2) among all closes (0 = none yet).
    pub(super) close_seq: AtomicU64,
    /// Write-back: the journal's entry of this handle's last closed version, made at close(2).
    pub(super) journal: Mutex<Option<super::writeback::JournalEntry>>,
    /// When a read or write call on the handle last began or ended ([`micros_now`]).
    last_call: AtomicU64,
    /// When this handle last wrote or truncated the file: the file's mtime once its upload
    /// lands, rather than the moment of the upload (a creation keeps the time recorded at
    /// create).
    modified: Mutex<Option<SystemTime>>,
    pub(super) io: Mutex<Io>,
}

/// Marks a read or write call on a handle, at its start and at its end (drop).
pub(super) struct InCall<'a>(&'a OpenFile);

impl<'a> InCall<'a> {
    pub(super) fn new(f: &'a OpenFile) -> InCall<'a> {
        f.last_call.store(micros_now(), Ordering::Relaxed);
        InCall(f)
    }
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        self.0.last_call.store(micros_now(), Ordering::Relaxed);
    }
}

impl OpenFile {
    pub(super) fn new(path: &str, writable: bool, append: bool, created: bool, server_size: Option<u64>) -> OpenFile {
        OpenFile {
            path: Mutex::new(Some(path.to_string())),
            writable,
            append,
            created: AtomicBool::new(created),
            made_empty: AtomicBool::new(false),
            unverified: AtomicBool::new(false),
            learns_mode: AtomicBool::new(false),
            uploaded_at: Mutex::new(None),
            serves_copy: AtomicBool::new(false),
            dirty_size: AtomicU64::new(if created { 0 } else { NO_SIZE }),
            mtime_override: Mutex::new(None),
            remote_changed: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            released: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            changed_since_close: AtomicBool::new(false),
            close_seq: AtomicU64::new(0),
            journal: Mutex::new(None),
            last_call: AtomicU64::new(micros_now()),
            modified: Mutex::new(None),
            io: Mutex::new(Io::new(server_size)),
        }
    }

    pub fn path(&self) -> Option<String> {
        self.path.lock().clone()
    }

    /// Write-back: the version its journal entry holds is on the server or overtaken: the
    /// entry goes.
    pub(super) fn forget_journal(&self) {
        if let Some(entry) = self.journal.lock().take() {
            entry.remove();
        }
    }

    /// Write-back: its version is about to be uploaded outside the queue (fsync, a release that
    /// uploads itself, the unmount): its journal entry is marked as begun, so a replay after a
    /// kill during that upload knows a newer file on the server is its own bytes cut short.
    pub(super) fn mark_journal_started(&self) {
        if let Some(entry) = self.journal.lock().as_ref() {
            entry.mark_started();
        }
    }

    /// Write-back: its journal entry goes if it holds a close older than `seq` (checked under
    /// the lock: a newer close may have replaced it meanwhile).
    pub(super) fn forget_journal_older_than(&self, seq: u64) {
        let mut journal = self.journal.lock();
        if journal.as_ref().is_some_and(|e| e.seq() < seq)
            && let Some(entry) = journal.take()
        {
            entry.remove();
        }
    }

    /// Write-back: the place in the order of closes of what it holds: its last close
    /// (`close_seq`), or a new place (`next`) when it was never closed or changed since (then
    /// its data is the newest there is).
    pub(super) fn close_or(&self, next: impl FnOnce() -> u64) -> u64 {
        match self.closed_version() {
            0 => next(),
            n => n,
        }
    }

    /// Write-back: its last close when what it holds is still that close's version; 0 when it
    /// was never closed or changed since.
    pub(super) fn closed_version(&self) -> u64 {
        if self.changed_since_close.load(Ordering::Relaxed) { 0 } else { self.close_seq.load(Ordering::Relaxed) }
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

    /// This handle changed the file now.
    pub(super) fn note_modified(&self) {
        self.changed_since_close.store(true, Ordering::Relaxed);
        *self.modified.lock() = Some(SystemTime::now());
    }

    /// When this handle last changed the file, if it did.
    pub(super) fn modified(&self) -> Option<SystemTime> {
        *self.modified.lock()
    }

    /// How long ago the last read or write call on the handle ended (or began, while one runs).
    pub(super) fn idle_for(&self) -> Duration {
        Duration::from_micros(micros_now().saturating_sub(self.last_call.load(Ordering::Relaxed)))
    }

    /// True when closing this handle would upload something.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty_size().is_some() || self.is_created()
    }
}

pub(super) struct Writer {
    pub(super) up: Box<dyn WriteStream>,
    pub(super) pos: u64,
    /// Where the stream started.
    pub(super) start: u64,
    /// When the stream started.
    pub(super) since: Instant,
    /// No other upload of this path runs while the stream is open.
    pub(super) _claim: PathClaim,
}

pub(super) struct Spool {
    pub(super) file: File,
    pub(super) len: u64,
    /// Holds changes the server does not have.
    pub(super) dirty: bool,
    /// Holds only bytes to append at the server's end (an O_APPEND handle), not the whole file:
    /// committed with APPE, so several appenders' data all lands.
    pub(super) tail: bool,
}

pub(super) enum State {
    Idle,
    Reading(StreamReader),
    Writing(Box<Writer>),
    Spooled(Spool),
}

/// The I/O state of one handle, behind its lock.
pub struct Io {
    pub(super) state: State,
    /// Size of the file on the server, as far as we know.
    pub(super) server_size: Option<u64>,
    /// Modification time to set after the next commit (futimens on a file being written).
    pub(super) pending_mtime: Option<SystemTime>,
    /// Permission bits to set once the file is on the server (chmod of a file being created).
    pub(super) pending_mode: Option<u32>,
    /// Error of a failed streaming write, reported by later writes and the next flush.
    pub(super) error: Option<i32>,
    /// Its download broke: before it resumes with REST, the server's file must
    /// still be the version it was reading (else the reader would get two versions spliced).
    pub(super) resume_check: bool,
    /// When the download of the version being read began from its start (our clock): a file
    /// the server changed after that is another version.
    pub(super) read_since: Option<SystemTime>,
    /// The file's time as the listing showed it when the handle was opened (server clock).
    pub(super) listed_mtime: Option<i64>,
    /// The version the disk cache may serve and keep for this handle: a read-only handle's
    /// file as listed at open, until another handle of ours changes it.
    pub(super) cached_version: Option<crate::disk_cache::Version>,
}

impl Io {
    pub fn new(server_size: Option<u64>) -> Io {
        Io {
            state: State::Idle,
            server_size,
            pending_mtime: None,
            pending_mode: None,
            error: None,
            resume_check: false,
            read_since: None,
            listed_mtime: None,
            cached_version: None,
        }
    }
}
