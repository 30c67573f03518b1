//! Write-back (`-o writeback`): close() returns once a file's data is in its spool on disk, and
//! the upload runs on a background thread, several at once over the pool.
//!
//! A deferred handle stays registered until its upload ends, so every rule between handles
//! still holds, and it keeps its place in the unmount's count of open files. Any later request
//! on the path (open, create, unlink, rename of it or of a directory above it, setattr, another
//! close) first waits for the pending upload, so nothing is read or changed out of order; fsync
//! on any handle of the path waits too and reports a failed upload once. Unmount waits while
//! uploads make progress.
//!
//! Each deferred spool is also linked into a journal directory (one per server and remote root,
//! under `cache_dir/writeback/`) with the file's path beside it, and removed from there once the
//! server confirmed it. What a crash or `kill -9` left there is uploaded by the next mount of the
//! same server and root before it serves anything (`recovery`), and the log says so.

use std::collections::{HashMap, HashSet};
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use lru::LruCache;
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::FsResult;
use super::core::Core;
use super::files::OpenFile;
use crate::backend::paths::is_at_or_under;

/// A background thread with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// The longest a request waits for a pending upload of its path.
const LONGEST_WAIT: Duration = Duration::from_secs(600);

struct Job {
    fh: u64,
    file: Arc<OpenFile>,
    path: String,
    /// The order of the handle's close among all closes: an older version never lands over a
    /// newer one.
    seq: u64,
    /// The journal's copy: data and path files.
    journal: (PathBuf, PathBuf),
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
}

/// The write-back queue; off when made without a journal directory.
pub(super) struct WriteBack {
    journal: Option<PathBuf>,
    workers: usize,
    pending: Mutex<Pending>,
    changed: Condvar,
    tx: Sender<Job>,
    rx: Receiver<Job>,
    running: AtomicUsize,
    seq: AtomicU64,
    closes: AtomicU64,
}

/// While alive, nothing at or under its paths is deferred (a rename runs).
pub(super) struct Frozen<'a> {
    wb: &'a WriteBack,
    paths: Vec<String>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let mut p = self.wb.pending.lock();
        for path in &self.paths {
            if let Some(i) = p.frozen.iter().position(|f| f == path) {
                p.frozen.remove(i);
            }
        }
    }
}

impl WriteBack {
    /// `journal`: where deferred spools are kept until uploaded (`None`: write-back off).
    pub(super) fn new(journal: Option<PathBuf>, workers: usize) -> WriteBack {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        WriteBack {
            journal,
            workers: workers.max(1),
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            tx,
            rx,
            running: AtomicUsize::new(0),
            seq: AtomicU64::new(stamp),
            closes: AtomicU64::new(1),
        }
    }

    /// The queue in one line, for `ftpfs stats`.
    pub(super) fn describe(&self) -> String {
        if !self.enabled() {
            return "off (close waits for the upload)".into();
        }
        let p = self.pending.lock();
        let spooled: u64 = p.copies.values().map(|(_, _, len)| len).sum();
        format!(
            "{} uploads queued, {} running, {} spooled, {} failed and not yet reported",
            p.queued(),
            p.running.len(),
            crate::stats::bytes(spooled),
            p.failed.len()
        )
    }

    pub(super) fn enabled(&self) -> bool {
        self.journal.is_some()
    }

    /// Numbers a close(2) of a handle (its flush), so its version lands in close order.
    pub(super) fn note_close(&self, f: &OpenFile) {
        f.close_seq.store(self.closes.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Waits until no upload is pending for a path `affected` accepts (bounded).
    pub(super) fn wait_for(&self, affected: impl Fn(&str) -> bool) -> FsResult<()> {
        if !self.enabled() {
            return Ok(());
        }
        let mut p = self.pending.lock();
        self.wait_locked(&mut p, &affected)
    }

    fn wait_locked(&self, p: &mut MutexGuard<'_, Pending>, affected: &impl Fn(&str) -> bool) -> FsResult<()> {
        let deadline = Instant::now() + LONGEST_WAIT;
        while p.paths.keys().any(|k| affected(k)) {
            if self.changed.wait_until(p, deadline).timed_out() {
                log::error!("an upload still pending after {}s blocks a request", LONGEST_WAIT.as_secs());
                return Err(libc::ETIMEDOUT);
            }
        }
        Ok(())
    }

    /// The newest version of `path` waiting for its upload, opened for reading, with its length:
    /// a reader is served what the last close wrote instead of waiting for the server to have it.
    pub(super) fn pending_copy(&self, path: &str) -> Option<(std::fs::File, u64)> {
        if !self.enabled() {
            return None;
        }
        let p = self.pending.lock();
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
        let mut p = self.pending.lock();
        p.frozen.extend(paths.iter().cloned());
        let guard = Frozen { wb: self, paths };
        let affected = |k: &str| is_at_or_under(k, from) || is_at_or_under(k, to);
        self.wait_locked(&mut p, &affected)?;
        drop(p);
        Ok(guard)
    }

    /// The failure of an earlier deferred upload of `path`, reported once.
    pub(super) fn take_failure(&self, path: &str) -> Option<i32> {
        self.pending.lock().failed.pop(path)
    }

    /// Unmounting: no new deferrals; waits for every pending upload while they make progress
    /// (one ends, or bytes move: `sent` counts the bytes handed to uploads), giving up when
    /// nothing moved for `stall`; each upload still pending is logged by name and stays in the
    /// journal for the next mount.
    pub(super) fn wait_all(&self, stall: Duration, sent: impl Fn() -> u64) {
        let mut p = self.pending.lock();
        p.stopping = true;
        // Uploads pausing between attempts stop pausing (they stay in the journal).
        self.changed.notify_all();
        let mut seen = (p.ended, sent());
        let mut deadline = Instant::now() + stall;
        while !p.paths.is_empty() {
            let now = (p.ended, sent());
            if now != seen {
                seen = now;
                deadline = Instant::now() + stall;
            }
            if Instant::now() >= deadline {
                for path in p.paths.keys() {
                    log::error!(
                        "{path}: its upload made no progress for {} s at unmount; it stays in the journal for the next mount",
                        stall.as_secs_f32()
                    );
                }
                return;
            }
            // Bytes moving wake no one: look again every 100 ms.
            let _ = self.changed.wait_until(&mut p, deadline.min(Instant::now() + Duration::from_millis(100)));
        }
        let failed = p.failed.len();
        if failed > 0 {
            log::error!("{failed} uploads of write-back failed (the log names them)");
        }
    }

    /// Defers the release of handle `fh` (open on `path`): journals its spool and queues its
    /// upload. `false`: not deferred (the caller commits now).
    pub(super) fn defer(&self, core: &Arc<Core>, fh: u64, file: Arc<OpenFile>, path: &str) -> bool {
        let Some(dir) = &self.journal else { return false };
        let seq = match file.close_seq.load(Ordering::Relaxed) {
            0 => self.closes.fetch_add(1, Ordering::Relaxed),
            n => n,
        };
        {
            let mut p = self.pending.lock();
            let frozen = p.frozen.iter().any(|f| is_at_or_under(path, f));
            if p.stopping || frozen || p.queued() >= MAX_QUEUED {
                return false;
            }
            if p.newest.peek(path).is_some_and(|&n| n > seq) {
                // A later close of this file is on its way already: this older version never
                // lands over it (as when each close uploads at once, in order).
                drop(p);
                log::debug!("{path}: a later close supersedes this one; not uploaded");
                self.forget_journal(&file);
                core.handles.remove(fh);
                return true;
            }
            p.newest.put(path.to_string(), seq);
            *p.paths.entry(path.to_string()).or_default() += 1;
        }
        // Taken before journaling: the journal lock is never held while the spool's is taken.
        let taken = file.journal.lock().take();
        let journaled = match taken {
            Some(j) => Ok(Some(j)),
            None => self.journal_spool(dir, &file, path),
        };
        let Ok(Some((data, name))) = journaled else {
            if let Err(e) = &journaled {
                log::warn!("{path}: cannot journal for write-back ({e}); uploading at close");
            }
            self.pending.lock().release_path(path);
            self.changed.notify_all();
            // The caller uploads now; `newest` already says this close is the latest.
            return false;
        };
        if let Some(len) = super::rescue::spool_len(&file) {
            let mut p = self.pending.lock();
            if p.copies.get(path).is_none_or(|c| c.0 < seq) {
                p.copies.insert(path.to_string(), (seq, data.clone(), len));
            }
        }
        let job = Job { fh, file, path: path.to_string(), seq, journal: (data, name) };
        if let Err(e) = self.tx.send(job) {
            // Cannot happen while `self` holds the receiver; commit here then.
            self.run(core, e.into_inner());
            return true;
        }
        self.spawn_worker(core);
        true
    }

    /// Links the spool of `file` into the journal with its path (fsynced). `None`: it holds
    /// nothing to upload.
    fn journal_spool(&self, dir: &Path, file: &OpenFile, path: &str) -> io::Result<Option<(PathBuf, PathBuf)>> {
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let data = dir.join(format!("{id:020}.data"));
        let name = dir.join(format!("{id:020}.path"));
        let res = super::rescue::link_spool(file, &data).and_then(|linked| {
            if !linked {
                return Ok(false);
            }
            write_atomically(&name, path.as_bytes())?;
            sync_dir(dir)?;
            Ok(true)
        });
        match res {
            Ok(true) => Ok(Some((data, name))),
            other => {
                let _ = std::fs::remove_file(&data);
                let _ = std::fs::remove_file(&name);
                other.map(|_| None)
            }
        }
    }

    /// At close(2): the handle's data goes into the journal before close returns, so a crash
    /// between close and release loses nothing. `false`: not journaled (the caller uploads).
    pub(super) fn journal_at_close(&self, file: &OpenFile, path: &str) -> bool {
        let Some(dir) = &self.journal else { return false };
        if self.pending.lock().stopping {
            return false;
        }
        if file.journal.lock().is_some() {
            // Journaled at an earlier close of a duplicate: the link shares the spool's data.
            // This close is the handle's newest: its version lands after every close before it.
            let synced = super::rescue::sync_spool(file).is_ok();
            if synced {
                self.note_close(file);
                // The entry's time is its newest close: a replay lands the newest of a path's
                // entries only.
                if let Some((_, name)) = file.journal.lock().clone() {
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&name)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                }
            }
            return synced;
        }
        match self.journal_spool(dir, file, path) {
            Ok(Some(j)) => {
                *file.journal.lock() = Some(j);
                self.note_close(file);
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("{path}: cannot journal for write-back ({e}); uploading at close");
                false
            }
        }
    }

    /// After a rename: the journal entries of handles now at or under `to` (journaled at a
    /// close, not released yet) name their new path, so that a crash before their release
    /// does not upload them under the old name.
    pub(super) fn follow_rename(&self, moved: &[Arc<OpenFile>]) {
        for f in moved {
            let (Some(path), Some((_, name))) = (f.path(), f.journal.lock().clone()) else { continue };
            // The entry's time stays its close's (a replay orders a path's entries by it).
            let closed = std::fs::metadata(&name).and_then(|m| m.modified());
            let res = write_atomically(&name, path.as_bytes()).and_then(|()| {
                if let Ok(t) = closed {
                    std::fs::File::options().write(true).open(&name)?.set_modified(t)?;
                }
                name.parent().map_or(Ok(()), sync_dir)
            });
            if let Err(e) = res {
                log::error!("{path}: its write-back journal entry still names the old path: {e}");
            }
        }
    }

    /// The handle is committed or forgotten without write-back: its journal copy goes.
    pub(super) fn forget_journal(&self, file: &OpenFile) {
        if let Some((data, name)) = file.journal.lock().take() {
            let _ = std::fs::remove_file(name);
            let _ = std::fs::remove_file(data.with_extension("started"));
            let _ = std::fs::remove_file(data);
        }
    }

    fn spawn_worker(&self, core: &Arc<Core>) {
        let running = self.running.load(Ordering::Relaxed);
        if running >= self.workers
            || self.running.compare_exchange(running, running + 1, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        let mine = core.clone();
        let spawned = std::thread::Builder::new().name("ftpfs-writeback".into()).spawn(move || {
            let wb = &mine.writeback;
            while let Ok(job) = wb.rx.recv_timeout(WORKER_IDLE) {
                wb.run(&mine, job);
            }
            wb.running.fetch_sub(1, Ordering::AcqRel);
            // A job queued while this thread was deciding to end still gets a worker.
            if !wb.rx.is_empty() {
                wb.spawn_worker(&mine);
            }
        });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::AcqRel);
            log::error!("cannot start a write-back thread: {e}; uploading in the request");
            while let Ok(job) = self.rx.try_recv() {
                self.run(core, job);
            }
        }
    }

    /// Uploads one deferred handle (after any other upload of its path, and only if no later
    /// close of the path landed meanwhile), then forgets it.
    fn run(&self, core: &Core, job: Job) {
        let mut p = self.pending.lock();
        while p.running.contains(&job.path) {
            self.changed.wait(&mut p);
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
            // When its upload began: a replay after a crash knows the server's newer file is
            // its own bytes (see recovery).
            let _ = crate::private_files::create_or_truncate(&job.journal.0.with_extension("started"));
            self.upload_with_retries(core, &job)
        };
        // A failure the server may not repeat (a broken connection, unmounting, a timeout)
        // keeps the journal's copy for the next mount; a definite refusal keeps the data in
        // cache_dir (rescue) and drops the journal's copy.
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
                super::rescue::rescue(core, &job.file);
            }
        }
        // Out under its lock: a truncation that reached it after the upload lands too, and one
        // that comes later sees it released.
        let uploaded = res.is_ok() && !superseded;
        if let Err(e) = super::handle_io::retire(core, &job.file, uploaded, || drop(core.handles.remove(job.fh))) {
            log::error!("{}: upload of a late change failed: errno {e}", job.path);
            super::rescue::rescue(core, &job.file);
        }
        {
            // New readers of the path wait for the end of the upload from here on.
            let mut p = self.pending.lock();
            if p.copies.get(&job.path).is_some_and(|c| c.0 == job.seq) {
                p.copies.remove(&job.path);
            }
        }
        if !transient {
            let (data, name) = &job.journal;
            let _ = std::fs::remove_file(data.with_extension("started"));
            let _ = std::fs::remove_file(name);
            let _ = std::fs::remove_file(data);
        }
        let mut p = self.pending.lock();
        p.running.remove(&job.path);
        p.release_path(&job.path);
        match res {
            Ok(()) if !superseded => {
                let newer = p.landed.peek(&job.path).copied().unwrap_or(0).max(job.seq);
                p.landed.put(job.path.clone(), newer);
            }
            Ok(()) => {}
            Err(e) => {
                p.failed.put(job.path.clone(), e);
            }
        }
        p.ended += 1;
        drop(p);
        self.changed.notify_all();
    }
}

/// Failures worth trying again (in this mount, then at the next) rather than giving up on:
/// the connection or the server failed, not the request.
const TRANSIENT: [i32; 14] = [
    libc::EIO,
    libc::ETIMEDOUT,
    libc::EBUSY,
    libc::ENOTCONN,
    libc::ECONNRESET,
    libc::ECONNABORTED,
    libc::ECONNREFUSED,
    libc::EPIPE,
    libc::ENETDOWN,
    libc::ENETUNREACH,
    libc::EHOSTUNREACH,
    libc::ESHUTDOWN,
    libc::EAGAIN,
    libc::EINTR,
];

/// Attempts of one deferred upload in this mount, and the pause before the first retry
/// (doubled each time: 1, 2, 4, 8 s); after the last, the journal keeps it for the next mount.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_secs(1);

impl WriteBack {
    /// Uploads a deferred version, trying again after a failure the server may not repeat
    /// ([`TRANSIENT`]) up to [`ATTEMPTS`] times with a doubling pause, while the mount is not
    /// stopping. Other uploads of the path wait meanwhile (it is marked running), so versions
    /// stay in order.
    fn upload_with_retries(&self, core: &Core, job: &Job) -> FsResult<()> {
        let mut pause = FIRST_PAUSE;
        for attempt in 1.. {
            let res = super::handle_io::commit(core, &job.file);
            let Err(e) = res else { return res };
            if !TRANSIENT.contains(&e) || attempt >= ATTEMPTS {
                return res;
            }
            log::warn!(
                "{}: write-back upload failed (errno {e}); trying again in {} s (attempt {} of {ATTEMPTS})",
                job.path,
                pause.as_secs(),
                attempt + 1
            );
            let until = Instant::now() + pause;
            let mut p = self.pending.lock();
            while !p.stopping && Instant::now() < until {
                let _ = self.changed.wait_until(&mut p, until);
            }
            if p.stopping {
                return res;
            }
            drop(p);
            pause *= 2;
        }
        Ok(())
    }
}

/// Makes the directory's entries durable (the journal survives a crash of the machine).
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `to` through a temp name, so a crash never leaves half a file there.
fn write_atomically(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = to.with_extension("tmp");
    let mut f = crate::private_files::create_or_truncate(&tmp)?;
    io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, to)
}
