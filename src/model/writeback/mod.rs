//! Write-back (`-o writeback`), a room of its own: close() returns once a file's version is in
//! the journal on disk, and the upload runs on a background thread, several at once over the
//! pool.
//!
//! The model hands this room finished versions through a narrow interface: at a close it asks
//! for a journal entry ([`WriteBack::journal`], the version's own fsynced copy), and at the
//! release it queues the version ([`WriteBack::reserve`], [`Ticket::queue`]) as a [`Version`]:
//! something that can upload itself, be let go, or be set aside. This room owns the journal,
//! the queue, the order of versions and the replay after a crash ([`replay`]); it knows
//! nothing of handles, spools or FUSE, and calls back into the model only through
//! [`Version`].
//!
//! Rules: any later request on the path (open, create, unlink, rename of it or of a directory
//! above it, setattr, another close) first waits for the pending upload, so nothing is read or
//! changed out of order; fsync waits too and reports a failed upload once. The newest close of
//! a path wins: an older version never lands after a newer one. A failure the server may not
//! repeat is retried in the mount with backoff, then kept in the journal for the next mount.
//! Unmount waits while uploads make progress.

mod journal;
pub(super) mod replay;
mod retry;

use retry::{TRANSIENT, upload_with_retries};

pub(super) use journal::JournalEntry;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use lru::LruCache;
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::FsResult;
use crate::backend::paths::is_at_or_under;

/// A background thread with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// The longest a request waits for a pending upload of its path.
const LONGEST_WAIT: Duration = Duration::from_secs(600);

/// A closed version of a file, as the model hands it over: the queue uploads it, then lets it
/// go; a definite refusal sets it aside.
pub(super) trait Version: Send {
    /// Uploads the version: Ok once the server holds it, verified.
    fn upload(&self) -> FsResult<()>;
    /// The version is done with (`uploaded`: its upload landed; then what reached it since, a
    /// truncation by path, is uploaded too). An error here sets it aside.
    fn finish(&self, uploaded: bool) -> FsResult<()>;
    /// The server refused it for good: its data is kept for the user (and the log says where).
    fn set_aside(&self);
}

struct Job {
    version: Box<dyn Version>,
    path: String,
    /// The order of the version's close among all closes: an older version never lands over a
    /// newer one.
    seq: u64,
    entry: JournalEntry,
}

/// How many uploads may wait at once; beyond that, release() uploads itself (backpressure, and
/// a bound on how long a request may wait behind the queue).
const MAX_QUEUED: usize = 64;
/// Paths whose newest close is remembered, to keep versions in order.
const REMEMBERED: usize = 4096;

struct Pending {
    /// Paths with an upload pending, and how many.
    paths: HashMap<String, usize>,
    /// Paths being uploaded right now (one upload per path at a time).
    running: HashSet<String>,
    /// The newest close of each path deferred or uploaded so far.
    newest: LruCache<String, u64>,
    /// The newest close of each path that landed.
    landed: LruCache<String, u64>,
    /// Renames in progress: no deferral at or under these paths meanwhile.
    frozen: Vec<String>,
    /// Unmounting: no more deferrals.
    stopping: bool,
    /// Uploads that failed, by path, until an fsync reports them (the newest [`REMEMBERED`]:
    /// a failure no fsync ever asks for must not stay forever; each is logged when it happens).
    failed: LruCache<String, i32>,
    /// Uploads ended so far (progress, for the unmount's wait).
    ended: u64,
    /// The newest deferred version of each path with an upload pending: its close, journal
    /// data file and length. Readers opening the path meanwhile read this copy.
    copies: HashMap<String, (u64, PathBuf, u64)>,
    /// Versions whose uploads failed in this mount for a reason that may pass, kept in the
    /// journal for the next mount, by path: dropped when a newer version of the path lands or
    /// the path is deleted, moved with a rename.
    left: HashMap<String, Vec<(u64, JournalEntry)>>,
}

impl Default for Pending {
    fn default() -> Pending {
        let n = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Pending {
            paths: HashMap::new(),
            running: HashSet::new(),
            newest: LruCache::new(n),
            landed: LruCache::new(n),
            frozen: Vec::new(),
            stopping: false,
            failed: LruCache::new(n),
            ended: 0,
            copies: HashMap::new(),
            left: HashMap::new(),
        }
    }
}

impl Pending {
    fn queued(&self) -> usize {
        self.paths.values().sum()
    }

    fn release_path(&mut self, path: &str) {
        if let Some(n) = self.paths.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                self.paths.remove(path);
            }
        }
    }

    /// Version `seq` of `path` landed: it is the newest there, and the entries of older
    /// versions left for the next mount go (they would only be set aside as conflicts).
    fn landed(&mut self, path: &str, seq: u64) {
        let newer = self.landed.peek(path).copied().unwrap_or(0).max(seq);
        self.landed.put(path.to_string(), newer);
        if let Some(left) = self.left.get_mut(path) {
            left.retain(|(n, e)| {
                let keep = *n > seq;
                if !keep {
                    log::info!("{path}: a newer version landed; the older one left in the journal is dropped");
                    e.remove();
                }
                keep
            });
            if left.is_empty() {
                self.left.remove(path);
            }
        }
    }
}

/// What the queue's threads share.
struct Shared {
    workers: usize,
    pending: Mutex<Pending>,
    changed: Condvar,
    tx: Sender<Job>,
    rx: Receiver<Job>,
    running: AtomicUsize,
}

/// The write-back queue and journal; off when made without a journal directory.
pub(super) struct WriteBack {
    journal: Option<PathBuf>,
    shared: Arc<Shared>,
    /// Names of journal entries.
    ids: AtomicU64,
    closes: AtomicU64,
}

/// While alive, nothing at or under its paths is deferred (a rename runs).
pub(super) struct Frozen<'a> {
    wb: &'a WriteBack,
    paths: Vec<String>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let mut p = self.wb.shared.pending.lock();
        for path in &self.paths {
            if let Some(i) = p.frozen.iter().position(|f| f == path) {
                p.frozen.remove(i);
            }
        }
    }
}

/// What [`WriteBack::reserve`] answers.
pub(super) enum Reserve<'a> {
    /// Not deferred (write-back off, unmounting, a rename runs, the queue is full): the caller
    /// uploads now.
    Refused,
    /// A later close of the path is on its way already: this older version never lands; the
    /// caller lets it go.
    Superseded,
    /// A place in the queue: [`Ticket::queue`] fills it (dropped unused, it is given back).
    Granted(Ticket<'a>),
}

/// A place in the queue for one version of a path.
pub(super) struct Ticket<'a> {
    wb: &'a WriteBack,
    path: String,
    seq: u64,
    used: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.wb.shared.pending.lock().release_path(&self.path);
            self.wb.shared.changed.notify_all();
        }
    }
}

impl Ticket<'_> {
    /// Queues the upload of `version`, whose journal entry is `entry`.
    pub(super) fn queue(mut self, entry: JournalEntry, version: Box<dyn Version>) {
        self.used = true;
        let shared = &self.wb.shared;
        {
            let mut p = shared.pending.lock();
            if p.copies.get(&self.path).is_none_or(|c| c.0 < self.seq) {
                p.copies.insert(self.path.clone(), (self.seq, entry.data().to_path_buf(), entry.len()));
            }
        }
        let job = Job { version, path: std::mem::take(&mut self.path), seq: self.seq, entry };
        if let Err(e) = shared.tx.send(job) {
            // Cannot happen while `shared` holds the receiver; upload here then.
            run(shared, e.into_inner());
            return;
        }
        spawn_worker(shared);
    }
}

impl WriteBack {
    /// `journal`: where deferred versions are kept until uploaded (`None`: write-back off).
    pub(super) fn new(journal: Option<PathBuf>, workers: usize) -> WriteBack {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        let shared = Shared {
            workers: workers.max(1),
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            tx,
            rx,
            running: AtomicUsize::new(0),
        };
        // Both counted from the clock, so that the entries of a later mount come after an
        // earlier mount's (a replay orders a file's entries by their close).
        WriteBack { journal, shared: Arc::new(shared), ids: AtomicU64::new(stamp), closes: AtomicU64::new(stamp) }
    }

    /// The queue in one line, for `ftpfs stats`.
    pub(super) fn describe(&self) -> String {
        if !self.enabled() {
            return "off (close waits for the upload)".into();
        }
        let p = self.shared.pending.lock();
        let spooled: u64 = p.copies.values().map(|(_, _, len)| len).sum();
        let left: usize = p.left.values().map(Vec::len).sum();
        format!(
            "{} uploads queued, {} running, {} spooled, {} failed and not yet reported, {} left in the journal",
            p.queued(),
            p.running.len(),
            crate::stats::bytes(spooled),
            p.failed.len(),
            left
        )
    }

    pub(super) fn enabled(&self) -> bool {
        self.journal.is_some()
    }

    /// A new place in the order of closes: each close(2) takes one, and so does each commit of
    /// a handle's data that does not go through the queue (fsync), so versions land in order.
    pub(super) fn next_close(&self) -> u64 {
        self.closes.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes a journal entry for version `seq` (its close) of `path`: `fill` copies its bytes.
    /// `None`: write-back off, unmounting, or nothing to keep.
    pub(super) fn journal(
        &self,
        seq: u64,
        path: &str,
        fill: &mut dyn FnMut(&mut File) -> io::Result<Option<u64>>,
    ) -> io::Result<Option<JournalEntry>> {
        let Some(dir) = &self.journal else { return Ok(None) };
        if self.shared.pending.lock().stopping {
            return Ok(None);
        }
        JournalEntry::create(dir, self.ids.fetch_add(1, Ordering::Relaxed), seq, path, fill)
    }

    /// A newer close `seq` of the same handle (on `path`): its bytes replace what `entry` holds.
    /// `None`: not journaled (unmounting, or nothing to keep); the caller uploads.
    pub(super) fn rejournal(
        &self,
        seq: u64,
        path: &str,
        entry: &mut JournalEntry,
        fill: &mut dyn FnMut(&mut File) -> io::Result<Option<u64>>,
    ) -> io::Result<Option<u64>> {
        if self.shared.pending.lock().stopping {
            return Ok(None);
        }
        entry.refill(seq, path, fill)
    }

    /// Version `seq` of `path` reached the server without the queue (an fsync, a release that
    /// uploaded itself): older versions still queued or left in the journal never land after
    /// it.
    pub(super) fn note_landed(&self, path: &str, seq: u64) {
        if self.enabled() {
            self.shared.pending.lock().landed(path, seq);
        }
    }

    /// Whether a later close than `seq` of `path` landed or is queued.
    pub(super) fn is_superseded(&self, path: &str, seq: u64) -> bool {
        let p = self.shared.pending.lock();
        p.newest.peek(path).is_some_and(|&n| n > seq) || p.landed.peek(path).is_some_and(|&n| n > seq)
    }

    /// `path` was deleted or replaced: versions of it left in the journal never land, and
    /// what was known of the order of its closes goes (a file made there later is another).
    pub(super) fn forget_path(&self, path: &str) {
        let mut p = self.shared.pending.lock();
        forget_order(&mut p, path);
        let gone: Vec<String> = p.left.keys().filter(|k| is_at_or_under(k, path)).cloned().collect();
        for k in gone {
            for (_, e) in p.left.remove(&k).unwrap_or_default() {
                log::info!("{k}: deleted or replaced; its version left in the journal is dropped");
                e.remove();
            }
        }
    }

    /// `from` was renamed to `to`: versions left in the journal under `from` follow it, and
    /// so does the order of its closes (what was known of the file replaced at `to` goes).
    pub(super) fn follow_rename(&self, from: &str, to: &str) {
        let mut p = self.shared.pending.lock();
        forget_order(&mut p, to);
        let order: &mut Pending = &mut p;
        for map in [&mut order.newest, &mut order.landed] {
            let moved: Vec<(String, u64)> =
                map.iter().filter(|(k, _)| is_at_or_under(k, from)).map(|(k, v)| (k.clone(), *v)).collect();
            for (old, seq) in moved {
                map.pop(&old);
                map.put(format!("{to}{}", &old[from.len()..]), seq);
            }
        }
        // A failure not yet reported goes with its file.
        let moved: Vec<(String, i32)> =
            order.failed.iter().filter(|(k, _)| is_at_or_under(k, from)).map(|(k, v)| (k.clone(), *v)).collect();
        for (old, e) in moved {
            order.failed.pop(&old);
            order.failed.put(format!("{to}{}", &old[from.len()..]), e);
        }
        let moved: Vec<String> = p.left.keys().filter(|k| is_at_or_under(k, from)).cloned().collect();
        for old in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            let entries = p.left.remove(&old).unwrap_or_default();
            for (_, e) in &entries {
                if let Err(err) = e.rename(&new) {
                    log::error!("{new}: its version left in the journal still names {old}: {err}");
                }
            }
            p.left.entry(new).or_default().extend(entries);
        }
    }

    /// Waits until no upload is pending for a path `affected` accepts (bounded).
    pub(super) fn wait_for(&self, affected: impl Fn(&str) -> bool) -> FsResult<()> {
        if !self.enabled() {
            return Ok(());
        }
        let mut p = self.shared.pending.lock();
        self.wait_locked(&mut p, &affected)
    }

    fn wait_locked(&self, p: &mut MutexGuard<'_, Pending>, affected: &impl Fn(&str) -> bool) -> FsResult<()> {
        let deadline = Instant::now() + LONGEST_WAIT;
        while p.paths.keys().any(|k| affected(k)) {
            if self.shared.changed.wait_until(p, deadline).timed_out() {
                log::error!("an upload still pending after {}s blocks a request", LONGEST_WAIT.as_secs());
                return Err(libc::ETIMEDOUT);
            }
        }
        Ok(())
    }

    /// The newest version of `path` waiting for its upload, opened for reading, with its length:
    /// a reader is served what the last close wrote instead of waiting for the server to have it.
    pub(super) fn pending_copy(&self, path: &str) -> Option<(File, u64)> {
        if !self.enabled() {
            return None;
        }
        let p = self.shared.pending.lock();
        let (_, data, len) = p.copies.get(path).filter(|_| p.paths.contains_key(path))?;
        // Opened under the lock: the upload's end removes the file only after taking it.
        crate::private_files::open_trusted(data, false).ok().map(|f| (f, *len))
    }

    /// Waits for `path` and everything under it.
    pub(super) fn wait_under(&self, path: &str) -> FsResult<()> {
        self.wait_for(|p| is_at_or_under(p, path))
    }

    /// For a rename of `from` to `to`: waits for their write-backs and keeps new ones from
    /// starting until the guard is dropped (the journal knows files by their old names).
    pub(super) fn freeze(&self, from: &str, to: &str) -> FsResult<Frozen<'_>> {
        let paths = vec![from.to_string(), to.to_string()];
        if !self.enabled() {
            return Ok(Frozen { wb: self, paths: Vec::new() });
        }
        let mut p = self.shared.pending.lock();
        p.frozen.extend(paths.iter().cloned());
        let guard = Frozen { wb: self, paths };
        let affected = |k: &str| is_at_or_under(k, from) || is_at_or_under(k, to);
        self.wait_locked(&mut p, &affected)?;
        drop(p);
        Ok(guard)
    }

    /// The failure of an earlier deferred upload of `path`, reported once.
    pub(super) fn take_failure(&self, path: &str) -> Option<i32> {
        self.shared.pending.lock().failed.pop(path)
    }

    /// Unmounting: no new deferrals; waits for every pending upload while they make progress
    /// (one ends, or bytes move: `sent` counts the bytes handed to uploads), giving up when
    /// nothing moved for `stall` or at `deadline` (the overall bound); each upload still
    /// pending is logged by name and stays in the journal for the next mount.
    pub(super) fn wait_all(&self, stall: Duration, deadline: Instant, sent: impl Fn() -> u64) {
        let shared = &self.shared;
        let mut p = shared.pending.lock();
        p.stopping = true;
        // Uploads pausing between attempts stop pausing (they stay in the journal).
        shared.changed.notify_all();
        let mut seen = (p.ended, sent());
        let mut stalled_at = Instant::now() + stall;
        while !p.paths.is_empty() {
            let now = (p.ended, sent());
            if now != seen {
                seen = now;
                stalled_at = Instant::now() + stall;
            }
            let until = stalled_at.min(deadline);
            if Instant::now() >= until {
                let why = if until == deadline {
                    "was still running when the unmount's time was up".to_string()
                } else {
                    format!("made no progress for {} s at unmount", stall.as_secs_f32())
                };
                for path in p.paths.keys() {
                    log::error!("{path}: its upload {why}; it stays in the journal for the next mount");
                }
                return;
            }
            // Bytes moving wake no one: look again every 100 ms.
            let _ = shared.changed.wait_until(&mut p, until.min(Instant::now() + Duration::from_millis(100)));
        }
        let failed = p.failed.len();
        if failed > 0 {
            log::error!("{failed} uploads of write-back failed (the log names them)");
        }
    }

    /// A place in the queue for close `seq` of `path` (see [`Reserve`]).
    pub(super) fn reserve(&self, path: &str, seq: u64) -> Reserve<'_> {
        if !self.enabled() {
            return Reserve::Refused;
        }
        let mut p = self.shared.pending.lock();
        let frozen = p.frozen.iter().any(|f| is_at_or_under(path, f));
        if p.stopping || frozen || p.queued() >= MAX_QUEUED {
            return Reserve::Refused;
        }
        let newer = |m: &LruCache<String, u64>| m.peek(path).is_some_and(|&n| n > seq);
        if newer(&p.newest) || newer(&p.landed) {
            // A later close of this file is on its way or landed already: this older version
            // never lands over it (as when each close uploads at once, in order).
            log::debug!("{path}: a later close supersedes this one; not uploaded");
            return Reserve::Superseded;
        }
        p.newest.put(path.to_string(), seq);
        *p.paths.entry(path.to_string()).or_default() += 1;
        Reserve::Granted(Ticket { wb: self, path: path.to_string(), seq, used: false })
    }
}

/// Forgets the order of the closes of `path` and everything under it, and their failures not
/// yet reported (they were the failures of a file that is gone now).
fn forget_order(p: &mut Pending, path: &str) {
    for map in [&mut p.newest, &mut p.landed] {
        let gone: Vec<String> = map.iter().map(|(k, _)| k).filter(|k| is_at_or_under(k, path)).cloned().collect();
        for k in gone {
            map.pop(&k);
        }
    }
    let gone: Vec<String> = p.failed.iter().map(|(k, _)| k).filter(|k| is_at_or_under(k, path)).cloned().collect();
    for k in gone {
        p.failed.pop(&k);
    }
}

fn spawn_worker(shared: &Arc<Shared>) {
    let running = shared.running.load(Ordering::Relaxed);
    if running >= shared.workers
        || shared.running.compare_exchange(running, running + 1, Ordering::AcqRel, Ordering::Relaxed).is_err()
    {
        return;
    }
    let mine = shared.clone();
    let spawned = std::thread::Builder::new().name("ftpfs-writeback".into()).spawn(move || {
        while let Ok(job) = mine.rx.recv_timeout(WORKER_IDLE) {
            run(&mine, job);
        }
        mine.running.fetch_sub(1, Ordering::AcqRel);
        // A job queued while this thread was deciding to end still gets a worker.
        if !mine.rx.is_empty() {
            spawn_worker(&mine);
        }
    });
    if let Err(e) = spawned {
        shared.running.fetch_sub(1, Ordering::AcqRel);
        log::error!("cannot start a write-back thread: {e}; uploading in the request");
        while let Ok(job) = shared.rx.try_recv() {
            run(shared, job);
        }
    }
}

/// Uploads one deferred version (after any other upload of its path, and only if no later
/// close of the path landed meanwhile), then lets it go.
fn run(shared: &Shared, job: Job) {
    let mut p = shared.pending.lock();
    while p.running.contains(&job.path) {
        shared.changed.wait(&mut p);
    }
    // A later close landed, or is queued (it lands, or stays in the journal): this older
    // version never goes up after it.
    let superseded = p.landed.peek(&job.path).is_some_and(|&n| n > job.seq)
        || p.newest.peek(&job.path).is_some_and(|&n| n > job.seq);
    if !superseded {
        p.running.insert(job.path.clone());
    }
    drop(p);
    let res = if superseded {
        log::debug!("{}: a later close landed first; this version is not uploaded", job.path);
        Ok(())
    } else {
        job.entry.mark_started();
        upload_with_retries(shared, &job)
    };
    // A failure the server may not repeat (a broken connection, unmounting, a timeout) keeps
    // the journal's copy for the next mount; a definite refusal sets the data aside (in
    // cache_dir) and drops the journal's copy.
    let transient = matches!(res, Err(e) if TRANSIENT.contains(&e));
    match res {
        Ok(()) => log::debug!("{}: written back", job.path),
        Err(e) if transient => {
            log::error!(
                "{}: write-back upload failed (errno {e}); the next mount uploads it from the journal",
                job.path
            )
        }
        Err(e) => {
            log::error!("{}: write-back upload failed: errno {e}", job.path);
            job.version.set_aside();
        }
    }
    let uploaded = res.is_ok() && !superseded;
    if let Err(e) = job.version.finish(uploaded) {
        log::error!("{}: upload of a late change failed: errno {e}", job.path);
        job.version.set_aside();
    }
    let mut p = shared.pending.lock();
    // New readers of the path wait for the end of the upload from here on.
    if p.copies.get(&job.path).is_some_and(|c| c.0 == job.seq) {
        p.copies.remove(&job.path);
    }
    p.running.remove(&job.path);
    p.release_path(&job.path);
    match res {
        Ok(()) if !superseded => p.landed(&job.path, job.seq),
        Ok(()) => {}
        Err(e) => {
            p.failed.put(job.path.clone(), e);
        }
    }
    if transient {
        p.left.entry(job.path.clone()).or_default().push((job.seq, job.entry));
    } else {
        job.entry.remove();
    }
    p.ended += 1;
    drop(p);
    shared.changed.notify_all();
}
