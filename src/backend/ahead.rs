//! Work ahead of the kernel's requests, for servers far away: a [`Backend`] that wraps another
//! and, on spare connections, fetches what a directory walk or a whole-directory read is about
//! to ask for.
//!
//! - **Files ahead.** When whole files of one directory are read one after another in listing
//!   order (`cp -r`, `tar c`, rsync) or in name order (`cat dir/*`), the next small files of
//!   that directory are downloaded in parallel into a memory cache bounded in bytes, and the
//!   next read from offset 0 of one of them is served from memory. An entry is served only
//!   while it is young, while every listing of its directory since shows the size and mtime it
//!   had, and while nothing of ours touched the path. It is dropped at the first doubt.
//! - **Listings ahead.** When a directory is read shortly after its parent (a walk: `find`,
//!   `du`, `ls -R`, `cp -r`; not the lookups that resolve a path), its subdirectories and its unlisted siblings are listed in
//!   parallel (or in batches, one round trip each, where the server allows:
//!   [`Backend::list_several`]); a listing is served once, while young, and only if nothing of ours changed that
//!   directory since it was fetched.
//!
//! Background work never takes a connection a request could use: it runs only while the inner
//! backend reports a spare one ([`Backend::spare_connections`], which keeps one for requests),
//! waits a moment for one ([`Backend::wait_for_spare`]: connections still logging in), and is
//! dropped otherwise. Every change that passes through here (uploads, deletes, renames, mkdir, rmdir,
//! times, modes) drops what it may have made stale and spoils fetches still in flight.

use std::collections::HashMap;
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use super::paths::{child_path, is_at_or_under, split_path};
use super::{Backend, BackendResult, Entry, EntryKind, FsError, ReadStream, WriteMode, WriteStream};

/// Limits of the work done ahead.
#[derive(Clone, Debug)]
pub struct AheadConfig {
    /// Files larger than this are never fetched ahead.
    pub file_max: u64,
    /// Memory for files fetched ahead, in total.
    pub bytes: u64,
    /// How many files past the one being read are fetched ahead.
    pub files: usize,
    /// What was fetched ahead is served only while younger than this.
    pub max_age: Duration,
    /// Background threads at most (each uses one connection at a time).
    pub workers: usize,
    /// Fetch listings ahead during directory walks.
    pub listings: bool,
}

impl Default for AheadConfig {
    fn default() -> AheadConfig {
        AheadConfig {
            file_max: 1 << 20,
            bytes: 32 << 20,
            files: 8,
            max_age: Duration::from_secs(10),
            workers: 4,
            listings: true,
        }
    }
}

/// A listing seen recently, kept to know what "the next file" is.
struct DirOrder {
    /// Names in the server's order, with their entries.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// Indices into `entries`, sorted by name (the order of a shell glob).
    sorted: Vec<usize>,
}

/// Seconds a server's clock may differ from ours for a listed time to count as our upload's.
const UPLOAD_CLOCK_SLACK: i64 = 2;

/// Directories larger than this are not tracked for files ahead (memory).
const MAX_TRACKED_ENTRIES: usize = 10_000;
/// How many directories' orders are kept.
const TRACKED_DIRS: usize = 8;
/// Entries of listings fetched ahead held at most, in total (memory).
const MAX_LIST_ENTRIES: usize = 100_000;
/// Memory of listings fetched ahead held at most, in total (names and link targets count).
const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;
/// How long a queued fetch waits for a spare connection before it is dropped (connections
/// being logged in or prepared become spare within a few round trips).
const SPARE_WAIT: Duration = Duration::from_secs(1);
/// A directory listed within this time after its parent counts as part of a walk.
const WALK_WINDOW: Duration = Duration::from_secs(5);
/// Queued background jobs at most; more are dropped.
const QUEUE: usize = 256;
/// A background thread with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);

impl DirOrder {
    fn new(entries: Vec<Entry>) -> DirOrder {
        let index = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        let mut sorted: Vec<usize> = (0..entries.len()).collect();
        sorted.sort_by(|&a, &b| entries[a].name.cmp(&entries[b].name));
        DirOrder { entries, index, sorted }
    }

    /// Positions of `name` in listing order and in name order.
    fn positions(&self, name: &str) -> Option<(usize, usize)> {
        let i = *self.index.get(name)?;
        let s = self.sorted.binary_search_by(|&j| self.entries[j].name.as_str().cmp(name)).ok()?;
        Some((i, s))
    }

    /// The indices of entries in `order` (listing or by name), from position `from` on.
    fn walk(&self, by_name: bool, from: usize) -> impl Iterator<Item = usize> + '_ {
        (from..self.entries.len()).map(move |p| if by_name { self.sorted[p] } else { p })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReadOrder {
    Listing,
    ByName,
}

/// The whole-file reads so far, to see a pattern.
struct ReadTrail {
    dir: String,
    /// Position of the last file read, in listing order and in name order.
    at: (usize, usize),
    order: Option<ReadOrder>,
}

/// What a listing says of a file: size, mtime, its sub-second part.
type Stamp = (Option<u64>, Option<i64>, u32);

fn stamp(e: &Entry) -> Stamp {
    (e.size, e.mtime, e.mtime_nanos)
}

struct FileAhead {
    data: Arc<Vec<u8>>,
    fetched: Instant,
    /// What the listing said of the file when its fetch was queued.
    stamp: Stamp,
    /// Kept from our upload: the times (seconds since the epoch) a listing may show for it to
    /// be our upload: from its start to its end, give or take a little for the server's clock.
    ours_between: Option<(i64, i64)>,
}

impl FileAhead {
    /// `e` shows the file as our upload left it: its size, and a time while it ran.
    fn shows_our_upload(&self, e: &Entry) -> bool {
        e.size == self.stamp.0 && e.mtime.zip(self.ours_between).is_some_and(|(t, (from, to))| (from..=to).contains(&t))
    }
}

/// A fetch queued or running.
struct Flight {
    /// A change since it was queued: its result is not kept.
    spoiled: bool,
    /// A worker took it (a request may wait for it; one only queued is cancelled instead).
    started: bool,
    /// For files: what the listing said when it was queued.
    stamp: Stamp,
    /// For listings: the batch ([`Job::Lists`]) it is queued in.
    batch: Option<u64>,
}

impl Flight {
    fn new(stamp: Stamp) -> Flight {
        Flight { spoiled: false, started: false, stamp, batch: None }
    }
}

struct ListAhead {
    entries: Vec<Entry>,
    fetched: Instant,
}

/// The memory a listing's entries take, about: their structures, names and link targets.
fn list_bytes(entries: &[Entry]) -> usize {
    let text = |e: &Entry| match &e.kind {
        EntryKind::Symlink(Some(t)) => e.name.len() + t.len(),
        _ => e.name.len(),
    };
    entries.iter().map(|e| std::mem::size_of::<Entry>() + text(e)).sum()
}

#[derive(Default)]
struct State {
    orders: Option<LruCache<String, DirOrder>>,
    trail: Option<ReadTrail>,
    files: Option<LruCache<String, FileAhead>>,
    bytes: u64,
    /// Paths being fetched ahead → spoiled by a change since.
    files_in_flight: HashMap<String, Flight>,
    lists: Option<LruCache<String, ListAhead>>,
    /// Entries in `lists`, in total.
    list_entries: usize,
    /// Memory of the entries in `lists`, in total (see [`list_bytes`]).
    list_bytes: usize,
    lists_in_flight: HashMap<String, Flight>,
    /// When each directory was last listed, bounded.
    listed: Option<LruCache<String, Instant>>,
    /// When each directory was last opened for reading (walk detection), bounded.
    opened: Option<LruCache<String, Instant>>,
    /// Uploads in progress by path: never fetched ahead meanwhile.
    uploading: HashMap<String, usize>,
    /// Batches of listings queued and not yet taken (by a worker, or by a request for one of
    /// their directories, which then lists the whole batch itself).
    batches: HashMap<u64, Vec<String>>,
    next_batch: u64,
}

impl State {
    fn orders(&mut self) -> &mut LruCache<String, DirOrder> {
        self.orders.get_or_insert_with(|| LruCache::new(NonZeroUsize::MIN.saturating_add(TRACKED_DIRS - 1)))
    }

    fn files(&mut self) -> &mut LruCache<String, FileAhead> {
        self.files.get_or_insert_with(LruCache::unbounded)
    }

    fn lists(&mut self) -> &mut LruCache<String, ListAhead> {
        self.lists.get_or_insert_with(|| LruCache::new(NonZeroUsize::MIN.saturating_add(255)))
    }

    fn listed(&mut self) -> &mut LruCache<String, Instant> {
        self.listed.get_or_insert_with(|| LruCache::new(NonZeroUsize::MIN.saturating_add(1023)))
    }

    fn opened(&mut self) -> &mut LruCache<String, Instant> {
        self.opened.get_or_insert_with(|| LruCache::new(NonZeroUsize::MIN.saturating_add(1023)))
    }

    /// Takes what was fetched ahead of file `path` out (and its bytes from the count).
    fn take_file(&mut self, path: &str) -> Option<FileAhead> {
        let f = self.files().pop(path)?;
        self.bytes -= f.data.len() as u64;
        Some(f)
    }

    fn take_list(&mut self, dir: &str) -> Option<ListAhead> {
        let l = self.lists().pop(dir)?;
        self.list_entries -= l.entries.len();
        self.list_bytes -= list_bytes(&l.entries);
        Some(l)
    }

    fn keep_list(&mut self, dir: &str, l: ListAhead) {
        let bytes = list_bytes(&l.entries);
        if self.list_entries + l.entries.len() > MAX_LIST_ENTRIES || self.list_bytes + bytes > MAX_LIST_BYTES {
            return;
        }
        self.list_entries += l.entries.len();
        self.list_bytes += bytes;
        if let Some((_, old)) = self.lists().push(dir.to_string(), l) {
            self.list_entries -= old.entries.len();
            self.list_bytes -= list_bytes(&old.entries);
        }
    }

    /// Lets go of files and listings fetched ahead that are too old to be served: they would
    /// otherwise hold memory (up to the budget) until something newer pushed them out.
    /// Oldest first: both caches are in the order their entries landed (a hit takes it out).
    fn drop_expired(&mut self, max_age: Duration) {
        while let Some((_, f)) = self.files().peek_lru() {
            if f.fetched.elapsed() < max_age {
                break;
            }
            if let Some((_, f)) = self.files().pop_lru() {
                self.bytes -= f.data.len() as u64;
            }
        }
        while let Some((_, l)) = self.lists().peek_lru() {
            if l.fetched.elapsed() < max_age {
                break;
            }
            if let Some((_, l)) = self.lists().pop_lru() {
                self.list_entries -= l.entries.len();
                self.list_bytes -= list_bytes(&l.entries);
            }
        }
    }

    fn drop_file(&mut self, path: &str) {
        self.take_file(path);
        if let Some(f) = self.files_in_flight.get_mut(path) {
            f.spoiled = true;
        }
    }

    /// Something of ours changed `path` (and whatever is under it): nothing fetched ahead of it,
    /// of what is under it or of its directory's listing is served any more.
    fn changed(&mut self, path: &str) {
        let under: Vec<String> =
            self.files().iter().map(|(p, _)| p.clone()).filter(|p| is_at_or_under(p, path)).collect();
        for p in under {
            self.drop_file(&p);
        }
        for (p, f) in self.files_in_flight.iter_mut() {
            if is_at_or_under(p, path) {
                f.spoiled = true;
            }
        }
        let parent = split_path(path).0.to_string();
        let lists: Vec<String> =
            self.lists().iter().map(|(d, _)| d.clone()).filter(|d| *d == parent || is_at_or_under(d, path)).collect();
        for d in lists {
            self.take_list(&d);
        }
        for (d, f) in self.lists_in_flight.iter_mut() {
            if *d == parent || is_at_or_under(d, path) {
                f.spoiled = true;
            }
        }
        // The order seen of the parent no longer tells sizes and times.
        self.orders().pop(&parent);
        if self.trail.as_ref().is_some_and(|t| t.dir == parent) {
            self.trail = None;
        }
    }

    /// Keeps the whole content of a file our upload (begun at `began`) just made, as if fetched
    /// ahead: its time is not known yet (the next answer that shows its size and a time while
    /// the upload ran gives it).
    fn keep_uploaded(&mut self, path: &str, data: Vec<u8>, budget: u64, began: std::time::SystemTime) {
        let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let (from, to) = (secs(began), secs(std::time::SystemTime::now()));
        let f = FileAhead {
            stamp: (Some(data.len() as u64), None, 0),
            data: Arc::new(data),
            fetched: Instant::now(),
            ours_between: Some((from - UPLOAD_CLOCK_SLACK, to + UPLOAD_CLOCK_SLACK)),
        };
        self.keep_file(path, f, budget);
    }

    /// Keeps `f` for `path`, the least recently used going first while the files kept would
    /// hold more than `budget` bytes (nothing kept when it alone is more).
    fn keep_file(&mut self, path: &str, f: FileAhead, budget: u64) {
        let len = f.data.len() as u64;
        while self.bytes + len > budget {
            match self.files().pop_lru() {
                Some((_, old)) => self.bytes -= old.data.len() as u64,
                None => break,
            }
        }
        if self.bytes + len <= budget {
            self.bytes += len;
            self.files().put(path.to_string(), f);
        }
    }

    /// What the server says of `path` now (`None`: no such name), from a listing of its
    /// directory or a lookup of the name alone: a file fetched ahead, or being fetched, that it
    /// does not confirm (size, time) is dropped (spoiled). A file kept from our upload (no time
    /// known) takes the time of the first answer that shows it as the upload left it.
    fn saw_entry(&mut self, path: &str, entry: Option<&Entry>) {
        let file = entry.filter(|e| e.kind == EntryKind::File);
        // (Peeked: the cache stays in the order its files landed, which drop_expired needs.)
        if let Some(f) = self.files().peek_mut(path)
            && f.stamp.1.is_none()
            && let Some(e) = file.filter(|e| f.shows_our_upload(e))
        {
            f.stamp = stamp(e);
        }
        self.drop_unless(path, |was| file.is_some_and(|e| stamp(e) == *was));
    }

    /// The server reports `size` for `path`: what was fetched ahead with another size is
    /// dropped (spoiled).
    fn saw_size(&mut self, path: &str, size: u64) {
        self.drop_unless(path, |s| s.0 == Some(size));
    }

    /// The server reports `secs` as `path`'s time (to the second): what was fetched ahead with
    /// another time, or kept from our upload while it was not running, is dropped (spoiled).
    fn saw_time(&mut self, path: &str, secs: i64) {
        let ours = |(from, to): (i64, i64)| (from..=to).contains(&secs);
        if self.files().peek(path).is_some_and(|f| f.stamp.1.is_none() && !f.ours_between.is_some_and(ours)) {
            self.take_file(path);
        }
        self.drop_unless(path, |s| s.1.is_none_or(|t| t == secs));
    }

    /// Drops (spoils) what was fetched ahead of `path` unless its stamp passes `still`.
    fn drop_unless(&mut self, path: &str, still: impl Fn(&Stamp) -> bool) {
        if self.files().peek(path).is_some_and(|f| !still(&f.stamp)) {
            self.take_file(path);
        }
        if let Some(f) = self.files_in_flight.get_mut(path).filter(|f| !still(&f.stamp)) {
            f.spoiled = true;
        }
    }

    /// A fresh listing of `dir` from the server: files fetched ahead, or being fetched, whose
    /// size or time it does not confirm are dropped (spoiled), as [`State::saw_entry`] says.
    fn saw_listing(&mut self, dir: &str, entries: &[Entry]) {
        let now: HashMap<&str, &Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
        let mut paths: Vec<String> = self.files().iter().map(|(p, _)| p.clone()).collect();
        paths.extend(self.files_in_flight.keys().cloned());
        paths.retain(|p| split_path(p).0 == dir);
        paths.sort();
        paths.dedup();
        for p in paths {
            let e = now.get(split_path(&p).1).copied();
            self.saw_entry(&p, e);
        }
        self.orders().pop(dir);
        if entries.len() <= MAX_TRACKED_ENTRIES {
            self.orders().put(dir.to_string(), DirOrder::new(entries.to_vec()));
        }
    }
}

enum Job {
    File {
        path: String,
        size: u64,
        stamp: Stamp,
    },
    List {
        dir: String,
    },
    /// Directories listed together ([`Backend::list_several`]): the batch in
    /// [`State::batches`].
    Lists {
        batch: u64,
    },
}

struct Shared {
    inner: Arc<dyn Backend>,
    cfg: AheadConfig,
    state: Mutex<State>,
    /// Signalled when a fetch ahead ends.
    landed: Condvar,
    workers: AtomicUsize,
    jobs_tx: Sender<Job>,
    jobs_rx: Receiver<Job>,
}

/// The wrapping backend; see the module documentation.
pub struct Ahead {
    shared: Arc<Shared>,
}

impl Ahead {
    pub fn new(inner: Arc<dyn Backend>, cfg: AheadConfig) -> Ahead {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(QUEUE);
        let shared = Shared {
            inner,
            cfg,
            state: Mutex::new(State::default()),
            landed: Condvar::new(),
            workers: AtomicUsize::new(0),
            jobs_tx,
            jobs_rx,
        };
        let shared = Arc::new(shared);
        let weak = Arc::downgrade(&shared);
        crate::stats::gauge("fetched ahead", move || weak.upgrade().map(|s| s.describe()));
        Ahead { shared }
    }

    /// What the server answered about `path` alone is news to what was fetched ahead of it:
    /// `saw` takes an answer; "no such name" drops it.
    fn heard<T>(
        &self,
        path: &str,
        res: BackendResult<Option<T>>,
        saw: impl FnOnce(&mut State, &T),
    ) -> BackendResult<Option<T>> {
        match &res {
            Ok(Some(v)) => saw(&mut self.shared.state.lock(), v),
            Err(FsError::NotFound) => self.shared.state.lock().saw_entry(path, None),
            _ => {}
        }
        res
    }

    /// Bytes of files held in memory now (for tests and statistics).
    pub fn bytes_held(&self) -> u64 {
        self.shared.state.lock().bytes
    }

    fn changed(&self, path: &str) {
        self.shared.state.lock().changed(path);
    }

    /// Runs a change of `paths` on the server: what was fetched ahead of them is dropped
    /// before (nothing new lands meanwhile) and after (nothing fetched during it stays).
    fn around<T>(&self, paths: &[&str], change: impl FnOnce() -> T) -> T {
        paths.iter().for_each(|p| self.changed(p));
        let res = change();
        paths.iter().for_each(|p| self.changed(p));
        res
    }
}

impl Shared {
    /// Small files and listings fetched ahead, in one line for `ftpfs stats`.
    fn describe(&self) -> String {
        let mut st = self.state.lock();
        let (files, bytes) = (st.files().len(), st.bytes);
        let (lists, in_flight) = (st.lists().len(), st.files_in_flight.len() + st.lists_in_flight.len());
        format!(
            "{files} files ({}) and {lists} listings held, {in_flight} fetches in flight, {} queued, {} served",
            crate::stats::bytes(bytes),
            self.jobs_tx.len(),
            crate::stats::get(crate::stats::Counter::PrefetchServed)
        )
    }

    fn submit(self: &Arc<Self>, job: Job) -> bool {
        match self.jobs_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return false,
        }
        let running = self.workers.load(Ordering::Relaxed);
        if running < self.cfg.workers
            && self.workers.compare_exchange(running, running + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            let me = self.clone();
            let spawned = std::thread::Builder::new().name("ftpfs-ahead".into()).spawn(move || me.work());
            if spawned.is_err() {
                self.workers.fetch_sub(1, Ordering::AcqRel);
            }
        }
        true
    }

    fn work(self: Arc<Self>) {
        while let Ok(job) = self.jobs_rx.recv_timeout(WORKER_IDLE) {
            match job {
                Job::File { path, size, stamp } => self.fetch_file(&path, size, stamp),
                Job::List { dir } => self.fetch_list(&dir),
                Job::Lists { batch } => self.fetch_lists(batch),
            }
        }
        self.workers.fetch_sub(1, Ordering::AcqRel);
        // A job queued while this thread was deciding to end still gets a worker.
        if self.workers.load(Ordering::Relaxed) == 0
            && let Ok(job) = self.jobs_rx.try_recv()
        {
            self.submit(job);
        }
    }

    fn fetch_file(&self, path: &str, size: u64, stamp: Stamp) {
        // Waited for before the fetch counts as started: a request for the path meanwhile
        // cancels it and asks the server itself instead of waiting behind it.
        let spare = self.inner.wait_for_spare(SPARE_WAIT) > 0;
        if !self.start(path, true) {
            return;
        }
        let data = if spare { self.download(path, size) } else { None };
        let mut st = self.state.lock();
        st.drop_expired(self.cfg.max_age);
        let spoiled = st.files_in_flight.remove(path).is_none_or(|f| f.spoiled);
        if let Some(data) = data.filter(|_| !spoiled) {
            let f = FileAhead { data: Arc::new(data), fetched: Instant::now(), stamp, ours_between: None };
            st.keep_file(path, f, self.cfg.bytes);
        }
        drop(st);
        self.landed.notify_all();
    }

    /// A worker takes the fetch of `key` (a file or, `file` false, a listing): `false` when it
    /// was cancelled while queued.
    fn start(&self, key: &str, file: bool) -> bool {
        let mut st = self.state.lock();
        let flights = if file { &mut st.files_in_flight } else { &mut st.lists_in_flight };
        match flights.get_mut(key) {
            Some(f) if !f.spoiled => {
                f.started = true;
                true
            }
            _ => {
                flights.remove(key);
                drop(st);
                self.landed.notify_all();
                false
            }
        }
    }

    /// The whole file if it has exactly `size` bytes; `None` on any doubt.
    fn download(&self, path: &str, size: u64) -> Option<Vec<u8>> {
        let mut stream = self.inner.read(path, 0, Duration::ZERO).ok()??;
        let mut data = Vec::with_capacity(usize::try_from(size).ok()?);
        (&mut stream).take(size + 1).read_to_end(&mut data).ok()?;
        if data.len() as u64 != size {
            return None;
        }
        stream.finish().ok()?;
        Some(data)
    }

    fn fetch_list(&self, dir: &str) {
        let spare = self.inner.wait_for_spare(SPARE_WAIT) > 0;
        if !self.start(dir, false) {
            return;
        }
        let entries = if spare { self.inner.list(dir).ok() } else { None };
        self.landed_list(dir, entries);
    }

    /// Lists the directories of `batch` together, unless a request took the batch meanwhile.
    fn fetch_lists(&self, batch: u64) {
        let spare = self.inner.wait_for_spare(SPARE_WAIT) > 0;
        let Some(dirs) = self.take_batch(batch) else { return };
        let listed = if spare && !dirs.is_empty() { self.inner.list_several(&dirs) } else { Vec::new() };
        let mut listed = listed.into_iter();
        for dir in &dirs {
            self.landed_list(dir, listed.next().and_then(Result::ok));
        }
    }

    /// Takes a queued batch of listings: its directories still wanted, now started (`None`
    /// when it was taken already).
    fn take_batch(&self, batch: u64) -> Option<Vec<String>> {
        let dirs = self.state.lock().batches.remove(&batch)?;
        Some(dirs.into_iter().filter(|d| self.start(d, false)).collect())
    }

    /// A request for `dir`, queued in `batch`: lists the whole batch now, on the request's
    /// own connection, rather than wait for a worker or list `dir` alone (a walk asks for
    /// the other directories next). `dir` is listed alone when the batch fails.
    fn list_batch_for(&self, dir: &str, batch: u64) -> BackendResult<Vec<Entry>> {
        let mut dirs = self.take_batch(batch).unwrap_or_default();
        // First, whether or not it is still wanted ahead (a change since it was queued spoils
        // only what was fetched before it).
        dirs.retain(|d| d != dir);
        dirs.insert(0, dir.to_string());
        let mut listed = self.inner.list_several(&dirs).into_iter();
        let own = listed.next();
        for d in &dirs[1..] {
            self.landed_list(d, listed.next().and_then(Result::ok));
        }
        // Its own flight ends here: the listing is returned, not kept.
        self.state.lock().lists_in_flight.remove(dir);
        self.landed.notify_all();
        let entries = match own {
            Some(Ok(entries)) => entries,
            _ => self.inner.list(dir)?,
        };
        self.on_listed(dir, &entries);
        Ok(entries)
    }

    /// The fetch of `dir`'s listing ended with `entries` (`None`: nothing to keep).
    fn landed_list(&self, dir: &str, entries: Option<Vec<Entry>>) {
        let mut st = self.state.lock();
        st.drop_expired(self.cfg.max_age);
        let spoiled = st.lists_in_flight.remove(dir).is_none_or(|f| f.spoiled);
        if let Some(entries) = entries.filter(|_| !spoiled) {
            st.keep_list(dir, ListAhead { entries, fetched: Instant::now() });
        }
        drop(st);
        self.landed.notify_all();
    }

    /// A whole-file read of `path` starts: follow the pattern and queue the next files.
    fn on_file_read(self: &Arc<Self>, path: &str) {
        let (dir, name) = split_path(path);
        let mut jobs = Vec::new();
        {
            let mut st = self.state.lock();
            let Some(pos) = st.orders().get(dir).and_then(|o| o.positions(name)) else {
                st.trail = None;
                return;
            };
            let order = st.trail.as_ref().filter(|t| t.dir == dir).and_then(|t| follows(t, pos));
            st.trail = Some(ReadTrail { dir: dir.to_string(), at: pos, order });
            let Some(order) = order else { return };
            let by_name = order == ReadOrder::ByName;
            let from = if by_name { pos.1 } else { pos.0 } + 1;
            let mut budget = self.cfg.bytes.saturating_sub(st.bytes);
            let mut picked = Vec::new();
            if let Some(o) = st.orders().peek(dir) {
                for i in o.walk(by_name, from) {
                    if picked.len() >= self.cfg.files {
                        break;
                    }
                    let e = &o.entries[i];
                    let Some(size) = e.size.filter(|&s| s <= self.cfg.file_max && s <= budget) else { continue };
                    if e.kind != EntryKind::File {
                        continue;
                    }
                    budget -= size;
                    picked.push((child_path(dir, &e.name), size, stamp(e)));
                }
            }
            for (p, size, stamp) in picked {
                if st.files().contains(&p) || st.files_in_flight.contains_key(&p) || st.uploading.contains_key(&p) {
                    continue;
                }
                st.files_in_flight.insert(p.clone(), Flight::new(stamp));
                jobs.push(Job::File { path: p, size, stamp });
            }
        }
        for job in jobs {
            if let Job::File { path, .. } = &job {
                let path = path.clone();
                if !self.submit(job) {
                    self.state.lock().files_in_flight.remove(&path);
                }
            }
        }
    }

    /// `dir` was listed from the server: during a walk, queue its subdirectories and its
    /// unlisted siblings.
    fn on_listed(&self, dir: &str, entries: &[Entry]) {
        let mut st = self.state.lock();
        st.saw_listing(dir, entries);
        st.listed().put(dir.to_string(), Instant::now());
    }

    /// A directory is read (opendir) shortly after its parent was: a walk (`find`, `du`,
    /// `ls -R`, `cp -r`; resolving a path only looks names up and is none). Its subdirectories
    /// and its parent's other subdirectories are listed ahead: in batches where the backend
    /// lists several directories at once, else one job each. Told before the directory is
    /// listed (its siblings are then fetched while it is) and again after (its subdirectories).
    fn on_opened(self: &Arc<Self>, dir: &str) {
        let at_once = self.inner.lists_at_once().max(1);
        let mut jobs = Vec::new();
        {
            let mut st = self.state.lock();
            let now = Instant::now();
            st.opened().put(dir.to_string(), now);
            if !self.cfg.listings || dir.is_empty() {
                return;
            }
            let parent = split_path(dir).0.to_string();
            let walking = st.opened().peek(&parent).is_some_and(|t| now.duration_since(*t) < WALK_WINDOW);
            if !walking {
                return;
            }
            // In a batch the directory itself comes first: its own request then lists the
            // batch unless a worker took it already (see `Ahead::list`).
            let mut wanted: Vec<String> = if at_once > 1 { vec![dir.to_string()] } else { Vec::new() };
            if let Some(o) = st.orders().peek(dir) {
                wanted.extend(o.entries.iter().filter(|e| e.is_dir()).map(|e| child_path(dir, &e.name)));
            }
            if let Some(o) = st.orders().peek(&parent) {
                wanted.extend(o.entries.iter().filter(|e| e.is_dir()).map(|e| child_path(&parent, &e.name)));
            }
            for d in wanted {
                let recently = st.listed().peek(&d).is_some_and(|t| now.duration_since(*t) < self.cfg.max_age);
                let itself = d == dir && at_once == 1;
                if itself || recently || st.lists().contains(&d) || st.lists_in_flight.contains_key(&d) {
                    continue;
                }
                st.lists_in_flight.insert(d.clone(), Flight::new((None, None, 0)));
                jobs.push(d);
            }
        }
        if at_once == 1 {
            for dir in jobs {
                if !self.submit(Job::List { dir: dir.clone() }) {
                    self.state.lock().lists_in_flight.remove(&dir);
                }
            }
            return;
        }
        for chunk in jobs.chunks(at_once) {
            let batch = {
                let mut st = self.state.lock();
                let batch = st.next_batch;
                st.next_batch += 1;
                for d in chunk {
                    if let Some(f) = st.lists_in_flight.get_mut(d) {
                        f.batch = Some(batch);
                    }
                }
                st.batches.insert(batch, chunk.to_vec());
                batch
            };
            if !self.submit(Job::Lists { batch }) {
                let mut st = self.state.lock();
                st.batches.remove(&batch);
                for d in chunk {
                    st.lists_in_flight.remove(d);
                }
            }
        }
    }
}

/// Whether the read at `pos` continues the trail, and in which order. A few entries may be
/// skipped (subdirectories, files the reader passed over).
fn follows(trail: &ReadTrail, pos: (usize, usize)) -> Option<ReadOrder> {
    let near = |last: usize, now: usize| now > last && now <= last + 4;
    match trail.order {
        Some(ReadOrder::Listing) if near(trail.at.0, pos.0) => Some(ReadOrder::Listing),
        Some(ReadOrder::ByName) if near(trail.at.1, pos.1) => Some(ReadOrder::ByName),
        _ if near(trail.at.0, pos.0) => Some(ReadOrder::Listing),
        _ if near(trail.at.1, pos.1) => Some(ReadOrder::ByName),
        _ => None,
    }
}

/// A file served from memory.
struct Served {
    data: Arc<Vec<u8>>,
    at: usize,
}

impl Read for Served {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.data.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl ReadStream for Served {
    fn finish(self: Box<Self>) -> BackendResult<()> {
        Ok(())
    }
}

/// An upload: the path is not fetched ahead while it runs, and what was is dropped at its end.
/// A whole small file that landed (its size confirmed by the server) is kept as if fetched
/// ahead, with the size the server reported and the time of the next listing that confirms
/// that size (see [`State::saw_listing`]).
struct Uploading {
    up: Option<Box<dyn WriteStream>>,
    shared: Arc<Shared>,
    path: String,
    /// The bytes sent so far, while the file is small enough to keep (a STOR).
    kept: Option<Vec<u8>>,
    /// The size the server confirmed at the end.
    landed: Option<u64>,
    /// When it started.
    began: std::time::SystemTime,
}

impl Uploading {
    /// Notes how the upload ended.
    fn ended<T>(&mut self, res: BackendResult<(Option<u64>, T)>) -> BackendResult<(Option<u64>, T)> {
        if let Ok((size, _)) = &res {
            self.landed = *size;
        }
        res
    }
}

impl io::Write for Uploading {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let res = match self.up.as_mut() {
            Some(up) => up.write(buf),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "upload already finished")),
        };
        match &res {
            Ok(n) if self.kept.as_ref().is_some_and(|k| (k.len() + n) as u64 <= self.shared.cfg.file_max) => {
                if let Some(k) = self.kept.as_mut() {
                    k.extend_from_slice(&buf[..*n]);
                }
            }
            _ => self.kept = None,
        }
        res
    }

    fn flush(&mut self) -> io::Result<()> {
        self.up.as_mut().map_or(Ok(()), |up| up.flush())
    }
}

impl WriteStream for Uploading {
    fn finish(mut self: Box<Self>) -> BackendResult<Option<u64>> {
        let res = match self.up.take() {
            Some(up) => up.finish().map(|size| (size, ())),
            None => Err(super::FsError::Broken),
        };
        self.ended(res).map(|(size, ())| size)
    }

    fn finish_then(mut self: Box<Self>, after: super::AfterUpload) -> BackendResult<(Option<u64>, super::Settled)> {
        let res = match self.up.take() {
            Some(up) => up.finish_then(after),
            None => Err(super::FsError::Broken),
        };
        self.ended(res)
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        drop(self.up.take());
        let mut st = self.shared.state.lock();
        st.changed(&self.path);
        let whole = self.kept.take().filter(|k| self.landed == Some(k.len() as u64));
        if let Some(data) = whole {
            st.keep_uploaded(&self.path, data, self.shared.cfg.bytes, self.began);
        }
        if let Some(n) = st.uploading.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                st.uploading.remove(&self.path);
            }
        }
    }
}

impl Backend for Ahead {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        let s = &self.shared;
        let ahead = {
            let mut st = s.state.lock();
            // A listing of this directory already on its way is as good as our own request.
            let deadline = Instant::now() + s.inner.wait_limit();
            let queued_batch = st.lists_in_flight.get(dir).filter(|f| !f.started && !f.spoiled).and_then(|f| f.batch);
            if let Some(batch) = queued_batch.filter(|b| st.batches.contains_key(b)) {
                drop(st);
                return s.list_batch_for(dir, batch);
            }
            if let Some(f) = st.lists_in_flight.get_mut(dir).filter(|f| !f.started) {
                // Only queued: cancelled, this request lists it itself.
                f.spoiled = true;
            }
            while st.lists_in_flight.get(dir).is_some_and(|f| f.started) {
                if s.landed.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            st.take_list(dir).filter(|l| l.fetched.elapsed() < s.cfg.max_age)
        };
        let entries = match ahead {
            Some(l) => l.entries,
            None => s.inner.list(dir)?,
        };
        s.on_listed(dir, &entries);
        Ok(entries)
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        self.heard(path, self.shared.inner.stat_one(path), |st, e| st.saw_entry(path, Some(e)))
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        self.heard(path, self.shared.inner.size(path), |st, &size| st.saw_size(path, size))
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        self.heard(path, self.shared.inner.modified(path), |st, &secs| st.saw_time(path, secs))
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        let s = &self.shared;
        if offset != 0 {
            return s.inner.read(path, offset, wait);
        }
        s.on_file_read(path);
        let deadline = Instant::now() + s.inner.wait_limit();
        let mut st = s.state.lock();
        // A fetch of this very file in flight is as good as a request of our own: wait for it.
        if let Some(f) = st.files_in_flight.get_mut(path).filter(|f| !f.started) {
            // Only queued: cancelled, this request reads it itself.
            f.spoiled = true;
        }
        while st.files_in_flight.get(path).is_some_and(|f| f.started) {
            if s.landed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let max_age = s.cfg.max_age;
        st.drop_expired(max_age);
        let served = st.take_file(path).filter(|f| f.fetched.elapsed() < max_age).map(|f| f.data);
        drop(st);
        match served {
            Some(data) => {
                log::debug!("{path}: served from the files fetched ahead");
                crate::stats::count(crate::stats::Counter::PrefetchServed);
                Ok(Some(Box::new(Served { data, at: 0 })))
            }
            None => s.inner.read(path, offset, wait),
        }
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        let s = &self.shared;
        {
            let mut st = s.state.lock();
            st.changed(path);
            *st.uploading.entry(path.to_string()).or_default() += 1;
        }
        // A whole small file going up is kept: read back right after (git add after cp -r, a
        // build reading what it wrote), it needs no download.
        let keep = (mode == WriteMode::Replace && s.cfg.file_max > 0).then(Vec::new);
        let began = std::time::SystemTime::now();
        let guard = |up| Uploading { up, shared: s.clone(), path: path.to_string(), kept: keep, landed: None, began };
        match s.inner.write(path, mode, wait) {
            Ok(Some(up)) => Ok(Some(Box::new(guard(Some(up))))),
            other => {
                drop(guard(None));
                other
            }
        }
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        self.around(&[path], || self.shared.inner.mkdir(path))
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        self.around(&[path], || self.shared.inner.rmdir(path))
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        self.around(&[path], || self.shared.inner.delete(path))
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        self.around(&[from, to], || self.shared.inner.rename(from, to))
    }

    fn can_set_mtime(&self) -> bool {
        self.shared.inner.can_set_mtime()
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        self.around(&[path], || self.shared.inner.set_mtime(path, secs))
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        self.around(&[path], || self.shared.inner.chmod(path, mode))
    }

    fn can_append(&self) -> bool {
        self.shared.inner.can_append()
    }

    fn can_chmod(&self) -> bool {
        self.shared.inner.can_chmod()
    }

    fn can_name(&self, name: &str) -> bool {
        self.shared.inner.can_name(name)
    }

    fn symlink(&self, target: super::LinkTarget<'_>, link: &str) -> BackendResult<()> {
        self.around(&[link], || self.shared.inner.symlink(target, link))
    }

    fn checksums(&self) -> Vec<super::Algorithm> {
        self.shared.inner.checksums()
    }

    fn checksum(&self, path: &str, a: super::Algorithm) -> BackendResult<String> {
        self.shared.inner.checksum(path, a)
    }

    fn wait_limit(&self) -> Duration {
        self.shared.inner.wait_limit()
    }

    fn spare_connections(&self) -> usize {
        self.shared.inner.spare_connections()
    }

    fn wait_for_spare(&self, wait: Duration) -> usize {
        self.shared.inner.wait_for_spare(wait)
    }

    fn is_offline(&self) -> bool {
        self.shared.inner.is_offline()
    }

    fn forget(&self, path: &str) {
        self.changed(path);
        self.shared.inner.forget(path);
    }

    fn opened_dir(&self, dir: &str) {
        self.shared.on_opened(dir);
        self.shared.inner.opened_dir(dir);
    }

    fn close_idle(&self) {
        self.shared.inner.close_idle()
    }

    fn shut_down(&self) {
        self.shared.inner.shut_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listings fetched ahead are bounded in memory, not only in entries: a few thousand links
    /// with long targets (a line of 16 KiB each) are far below the entry bound.
    #[test]
    fn listings_ahead_bounded_in_bytes() {
        let mut st = State::default();
        let target = "t/".repeat(8000);
        for d in 0..4 {
            let entries = (0..1000)
                .map(|i| Entry::new(format!("l{i}"), EntryKind::Symlink(Some(format!("{target}{d}{i}")))))
                .collect();
            st.keep_list(&format!("d{d}"), ListAhead { entries, fetched: Instant::now() });
        }
        let held: usize = st
            .lists()
            .iter()
            .flat_map(|(_, l)| &l.entries)
            .map(|e| match &e.kind {
                EntryKind::Symlink(Some(t)) => t.len() + e.name.len(),
                _ => e.name.len(),
            })
            .sum();
        assert!(held <= MAX_LIST_BYTES, "{held} bytes of listings held ahead");
    }
}
