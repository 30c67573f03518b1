//! Model-based property test: random interleavings of several handles on a few files, plus
//! renames, deletes, an external client and injected faults, run against the in-memory backend.
//! Each step is checked against what README promises:
//! - closing or syncing a handle with nothing unsaved never changes the server (a reader's close
//!   never empties a file, a detached handle never recreates its file);
//! - a close or fsync that returns 0 leaves the server holding exactly the handle's content
//!   (for O_APPEND: ending with what it appended);
//! - a failed rename leaves source and target where they were;
//! - a read through a handle with unsaved writes returns its own content; a read through a
//!   read-only handle returns bytes of a version the file really had;
//! - without injected faults nothing fails, even with more handles than connections;
//! - at the end no stream is left open and no temporary name is left on the server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::FsError;
use crate::backend::ahead::{Ahead, AheadConfig};
use crate::backend::memory::{MemoryBackend, Op};

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Read,
    ReadWrite,
    Trunc,
    Append,
    Create,
}

#[derive(Clone, Debug)]
enum Fault {
    BreakNextWrite(u64),
    /// The n-th rename from now breaks (a multi-step rename fails halfway).
    FailNthRename(usize),
    FailNthStat(usize),
    NoSpaceNextFinish,
    /// The next rename or delete happens, but its reply is lost.
    LoseReply(Op),
    RefuseAppend,
    RefuseRenameOverExisting,
}

#[derive(Clone, Debug)]
enum Action {
    Open(usize, Mode),
    Read(usize, u64, usize),
    Write(usize, u64, Vec<u8>),
    Truncate(usize, u64),
    Fsync(usize),
    Close(usize),
    Rename(usize, usize),
    Unlink(usize),
    ExternalWrite(usize, Vec<u8>),
    Fault(Fault),
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"xyz0123".to_vec()), 1..12)
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Read), Just(Mode::ReadWrite), Just(Mode::Trunc), Just(Mode::Append), Just(Mode::Create)]
}

fn action(external: bool, faults: bool) -> impl Strategy<Value = Action> {
    let n = NAMES.len();
    let base = prop_oneof![
        4 => (0..n, mode()).prop_map(|(p, m)| Action::Open(p, m)),
        4 => (0..8usize, 0..24u64, 1..16usize).prop_map(|(h, o, l)| Action::Read(h, o, l)),
        6 => (0..8usize, 0..20u64, data()).prop_map(|(h, o, d)| Action::Write(h, o, d)),
        1 => (0..8usize, 0..16u64).prop_map(|(h, s)| Action::Truncate(h, s)),
        1 => (0..8usize).prop_map(Action::Fsync),
        3 => (0..8usize).prop_map(Action::Close),
        1 => (0..n, 0..n).prop_map(|(a, b)| Action::Rename(a, b)),
        1 => (0..n).prop_map(Action::Unlink),
    ];
    let ext = (0..n, data()).prop_map(|(p, d)| Action::ExternalWrite(p, d));
    let fault = prop_oneof![
        (0..8u64).prop_map(Fault::BreakNextWrite),
        (1..4usize).prop_map(Fault::FailNthRename),
        (1..4usize).prop_map(Fault::FailNthStat),
        Just(Fault::NoSpaceNextFinish),
        prop_oneof![Just(Op::Rename), Just(Op::Delete)].prop_map(Fault::LoseReply),
        Just(Fault::RefuseAppend),
        Just(Fault::RefuseRenameOverExisting),
    ]
    .prop_map(Action::Fault);
    prop_oneof![
        20 => base,
        (if external { 2 } else { 0 }) => ext,
        (if faults { 1 } else { 0 }) => fault,
    ]
}

/// What the test knows of one open handle.
struct Handle {
    fh: u64,
    /// Its file's name; `None` once deleted or replaced (detached).
    name: Option<String>,
    mode: Mode,
    /// The handle's own content once it modified the file (base at first change + changes).
    view: Option<Vec<u8>>,
    /// Modified since its last successful close/fsync.
    unsaved: bool,
    /// What an O_APPEND handle wrote last.
    last_append: Vec<u8>,
    /// Another handle committed this file since this handle's own last commit: which of the
    /// two versions a later close leaves depends on when the model settled each (both are
    /// allowed), so its content is no longer checked exactly.
    overtaken: bool,
    /// Opened with O_TRUNC or created, and not committed since.
    created: bool,
    /// Every content the file had while this handle was open.
    versions: Vec<Vec<u8>>,
    /// A write or commit through it failed: its content is not promised any more.
    failed: bool,
}

struct Run {
    be: Arc<MemoryBackend>,
    /// The work-ahead layer between model and fake, if any.
    ahead: Option<Arc<Ahead>>,
    model: Model,
    handles: Vec<Handle>,
    faults: bool,
    _dir: tempfile::TempDir,
}

impl Run {
    fn new(ttl: Duration, connections: usize) -> Run {
        Run::with_backend(ttl, connections, false)
    }

    /// `ahead`: the model talks to the fake through the work-ahead layer (files and listings
    /// fetched ahead), as a real mount does.
    fn with_backend(ttl: Duration, connections: usize, ahead: bool) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let be = Arc::new(MemoryBackend::new(connections));
        // A bound only: a request waiting for a connection takes an idle handle's after 100 ms
        // (`IDLE` in handle_io), so cases take no longer with a longer limit, and a loaded
        // machine pausing the test thread cannot turn that wait into FsError::Busy (a failure
        // "without a fault").
        be.set_wait_limit(Duration::from_secs(5));
        // The server's clock near ours: the work-ahead layer takes a listed time close to its
        // upload's for that upload (the other client's files then have such times too).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        be.set_clock(now as i64);
        for (i, n) in NAMES.iter().enumerate().take(2) {
            be.put_file(n, format!("initial-{i}").as_bytes());
        }
        let cfg = ModelConfig::for_tests(dir.path(), ttl);
        let ahead = ahead.then(|| {
            let cfg = AheadConfig { workers: connections.saturating_sub(1).max(1), ..AheadConfig::default() };
            Arc::new(Ahead::new(be.clone(), cfg))
        });
        let backend: Arc<dyn crate::backend::Backend> = match &ahead {
            Some(a) => a.clone(),
            None => be.clone(),
        };
        let model = Model::new(cfg, backend);
        Run { be, ahead, model, handles: Vec::new(), faults: false, _dir: dir }
    }

    /// The fake answers lookups of one name (as a server with MLST does).
    fn with_single_lookups(self, yes: bool) -> Run {
        self.be.set_stat_one_supported(yes);
        self
    }

    fn pick(&self, h: usize) -> Option<usize> {
        (!self.handles.is_empty()).then(|| h % self.handles.len())
    }

    /// Records the server's current contents in every open handle's versions.
    fn observe(&mut self) {
        let files = self.be.files();
        for h in &mut self.handles {
            if let Some(c) = h.name.as_ref().and_then(|n| files.get(n)) {
                h.versions.push(c.clone());
            }
        }
    }

    fn ino(&self, name: &str) -> Option<u64> {
        self.model.lookup(ROOT_INO, name).ok().map(|st| st.ino)
    }

    fn open(&mut self, name: &str, mode: Mode) {
        let flags = match mode {
            Mode::Read => libc::O_RDONLY,
            Mode::ReadWrite => libc::O_RDWR,
            Mode::Trunc => libc::O_WRONLY | libc::O_TRUNC,
            Mode::Append => libc::O_WRONLY | libc::O_APPEND,
            Mode::Create => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        };
        let fh = match mode {
            Mode::Create => self.model.create(ROOT_INO, name, flags, 0o644, 0).map(|(_, fh)| fh),
            _ => match self.ino(name) {
                Some(ino) => self.model.open(ino, flags).map(|o| o.fh),
                None => return,
            },
        };
        let fh = match fh {
            Ok(fh) => fh,
            Err(e) => {
                assert!(self.faults, "open {name} {mode:?} failed without a fault: errno {e}");
                return;
            }
        };
        let emptied = matches!(mode, Mode::Trunc | Mode::Create);
        let pins = matches!(mode, Mode::ReadWrite)
            && self.handles.iter().any(|h| h.name.as_deref() == Some(name) && h.created);
        if matches!(mode, Mode::Append) || emptied || pins {
            // An appender's bytes land after other handles' creations of the file; emptying the
            // file comes after what other handles did to it so far; a new writer makes a
            // creation that streams keep its own copy instead (whether it streamed, the test
            // cannot tell).
            self.overtake(name, None);
        }
        let versions = self.be.file(name).into_iter().collect();
        self.handles.push(Handle {
            fh,
            name: Some(name.to_string()),
            mode,
            view: emptied.then(Vec::new),
            unsaved: emptied,
            last_append: Vec::new(),
            overtaken: false,
            created: emptied,
            versions,
            failed: false,
        });
    }

    fn base(&self, i: usize) -> Vec<u8> {
        let h = &self.handles[i];
        // A clean handle's next change starts from what the server holds.
        match &h.view {
            Some(v) if h.unsaved => v.clone(),
            _ => h.name.as_ref().and_then(|n| self.be.file(n)).unwrap_or_default(),
        }
    }

    fn write(&mut self, i: usize, off: u64, data: &[u8]) {
        if matches!(self.handles[i].mode, Mode::Read) {
            return;
        }
        let append = matches!(self.handles[i].mode, Mode::Append);
        let landed = if append { None } else { self.land_before_base(i) };
        let mut view = landed.unwrap_or_else(|| self.base(i));
        // The kernel passes its idea of the size for O_APPEND; the model must not rely on it.
        let off = if append { 0 } else { off };
        let res = self.model.write(self.handles[i].fh, off, data);
        let h = &mut self.handles[i];
        match res {
            Ok(n) => assert_eq!(n, data.len()),
            Err(e) => {
                assert!(self.faults, "write failed without a fault: errno {e}");
                h.failed = true;
                return;
            }
        }
        if append {
            h.last_append = data.to_vec();
        } else {
            let off = off as usize;
            if view.len() < off + data.len() {
                view.resize(off + data.len(), 0);
            }
            view[off..off + data.len()].copy_from_slice(data);
            h.view = Some(view);
        }
        h.unsaved = true;
    }

    fn truncate(&mut self, i: usize, size: u64) {
        if !matches!(self.handles[i].mode, Mode::ReadWrite | Mode::Trunc | Mode::Create) {
            return;
        }
        let landed = if size != 0 { self.land_before_base(i) } else { None };
        let mut view = landed.unwrap_or_else(|| self.base(i));
        let Some(name) = self.handles[i].name.clone() else { return };
        let Some(ino) = self.ino(&name) else { return };
        let res = self.model.setattr(ino, Some(self.handles[i].fh), None, Some(size), None);
        self.model.forget(ino, 1);
        let h = &mut self.handles[i];
        if let Err(e) = res {
            assert!(self.faults, "truncate failed without a fault: errno {e}");
            h.failed = true;
            return;
        }
        view.resize(size as usize, 0);
        h.view = Some(view);
        h.unsaved = true;
        if size == 0 {
            // The model may now treat the handle as a creation (unless it holds a spool): which
            // version the file's other handles end with is no longer exact (this handle's own
            // content still is).
            h.created = true;
            self.overtake(&name, Some(i));
        }
    }

    fn read(&mut self, i: usize, off: u64, len: usize) {
        if matches!(self.handles[i].mode, Mode::Append) && self.handles[i].unsaved {
            self.land_creators(i);
        }
        // Before downloading, the model lands other handles' creations and streams of the file:
        // which version their closes then leave is no longer exact.
        let name = self.handles[i].name.clone();
        let unsettled = |h: &Handle| h.name == name && (h.created || (matches!(h.mode, Mode::Append) && h.unsaved));
        if let Some(n) = &name
            && self.handles.iter().enumerate().any(|(j, h)| j != i && unsettled(h))
        {
            self.overtake(n, Some(i));
        }
        let mut got = Vec::new();
        let res = self.model.read(self.handles[i].fh, off, len, &mut |d| got.extend_from_slice(d));
        self.observe();
        let h = &self.handles[i];
        if let Err(e) = res {
            assert!(self.faults || h.name.is_none(), "read failed without a fault: errno {e}");
            return;
        }
        let slice = |c: &[u8]| c.get(off as usize..).map(|r| r[..r.len().min(len)].to_vec()).unwrap_or_default();
        let own = h.view.as_deref().filter(|_| h.unsaved && !h.overtaken && !h.failed && h.name.is_some());
        match own {
            Some(v) => {
                assert_eq!(got, slice(v), "read through a handle with unsaved writes");
                note(Checked::Exact);
            }
            // Any other handle still on its file sees some version the file had: one the server
            // had while it was open, its own, or one another handle of the file wrote.
            // A handle with no changes of its own on its file sees some version the file had: one
            // the server had while it was open, or one another handle of the file wrote.
            None if h.name.is_some() && !h.failed && !h.unsaved => {
                let mut known: Vec<&[u8]> = h.versions.iter().map(Vec::as_slice).collect();
                known.extend(h.view.as_deref());
                known.extend(self.handles.iter().filter(|g| g.name == h.name).filter_map(|g| g.view.as_deref()));
                assert!(
                    known.iter().any(|v| slice(v) == got),
                    "read {got:?} at {off} is no version the file had: {known:?}"
                );
                note(Checked::AmongVersions);
            }
            // A detached handle, one whose write failed, or one whose changes were overtaken by
            // another handle's (its base is whichever version the model settled first).
            None => note(Checked::Not),
        }
    }

    /// fsync (`close` false) or close.
    fn commit(&mut self, i: usize, close: bool) {
        if matches!(self.handles[i].mode, Mode::Append) && self.handles[i].unsaved {
            self.land_creators(i);
        }
        let before = self.be.files();
        let fh = self.handles[i].fh;
        let res = if close { self.model.release(fh) } else { self.model.flush(fh) };
        let after = self.be.files();
        let h = &self.handles[i];
        let name = h.name.clone();
        if !h.unsaved || h.name.is_none() {
            assert_eq!(before, after, "{} of a handle with nothing unsaved changed the server", what(close));
        } else if let (Ok(()), Some(n), false) = (res, &name, h.failed) {
            let now = after.get(n).cloned().unwrap_or_default();
            match h.mode {
                // Which of two versions lands, and on which base its changes were made, depends
                // on when the model settled each handle's version: not the test's to know.
                _ if h.overtaken => note(Checked::Not),
                Mode::Append => {
                    assert!(now.ends_with(&h.last_append), "appended bytes missing from {n}: {now:?}");
                    note(Checked::Exact);
                }
                _ => {
                    assert_eq!(Some(&now), h.view.as_ref(), "{} returned 0 but {n} differs", what(close));
                    note(Checked::Exact);
                }
            }
        } else if h.unsaved {
            // A failed close, or one through a handle whose write failed: nothing is promised.
            note(Checked::Not);
        }
        match res {
            Ok(()) => self.committed(i),
            Err(e) => {
                assert!(self.faults, "{} failed without a fault: errno {e}", what(close));
                self.handles[i].failed = true;
                // A failed upload may still have replaced the file on the server.
                if let Some(n) = &name {
                    self.overtake(n, Some(i));
                }
            }
        }
        if close {
            self.handles.remove(i);
        }
        self.observe();
    }

    /// Before handle `i` loads its file into a spool, the model lands other handles' pending
    /// creations of it; a handle with its own version (unsaved) loads nothing. One that saved
    /// its version may or may not still hold it: then the test cannot tell.
    fn land_before_base(&mut self, i: usize) -> Option<Vec<u8>> {
        let h = &self.handles[i];
        if h.unsaved || h.created {
            return None;
        }
        if h.view.is_none() {
            return self.land_creators(i);
        }
        let name = h.name.clone()?;
        if self.handles.iter().any(|g| g.name.as_ref() == Some(&name) && g.created) {
            self.overtake(&name, None);
        }
        None
    }

    /// Before handle `i` builds on its file (a write or truncation that may load it, an
    /// appended tail landing), the model lands other handles' pending creations of the file.
    /// Returns the content that landed when the test can tell it exactly (one creator).
    fn land_creators(&mut self, i: usize) -> Option<Vec<u8>> {
        let name = self.handles[i].name.clone()?;
        if self.handles[i].created {
            return None;
        }
        let creators: Vec<usize> = (0..self.handles.len())
            .filter(|&j| j != i && self.handles[j].name.as_ref() == Some(&name) && self.handles[j].created)
            .collect();
        match creators[..] {
            [] => None,
            // Exact only for one creator, both handles' states known to the test (not overtaken).
            [j] if !self.faults && !self.handles[j].overtaken && !self.handles[i].overtaken => {
                let landed = self.handles[j].view.clone();
                let kept = self.handles[i].overtaken;
                self.committed(j);
                self.handles[i].overtaken = kept;
                landed
            }
            _ => {
                self.overtake(&name, None);
                None
            }
        }
    }

    /// Handles of file `name` (but `except`) may now end with a version the model settled in
    /// another order than this test can tell: their content is no longer checked exactly.
    fn overtake(&mut self, name: &str, except: Option<usize>) {
        for (j, h) in self.handles.iter_mut().enumerate() {
            if Some(j) != except && h.name.as_deref() == Some(name) {
                h.overtaken = true;
            }
        }
    }

    /// Handle `i` put its content on the server: other handles of the file are overtaken.
    fn committed(&mut self, i: usize) {
        let h = &mut self.handles[i];
        let changed = h.unsaved;
        (h.unsaved, h.created, h.overtaken) = (false, false, false);
        if changed && let Some(n) = h.name.clone() {
            self.overtake(&n, Some(i));
        }
    }

    fn rename(&mut self, a: &str, b: &str) {
        // The model lands creations of the source first (so they move with it): which version
        // of it the other handles' closes then leave is no longer exact.
        if self.handles.iter().any(|h| h.name.as_deref() == Some(a) && h.created) {
            self.overtake(a, None);
        }
        let before = self.be.files();
        let res = self.model.rename(ROOT_INO, a, ROOT_INO, b, false);
        let after = self.be.files();
        match res {
            Ok(()) if a != b => {
                assert!(!after.contains_key(a) && after.contains_key(b), "rename {a} → {b}: {after:?}");
                for h in &mut self.handles {
                    match h.name.as_deref() {
                        Some(n) if n == b => h.name = None,
                        Some(n) if n == a => h.name = Some(b.to_string()),
                        _ => {}
                    }
                }
            }
            Ok(()) => {}
            Err(e) => {
                assert!(self.faults || e == libc::ENOENT, "rename {a} → {b} failed without a fault: errno {e}");
                // A creation not uploaded yet may land before the rename fails: not a loss.
                assert!(!before.contains_key(a) || after.contains_key(a), "failed rename moved {a}");
                assert_eq!(before.contains_key(b), after.contains_key(b), "failed rename removed {b}");
                let target_quiet = !self.handles.iter().any(|h| h.name.as_deref() == Some(b) && h.unsaved);
                if target_quiet {
                    assert_eq!(before.get(b), after.get(b), "failed rename changed {b}");
                }
            }
        }
        self.observe();
    }

    fn unlink(&mut self, a: &str) {
        match self.model.unlink(ROOT_INO, a) {
            Ok(()) => {
                assert!(!self.be.exists(a), "unlink {a} left it on the server");
                for h in &mut self.handles {
                    if h.name.as_deref() == Some(a) {
                        h.name = None;
                    }
                }
            }
            Err(e) => assert!(self.faults || e == libc::ENOENT, "unlink {a} failed without a fault: errno {e}"),
        }
        self.observe();
    }

    fn step(&mut self, a: &Action) {
        match a {
            Action::Open(p, m) => self.open(NAMES[*p], *m),
            Action::Read(h, off, len) => {
                if let Some(i) = self.pick(*h) {
                    self.read(i, *off, *len)
                }
            }
            Action::Write(h, off, d) => {
                if let Some(i) = self.pick(*h) {
                    self.write(i, *off, d)
                }
            }
            Action::Truncate(h, s) => {
                if let Some(i) = self.pick(*h) {
                    self.truncate(i, *s)
                }
            }
            Action::Fsync(h) => {
                if let Some(i) = self.pick(*h) {
                    self.commit(i, false)
                }
            }
            Action::Close(h) => {
                if let Some(i) = self.pick(*h) {
                    self.commit(i, true)
                }
            }
            Action::Rename(x, y) => self.rename(NAMES[*x], NAMES[*y]),
            Action::Unlink(x) => self.unlink(NAMES[*x]),
            Action::ExternalWrite(p, d) => {
                // Another client replaces a file nobody here has open.
                let name = NAMES[*p];
                if !self.handles.iter().any(|h| h.name.as_deref() == Some(name)) {
                    self.be.put_file(name, d);
                }
            }
            Action::Fault(f) => {
                self.faults = true;
                match f {
                    Fault::BreakNextWrite(n) => self.be.break_write_after(*n),
                    Fault::FailNthRename(n) => self.be.fail_nth(Op::Rename, *n, FsError::Broken),
                    Fault::FailNthStat(n) => self.be.fail_nth(Op::Stat, *n, FsError::Broken),
                    Fault::NoSpaceNextFinish => self.be.fail_finish_next(FsError::NoSpace),
                    Fault::LoseReply(op) => self.be.lose_reply_next(*op),
                    Fault::RefuseAppend => self.be.refuse_append(true),
                    Fault::RefuseRenameOverExisting => self.be.refuse_rename_over_existing(true),
                }
            }
        }
    }

    fn finish(mut self) {
        while !self.handles.is_empty() {
            self.commit(self.handles.len() - 1, true);
        }
        assert_eq!(self.model.open_handles(), 0);
        // A download's reader thread ends its stream shortly after the handle is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.be.open_streams() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(self.be.open_streams(), 0, "a stream was left open");
        let files: BTreeMap<String, Vec<u8>> = self.be.files();
        assert!(!files.keys().any(|k| k.contains(".ftpfs-aside")), "temporary name left: {files:?}");
    }
}

fn what(close: bool) -> &'static str {
    if close { "close" } else { "fsync" }
}

/// Actions of the fault test with more renames, and more of them failing halfway.
fn rename_heavy() -> impl Strategy<Value = Action> {
    let n = NAMES.len();
    prop_oneof![
        6 => action(false, true),
        2 => (0..n, 0..n).prop_map(|(a, b)| Action::Rename(a, b)),
        1 => (1..4usize).prop_map(|k| Action::Fault(Fault::FailNthRename(k))),
    ]
}

fn run(actions: &[Action], ttl: Duration, connections: usize) {
    run_on(Run::new(ttl, connections), actions);
}

fn run_on(mut r: Run, actions: &[Action]) {
    for a in actions {
        r.step(a);
    }
    r.finish();
    report_share();
}

/// How a read or a successful close with unsaved data was checked.
#[derive(Clone, Copy)]
enum Checked {
    /// Against the one content it must have.
    Exact,
    /// Against the set of versions it may have (the order in which the model settled two
    /// handles' versions is not the test's to know).
    AmongVersions,
    /// Not at all: the operation or an earlier write through the handle failed, the file was
    /// deleted under the handle, or another handle's version overtook its changes.
    Not,
}

thread_local! {
    /// This test's (exact, among versions, not checked, cases run): each proptest test runs
    /// its cases on one thread.
    static SHARE: std::cell::Cell<(u64, u64, u64, u32)> = const { std::cell::Cell::new((0, 0, 0, 0)) };
}

fn note(how: Checked) {
    SHARE.with(|c| {
        let (mut e, mut a, mut n, cases) = c.get();
        match how {
            Checked::Exact => e += 1,
            Checked::AmongVersions => a += 1,
            Checked::Not => n += 1,
        }
        c.set((e, a, n, cases));
    });
}

/// After a test's last case: how much of what it did was checked, and how (shown with
/// `--nocapture`, as scripts/test.sh runs them on a fresh seed).
fn report_share() {
    SHARE.with(|c| {
        let (e, a, n, cases) = c.get();
        c.set((e, a, n, cases + 1));
        if cases + 1 == self::cases() {
            let all = (e + a + n).max(1);
            eprintln!(
                "{}: {cases_run} cases; of {all} reads and closes with unsaved data, {e} checked exactly ({}%), \
                 {a} against the versions allowed ({}%), {n} not checked ({}%: failed, detached or overtaken)",
                std::thread::current().name().unwrap_or("?"),
                e * 100 / all,
                a * 100 / all,
                n * 100 / all,
                cases_run = cases + 1,
            );
        }
    });
}

fn cases() -> u32 {
    cases_or(400)
}

/// `FTPFS_PROPTEST_CASES` cases, else `default` (every property test of the model).
pub(super) fn cases_or(default: u32) -> u32 {
    std::env::var("FTPFS_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CI runs a fixed set of cases (reproducible); `FTPFS_PROPTEST_SEED=random` explores new ones.
pub(super) fn seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("FTPFS_PROPTEST_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(n) => n.parse().map(RngSeed::Fixed).unwrap_or(RngSeed::Fixed(11)),
        None => RngSeed::Fixed(11),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: seed(), ..ProptestConfig::default() })]

    /// Our own handles only, listings cached for an hour, one or two connections.
    #[test]
    fn handles_keep_their_promises(actions in prop::collection::vec(action(false, false), 1..40), conns in 1..3usize) {
        run(&actions, Duration::from_secs(3600), conns);
    }

    /// With another client replacing files and listings never cached.
    #[test]
    fn handles_keep_their_promises_beside_another_client(
        actions in prop::collection::vec(action(true, false), 1..40),
        conns in 1..3usize,
        single in any::<bool>(),
    ) {
        run_on(Run::new(Duration::ZERO, conns).with_single_lookups(single), &actions);
    }

    /// With injected faults: operations may fail, but never lose what they did not touch.
    #[test]
    fn faults_lose_nothing_else(
        actions in prop::collection::vec(action(false, true), 1..40),
        conns in 1..3usize,
        single in any::<bool>(),
    ) {
        run_on(Run::new(Duration::from_secs(3600), conns).with_single_lookups(single), &actions);
    }

    /// Through the work-ahead layer, beside another client, listings never cached by the
    /// model (files and listings fetched ahead are served only while still the truth).
    #[test]
    fn handles_keep_their_promises_through_the_work_ahead(
        actions in prop::collection::vec(action(true, false), 1..40),
        conns in 2..6usize,
        single in any::<bool>(),
    ) {
        run_on(Run::with_backend(Duration::ZERO, conns, true).with_single_lookups(single), &actions);
    }

    /// A server that refuses to rename over an existing name (the model moves the target
    /// aside first), with renames that break halfway: a failed rename keeps both files.
    #[test]
    fn renames_that_fail_halfway_keep_both_files(actions in prop::collection::vec(rename_heavy(), 1..30), conns in 1..3usize) {
        let r = Run::new(Duration::from_secs(3600), conns);
        r.be.refuse_rename_over_existing(true);
        run_on(r, &actions);
    }
}

/// O_TRUNC by one handle, then another writes and closes: the truncation landed first, so the
/// first handle's close (it wrote nothing) cannot empty the file afterwards.
#[test]
fn a_pending_truncation_lands_before_another_handle_builds_on_the_file() {
    let mut r = Run::new(Duration::from_secs(3600), 2);
    let steps = [Action::Open(1, Mode::Trunc), Action::Open(1, Mode::ReadWrite), Action::Write(1, 1, b"x".to_vec())];
    for a in &steps {
        r.step(a);
    }
    r.step(&Action::Close(1));
    assert_eq!(r.be.file("b").as_deref(), Some(&b"\0x"[..]));
    r.step(&Action::Close(0));
    assert_eq!(r.be.file("b").as_deref(), Some(&b"\0x"[..]), "a pending truncation emptied the file later");
    r.finish();
}

/// APPE refused, and the STOR of old content + appended bytes breaks after the server emptied
/// the file: the whole content stays with the handle and the next fsync puts it back.
#[test]
fn a_broken_append_by_copy_keeps_the_old_content() {
    let mut r = Run::new(Duration::from_secs(3600), 2);
    r.be.refuse_append(true);
    r.step(&Action::Open(0, Mode::Append));
    r.step(&Action::Write(0, 0, b"zz".to_vec()));
    r.be.break_write_after(3);
    let fh = r.handles[0].fh;
    assert!(r.model.flush(fh).is_err());
    assert_eq!(r.be.file("a").as_deref(), Some(&b"ini"[..]), "the fault should have hit the STOR");
    assert_eq!(r.model.flush(fh), Ok(()));
    assert_eq!(r.be.file("a").as_deref(), Some(&b"initial-0zz"[..]));
    r.model.release(fh).expect("close");
    r.handles.clear();
    r.finish();
}

/// Whole files read one after another: the next is fetched ahead. Another client changes it;
/// the next listing shows that, and the read gets the new content, not the one fetched ahead.
#[test]
fn a_file_changed_by_another_client_is_not_served_from_the_work_ahead() {
    let mut r = Run::with_backend(Duration::ZERO, 4, true);
    r.be.put_file("c", b"initial-2");
    for (p, h) in [(0, 0), (1, 1)] {
        r.step(&Action::Open(p, Mode::Read));
        r.step(&Action::Read(h, 0, 16));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let ahead = r.ahead.clone().expect("work ahead");
    while ahead.bytes_held() == 0 {
        assert!(std::time::Instant::now() < deadline, "c was not fetched ahead");
        std::thread::sleep(Duration::from_millis(5));
    }
    r.step(&Action::ExternalWrite(2, b"changed".to_vec()));
    r.step(&Action::Open(2, Mode::Read));
    r.step(&Action::Read(2, 0, 16));
    r.finish();
}
