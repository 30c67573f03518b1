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
//! same server and root before it serves anything, and the log says so.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::FsResult;
use super::core::Core;
use super::files::OpenFile;
use crate::backend::WriteMode;
use crate::backend::paths::is_at_or_under;

/// A background thread with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);
/// The longest a request waits for a pending upload of its path.
const LONGEST_WAIT: Duration = Duration::from_secs(600);

struct Job {
    fh: u64,
    file: Arc<OpenFile>,
    path: String,
    /// The journal's copy: data and path files.
    journal: Option<(PathBuf, PathBuf)>,
}

#[derive(Default)]
struct Pending {
    /// Paths with an upload pending, and how many.
    paths: HashMap<String, usize>,
    /// Uploads that failed, by path, until an fsync reports them.
    failed: HashMap<String, i32>,
    /// Uploads ended so far (progress, for the unmount's wait).
    ended: u64,
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
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.journal.is_some()
    }

    /// Waits until no upload is pending for a path `affected` accepts (bounded).
    pub(super) fn wait_for(&self, affected: impl Fn(&str) -> bool) -> FsResult<()> {
        if !self.enabled() {
            return Ok(());
        }
        let deadline = Instant::now() + LONGEST_WAIT;
        let mut p = self.pending.lock();
        while p.paths.keys().any(|k| affected(k)) {
            if self.changed.wait_until(&mut p, deadline).timed_out() {
                log::error!("an upload still pending after {}s blocks a request", LONGEST_WAIT.as_secs());
                return Err(libc::ETIMEDOUT);
            }
        }
        Ok(())
    }

    /// Waits for `path` and everything under it.
    pub(super) fn wait_under(&self, path: &str) -> FsResult<()> {
        self.wait_for(|p| is_at_or_under(p, path))
    }

    /// The failure of an earlier deferred upload of `path`, reported once.
    pub(super) fn take_failure(&self, path: &str) -> Option<i32> {
        self.pending.lock().failed.remove(path)
    }

    /// Waits for every pending upload while they make progress: gives up when none ended
    /// within `stall` (what is left stays in the journal for the next mount).
    pub(super) fn wait_all(&self, stall: Duration) {
        let mut p = self.pending.lock();
        while !p.paths.is_empty() {
            let ended = p.ended;
            let deadline = Instant::now() + stall;
            while p.ended == ended && !p.paths.is_empty() {
                if self.changed.wait_until(&mut p, deadline).timed_out() {
                    log::error!("{} uploads still pending; they stay in the journal for the next mount", p.paths.len());
                    return;
                }
            }
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
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let data = dir.join(format!("{seq:020}.data"));
        let name = dir.join(format!("{seq:020}.path"));
        let journaled = super::rescue::link_spool(&file, &data).and_then(|linked| {
            if !linked {
                return Ok(false);
            }
            write_atomically(&name, path.as_bytes())?;
            Ok(true)
        });
        match journaled {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                let _ = std::fs::remove_file(&data);
                log::warn!("{path}: cannot journal for write-back ({e}); uploading at close");
                return false;
            }
        }
        *self.pending.lock().paths.entry(path.to_string()).or_default() += 1;
        let job = Job { fh, file, path: path.to_string(), journal: Some((data, name)) };
        if let Err(e) = self.tx.send(job) {
            // Cannot happen while `self` holds the receiver; commit here then.
            let job = e.into_inner();
            self.run(core, job);
            return true;
        }
        self.spawn_worker(core);
        true
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

    /// Uploads one deferred handle, then forgets it.
    fn run(&self, core: &Core, job: Job) {
        let res = super::handle_io::commit(core, &job.file);
        match res {
            Ok(()) => log::debug!("{}: written back", job.path),
            Err(e) => {
                log::error!("{}: write-back upload failed: errno {e}", job.path);
                super::rescue::rescue(core, &job.file);
            }
        }
        core.handles.remove(job.fh);
        // Uploaded, or kept by the rescue: the journal's copy is not needed any more.
        if let Some((data, name)) = &job.journal {
            let _ = std::fs::remove_file(name);
            let _ = std::fs::remove_file(data);
        }
        let mut p = self.pending.lock();
        if let Some(n) = p.paths.get_mut(&job.path) {
            *n -= 1;
            if *n == 0 {
                p.paths.remove(&job.path);
            }
        }
        if let Err(e) = res {
            p.failed.insert(job.path.clone(), e);
        }
        p.ended += 1;
        drop(p);
        self.changed.notify_all();
    }
}

/// Writes `bytes` to `to` through a temp name, so a crash never leaves half a file there.
fn write_atomically(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = to.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, to)
}

/// Uploads what an earlier mount left in `journal`, oldest first; returns how many landed.
/// Entries that fail stay for the next mount.
pub(super) fn recover(core: &Core, journal: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(journal) else { return 0 };
    let mut names: Vec<PathBuf> =
        dir.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "path")).collect();
    names.sort();
    let mut landed = 0;
    for name in names {
        let data = name.with_extension("data");
        let Ok(path) = std::fs::read_to_string(&name) else { continue };
        match upload_file(core, &path, &data) {
            Ok(len) => {
                core.invalidate_parent(&path);
                log::warn!("{path}: uploaded {len} bytes that an earlier mount had not written back");
                let _ = std::fs::remove_file(&name);
                let _ = std::fs::remove_file(&data);
                landed += 1;
            }
            Err(e) => {
                log::error!("{path}: left by an earlier mount, still not uploaded ({e}); kept in {}", data.display())
            }
        }
    }
    landed
}

fn upload_file(core: &Core, path: &str, data: &Path) -> Result<u64, String> {
    let mut file = std::fs::File::open(data).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut up = core
        .backend
        .write(path, WriteMode::Replace, core.wait_limit())
        .map_err(|e| e.to_string())?
        .ok_or("no connection")?;
    io::copy(&mut (&mut file).take(len), &mut up).map_err(|e| e.to_string())?;
    let reported = up.finish().map_err(|e| e.to_string())?;
    match reported.map_or_else(|| core.backend.size(path).ok().flatten(), Some) {
        Some(n) if n != len => Err(format!("the server has {n} bytes, not {len}")),
        _ => Ok(len),
    }
}
