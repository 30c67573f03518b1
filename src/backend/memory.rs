//! [`MemoryBackend`]: an in-memory fake FTP *server* implementing [`Backend`], for unit and
//! property tests of the filesystem model without sockets, root or a kernel.
//!
//! It owns a tree of directories and files (contents, mode bits, mtimes from a deterministic
//! logical clock), a limited number of connection slots held by open streams, a log of every
//! request, and fault injection (failing the n-th call of an operation, broken transfers, a full
//! disk, refused appends or replacing renames, delays, uploads held until the test lets them
//! go). Its semantics follow a Unix FTP server:
//! STOR truncates at start and bytes land as they arrive, an open upload follows its file across
//! renames (like an open file descriptor), a download reads a snapshot taken when it opened.
//! Tests may also edit the tree directly, as an external client would, bypassing faults and
//! the connection limit.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::paths::{is_at_or_under, split_path};
use super::{
    AfterUpload, Backend, BackendResult, Entry, EntryKind, FsError, ReadStream, Settled, WriteMode, WriteStream,
};

/// The first value of the logical clock (seconds since the epoch); every change adds one.
pub const START_TIME: i64 = 1_700_000_000;
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
const DIR_SIZE: u64 = 4096;
/// The longest an upload waits while [`MemoryBackend::hold_uploads`] holds it: it goes on then,
/// so a test that never lets it go fails on what landed instead of hanging.
const HOLD_MAX: Duration = Duration::from_secs(30);

/// The operations [`MemoryBackend::fail_nth`] can make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    Stat,
    Size,
    Read,
    Write,
    Mkdir,
    Rmdir,
    Delete,
    Rename,
    SetMtime,
    Chmod,
}

/// Called by [`Backend::list`] with the directory, between taking its snapshot and returning.
pub type ListHook = Box<dyn Fn(&str) + Send + Sync>;
type SharedHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
}

#[derive(Clone, Debug)]
struct Node {
    /// Identity of the file (its inode), followed by open uploads across renames.
    id: u64,
    kind: Kind,
    mode: u32,
    mtime: i64,
}

struct State {
    /// Every node by mount-relative path; the root is `""`.
    tree: BTreeMap<String, Node>,
    clock: i64,
    next_id: u64,
    connections: usize,
    open: usize,
    shut: bool,
    calls: Vec<String>,
    faults: Vec<(Op, usize, FsError)>,
    /// Operations whose next success is reported as a broken connection (reply lost).
    lost_replies: Vec<Op>,
    size_supported: bool,
    /// Uploads take a time and a mode behind their data ([`WriteStream::finish_then`]).
    folds_after_upload: bool,
    /// The server computes SHA digests (see [`Backend::checksums`]).
    digests_supported: bool,
    /// Answers [`Backend::stat_one`] (like a server with MLST).
    stat_one_supported: bool,
    mtime_supported: bool,
    chmod_supported: bool,
    /// The permission bits the server gives a file it makes (its umask).
    new_file_mode: u32,
    refuse_replace_rename: bool,
    refuse_append: bool,
    append_refused: bool,
    break_write: Option<u64>,
    break_read: Option<u64>,
    finish_err: Option<FsError>,
    space_limit: Option<u64>,
    delay: Duration,
    /// Each write into an upload first waits this long ([`MemoryBackend::slow_writes`]).
    write_pause: Duration,
    /// Uploads wait before taking effect ([`MemoryBackend::hold_uploads`]).
    uploads_held: bool,
    /// Uploads waiting for that now.
    uploads_waiting: usize,
    wait_limit: Duration,
    /// What [`Backend::lists_at_once`] answers (1: no batches).
    lists_at_once: usize,
    list_hook: Option<SharedHook>,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a slot frees up, when held uploads are let go, or on shut down.
    cond: Condvar,
}

/// An in-memory FTP server with fault injection; see the module documentation.
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

/// Rejects paths the model should never send: leading, trailing or doubled slashes, `.`/`..`.
fn check_path(path: &str) -> BackendResult<()> {
    if path.is_empty() {
        return Ok(());
    }
    let bad = |c: &str| c.is_empty() || c == "." || c == ".." || c.contains(['\r', '\n', '\0']);
    if path.split('/').any(bad) { Err(FsError::Invalid) } else { Ok(()) }
}

impl State {
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn new_node(&mut self, kind: Kind) -> Node {
        self.next_id += 1;
        let mode = if matches!(kind, Kind::Dir) { DIR_MODE } else { self.new_file_mode };
        Node { id: self.next_id, kind, mode, mtime: self.clock }
    }

    fn is_dir(&self, path: &str) -> bool {
        matches!(self.tree.get(path), Some(Node { kind: Kind::Dir, .. }))
    }

    /// The paths of the direct children of directory `dir`.
    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        self.tree
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p.is_empty() && !p[prefix.len()..].contains('/'))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `dir` and everything below it.
    fn subtree(&self, root: &str) -> Vec<String> {
        self.tree.keys().filter(|p| is_at_or_under(p, root)).cloned().collect()
    }

    /// Checks that the parent of `path` exists and is a directory.
    fn check_parent(&self, path: &str) -> BackendResult<()> {
        match self.tree.get(split_path(path).0) {
            None => Err(FsError::NotFound),
            Some(Node { kind: Kind::File(_), .. }) => Err(FsError::NotDir),
            Some(_) => Ok(()),
        }
    }

    /// Sets the mtime of the parent directory of `path` (an entry was added or removed).
    fn touch_parent(&mut self, path: &str, now: i64) {
        if let Some(p) = self.tree.get_mut(split_path(path).0) {
            p.mtime = now;
        }
    }

    fn used(&self) -> u64 {
        self.tree.values().map(|n| if let Kind::File(d) = &n.kind { d.len() as u64 } else { 0 }).sum()
    }

    fn remove_tree(&mut self, root: &str) -> bool {
        let paths = self.subtree(root);
        for p in &paths {
            self.tree.remove(p);
        }
        !paths.is_empty()
    }

    /// Moves `from` (and its subtree) to `to`, which must not exist.
    fn move_tree(&mut self, from: &str, to: &str) {
        for p in self.subtree(from) {
            if let Some(node) = self.tree.remove(&p) {
                self.tree.insert(format!("{to}{}", &p[from.len()..]), node);
            }
        }
        let now = self.tick();
        self.touch_parent(from, now);
        self.touch_parent(to, now);
    }

    fn mkdir_all(&mut self, path: &str) {
        let mut at = 0;
        while at <= path.len() && !path.is_empty() {
            let end = path[at..].find('/').map_or(path.len(), |i| at + i);
            let prefix = &path[..end];
            if !self.is_dir(prefix) {
                self.remove_tree(prefix);
                let now = self.tick();
                let node = self.new_node(Kind::Dir);
                self.tree.insert(prefix.to_string(), node);
                self.touch_parent(prefix, now);
            }
            at = end + 1;
        }
    }

    /// Counts a call of `op` against the injected faults; the error of one that fires now.
    fn fault(&mut self, op: Op) -> BackendResult<()> {
        let mut fired = None;
        self.faults.retain_mut(|(o, n, e)| {
            if *o != op {
                return true;
            }
            *n -= 1;
            if *n == 0 {
                fired.get_or_insert(*e);
            }
            *n > 0
        });
        fired.map_or(Ok(()), Err)
    }

    /// The reply to an `op` that took effect: lost (Broken) if a lost reply was injected.
    fn reply(&mut self, op: Op) -> BackendResult<()> {
        match self.lost_replies.iter().position(|o| *o == op) {
            Some(i) => {
                self.lost_replies.remove(i);
                Err(FsError::Broken)
            }
            None => Ok(()),
        }
    }
}

/// One connection slot, given back when dropped.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.state.lock().open -= 1;
        self.0.cond.notify_all();
    }
}

struct MemReader {
    data: Vec<u8>,
    pos: usize,
    break_after: Option<u64>,
    broken: bool,
    _slot: Slot,
}

impl io::Read for MemReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = buf.len().min(self.data.len() - self.pos);
        if let Some(limit) = self.break_after {
            let left = limit.saturating_sub(self.pos as u64);
            if left == 0 {
                self.broken = true;
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "injected: download broken"));
            }
            n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadStream for MemReader {
    fn finish(self: Box<Self>) -> BackendResult<()> {
        if self.broken { Err(FsError::Broken) } else { Ok(()) }
    }
}

struct MemWriter {
    inner: Arc<Inner>,
    id: u64,
    written: u64,
    break_after: Option<u64>,
    failed: Option<FsError>,
    finish_err: Option<FsError>,
    _slot: Slot,
}

fn stream_error(e: FsError) -> io::Error {
    match e {
        FsError::NoSpace => io::Error::new(io::ErrorKind::StorageFull, "injected: no space"),
        _ => io::Error::new(io::ErrorKind::ConnectionReset, "injected: upload broken"),
    }
}

impl io::Write for MemWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failed {
            return Err(stream_error(e));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let pause = self.inner.state.lock().write_pause;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let mut n = buf.len() as u64;
        if let Some(limit) = self.break_after {
            let left = limit.saturating_sub(self.written);
            if left == 0 {
                self.failed = Some(FsError::Broken);
                return Err(stream_error(FsError::Broken));
            }
            n = n.min(left);
        }
        let mut st = self.inner.state.lock();
        if let Some(limit) = st.space_limit {
            let left = limit.saturating_sub(st.used());
            if left == 0 {
                self.failed = Some(FsError::NoSpace);
                return Err(stream_error(FsError::NoSpace));
            }
            n = n.min(left);
        }
        let n = usize::try_from(n).unwrap_or(buf.len());
        let now = st.tick();
        // A deleted file keeps taking bytes into nowhere, like an unlinked open file.
        if let Some(node) = st.tree.values_mut().find(|node| node.id == self.id)
            && let Kind::File(data) = &mut node.kind
        {
            data.extend_from_slice(&buf[..n]);
            node.mtime = now;
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteStream for MemWriter {
    fn finish(self: Box<Self>) -> BackendResult<Option<u64>> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.break_after.is_some() {
            return Err(FsError::Broken);
        }
        if let Some(e) = self.finish_err {
            return Err(e);
        }
        let st = self.inner.state.lock();
        if !st.size_supported {
            return Ok(None);
        }
        let len = st.tree.values().find(|node| node.id == self.id).and_then(|node| match &node.kind {
            Kind::File(data) => Some(data.len() as u64),
            Kind::Dir => None,
        });
        Ok(len)
    }

    fn finish_then(self: Box<Self>, after: AfterUpload) -> BackendResult<(Option<u64>, Settled)> {
        let inner = self.inner.clone();
        let id = self.id;
        let size = self.finish()?;
        let mut st = inner.state.lock();
        if !st.folds_after_upload {
            return Ok((size, Settled::default()));
        }
        let mtime = after.mtime.filter(|_| st.mtime_supported);
        let mode = after.mode.filter(|_| st.chmod_supported);
        let Some((path, node)) = st.tree.iter_mut().find(|(_, node)| node.id == id) else {
            return Ok((size, Settled::default()));
        };
        let mut call = format!("finish_then {path}");
        if let Some(t) = mtime {
            node.mtime = t;
            call += &format!(" mtime {t}");
        }
        if let Some(m) = mode {
            node.mode = m & 0o7777;
            call += &format!(" mode {m:o}");
        }
        if mtime.is_some() || mode.is_some() {
            st.calls.push(call);
        }
        Ok((size, Settled { mtime: mtime.is_some(), mode: mode.is_some() }))
    }
}

impl MemoryBackend {
    /// An empty server (just the root directory) allowing `connections` open streams at once.
    pub fn new(connections: usize) -> MemoryBackend {
        let mut tree = BTreeMap::new();
        tree.insert(String::new(), Node { id: 0, kind: Kind::Dir, mode: DIR_MODE, mtime: START_TIME });
        let state = State {
            tree,
            clock: START_TIME,
            next_id: 0,
            connections,
            open: 0,
            shut: false,
            calls: Vec::new(),
            faults: Vec::new(),
            lost_replies: Vec::new(),
            size_supported: true,
            folds_after_upload: false,
            digests_supported: true,
            stat_one_supported: false,
            mtime_supported: true,
            chmod_supported: true,
            new_file_mode: FILE_MODE,
            refuse_replace_rename: false,
            refuse_append: false,
            append_refused: false,
            break_write: None,
            break_read: None,
            finish_err: None,
            space_limit: None,
            delay: Duration::ZERO,
            write_pause: Duration::ZERO,
            uploads_held: false,
            uploads_waiting: 0,
            wait_limit: Duration::from_secs(2),
            lists_at_once: 1,
            list_hook: None,
        };
        MemoryBackend { inner: Arc::new(Inner { state: Mutex::new(state), cond: Condvar::new() }) }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// The start of every request: the injected delay (cut short by shut down), the call log,
    /// path checks, shut down and injected faults. Returns the locked state.
    fn begin(&self, op: Op, call: String, paths: &[&str]) -> BackendResult<MutexGuard<'_, State>> {
        let mut st = self.st();
        let deadline = Instant::now() + st.delay;
        while !st.shut && Instant::now() < deadline {
            self.inner.cond.wait_until(&mut st, deadline);
        }
        st.calls.push(call);
        if st.shut {
            return Err(FsError::Unmounting);
        }
        st.fault(op)?;
        paths.iter().try_for_each(|p| check_path(p))?;
        Ok(st)
    }

    /// Waits until `wait` for a free connection slot; false if none became free. The caller
    /// takes it with [`MemoryBackend::slot`] once its request is known to succeed (still locked).
    fn wait_slot(&self, st: &mut MutexGuard<'_, State>, wait: Duration) -> BackendResult<bool> {
        let deadline = Instant::now() + wait;
        loop {
            if st.shut {
                return Err(FsError::Unmounting);
            }
            if st.open < st.connections {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.inner.cond.wait_until(st, deadline);
        }
    }

    /// An upload waits here (its call logged, before it takes effect) while uploads are held,
    /// at most [`HOLD_MAX`]; shut down cuts the wait short and fails it.
    fn wait_while_held(&self, st: &mut MutexGuard<'_, State>) -> BackendResult<()> {
        if !st.uploads_held {
            return Ok(());
        }
        let deadline = Instant::now() + HOLD_MAX;
        st.uploads_waiting += 1;
        while st.uploads_held && !st.shut {
            if self.inner.cond.wait_until(st, deadline).timed_out() {
                log::warn!("an upload held for {HOLD_MAX:?} goes on: the test never let it go");
                break;
            }
        }
        st.uploads_waiting -= 1;
        if st.shut { Err(FsError::Unmounting) } else { Ok(()) }
    }

    fn slot(&self, st: &mut State) -> Slot {
        st.open += 1;
        Slot(Arc::clone(&self.inner))
    }

    // ---- fault injection and configuration ----

    /// The next call of `op` fails with `err` and has no effect.
    pub fn fail_next(&self, op: Op, err: FsError) {
        self.fail_nth(op, 1, err);
    }

    /// The `n`-th call of `op` from now (1 = the next) fails with `err` and has no effect.
    pub fn fail_nth(&self, op: Op, n: usize, err: FsError) {
        self.st().faults.push((op, n.max(1), err));
    }

    /// The next `op` (mkdir, rmdir, delete or rename) that succeeds takes effect, but its
    /// reply is lost: it reports [`FsError::Broken`].
    pub fn lose_reply_next(&self, op: Op) {
        self.st().lost_replies.push(op);
    }

    /// Renames onto an existing target fail with [`FsError::Failed`] and change nothing.
    pub fn refuse_rename_over_existing(&self, refuse: bool) {
        self.st().refuse_replace_rename = refuse;
    }

    /// Appends fail with [`FsError::Unsupported`]; the first refusal makes `can_append` false.
    pub fn refuse_append(&self, refuse: bool) {
        self.st().refuse_append = refuse;
    }

    /// The next upload takes `bytes` bytes, then breaks (io errors, finish says Broken).
    pub fn break_write_after(&self, bytes: u64) {
        self.st().break_write = Some(bytes);
    }

    /// The next download yields `bytes` bytes, then breaks (io errors, finish says Broken).
    pub fn break_read_after(&self, bytes: u64) {
        self.st().break_read = Some(bytes);
    }

    /// The next upload's finish fails with `err`; the bytes that landed stay.
    pub fn fail_finish_next(&self, err: FsError) {
        self.st().finish_err = Some(err);
    }

    /// Limits the total size of all files; uploads beyond it fail (finish says NoSpace).
    pub fn space_limit(&self, limit: Option<u64>) {
        self.st().space_limit = limit;
    }

    /// Every request first waits this long (cut short by shut down).
    pub fn delay(&self, delay: Duration) {
        self.st().delay = delay;
    }

    /// Every write into an upload waits `pause` first: a slow link on which uploads still move.
    pub fn slow_writes(&self, pause: Duration) {
        self.st().write_pause = pause;
    }

    /// `true`: uploads (`write`) wait, once their call is logged and before they take effect
    /// (nothing created or emptied yet), until `false` lets them go; each waits 30 s at most,
    /// then goes on. Shut down fails the waiting ones with [`FsError::Unmounting`].
    pub fn hold_uploads(&self, hold: bool) {
        self.st().uploads_held = hold;
        self.inner.cond.notify_all();
    }

    /// How many uploads [`MemoryBackend::hold_uploads`] holds right now.
    pub fn uploads_waiting(&self) -> usize {
        self.st().uploads_waiting
    }

    pub fn set_list_hook(&self, hook: Option<ListHook>) {
        self.st().list_hook = hook.map(Arc::from);
    }

    /// `false`: `size` answers `Ok(None)` (no SIZE command).
    pub fn set_stat_one_supported(&self, yes: bool) {
        self.st().stat_one_supported = yes;
    }

    pub fn set_digests_supported(&self, yes: bool) {
        self.st().digests_supported = yes;
    }

    pub fn set_size_supported(&self, yes: bool) {
        self.st().size_supported = yes;
    }

    /// `false`: `set_mtime` fails with Unsupported.
    pub fn set_mtime_supported(&self, yes: bool) {
        self.st().mtime_supported = yes;
    }

    /// `false`: `chmod` fails with Unsupported and `can_chmod` is false.
    /// Moves the logical clock to `secs` (seconds since the epoch): the times of changes from
    /// now on follow from there (a test that compares them with the wall clock).
    pub fn set_clock(&self, secs: i64) {
        self.st().clock = secs;
    }

    /// Uploads set a time and a mode asked behind their data, in their last round trip (as
    /// the FTP backend on vsftpd), recorded as `finish_then PATH [mtime SECS] [mode MODE]`.
    pub fn set_folds_after_upload(&self, yes: bool) {
        self.st().folds_after_upload = yes;
    }

    pub fn set_chmod_supported(&self, yes: bool) {
        self.st().chmod_supported = yes;
    }

    /// The permission bits of files the server makes from now on (0644 by default; vsftpd's
    /// own default umask 077 gives 0600).
    pub fn set_new_file_mode(&self, mode: u32) {
        self.st().new_file_mode = mode;
    }

    pub fn set_wait_limit(&self, limit: Duration) {
        self.st().wait_limit = limit;
    }

    /// Lets [`Backend::list_several`] list up to `n` directories as one request (recorded as
    /// `"several a,b"`, then each as a `"list"`), like a server that lists them in one go.
    pub fn set_lists_at_once(&self, n: usize) {
        self.st().lists_at_once = n.max(1);
    }

    /// Every request so far, e.g. `"list a"`, `"write b Replace"`, `"rename a b"`.
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.st().calls.clear();
    }

    // ---- direct access (an external client; no faults, no connection limit) ----

    /// Creates or overwrites file `path` (creating missing parents; replacing a dir there).
    pub fn put_file(&self, path: &str, content: &[u8]) {
        let mut st = self.st();
        st.mkdir_all(split_path(path).0);
        if st.is_dir(path) {
            st.remove_tree(path);
        }
        let now = st.tick();
        if let Some(node @ Node { kind: Kind::File(_), .. }) = st.tree.get_mut(path) {
            node.kind = Kind::File(content.to_vec());
            node.mtime = now;
        } else {
            let node = st.new_node(Kind::File(content.to_vec()));
            st.tree.insert(path.to_string(), node);
            st.touch_parent(path, now);
        }
    }

    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.st().tree.get(path) {
            Some(Node { kind: Kind::File(d), .. }) => Some(d.clone()),
            _ => None,
        }
    }

    /// Creates directory `path` and its missing parents (a file in the way is replaced).
    pub fn mkdir_all(&self, path: &str) {
        self.st().mkdir_all(path);
    }

    /// Removes a file or a directory tree; false if nothing was there.
    pub fn remove(&self, path: &str) -> bool {
        let mut st = self.st();
        if path.is_empty() || !st.remove_tree(path) {
            return false;
        }
        let now = st.tick();
        st.touch_parent(path, now);
        true
    }

    /// Moves `from` to `to` (creating parents of `to`, replacing whatever is there); false if
    /// `from` is missing or `to` is inside it.
    pub fn rename_external(&self, from: &str, to: &str) -> bool {
        let mut st = self.st();
        if from.is_empty() || !st.tree.contains_key(from) || is_at_or_under(to, from) {
            return from == to && st.tree.contains_key(from);
        }
        st.mkdir_all(split_path(to).0);
        st.remove_tree(to);
        st.move_tree(from, to);
        true
    }

    pub fn exists(&self, path: &str) -> bool {
        self.st().tree.contains_key(path)
    }

    /// Every file's content, by path.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let st = self.st();
        st.tree
            .iter()
            .filter_map(|(p, n)| if let Kind::File(d) = &n.kind { Some((p.clone(), d.clone())) } else { None })
            .collect()
    }

    /// Every directory but the root, sorted.
    pub fn dirs(&self) -> Vec<String> {
        let st = self.st();
        st.tree.iter().filter(|(p, n)| !p.is_empty() && matches!(n.kind, Kind::Dir)).map(|(p, _)| p.clone()).collect()
    }

    pub fn mode(&self, path: &str) -> Option<u32> {
        self.st().tree.get(path).map(|n| n.mode)
    }

    pub fn mtime(&self, path: &str) -> Option<i64> {
        self.st().tree.get(path).map(|n| n.mtime)
    }

    /// The number of streams holding a connection slot.
    pub fn open_streams(&self) -> usize {
        self.st().open
    }
}

impl Backend for MemoryBackend {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        let st = self.begin(Op::List, format!("list {dir}"), &[dir])?;
        match st.tree.get(dir) {
            None => return Err(FsError::NotFound),
            Some(Node { kind: Kind::File(_), .. }) => return Err(FsError::NotDir),
            Some(_) => {}
        }
        let entries = st
            .children(dir)
            .iter()
            .filter_map(|p| st.tree.get(p).map(|n| (split_path(p).1, n)))
            .map(|(name, n)| {
                let (kind, size) = match &n.kind {
                    Kind::File(d) => (EntryKind::File, d.len() as u64),
                    Kind::Dir => (EntryKind::Dir, DIR_SIZE),
                };
                Entry { size: Some(size), mtime: Some(n.mtime), mode: Some(n.mode), ..Entry::new(name, kind) }
            })
            .collect();
        let hook = st.list_hook.clone();
        drop(st);
        if let Some(hook) = hook {
            hook(dir);
        }
        Ok(entries)
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        let st = self.begin(Op::Stat, format!("stat {path}"), &[path])?;
        if !st.stat_one_supported {
            return Ok(None);
        }
        let n = st.tree.get(path).ok_or(FsError::NotFound)?;
        let (kind, size) = match &n.kind {
            Kind::File(d) => (EntryKind::File, d.len() as u64),
            Kind::Dir => (EntryKind::Dir, DIR_SIZE),
        };
        let name = split_path(path).1;
        Ok(Some(Entry { size: Some(size), mtime: Some(n.mtime), mode: Some(n.mode), ..Entry::new(name, kind) }))
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        let st = self.begin(Op::Size, format!("size {path}"), &[path])?;
        if !st.size_supported {
            return Ok(None);
        }
        match st.tree.get(path) {
            None => Err(FsError::NotFound),
            Some(Node { kind: Kind::Dir, .. }) => Err(FsError::IsDir),
            Some(Node { kind: Kind::File(d), .. }) => Ok(Some(d.len() as u64)),
        }
    }

    fn checksums(&self) -> Vec<super::Algorithm> {
        let offered = self.st().digests_supported;
        super::Algorithm::ALL.into_iter().filter(|a| offered && a.local().is_some()).collect()
    }

    fn checksum(&self, path: &str, a: super::Algorithm) -> BackendResult<String> {
        let st = self.begin(Op::Size, format!("checksum {path}"), &[path])?;
        let local = a.local().ok_or(FsError::Unsupported)?;
        match st.tree.get(path) {
            None => Err(FsError::NotFound),
            Some(Node { kind: Kind::Dir, .. }) => Err(FsError::IsDir),
            Some(Node { kind: Kind::File(d), .. }) => Ok(crate::checksum::hex(ring::digest::digest(local, d).as_ref())),
        }
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        let st = self.begin(Op::Stat, format!("mdtm {path}"), &[path])?;
        match st.tree.get(path) {
            None => Err(FsError::NotFound),
            Some(node) => Ok(Some(node.mtime)),
        }
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        let mut st = self.begin(Op::Read, format!("read {path} {offset}"), &[path])?;
        if !self.wait_slot(&mut st, wait)? {
            return Ok(None);
        }
        let data = match st.tree.get(path) {
            None => return Err(FsError::NotFound),
            Some(Node { kind: Kind::Dir, .. }) => return Err(FsError::IsDir),
            Some(Node { kind: Kind::File(d), .. }) => {
                d.get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or_default().to_vec()
            }
        };
        let break_after = st.break_read.take();
        let slot = self.slot(&mut st);
        drop(st);
        Ok(Some(Box::new(MemReader { data, pos: 0, break_after, broken: false, _slot: slot })))
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        let mut st = self.begin(Op::Write, format!("write {path} {mode:?}"), &[path])?;
        self.wait_while_held(&mut st)?;
        if mode.appends() && st.refuse_append {
            st.append_refused = true;
            return Err(FsError::Unsupported);
        }
        if !self.wait_slot(&mut st, wait)? {
            return Ok(None);
        }
        st.check_parent(path)?;
        if path.is_empty() || st.is_dir(path) {
            return Err(FsError::IsDir);
        }
        let now = st.tick();
        let id = match st.tree.get_mut(path) {
            Some(node) => {
                if mode == WriteMode::Replace {
                    node.kind = Kind::File(Vec::new());
                    node.mtime = now;
                }
                node.id
            }
            None => {
                let node = st.new_node(Kind::File(Vec::new()));
                let id = node.id;
                st.tree.insert(path.to_string(), node);
                st.touch_parent(path, now);
                id
            }
        };
        let (break_after, finish_err) = (st.break_write.take(), st.finish_err.take());
        let slot = self.slot(&mut st);
        drop(st);
        let inner = Arc::clone(&self.inner);
        Ok(Some(Box::new(MemWriter { inner, id, written: 0, break_after, failed: None, finish_err, _slot: slot })))
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        let mut st = self.begin(Op::Mkdir, format!("mkdir {path}"), &[path])?;
        if st.tree.contains_key(path) {
            return Err(FsError::Exists);
        }
        st.check_parent(path)?;
        let now = st.tick();
        let node = st.new_node(Kind::Dir);
        st.tree.insert(path.to_string(), node);
        st.touch_parent(path, now);
        st.reply(Op::Mkdir)
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        let mut st = self.begin(Op::Rmdir, format!("rmdir {path}"), &[path])?;
        match st.tree.get(path) {
            None => return Err(FsError::NotFound),
            Some(Node { kind: Kind::File(_), .. }) => return Err(FsError::NotDir),
            Some(_) if path.is_empty() => return Err(FsError::Denied),
            Some(_) => {}
        }
        if !st.children(path).is_empty() {
            return Err(FsError::NotEmpty);
        }
        st.tree.remove(path);
        let now = st.tick();
        st.touch_parent(path, now);
        st.reply(Op::Rmdir)
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        let mut st = self.begin(Op::Delete, format!("delete {path}"), &[path])?;
        match st.tree.get(path) {
            None => return Err(FsError::NotFound),
            Some(Node { kind: Kind::Dir, .. }) => return Err(FsError::IsDir),
            Some(_) => {}
        }
        st.tree.remove(path);
        let now = st.tick();
        st.touch_parent(path, now);
        st.reply(Op::Delete)
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        let mut st = self.begin(Op::Rename, format!("rename {from} {to}"), &[from, to])?;
        let Some(src_is_dir) = st.tree.get(from).map(|n| matches!(n.kind, Kind::Dir)) else {
            return Err(FsError::NotFound);
        };
        if from.is_empty() || to.is_empty() || (src_is_dir && from != to && is_at_or_under(to, from)) {
            return Err(FsError::Invalid);
        }
        st.check_parent(to)?;
        if from == to {
            return Ok(());
        }
        if let Some(target) = st.tree.get(to) {
            if st.refuse_replace_rename {
                return Err(FsError::Failed);
            }
            match (src_is_dir, matches!(target.kind, Kind::Dir)) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if !st.children(to).is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
            st.tree.remove(to);
        }
        st.move_tree(from, to);
        st.reply(Op::Rename)
    }

    fn can_set_mtime(&self) -> bool {
        self.st().mtime_supported
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        let mut st = self.begin(Op::SetMtime, format!("set_mtime {path} {secs}"), &[path])?;
        if !st.mtime_supported {
            return Err(FsError::Unsupported);
        }
        st.tick();
        st.tree.get_mut(path).map(|n| n.mtime = secs).ok_or(FsError::NotFound)
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        let mut st = self.begin(Op::Chmod, format!("chmod {path} {mode:o}"), &[path])?;
        if !st.chmod_supported {
            return Err(FsError::Unsupported);
        }
        st.tree.get_mut(path).map(|n| n.mode = mode & 0o7777).ok_or(FsError::NotFound)
    }

    fn can_append(&self) -> bool {
        !self.st().append_refused
    }

    fn can_chmod(&self) -> bool {
        self.st().chmod_supported
    }

    fn can_name(&self, name: &str) -> bool {
        !name.contains(['\r', '\n', '\0'])
    }

    fn spare_connections(&self) -> usize {
        let st = self.st();
        if st.shut { 0 } else { st.connections.saturating_sub(st.open + 1) }
    }

    fn wait_limit(&self) -> Duration {
        self.st().wait_limit
    }

    fn lists_at_once(&self) -> usize {
        self.st().lists_at_once
    }

    fn list_several(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        self.st().calls.push(format!("several {}", dirs.join(",")));
        dirs.iter().map(|d| self.list(d)).collect()
    }

    fn close_idle(&self) {}

    fn shut_down(&self) {
        self.st().shut = true;
        self.inner.cond.notify_all();
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
