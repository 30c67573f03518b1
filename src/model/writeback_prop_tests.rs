//! Write-back (`-o writeback`) over random interleavings, on the in-memory server: handles on a
//! few paths (`a`, `b`, `d/c`) are created with O_TRUNC and written, closed (flush: the close of
//! a duplicate, or the last close), released later, fsynced; files are renamed and deleted; the
//! next k uploads fail (k up to 6: a version gets 5 attempts in the mount, so some are left in
//! the journal for the next mount); the mount crashes (kill -9) and the next one replays its
//! journal. A reference model in the test says what each path may hold. The property, from
//! README ("Write-back", "Several handles on one file") and `writeback/mod.rs`:
//!
//! - A version of a path is acknowledged when a close of it returns 0 (with write-back: it is
//!   in the journal) or an fsync of it returns 0 (it is on the server; an fsync that failed only
//!   to report an earlier write-back's failure, its own data seen on the server, counts too).
//!   Acknowledgements are ordered by when they returned: the order of closes, in which fsync
//!   takes a place. A close of a handle holding nothing unsaved (its data went up through fsync
//!   or a rename) is no new version: it uploads nothing.
//! - At the end (every handle closed and released, the mount stopped, the next mount's replay of
//!   what it left in its journal done), and right after the replay that follows each crash, each
//!   path holds its newest acknowledged version, or a state it was given later without an
//!   acknowledgement (the data of a handle still open that a rename landed first, an fsync or a
//!   close whose effect the test cannot tell): never an older version, never one cut short or
//!   mixed. A path whose newest acknowledged change is an unlink, or a rename away from it, is
//!   absent: nothing comes back. A rename moves the path's versions to the new name, and the
//!   old target's versions are gone for good.
//! - Versions whose uploads failed 5 times in the mount and that no newer version replaced land
//!   at the next mount's replay (they are acknowledged: the property requires them).
//! - Right away: a close that returns 0 of a handle with unsaved data has its version in the
//!   journal; an fsync that returns 0 of one leaves the server holding exactly that data; a
//!   rename or unlink that returns 0 leaves the old name absent.
//!
//! Every chunk a case writes is unique, so every version is. A handle's content is its own
//! (O_TRUNC, then its writes) except where README says otherwise: a handle holding nothing
//! unsaved drops its copy when another handle's upload lands, and its next write builds on the
//! server's file (two editors of one file), after other handles' creations of the file not
//! uploaded yet landed; when that happens depends on background uploads, so such a write is
//! read back through the handle and checked to be one of those.
//!
//! A crash is the instant at which the server stops taking anything from the mount: the mount
//! talks to the server through [`Mortal`], which a crash kills (under a lock no request or
//! transfer holds then), so every later request and every byte still sent fails as on a dead
//! connection and changes nothing. The dying mount's threads then wind down (its `stop`: the
//! retry pauses end, every upload fails and its version stays in the journal) without reaching
//! the server; what they still do to the journal (an upload's `.started` marker, the entry of a
//! version superseded by a later close dropped) a process could have done just before the crash,
//! with the server as it was. The journal is then copied as the crash leaves it (with the files'
//! times: the time of an entry's `.path` is its close, by which the replay orders them), the
//! server's files are copied into a new in-memory server (nothing of the dead mount reaches it),
//! and a new mount with a journal of its own replays the copy before anything else
//! ([`Model::recover_journal`], as `mount.rs` does), then goes on with the rest of the case.
//!
//! The server's clock ([`Clock`]) is in sync with ours or an hour behind. In sync, the replay's
//! documented rule of times applies: a version closed before the server's file last changed, in
//! a later second, is kept aside and the server's file stays ("A replay never replaces a version
//! it did not know"), even when that change was the mount's own older close landing; the test
//! allows the server's file then ([`Run::time_rule_keeps`]). Behind, the replay replays every
//! newest entry, and the order of closes is checked without that exception.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use proptest::prelude::*;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::memory::{MemoryBackend, Op};
use crate::backend::{Backend, BackendResult, Entry, FsError, ReadStream, WriteMode, WriteStream};

/// The files of the cases: two in the root (on the server at the start), one in a directory.
const PATHS: [&str; 3] = ["a", "b", "d/c"];
const CONNECTIONS: usize = 4;

#[derive(Clone, Debug)]
enum Action {
    /// open(O_WRONLY | O_CREAT | O_TRUNC) of the path, and a first write: through create, or
    /// (`true`) as the kernel does when its lookup finds the file, through open with O_TRUNC.
    Open(usize, bool),
    /// Appends a new chunk through an open handle (every content a case makes is unique).
    Write(usize),
    /// The close of a duplicate descriptor (flush): the handle stays open.
    Flush(usize),
    /// The last close (flush): only the release is left.
    Close(usize),
    /// The kernel's release of a closed handle.
    Release(usize),
    Fsync(usize),
    Rename(usize, usize),
    Unlink(usize),
    /// The next k uploads fail with a broken connection.
    FailUploads(usize),
    /// Waits until the write-back queue is empty (every queued upload landed or gave up).
    Settle,
    /// kill -9 of the mount, and the next mount's replay of its journal.
    Crash,
}

/// Actions with failing uploads weighing `faults` and crashes `crashes` (of about 30).
fn action(faults: u32, crashes: u32) -> BoxedStrategy<Action> {
    let n = PATHS.len();
    let steps = prop_oneof![
        4 => (0..n, any::<bool>()).prop_map(|(p, by_open)| Action::Open(p, by_open)),
        4 => (0..8usize).prop_map(Action::Write),
        2 => (0..8usize).prop_map(Action::Flush),
        4 => (0..8usize).prop_map(Action::Close),
        4 => (0..8usize).prop_map(Action::Release),
        2 => (0..8usize).prop_map(Action::Fsync),
        2 => (0..n, 0..n).prop_map(|(a, b)| Action::Rename(a, b)),
        1 => (0..n).prop_map(Action::Unlink),
        faults => (1..=6usize).prop_map(Action::FailUploads),
        1 => Just(Action::Settle),
    ];
    match crashes {
        0 => steps.boxed(),
        _ => prop_oneof![24 + faults => steps, crashes => Just(Action::Crash)].boxed(),
    }
}

/// The server as one mount sees it: the in-memory server behind a switch that the mount's crash
/// throws. From then on every request and every transfer's next step fails as on a dead
/// connection and changes nothing. Each call holds the switch's read lock while it runs, so
/// [`Mortal::kill`] returns only when no call is half done.
struct Mortal {
    inner: Arc<MemoryBackend>,
    dead: Arc<RwLock<bool>>,
    clock: Arc<Clock>,
}

/// The server's clock. The in-memory server's own is a logical one from 2023, but a replay
/// compares a file's time on the server (MDTM, whole seconds) with the time its journal entry
/// was closed: every change of a file goes through [`Mortal`], which notes the time, and a
/// restored server gets those times ([`restored`]).
struct Clock {
    /// How far the server's clock is behind ours: zero (in sync), or an hour (the replay then
    /// takes every file on the server as older than every version in the journal).
    lag: Duration,
    /// When each file last changed, by the server's clock.
    times: Mutex<BTreeMap<String, SystemTime>>,
}

impl Clock {
    fn touch(&self, path: &str) {
        self.times.lock().insert(path.to_string(), SystemTime::now() - self.lag);
    }
}

impl Mortal {
    fn new(inner: Arc<MemoryBackend>, clock: Clock) -> Mortal {
        Mortal { inner, dead: Arc::new(RwLock::new(false)), clock: Arc::new(clock) }
    }

    fn kill(&self) {
        *self.dead.write() = true;
    }

    /// Runs `call` on the server unless the mount is dead.
    fn live<T>(&self, call: impl FnOnce(&MemoryBackend) -> BackendResult<T>) -> BackendResult<T> {
        let dead = self.dead.read();
        if *dead { Err(FsError::Broken) } else { call(&self.inner) }
    }
}

fn dead_connection() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the mount crashed")
}

struct MortalWriter {
    up: Box<dyn WriteStream>,
    dead: Arc<RwLock<bool>>,
    /// Renames and deletes of the path wait for its uploads: it stays the upload's path.
    path: String,
    clock: Arc<Clock>,
}

impl std::io::Write for MortalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let dead = self.dead.read();
        if *dead {
            return Err(dead_connection());
        }
        let n = self.up.write(buf)?;
        self.clock.touch(&self.path);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WriteStream for MortalWriter {
    fn finish(self: Box<Self>) -> BackendResult<Option<u64>> {
        let dead = self.dead.clone();
        let dead = dead.read();
        if *dead { Err(FsError::Broken) } else { self.up.finish() }
    }
}

struct MortalReader {
    dl: Box<dyn ReadStream>,
    dead: Arc<RwLock<bool>>,
}

impl std::io::Read for MortalReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let dead = self.dead.read();
        if *dead { Err(dead_connection()) } else { self.dl.read(buf) }
    }
}

impl ReadStream for MortalReader {
    fn finish(self: Box<Self>) -> BackendResult<()> {
        let dead = self.dead.clone();
        let dead = dead.read();
        if *dead { Err(FsError::Broken) } else { self.dl.finish() }
    }
}

impl Backend for Mortal {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        self.live(|s| s.list(dir))
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        self.live(|s| s.stat_one(path))
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        self.live(|s| s.size(path))
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        self.live(|s| s.modified(path))
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        let dl = self.live(|s| s.read(path, offset, wait))?;
        Ok(dl.map(|dl| Box::new(MortalReader { dl, dead: self.dead.clone() }) as Box<dyn ReadStream>))
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        let up = self.live(|s| s.write(path, mode, wait))?;
        let Some(up) = up else { return Ok(None) };
        self.clock.touch(path);
        let (dead, clock) = (self.dead.clone(), self.clock.clone());
        Ok(Some(Box::new(MortalWriter { up, dead, path: path.to_string(), clock })))
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        self.live(|s| s.mkdir(path))
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        self.live(|s| s.rmdir(path))
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        self.live(|s| s.delete(path))?;
        self.clock.times.lock().remove(path);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        self.live(|s| s.rename(from, to))?;
        // A file keeps its time through a rename.
        let mut times = self.clock.times.lock();
        match times.remove(from) {
            Some(t) => times.insert(to.to_string(), t),
            None => times.remove(to),
        };
        Ok(())
    }

    fn can_set_mtime(&self) -> bool {
        self.inner.can_set_mtime()
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        self.live(|s| s.set_mtime(path, secs))?;
        self.clock.times.lock().insert(path.to_string(), UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64));
        Ok(())
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        self.live(|s| s.chmod(path, mode))
    }

    fn can_append(&self) -> bool {
        self.inner.can_append()
    }

    fn can_chmod(&self) -> bool {
        self.inner.can_chmod()
    }

    fn can_name(&self, name: &str) -> bool {
        self.inner.can_name(name)
    }

    fn wait_limit(&self) -> Duration {
        self.inner.wait_limit()
    }

    fn spare_connections(&self) -> usize {
        self.inner.spare_connections()
    }

    fn close_idle(&self) {
        self.inner.close_idle()
    }

    fn shut_down(&self) {
        self.inner.shut_down()
    }
}

/// A state of a path: its content, or absent.
type Content = Option<Vec<u8>>;

/// What one path may hold in the end, as far as the test can tell.
#[derive(Clone)]
struct Expect {
    /// The newest acknowledged state, and when it was acknowledged.
    floor: (u64, Content),
    /// When that version was closed, by its journal entry, if a close acknowledged it.
    closed: Option<SystemTime>,
    /// States the path may have been given without an acknowledgement, and when.
    doubt: Vec<(u64, Content)>,
}

impl Expect {
    fn new(t: u64, state: Content) -> Expect {
        Expect { floor: (t, state), closed: None, doubt: Vec::new() }
    }

    fn ack(&mut self, t: u64, state: Content) {
        self.floor = (t, state);
        self.closed = None;
        self.doubt.retain(|(d, _)| *d > t);
    }

    fn maybe(&mut self, t: u64, state: Content) {
        self.doubt.push((t, state));
    }

    /// The newest acknowledged state, and every state given after it without one.
    fn allowed(&self) -> Vec<&Content> {
        let later = self.doubt.iter().filter(|(d, _)| *d > self.floor.0).map(|(_, s)| s);
        let mut all: Vec<&Content> = std::iter::once(&self.floor.1).chain(later).collect();
        all.dedup();
        all
    }
}

impl std::fmt::Debug for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "acknowledged at {}: {}", self.floor.0, show(&self.floor.1))?;
        for (t, c) in &self.doubt {
            write!(f, "; maybe at {t}: {}", show(c))?;
        }
        Ok(())
    }
}

/// Where a handle's data stands with the server, as the model keeps it: the states it may be in
/// (more than one when the test cannot tell, as after a rename that failed halfway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sync {
    /// Opened with O_TRUNC and never uploaded since (the model's "created": a rename of the
    /// file lands it first, and so does a write through another handle that builds on the file).
    fresh: bool,
    /// Everything it holds went to the server (through fsync, or landed as a creation).
    clean: bool,
    /// Uploaded once, and written since.
    changed: bool,
}

impl Sync {
    const FRESH: Sync = Sync { fresh: true, clean: false, changed: false };
    const CLEAN: Sync = Sync { fresh: false, clean: true, changed: false };

    /// Whether a close uploads (journals) something: `None` when the test cannot tell.
    fn dirty(self) -> Option<bool> {
        match (self.fresh || self.changed, self.clean) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }

    fn wrote(self) -> Sync {
        Sync { fresh: self.fresh, clean: false, changed: self.changed || self.clean }
    }

    /// It was landed as a creation (`surely`), or may have been.
    fn landed(self, surely: bool) -> Sync {
        Sync { fresh: self.fresh && !surely, clean: self.clean || self.fresh, changed: self.changed }
    }
}

struct Handle {
    fh: u64,
    id: u64,
    /// The path its versions belong to; `None` once deleted or replaced (detached).
    path: Option<String>,
    content: Vec<u8>,
    chunks: u32,
    /// Its last close is done: only the release is left.
    closed: bool,
    /// Its content as it is now was acknowledged (no write since a close or fsync returned 0).
    acked: bool,
    sync: Sync,
}

/// One mount: its server (through the switch its crash throws), model and journal.
struct Mount {
    server: Arc<Mortal>,
    model: Model,
    journal: PathBuf,
}

impl Mount {
    fn new(top: &Path, n: usize, server: Mortal, workers: usize) -> Mount {
        let journal = top.join(format!("journal-{n}"));
        std::fs::create_dir(&journal).expect("journal dir");
        let server = Arc::new(server);
        let cfg = ModelConfig {
            writeback: Some(journal.clone()),
            writeback_uploads: workers,
            ..ModelConfig::for_tests(top, Duration::from_secs(3600))
        };
        let model = Model::new(cfg, server.clone());
        Mount { server, model, journal }
    }

    fn be(&self) -> &MemoryBackend {
        &self.server.inner
    }
}

/// A new in-memory server holding what `old` holds, files with their times (its faults and
/// streams stay behind).
fn restored(old: &Mortal) -> Mortal {
    let be = Arc::new(MemoryBackend::new(CONNECTIONS));
    be.set_wait_limit(Duration::from_secs(5));
    for d in old.inner.dirs() {
        be.mkdir_all(&d);
    }
    let times = old.clock.times.lock().clone();
    for (path, content) in old.inner.files() {
        be.put_file(&path, &content);
        let t = times.get(&path).unwrap_or_else(|| panic!("{path}: no time kept"));
        be.set_mtime(&path, secs(*t) as i64).expect("set the time");
    }
    Mortal::new(be, Clock { lag: old.clock.lag, times: Mutex::new(times) })
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("time").as_secs()
}

/// When the version `content` of `path` was closed, as its entry in `journal` says (the time of
/// its `.path` file), if it has one.
fn closed_at(journal: &Path, path: &str, content: &[u8]) -> Option<SystemTime> {
    std::fs::read_dir(journal).ok()?.flatten().map(|e| e.path()).find_map(|name| {
        // `ftpfs-seq <close>` on its own line, then the path.
        let named = std::fs::read_to_string(&name).ok()?;
        let named = named.split_once('\n').map_or(named.as_str(), |(_, p)| p);
        let ours = name.extension().is_some_and(|x| x == "path")
            && named == path
            && std::fs::read(name.with_extension("data")).ok()? == content;
        ours.then(|| std::fs::metadata(&name).and_then(|m| m.modified()).ok()).flatten()
    })
}

/// Copies `journal` into `to` as a crash leaves it: the files and their times (the time of an
/// entry's `.path` is when its version was closed; the replay orders a file's entries by it).
fn copy_journal(journal: &Path, to: &Path) {
    for e in std::fs::read_dir(journal).expect("journal").flatten() {
        let target = to.join(e.file_name());
        std::fs::copy(e.path(), &target).expect("copy");
        let t = e.metadata().and_then(|m| m.modified()).expect("time");
        std::fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(t)).expect("time");
    }
}

/// How many entries `journal` holds (one `.path` file each).
fn entries(journal: &Path) -> usize {
    std::fs::read_dir(journal)
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "path")).count())
        .unwrap_or(0)
}

/// The versions the queue left in the journal after their uploads failed, from `ftpfs stats`.
fn left_in_journal(m: &Model) -> u64 {
    let line = m.describe_writeback();
    line.split(", ").find_map(|part| part.strip_suffix(" left in the journal")?.parse().ok()).unwrap_or(0)
}

fn show(c: &Content) -> String {
    match c {
        Some(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        None => "(absent)".into(),
    }
}

struct Run {
    top: tempfile::TempDir,
    workers: usize,
    mount: Mount,
    /// Mounts (journals) made so far.
    mounts: usize,
    handles: Vec<Handle>,
    expect: BTreeMap<&'static str, Expect>,
    /// Orders acknowledgements: one tick per step.
    clock: u64,
    next_id: u64,
    /// Every content a file or handle had (what a write may build on).
    seen: Vec<Vec<u8>>,
    /// What happened so far, for the failure message.
    trace: Vec<String>,
    /// Uploads were made to fail: a close may report (EIO) a write-back that failed.
    failures: bool,
}

impl Run {
    /// `lag`: how far the server's clock is behind ours.
    fn new(workers: usize, lag: Duration) -> Run {
        let top = tempfile::tempdir().expect("temp dir");
        let be = Arc::new(MemoryBackend::new(CONNECTIONS));
        be.set_wait_limit(Duration::from_secs(5));
        be.mkdir_all("d");
        let mut expect = BTreeMap::new();
        let clock = Clock { lag, times: Mutex::new(BTreeMap::new()) };
        for p in PATHS {
            let initial = (!p.contains('/')).then(|| format!("initial {p}").into_bytes());
            if let Some(c) = &initial {
                be.put_file(p, c);
                clock.touch(p);
            }
            expect.insert(p, Expect::new(0, initial));
        }
        let mount = Mount::new(top.path(), 0, Mortal::new(be, clock), workers);
        // What a write may build on: a file's content (an empty one for a detached handle).
        let mut seen: Vec<Vec<u8>> = PATHS.iter().map(|p| format!("initial {p}").into_bytes()).collect();
        seen.push(Vec::new());
        Run {
            top,
            workers,
            mount,
            mounts: 1,
            handles: Vec::new(),
            expect,
            clock: 0,
            next_id: 0,
            seen,
            trace: Vec::new(),
            failures: false,
        }
    }

    fn model(&self) -> &Model {
        &self.mount.model
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records a step, after the time of the last acknowledgement-ordering tick.
    fn note(&mut self, what: String) {
        self.trace.push(format!("t{}: {what}", self.clock));
    }

    fn context(&self) -> String {
        format!("\nsteps:\n  {}\nexpected: {:?}", self.trace.join("\n  "), self.expect)
    }

    /// The inode of `path`'s directory and its name there.
    fn parent_of(&self, path: &'static str) -> (u64, &'static str) {
        match path.split_once('/') {
            Some((dir, name)) => {
                let ino = self.model().lookup(ROOT_INO, dir).unwrap_or_else(|e| panic!("lookup {dir}: errno {e}")).ino;
                (ino, name)
            }
            None => (ROOT_INO, path),
        }
    }

    /// The `h`-th (modulo) of the handles `which` accepts.
    fn pick(&self, h: usize, which: impl Fn(&Handle) -> bool) -> Option<usize> {
        let fit: Vec<usize> = (0..self.handles.len()).filter(|&i| which(&self.handles[i])).collect();
        (!fit.is_empty()).then(|| fit[h % fit.len()])
    }

    fn exp(&mut self, path: &str) -> &mut Expect {
        self.expect.get_mut(path).unwrap_or_else(|| panic!("no path {path}"))
    }

    fn open(&mut self, p: usize, by_open: bool) {
        let path = PATHS[p];
        let (parent, name) = self.parent_of(path);
        let found = if by_open { self.model().lookup(parent, name).ok() } else { None };
        let (how, res) = match found {
            Some(st) => ("open", self.model().open(st.ino, libc::O_WRONLY | libc::O_TRUNC).map(|o| o.fh)),
            None => {
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
                ("create", self.model().create(parent, name, flags, 0o644, 0).map(|(_, fh)| fh))
            }
        };
        let fh = res.unwrap_or_else(|e| panic!("{how} {path}: errno {e}{}", self.context()));
        let id = self.next_id;
        self.next_id += 1;
        self.note(format!("{how} #{id} {path} O_TRUNC"));
        self.handles.push(Handle {
            fh,
            id,
            path: Some(path.to_string()),
            content: Vec::new(),
            chunks: 0,
            closed: false,
            acked: false,
            sync: Sync::FRESH,
        });
        self.write(self.handles.len() - 1);
    }

    /// Writes a new chunk at the end of handle `i`'s content. A handle holding nothing unsaved
    /// may have dropped its copy when another handle's upload of the file landed: its write
    /// then builds on the server's file (as two editors of one file do; README, "Several handles
    /// on one file"), after other handles' creations of the file not uploaded yet landed first.
    /// Whether that happened depends on when a background upload reached the handle: its content
    /// is read back (a read of its unsaved data asks the server nothing).
    fn write(&mut self, i: usize) {
        let t = self.tick();
        let h = &self.handles[i];
        let chunk = format!("<{}.{}>", h.id, h.chunks).into_bytes();
        let off = h.content.len();
        let res = self.model().write(h.fh, off as u64, &chunk);
        if res != Ok(chunk.len()) {
            panic!("write through #{}: {res:?}{}", h.id, self.context());
        }
        let mut own = h.content.clone();
        own.extend_from_slice(&chunk);
        let content = if h.sync.clean {
            let mut got = Vec::new();
            let read = self.model().read(h.fh, 0, 1 << 20, &mut |d| got.extend_from_slice(d));
            if read.is_err() || (got != own && !self.rebased(&got, off, &chunk)) {
                panic!(
                    "#{} holds {read:?} {:?} after a write at {off}{}",
                    h.id,
                    String::from_utf8_lossy(&got),
                    self.context()
                );
            }
            got
        } else {
            own.clone()
        };
        if content != own
            && let Some(path) = self.handles[i].path.clone()
        {
            // The other handles' creations of the file landed first, in any order.
            self.creations_may_land(&path, Some(i), t, false);
        }
        self.seen.push(content.clone());
        let h = &mut self.handles[i];
        h.content = content;
        h.chunks += 1;
        h.acked = false;
        h.sync = h.sync.wrote();
        let what = format!("write #{}: {}", h.id, String::from_utf8_lossy(&h.content));
        self.note(what);
    }

    /// Whether `got` is some content the file had with `chunk` written at `off`.
    fn rebased(&self, got: &[u8], off: usize, chunk: &[u8]) -> bool {
        self.seen.iter().any(|base| {
            let mut b = base.clone();
            b.resize(b.len().max(off + chunk.len()), 0);
            b[off..off + chunk.len()].copy_from_slice(chunk);
            b == got
        })
    }

    /// The model lands the handles on `path` (but `except`) that it never uploaded, in any
    /// order (`surely`: it did): the data of one not acknowledged as it is is a state `path`
    /// may be given at `t`; an acknowledged one keeps its own place in the order.
    fn creations_may_land(&mut self, path: &str, except: Option<usize>, t: u64, surely: bool) {
        let on: Vec<usize> = (0..self.handles.len())
            .filter(|&i| Some(i) != except && self.handles[i].path.as_deref() == Some(path))
            .collect();
        for i in on {
            let h = &self.handles[i];
            if h.sync.fresh && !h.acked {
                let content = h.content.clone();
                self.exp(path).maybe(t, Some(content));
            }
            self.handles[i].sync = self.handles[i].sync.landed(surely);
        }
    }

    /// A close of handle `i` (`last`: its last one).
    fn flush(&mut self, i: usize, last: bool) {
        let t = self.tick();
        let res = self.model().flush(self.handles[i].fh);
        let h = &self.handles[i];
        let what = format!("{} #{} on {:?}: {res:?}", if last { "close" } else { "flush" }, h.id, h.path);
        let (id, path, content, dirty) = (h.id, h.path.clone(), h.content.clone(), h.sync.dirty());
        self.note(what);
        // A writer's close reports (once, EIO) an earlier write-back of the file that failed
        // (README), once uploads were made to fail; its own version is journaled all the same
        // (checked as acknowledged), or it had nothing new.
        let journaled = || path.as_deref().is_some_and(|p| closed_at(&self.mount.journal, p, &content).is_some());
        let reports_earlier = res == Err(libc::EIO) && self.failures && (dirty != Some(true) || journaled());
        if res.is_err() && !reports_earlier {
            panic!("a close with write-back failed: {res:?}{}", self.context());
        }
        self.handles[i].closed |= last;
        let Some(path) = path else { return };
        match dirty {
            Some(true) => {
                // close(2) returns once the version is in the journal (README).
                let closed = closed_at(&self.mount.journal, &path, &content);
                if closed.is_none() {
                    panic!("close of #{id} returned 0 and its version is not in the journal{}", self.context());
                }
                self.exp(&path).ack(t, Some(content));
                self.exp(&path).closed = closed;
                self.handles[i].acked = true;
            }
            Some(false) => {}
            // Nothing new if its data is on the server already: some version of it, later.
            None => self.exp(&path).maybe(t, Some(content)),
        }
    }

    fn release(&mut self, i: usize) {
        let h = self.handles.remove(i);
        let res = self.model().release(h.fh);
        self.note(format!("release #{} on {:?}: {res:?}", h.id, h.path));
        if res.is_err() {
            panic!("a release with write-back failed: {res:?}{}", self.context());
        }
    }

    fn fsync(&mut self, i: usize) {
        let t = self.tick();
        let res = self.model().fsync(self.handles[i].fh);
        let h = &self.handles[i];
        let (id, path, content, dirty) = (h.id, h.path.clone(), h.content.clone(), h.sync.dirty());
        self.note(format!("fsync #{id} on {path:?}: {res:?}"));
        let Some(path) = path else { return };
        if dirty == Some(false) {
            return;
        }
        // Nothing else lands on the path meanwhile: the test makes no request, and fsync waited
        // for every upload of the path queued before it.
        let landed = self.mount.be().file(&path).as_ref() == Some(&content);
        if landed {
            self.handles[i].sync = Sync::CLEAN;
            match dirty {
                // Its data went up in the order of closes (an error is an earlier write-back's).
                Some(true) => {
                    self.exp(&path).ack(t, Some(content));
                    self.handles[i].acked = true;
                }
                _ => self.exp(&path).maybe(t, Some(content)),
            }
        } else if res.is_ok() {
            if dirty == Some(true) {
                let held = self.mount.be().file(&path);
                panic!("fsync of #{id} returned 0, and {path} holds {}{}", show(&held), self.context());
            }
            // It held nothing unsaved.
            self.handles[i].sync = Sync::CLEAN;
        }
    }

    fn rename(&mut self, x: usize, y: usize) {
        let (from, to) = (PATHS[x], PATHS[y]);
        let t = self.tick();
        let (pf, nf) = self.parent_of(from);
        let (pt, nt) = self.parent_of(to);
        let res = self.model().rename(pf, nf, pt, nt, false);
        self.note(format!("rename {from} {to}: {res:?}"));
        if from == to {
            return;
        }
        // The model first lands the handles on `from` that it never uploaded (so they move with
        // it); a rename that failed may have landed some.
        self.creations_may_land(from, None, t, res.is_ok());
        if res.is_err() {
            return;
        }
        let be = self.mount.be();
        if be.exists(from) || !be.exists(to) {
            let files = be.files();
            panic!("rename {from} {to} returned 0; the server holds {files:?}{}", self.context());
        }
        for h in &mut self.handles {
            match h.path.as_deref() {
                Some(p) if p == to => h.path = None,
                Some(p) if p == from => h.path = Some(to.to_string()),
                _ => {}
            }
        }
        let moved = std::mem::replace(self.exp(from), Expect::new(t, None));
        *self.exp(to) = moved;
    }

    fn unlink(&mut self, x: usize) {
        let path = PATHS[x];
        let t = self.tick();
        let (parent, name) = self.parent_of(path);
        let res = self.model().unlink(parent, name);
        self.note(format!("unlink {path}: {res:?}"));
        match res {
            Ok(()) => {
                if self.mount.be().exists(path) {
                    panic!("unlink {path} returned 0 and it is still there{}", self.context());
                }
                self.exp(path).ack(t, None);
                for h in &mut self.handles {
                    if h.path.as_deref() == Some(path) {
                        h.path = None;
                    }
                }
            }
            Err(libc::ENOENT) => {}
            Err(e) => panic!("unlink {path}: errno {e}{}", self.context()),
        }
    }

    fn fail_uploads(&mut self, k: usize) {
        for n in 1..=k {
            self.mount.be().fail_nth(Op::Write, n, FsError::Broken);
        }
        self.failures = true;
        self.note(format!("the next {k} uploads fail"));
    }

    /// Waits (30 s at most) until no upload is queued or running.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.model().describe_writeback().starts_with("0 uploads queued") {
            if Instant::now() > deadline {
                panic!("write-back never settled: {}{}", self.model().describe_writeback(), self.context());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.note("settled".into());
    }

    /// The end of this mount (`crash`: kill -9 now; else it was stopped), and the start of the
    /// next, which replays what this one left in its journal; then checks every path.
    fn restart(&mut self, crash: bool) {
        let left = left_in_journal(self.model());
        // The crash's instant: the server takes nothing more from this mount.
        self.mount.server.kill();
        if crash {
            // Its threads wind down without reaching the server (see the module's doc).
            self.mount.model.stop();
        }
        // The replay keeps the server's file instead of a version closed before the file last
        // changed (in a later second: MDTM), other than by that version's own upload (README:
        // "A replay never replaces a version it did not know"): that file may stay, even when
        // the change was this mount's own older close landing.
        let t = self.tick();
        for p in self.time_rule_keeps() {
            let held = self.mount.be().file(p);
            self.note(format!("{p}: the replay may keep {} (changed after the close)", show(&held)));
            self.exp(p).maybe(t, held);
            stats(|s| s.time_rule += 1);
        }
        let copy = self.top.path().join(format!("left-{}", self.mounts));
        std::fs::create_dir(&copy).expect("dir");
        copy_journal(&self.mount.journal, &copy);
        let kept = entries(&copy);
        let be = restored(&self.mount.server);
        self.handles.clear();
        self.mount = Mount::new(self.top.path(), self.mounts, be, self.workers);
        self.mounts += 1;
        let landed = self.model().recover_journal(&copy);
        let what = if crash { "crash" } else { "end" };
        self.note(format!("{what}: {kept} journal entries ({left} left by failed uploads), {landed} landed at replay"));
        stats(|s| {
            s.restarts += 1;
            s.crashes += u64::from(crash);
            s.left += left;
            s.replayed += landed as u64;
        });
        if entries(&copy) != 0 {
            panic!("the replay left {} entries in the journal{}", entries(&copy), self.context());
        }
        self.check(&format!("after the replay that follows the {what}"));
        // What the replay left is where the next mount starts.
        let t = self.tick();
        let files = self.mount.be().files();
        for (p, e) in &mut self.expect {
            *e = Expect::new(t, files.get(*p).cloned());
        }
    }

    /// The paths whose newest acknowledged version is a close that the server's file (another
    /// content) changed after, in a later second by the server's clock.
    fn time_rule_keeps(&self) -> Vec<&'static str> {
        let times = self.mount.server.clock.times.lock().clone();
        let files = self.mount.be().files();
        let changed_after = |p: &str, e: &Expect| {
            let (Some(closed), Some(version), Some(held), Some(t)) = (e.closed, &e.floor.1, files.get(p), times.get(p))
            else {
                return false;
            };
            held != version && secs(*t) > secs(closed)
        };
        self.expect.iter().filter(|(p, e)| changed_after(p, e)).map(|(p, _)| *p).collect()
    }

    /// Every path holds a state the reference allows; nothing else is on the server.
    fn check(&self, when: &str) {
        let files = self.mount.be().files();
        for (p, e) in &self.expect {
            let got = files.get(*p).cloned();
            let allowed = e.allowed();
            if !allowed.contains(&&got) {
                let allowed: Vec<String> = allowed.iter().map(|c| show(c)).collect();
                panic!(
                    "{when}: {p} holds {}; allowed: {} (the newest acknowledged first){}",
                    show(&got),
                    allowed.join(" or "),
                    self.context()
                );
            }
            stats(|s| if allowed.len() == 1 { s.exact += 1 } else { s.among += 1 });
        }
        let stray: Vec<&String> = files.keys().filter(|k| !PATHS.contains(&k.as_str())).collect();
        if !stray.is_empty() {
            panic!("{when}: files no case makes: {stray:?}{}", self.context());
        }
    }

    fn step(&mut self, a: &Action) {
        let open = |h: &Handle| !h.closed;
        match *a {
            Action::Open(p, by_open) => self.open(p, by_open),
            Action::Write(h) => {
                if let Some(i) = self.pick(h, open) {
                    self.write(i)
                }
            }
            Action::Flush(h) => {
                if let Some(i) = self.pick(h, open) {
                    self.flush(i, false)
                }
            }
            Action::Close(h) => {
                if let Some(i) = self.pick(h, open) {
                    self.flush(i, true)
                }
            }
            Action::Release(h) => {
                if let Some(i) = self.pick(h, |h| h.closed) {
                    self.release(i)
                }
            }
            Action::Fsync(h) => {
                if let Some(i) = self.pick(h, open) {
                    self.fsync(i)
                }
            }
            Action::Rename(x, y) => self.rename(x, y),
            Action::Unlink(x) => self.unlink(x),
            Action::FailUploads(k) => self.fail_uploads(k),
            Action::Settle => self.settle(),
            Action::Crash => self.restart(true),
        }
    }

    /// Every handle closed and released (as before an unmount), the mount stopped, and the next
    /// mount's replay of its journal checked.
    fn finish(mut self) {
        for i in 0..self.handles.len() {
            if !self.handles[i].closed {
                self.flush(i, true);
            }
        }
        while !self.handles.is_empty() {
            self.release(0);
        }
        self.mount.model.stop();
        self.restart(false);
        self.mount.model.stop();
    }
}

/// `lagging`: the server's clock is an hour behind ours (else in sync).
fn run(actions: &[Action], workers: usize, lagging: bool) {
    let lag = if lagging { Duration::from_secs(3600) } else { Duration::ZERO };
    let mut r = Run::new(workers, lag);
    for a in actions {
        r.step(a);
    }
    r.finish();
    report();
}

/// What a test's cases did, for the line printed after its last case.
#[derive(Clone, Copy, Default)]
struct Stats {
    cases: u32,
    restarts: u64,
    crashes: u64,
    /// Versions the queue had left in the journal (5 failed attempts) when the mount ended.
    left: u64,
    /// Files the replays landed.
    replayed: u64,
    /// Path checks with one state allowed, and with several.
    exact: u64,
    among: u64,
    /// Server files a replay may keep by its rule of times (see [`Run::time_rule_keeps`]).
    time_rule: u64,
}

thread_local! {
    /// Each proptest test runs its cases on one thread.
    static STATS: std::cell::Cell<Stats> = const {
        std::cell::Cell::new(Stats {
            cases: 0,
            restarts: 0,
            crashes: 0,
            left: 0,
            replayed: 0,
            exact: 0,
            among: 0,
            time_rule: 0,
        })
    };
}

fn stats(change: impl FnOnce(&mut Stats)) {
    STATS.with(|c| {
        let mut s = c.get();
        change(&mut s);
        c.set(s);
    });
}

/// After a test's last case: what its cases did, and how much of it was checked exactly (shown
/// with `--nocapture`).
fn report() {
    stats(|s| s.cases += 1);
    let s = STATS.with(|c| c.get());
    if s.cases == cases() {
        let checks = (s.exact + s.among).max(1);
        eprintln!(
            "{}: {} cases, {} mounts ended ({} by a crash), {} versions left in the journal by failed uploads, \
             {} files landed by replays; of {checks} path checks {} exact ({}%), {} among several states allowed \
             ({} by the replay's rule of times)",
            std::thread::current().name().unwrap_or("?"),
            s.cases,
            s.restarts,
            s.crashes,
            s.left,
            s.replayed,
            s.exact,
            s.exact * 100 / checks,
            s.among,
            s.time_rule,
        );
    }
}

/// As in `prop_tests`: `FTPFS_PROPTEST_CASES` cases (default 256), its seed.
fn cases() -> u32 {
    super::prop_tests::cases_or(256)
}

use super::prop_tests::seed;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: seed(), ..ProptestConfig::default() })]

    /// Handles, renames, deletes, failing uploads and crashes, one to three upload threads, a
    /// server clock in sync with ours or behind it.
    #[test]
    fn write_back_lands_the_newest_acknowledged_version(
        actions in prop::collection::vec(action(1, 1), 1..40),
        workers in 1..4usize,
        lagging in any::<bool>(),
    ) {
        run(&actions, workers, lagging);
    }

    /// More failing uploads, no crash: versions left in the journal by the mount, and their
    /// replay at the next.
    #[test]
    fn versions_left_by_failed_uploads_land_at_the_next_mount(
        actions in prop::collection::vec(action(3, 0), 1..30),
        workers in 1..3usize,
        lagging in any::<bool>(),
    ) {
        run(&actions, workers, lagging);
    }
}

/// Runs `steps` and the end (every handle closed and released, the mount stopped, the next
/// mount's replay checked).
fn case(steps: &[Action]) {
    let mut r = Run::new(1, Duration::ZERO);
    for a in steps {
        r.step(a);
    }
    r.finish();
}

/// Runs `before`, and when every close in the journal and every change on the server took
/// place within one second (the times a replay compares are whole seconds: MDTM), `after` and
/// the end; tried again when a second began meanwhile. With clocks in sync, as here.
fn within_one_second(before: &[Action], after: &[Action]) {
    for _ in 0..20 {
        let mut r = Run::new(1, Duration::ZERO);
        for a in before {
            r.step(a);
        }
        let mut times: Vec<u64> = r.mount.server.clock.times.lock().values().map(|t| secs(*t)).collect();
        for e in std::fs::read_dir(&r.mount.journal).expect("journal").flatten() {
            times.push(secs(e.metadata().and_then(|m| m.modified()).expect("time")));
        }
        if times.iter().any(|t| *t != times[0]) {
            continue;
        }
        for a in after {
            r.step(a);
        }
        r.finish();
        return;
    }
    panic!("20 tries, none within one second");
}

// Failures the property tests found, minimized by hand (the shrinking of proptest is weak here:
// the order in which the model lands several handles is the order of a HashMap). Each fails on
// the model as it is: an older close of a file lands over a newer version, one acknowledged by
// a close or an fsync that returned 0. By cause:
// - the journal entry of a close outlives a newer version of its file landing (fsync, or a later
//   close uploaded by the queue), and the replay after a crash lands it (the replay's check of
//   times sees nothing within one second);
// - a rename, or a write that builds on the file, first lands the handles that created the file
//   and have not uploaded it, closed ones too: in the order of the table of handles, not of the
//   closes, and even after a newer close landed; none of them uploads anything after that;
// - the queue keeps the order of closes by path, and a rename neither moves it nor clears it for
//   the replaced file;
// - a version left in the journal by failed uploads is dropped when a newer version lands
//   through the queue or fsync, not when a rename lands it.

use Action::{Close, Crash, FailUploads, Flush, Fsync, Open, Release, Rename, Settle, Write};

/// Two closes of `a`, the newer released and landed; the mount crashes before the older close's
/// release. The journal still holds the older close's entry (nothing drops it when the newer
/// version lands), and the replay lands it over the newer version: the server's file changed
/// after that close, but within the same second, which the replay's check of times cannot see.
#[test]
fn a_crash_replays_no_older_close_over_a_newer_version_that_landed() {
    within_one_second(&[Open(0, false), Open(0, false), Close(0), Close(0), Release(1), Settle], &[Crash]);
}

/// The same with the newer version landed by fsync.
#[test]
fn a_crash_replays_no_older_close_over_a_newer_fsync() {
    within_one_second(&[Open(0, false), Open(0, false), Close(0), Fsync(0)], &[Crash]);
}

/// The same with one handle: closed once (a duplicate descriptor), written again and fsynced;
/// the entry of its first close stays in the journal (fsync neither drops nor renews it).
#[test]
fn a_crash_replays_no_older_close_over_the_same_handles_fsync() {
    within_one_second(&[Open(0, false), Flush(0), Write(0), Fsync(0)], &[Crash]);
}

/// Two closes of `a`, the newer released and landed, the older's release still to come, then a
/// rename of `a`: the rename lands the files created under `a` and not uploaded yet "so they
/// move with it", and the older close is one of them. It lands over the newer version and is
/// what the new name holds; nothing lands after it (both handles hold nothing unsaved now).
#[test]
fn a_rename_lands_no_older_close_over_a_newer_one() {
    case(&[Open(0, false), Open(0, false), Close(0), Close(0), Release(1), Settle, Rename(0, 1)]);
}

/// Two closes of `a`, neither released, then a rename: both versions land first, in the order
/// of the table of handles, not of the closes (each try fails with chance 1/2).
#[test]
fn a_rename_lands_closed_versions_in_the_order_of_their_closes() {
    for _ in 0..16 {
        case(&[Open(0, false), Open(0, false), Close(0), Close(0), Rename(0, 1)]);
    }
}

/// The same through a write: #1 closes `a` (its release still to come), #2's fsync of `a`
/// lands a newer version, then #0, which holds nothing unsaved (it was fsynced), writes again.
/// Its write builds on the server's file, so the model first lands the creations of `a` not
/// uploaded yet: #1's older close lands over the fsynced version, and a crash leaves it there.
#[test]
fn a_write_lands_no_older_close_over_a_newer_one() {
    case(&[Open(0, false), Fsync(0), Open(0, false), Close(1), Open(0, false), Fsync(1), Write(0), Crash]);
}

/// A version of `a` left in the journal by 5 failed uploads, then a newer close of `a` landed
/// by a rename (its creation lands before the rename): the left version is not dropped (only a
/// landing through the queue or fsync drops it), follows the rename, and the next mount's
/// replay lands it over the newer version when its check of times cannot tell (within one
/// second here; with the mount's 1+2+4+8 s of retries, when the server's clock is behind).
#[test]
fn a_left_version_goes_when_a_rename_lands_a_newer_one() {
    let before = [Open(0, false), FailUploads(5), Close(0), Release(0), Settle, Open(0, false), Close(0), Rename(0, 1)];
    within_one_second(&before, &[]);
}

/// An older close of `a` released after `a` was renamed to `b` and a newer close of `a` landed
/// before the rename: the queue remembers the newest close by path, and forgets it for the new
/// name, so the older version lands over the newer one.
#[test]
fn the_order_of_closes_follows_a_rename() {
    // #0 is uploaded once by fsync, so the rename does not land it (it is no creation then).
    case(&[
        Open(0, false),
        Fsync(0),
        Write(0),
        Close(0),
        Open(0, false),
        Close(0),
        Release(1),
        Settle,
        Rename(0, 1),
        Release(0),
    ]);
}

/// `a` renamed over `b` after a close of `b` landed: the queue still remembers that close for
/// `b`, and drops the moved file's own later-released close as superseded by it.
#[test]
fn a_renamed_file_is_not_superseded_by_the_replaced_files_closes() {
    case(&[
        Open(0, false),
        Fsync(0),
        Write(0),
        Close(0),
        Open(1, false),
        Close(0),
        Release(1),
        Settle,
        Rename(0, 1),
        Release(0),
    ]);
}
