//! How reads and writes on one open handle become RETR, STOR and APPE.
//!
//! - Reads stream one RETR per handle from the requested offset. Slightly out-of-order requests
//!   (the kernel's parallel readahead) are served from a small window of recent bytes; small
//!   forward gaps are read through; anything else restarts the RETR with REST. Before a download
//!   starts, other handles' streaming uploads of the same path are finished, so a reader sees
//!   what was written so far and never a half-replaced file.
//! - Writes that arrive as one sequential stream go straight into STOR (new or truncated files)
//!   or APPE (writes at the end of an existing file, `>>`), but only when a connection is free
//!   right now and the handle is the path's only writer. Anything else (writes in the middle,
//!   truncation to a non-zero size, mixed reads and writes, a busy pool, several writers) goes to
//!   a spool: a temp file in `cache_dir` holding the whole file, uploaded with STOR at flush.
//! - flush/fsync/release commit: the upload is finished (226) and its size checked with SIZE,
//!   so close() returning 0 means the server holds the file; a failure is returned to close().
//!   A failed spool upload keeps the spool dirty, so the next flush or the release tries again.
//! - A failed streaming write cannot be repaired (the bytes are gone): it is returned by that
//!   write, by every later write and by the next flush.
//! - Waiting for a connection is bounded by the `timeout` option; meanwhile a handle that has
//!   not been used for [`IDLE`], or whose transfer has run for [`SLICE`], gives its connection
//!   up ([`preempt_transfer`]): more readers than connections take turns, in slices long
//!   enough that restarting a transfer costs little.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::MutexGuard;

use super::FsResult;
use super::core::{Core, unix_secs};
use super::files::OpenFile;
use super::gate::PathClaim;
use super::new_file_mode::ASSUMED_FILE_MODE;
use super::open_file::{InCall, Io, Spool, State, Writer};
use super::readahead::StreamReader;
use crate::backend::{AfterUpload, FsError, ReadStream, Settled, WriteMode, WriteStream};

fn io_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Applies another handle's upload to this one: cached content (a download in progress, a clean
/// spool) is dropped and the known server size updated. Unsaved changes of this handle stay;
/// whichever handle closes last decides the content, as with two editors. A creation or
/// truncation this handle has not uploaded yet stays too: its close uploads its whole version.
fn apply_remote_change(f: &OpenFile, io: &mut Io) {
    let v = f.remote_changed.swap(0, Ordering::Relaxed);
    if v == 0 || f.serves_copy.load(Ordering::Relaxed) {
        return;
    }
    io.server_size = Some(v - 1);
    io.cached_version = None;
    // Not the empty file this handle made any more.
    f.made_empty.store(false, Ordering::Relaxed);
    let clean = match &io.state {
        State::Reading(_) | State::Idle => true,
        State::Spooled(s) => !s.dirty,
        State::Writing(_) => false,
    };
    if clean && !f.is_created() {
        io.state = State::Idle;
        f.set_dirty_size(None);
    }
}

/// How long an empty file a handle made stays its own to replace (the flush of a duplicate
/// descriptor comes right before the first write).
const MADE_EMPTY_IS_OURS: Duration = Duration::from_secs(1);

/// A handle with no read or write call for this long gives its connection to one waiting.
const IDLE: Duration = Duration::from_millis(100);
/// A transfer that ran this long gives its connection to one waiting, even while in use.
const SLICE: Duration = Duration::from_millis(500);
/// How often a request waiting for a connection looks for one to take.
const PREEMPT_EVERY: Duration = Duration::from_millis(20);

/// Whether a handle's transfer may be stopped for another waiting.
type PreemptRule = fn(&OpenFile, &Io) -> bool;

fn unused_for_a_while(f: &OpenFile, _: &Io) -> bool {
    f.idle_for() >= IDLE
}

fn had_its_slice(_: &OpenFile, io: &Io) -> bool {
    match &io.state {
        State::Reading(r) => r.running_for() >= SLICE,
        State::Writing(w) => w.since.elapsed() >= SLICE,
        _ => false,
    }
}

/// Stops one transfer whose handle is not in a call right now and is idle (or has had its
/// slice), returning its connection to the pool: a download (resumed with REST when read again)
/// or a streaming upload (finished; the handle goes on with APPE or a spool). Idle handles go
/// first. True if one was stopped.
fn preempt_transfer(core: &Core) -> bool {
    let handles = core.handles.all();
    let rules: [PreemptRule; 2] = [unused_for_a_while, had_its_slice];
    for rule in rules {
        for f in &handles {
            let Some(mut io) = f.io.try_lock() else { continue };
            if !rule(f, &io) {
                continue;
            }
            match io.state {
                // A download that already ended holds no connection: stopping it frees nothing.
                State::Reading(ref r) if r.holds_connection() => {
                    io.state = State::Idle;
                    log::debug!("paused a download to free a connection");
                    return true;
                }
                State::Writing(_) => {
                    // A failure sticks to the handle (commit_locked keeps it) for its owner to see.
                    let _ = commit_locked(core, f, &mut io);
                    log::debug!("finished an upload stream to free a connection");
                    return true;
                }
                _ => {}
            }
        }
    }
    false
}

/// Opens a transfer, waiting at most the `timeout` option for a connection; meanwhile handles
/// that are idle or have had their slice give theirs up.
fn open_transfer<T>(core: &Core, mut open: impl FnMut(Duration) -> Result<Option<T>, FsError>) -> Result<T, FsError> {
    let deadline = Instant::now() + core.wait_limit();
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(PREEMPT_EVERY);
        if let Some(t) = open(step)? {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            log::warn!("no connection free for a transfer within {:?}", core.wait_limit());
            return Err(FsError::Busy);
        }
        preempt_transfer(core);
    }
}

fn start_download(core: &Core, path: &str, offset: u64) -> Result<Box<dyn ReadStream>, FsError> {
    open_transfer(core, |wait| core.backend.read(path, offset, wait))
}

fn start_upload(core: &Core, path: &str, mode: WriteMode) -> Result<Box<dyn WriteStream>, FsError> {
    open_transfer(core, |wait| core.backend.write(path, mode, wait))
}

/// An upload started only if a connection is free right now (`None`: the caller spools
/// instead, also when connecting failed). Only the server's definite refusal is an error.
fn start_upload_now(core: &Core, path: &str, mode: WriteMode) -> Result<Option<Box<dyn WriteStream>>, FsError> {
    match core.backend.write(path, mode, Duration::ZERO) {
        Ok(up) => Ok(up),
        Err(FsError::Unmounting) => Err(FsError::Unmounting),
        Err(e) if e.is_definite() => Err(e),
        Err(e) => {
            log::debug!("{path}: no stream now ({e}); spooling");
            Ok(None)
        }
    }
}

/// True when another handle on `path` streams an upload or created the file without uploading
/// it yet: what a reader would get from the server is not settled.
fn others_unsettled(core: &Core, f: &OpenFile, path: &str) -> bool {
    core.handles.others_on(path, f).iter().any(|g| g.streaming.load(Ordering::Relaxed) || g.is_created())
}

/// Makes other handles' pending versions of `path` land: their creations (and truncations to
/// zero) always, their streams too when `streams`. Before a reader downloads (so it sees them)
/// and before a handle builds on the content ([`land_earlier_creations`]). Called without
/// holding `f`'s lock. A failure sticks to that handle (commit_locked keeps it) for its owner
/// to see.
fn land_others(core: &Core, f: &OpenFile, path: &str, streams: bool) -> FsResult<()> {
    let pending = |g: &OpenFile| g.is_created() || (streams && g.streaming.load(Ordering::Relaxed));
    let others: Vec<_> = core.handles.others_on(path, f).into_iter().filter(|g| pending(g)).collect();
    for g in in_order_of_closes(others) {
        let mut io = g.io.try_lock_for(core.wait_limit()).ok_or(libc::ETIMEDOUT)?;
        if g.is_created() && overtaken(core, &g, &mut io, path) {
            continue;
        }
        // A creation lands whole (its spool too, if it has one); another writer's spooled
        // changes stay private until it closes.
        let stream_or_creation = (streams && matches!(io.state, State::Writing(_))) || g.is_created();
        let seq = g.close_or(|| core.writeback.next_close());
        if io.error.is_none() && stream_or_creation && commit_locked(core, &g, &mut io).is_ok() {
            drop(io);
            landed_outside_queue(core, &g, seq);
        }
    }
    Ok(())
}

/// What handle `f` held landed without the write-back queue, as version `seq` of its file
/// (its place in the order of closes). An appended tail is no version of the file (it goes on
/// whatever the server holds): it overtakes no close.
pub fn landed_outside_queue(core: &Core, f: &OpenFile, seq: u64) {
    f.close_seq.store(seq, Ordering::Relaxed);
    f.changed_since_close.store(false, Ordering::Relaxed);
    if f.append {
        f.forget_journal();
    } else {
        core.note_landed(f, seq);
    }
}

/// Before `f` appends to `path` (with write-back): the closes of other handles journaled and
/// not released yet land first, in their order, so the appended bytes go after them, as when
/// each close uploads at once (a whole version landing later would drop them).
pub fn land_closed_versions(core: &Core, f: &OpenFile, path: &str) {
    let closed = |g: &OpenFile| !g.queued.load(Ordering::Relaxed) && g.journal.lock().is_some();
    let others: Vec<_> = core.handles.others_on(path, f).into_iter().filter(|g| closed(g)).collect();
    for g in in_order_of_closes(others) {
        let Some(mut io) = g.io.try_lock_for(core.wait_limit()) else { continue };
        if io.error.is_some() || g.closed_version() == 0 || overtaken(core, &g, &mut io, path) {
            continue;
        }
        let seq = g.closed_version();
        if commit_locked(core, &g, &mut io).is_ok() {
            drop(io);
            landed_outside_queue(core, &g, seq);
        }
    }
}

/// Handles in the order of their closes (with write-back: the order their versions land in),
/// those never closed last (their data is newer than any close).
fn in_order_of_closes(mut files: Vec<Arc<OpenFile>>) -> Vec<Arc<OpenFile>> {
    files.sort_by_key(|g| {
        let closed = g.closed_version();
        (closed == 0, closed)
    });
    files
}

/// With write-back, a closed creation that a later close of `path` overtook (landed, or
/// queued) never lands: it is done with as if it had landed and been replaced (its journal
/// entry goes too). `true`: overtaken.
fn overtaken(core: &Core, g: &OpenFile, io: &mut Io, path: &str) -> bool {
    // Written since its last close: what it holds is newer than any close.
    let closed = g.closed_version();
    if closed == 0 || !core.writeback.is_superseded(path, closed) {
        return false;
    }
    log::debug!("{path}: a later close overtook this one; not uploaded");
    if let State::Spooled(s) = &mut io.state {
        s.dirty = false;
    }
    g.created.store(false, Ordering::Relaxed);
    g.set_dirty_size(None);
    g.forget_journal();
    true
}

/// Before `f` builds on its file's content (a spool loaded from the server, a tail appended)
/// and without holding any handle's lock: another handle's creation or truncation to zero of
/// the file that has not landed yet came first, so it lands now. Otherwise `f`'s work would
/// build on the old content, and the creation landing later would replace `f`'s work.
fn land_earlier_creations(core: &Core, f: &OpenFile) -> FsResult<()> {
    let Some(path) = f.path() else { return Ok(()) };
    if f.is_created() || !core.handles.others_on(&path, f).iter().any(|g| g.is_created()) {
        return Ok(());
    }
    land_others(core, f, &path, false)
}

/// Locks `f`'s I/O (with other handles' uploads applied) for an operation that may build on the
/// file's content on the server (`builds`): when another handle's creation of the file is
/// pending, it lands first, with the lock let go meanwhile. Only then: a handle that already
/// holds its own version (last close wins) must not make another's creation land early.
fn lock_for_base<'a>(core: &Core, f: &'a OpenFile, builds: impl Fn(&Io) -> bool) -> FsResult<MutexGuard<'a, Io>> {
    let mut io = f.io.lock();
    apply_remote_change(f, &mut io);
    if !builds(&io) {
        return Ok(io);
    }
    drop(io);
    land_earlier_creations(core, f)?;
    let mut io = f.io.lock();
    apply_remote_change(f, &mut io);
    Ok(io)
}

/// A new writer opens `path`: every other writer streaming to it finishes its stream and goes
/// on from a local copy of its own content, so whichever closes last replaces the file whole
/// (two streams to one path would interleave on the server).
pub fn pin_writers(core: &Core, path: &str) -> FsResult<()> {
    for g in core.handles.writers_of(path) {
        if !g.streaming.load(Ordering::Relaxed) {
            continue;
        }
        let mut io = g.io.try_lock_for(core.wait_limit()).ok_or(libc::ETIMEDOUT)?;
        if !matches!(io.state, State::Writing(_)) || io.error.is_some() {
            continue;
        }
        if commit_locked(core, &g, &mut io).is_err() || wants_tail_spool(&g) {
            // An appender goes on collecting its appends only; nothing to pin.
            continue;
        }
        match load_spool(core, &g) {
            Ok(mut s) => {
                s.dirty = true;
                g.set_dirty_size(Some(s.len));
                io.state = State::Spooled(s);
            }
            // Its content is on the server already; it goes on from there.
            Err(e) => log::warn!("{path}: cannot keep a local copy for a second writer: errno {e}"),
        }
    }
    Ok(())
}

/// Reads `size` bytes at `off` through handle `f` and hands them to `out` (fewer at the end of
/// the file).
pub fn read(core: &Core, f: &OpenFile, off: u64, size: usize, out: &mut dyn FnMut(&[u8])) -> FsResult<()> {
    let _call = InCall::new(f);
    if f.append && f.is_dirty() {
        // A read commits this handle's appended tail first.
        land_earlier_creations(core, f)?;
    }
    let mut io = f.io.lock();
    let mut settled = false;
    let mut retried = false;
    loop {
        apply_remote_change(f, &mut io);
        if matches!(io.state, State::Writing(_)) || is_tail(&io) {
            commit_locked(core, f, &mut io)?;
        }
        if let State::Spooled(s) = &io.state {
            let end = (off + size as u64).min(s.len);
            let mut buf = vec![0u8; end.saturating_sub(off) as usize];
            s.file.read_exact_at(&mut buf, off).map_err(|e| io_errno(&e))?;
            out(&buf);
            return Ok(());
        }
        if f.is_created() {
            out(&[]);
            return Ok(());
        }
        let path = f.path().ok_or(libc::ENOENT)?;
        let keep = io.cached_version.and_then(|v| core.disk_cache().map(|c| (c, v)));
        if let State::Reading(r) = &mut io.state
            && r.can_serve(off)
        {
            // What the server sends is kept on disk on its way to the reader.
            let mut at = off;
            let mut tee = |b: &[u8]| {
                if let Some((cache, v)) = keep {
                    cache.store(&path, v, at, b);
                }
                at += b.len() as u64;
                out(b)
            };
            match r.read_at(off, size, &mut tee) {
                Ok(()) => return Ok(()),
                Err(e) if retried => return Err(io_errno(&e)),
                Err(e) => {
                    log::info!("download of {path} broke ({e}); resuming at {off}");
                    retried = true;
                    io.resume_check = true;
                }
            }
        }
        io.state = State::Idle;
        if !settled && others_unsettled(core, f, &path) {
            settled = true;
            drop(io);
            land_others(core, f, &path, true)?;
            io = f.io.lock();
            continue;
        }
        if std::mem::take(&mut io.resume_check) && off > 0 {
            check_same_version(core, &path, io.server_size, io.read_since, io.listed_mtime)?;
        }
        if let Some((cache, v)) = keep
            && cache.read_with(&path, v, off, size, out)
        {
            return Ok(());
        }
        if off == 0 || io.read_since.is_none() {
            io.read_since = Some(SystemTime::now());
        }
        let dl = start_download(core, &path, off).map_err(|e| match e {
            // What is not cached cannot be read while the server is away.
            FsError::Offline => libc::EIO,
            e => core.refused_errno(&path, e, false),
        })?;
        io.state = State::Reading(StreamReader::start(dl, off).map_err(|e| io_errno(&e))?);
    }
}

/// Slack for the server's clock against ours when a file's time says it changed while being
/// read: a server clock this much ahead is not taken for a change.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Before a download that broke resumes with REST: the server's file still has the size of
/// the version being read (SIZE), and, where the server tells exact times (MDTM), it was not
/// changed after that version's download began (`since`, with [`CLOCK_SLACK`]) nor after the
/// time the listing showed at open (`listed`: the server's own clock, so a server clock ahead
/// of ours does not fail an unchanged file); otherwise the read fails with EIO rather than hand
/// out the rest of another version after the start of this one. (A change within the slack of
/// the start, at the same size, goes unseen.)
fn check_same_version(
    core: &Core,
    path: &str,
    known: Option<u64>,
    since: Option<SystemTime>,
    listed: Option<i64>,
) -> FsResult<()> {
    if let Some(known) = known
        && let Ok(Some(now)) = core.backend.size(path)
        && now != known
    {
        log::error!("{path} changed on the server while being read ({known} bytes, now {now}): not resuming");
        return Err(libc::EIO);
    }
    let Some(since) = since else { return Ok(()) };
    let began = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match core.backend.modified(path) {
        Ok(Some(changed)) if changed > began + CLOCK_SLACK.as_secs() as i64 && listed.is_none_or(|l| changed > l) => {
            log::error!(
                "{path} changed on the server while being read (its time is {changed}, the read began at {began}): not resuming"
            );
            Err(libc::EIO)
        }
        _ => Ok(()),
    }
}

/// Writes `data` at `off` through handle `f`.
pub fn write(core: &Core, f: &OpenFile, off: u64, data: &[u8]) -> FsResult<usize> {
    let _call = InCall::new(f);
    f.note_modified();
    // Idle, the write may load the file into a spool (a stream or a spool it has never does).
    let mut io =
        lock_for_base(core, f, |io| matches!(io.state, State::Idle | State::Reading(_)) && !wants_tail_spool(f))?;
    if let Some(e) = io.error {
        return Err(e);
    }
    write_locked(core, f, &mut io, off, data)
}

/// Before the first data of a handle whose creation is unverified (see [`OpenFile::unverified`]):
/// asks the server whether the name exists after all; if it does, the handle becomes one
/// opened on that file (its data then goes into it, never over it whole).
fn settle_unverified(core: &Core, f: &OpenFile, io: &mut Io) -> FsResult<()> {
    if !f.unverified.load(Ordering::Relaxed) {
        return Ok(());
    }
    let Some(path) = f.path() else { return Ok(()) };
    if let Some(size) = core.backend.size(&path).ok().flatten() {
        log::info!("{path}: made by another client since our listing; opened, not replaced");
        adopt_existing(core, f, io, &path, size);
    }
    f.unverified.store(false, Ordering::Relaxed);
    Ok(())
}

/// The file a handle took for new exists on the server with `size` bytes: the handle is one
/// opened on it from now on.
fn adopt_existing(core: &Core, f: &OpenFile, io: &mut Io, path: &str, size: u64) {
    f.created.store(false, Ordering::Relaxed);
    // Its bits are another client's, not what the server gives new files.
    f.learns_mode.store(false, Ordering::Relaxed);
    f.set_dirty_size(None);
    io.server_size = Some(size);
    core.invalidate_parent(path);
}

fn write_locked(core: &Core, f: &OpenFile, io: &mut Io, off: u64, data: &[u8]) -> FsResult<usize> {
    settle_unverified(core, f, io)?;
    // O_APPEND: the kernel's offset comes from a size other handles' unsaved writes may have
    // moved; the data belongs at the end of this handle's own content.
    let off = match &io.state {
        State::Writing(w) if f.append => w.pos,
        State::Spooled(s) if f.append => s.len,
        // Not started yet: the end of the file as the server has it, when known.
        State::Idle | State::Reading(_) if f.append && !f.is_created() => io.server_size.unwrap_or(off),
        _ => off,
    };
    let end = off + data.len() as u64;
    if let State::Writing(w) = &mut io.state {
        if w.pos == off {
            if let Err(e) = w.up.write_all(data) {
                return Err(fail_stream(core, f, io, io_errno(&e)));
            }
            w.pos = end;
            f.set_dirty_size(Some(end.max(f.dirty_size().unwrap_or(0))));
            return Ok(data.len());
        }
        // Not sequential any more: save what was streamed, then spool.
        commit_locked(core, f, io)?;
    }
    if matches!(io.state, State::Reading(_)) {
        io.state = State::Idle;
    }
    if matches!(io.state, State::Idle) {
        if let Some(w) = try_stream(core, f, io, off)? {
            io.state = State::Writing(Box::new(w));
            f.streaming.store(true, Ordering::Relaxed);
            return write_locked(core, f, io, off, data);
        }
        io.state = State::Spooled(if wants_tail_spool(f) {
            Spool { file: core.temp_file()?, len: 0, dirty: false, tail: true }
        } else {
            load_spool(core, f)?
        });
    }
    if let State::Spooled(s) = &mut io.state {
        let (off, end) = if f.append { (s.len, s.len + data.len() as u64) } else { (off, end) };
        // A failure here (ENOSPC in cache_dir) leaves the spool as it was: nothing is lost, and
        // the caller may free space and write again.
        s.file.write_all_at(data, off).map_err(|e| io_errno(&e))?;
        s.len = s.len.max(end);
        s.dirty = true;
        f.set_dirty_size(if s.tail { io.server_size.map(|size| size + s.len) } else { Some(s.len) });
        return Ok(data.len());
    }
    Err(libc::EIO)
}

/// A streaming upload broke: the streamed bytes cannot be sent again. The error sticks to the
/// handle until a flush reports it.
fn fail_stream(core: &Core, f: &OpenFile, io: &mut Io, e: i32) -> i32 {
    io.state = State::Idle;
    io.error = Some(e);
    io.server_size = None;
    f.streaming.store(false, Ordering::Relaxed);
    f.created.store(false, Ordering::Relaxed);
    f.set_dirty_size(None);
    if let Some(path) = f.path() {
        core.invalidate_parent(&path);
    }
    e
}

/// Starts a streaming upload for a write at `off` when that is safe and cheap: the write starts
/// a file this handle created or truncated (STOR) or continues the file at its end (APPE), no
/// other handle writes the path, no upload of it runs, and a connection is free now. `None`:
/// spool instead. A file this handle did not empty is never replaced by STOR: if our idea of
/// its size is stale, APPE at worst adds to it (and the size check fails the close), while STOR
/// would destroy what another client put there.
fn try_stream(core: &Core, f: &OpenFile, io: &Io, off: u64) -> FsResult<Option<Writer>> {
    let Some(path) = f.path() else { return Ok(None) };
    // Write-back uploads whole spools after close, several at once; atomic uploads too (a
    // stream finished early and continued with APPE would show a part of the file).
    if (core.writeback.enabled() || core.cfg.atomic_upload) && !f.append {
        return Ok(None);
    }
    // A file this handle made empty on the server a moment ago (a flush before any write, as
    // a shell's `>` or touch do) is still its own to replace.
    let made_empty_now = !f.append
        && f.made_empty.load(Ordering::Relaxed)
        && io.server_size == Some(0)
        && f.uploaded_at.lock().is_some_and(|t| t.elapsed() < MADE_EMPTY_IS_OURS);
    let replace = off == 0 && (f.is_created() || made_empty_now);
    // An append waits (in a tail spool) for another handle's pending creation to land first.
    let append = !replace
        && !f.is_created()
        && io.server_size == Some(off)
        && !core.handles.is_pending(&path)
        && core.backend.can_append();
    if !(replace || append) || core.handles.writers_of(&path).len() > 1 {
        return Ok(None);
    }
    let Some(claim) = core.handles.uploads.try_claim(&path) else { return Ok(None) };
    let mode = if append { WriteMode::Append } else { WriteMode::Replace };
    match start_upload_now(core, &path, mode) {
        Ok(Some(up)) => Ok(Some(Writer { up, pos: off, start: off, since: Instant::now(), _claim: claim })),
        Ok(None) => Ok(None),
        // APPE refused: the backend remembers; this handle spools its appends.
        Err(FsError::Unsupported) if append => Ok(None),
        Err(e) => Err(e.errno()),
    }
}

/// A spool holding the file's current content (downloaded unless this handle created it, or
/// another handle created it and has not uploaded it yet).
fn load_spool(core: &Core, f: &OpenFile) -> FsResult<Spool> {
    let mut file = core.temp_file()?;
    let mut len = 0;
    if let Some(path) = f.path().filter(|_| !f.is_created()) {
        match start_download(core, &path, 0) {
            Ok(mut dl) => {
                len = io::copy(&mut dl, &mut file).map_err(|e| io_errno(&e))?;
                dl.finish().map_err(|e| e.errno())?;
            }
            Err(e) if e.errno() == libc::ENOENT && core.handles.is_pending(&path) => {}
            Err(e) => return Err(core.refused_errno(&path, e, false)),
        }
    }
    Ok(Spool { file, len, dirty: false, tail: false })
}

/// Whether `f`'s writes should collect in an append-only spool: an O_APPEND handle on a file it
/// did not create.
fn wants_tail_spool(f: &OpenFile) -> bool {
    f.append && !f.is_created()
}

/// Sets the size of the file behind handle `f` (ftruncate, or O_TRUNC at open).
pub fn truncate(core: &Core, f: &OpenFile, size: u64) -> FsResult<()> {
    f.note_modified();
    // Unless it holds a whole spool already, a truncation to a non-zero size loads the file.
    // An appended tail is committed first.
    let builds = |io: &Io| is_tail(io) || (size != 0 && !matches!(&io.state, State::Spooled(s) if !s.tail));
    let mut io = lock_for_base(core, f, builds)?;
    if f.released.load(Ordering::Relaxed) {
        // Released (under this lock) since the caller picked it: nothing put here would land.
        return Err(libc::ESTALE);
    }
    if size == 0 {
        // Emptied on purpose: whatever is there is replaced.
        f.unverified.store(false, Ordering::Relaxed);
    }
    settle_unverified(core, f, &mut io)?;
    if let State::Writing(w) = &io.state {
        if w.pos == size {
            return Ok(());
        }
        commit_locked(core, f, &mut io)?;
    }
    if is_tail(&io) {
        commit_locked(core, f, &mut io)?;
    }
    if matches!(io.state, State::Reading(_)) {
        io.state = State::Idle;
    }
    if size == 0 && !matches!(io.state, State::Spooled(_)) {
        // Nothing to download: the file will be replaced by what gets written (maybe nothing).
        f.created.store(true, Ordering::Relaxed);
        f.set_dirty_size(Some(0));
        return Ok(());
    }
    if matches!(io.state, State::Idle) {
        io.state = State::Spooled(load_spool(core, f)?);
    }
    if let State::Spooled(s) = &mut io.state {
        s.file.set_len(size).map_err(|e| io_errno(&e))?;
        s.len = size;
        s.dirty = true;
        f.set_dirty_size(Some(size));
    }
    Ok(())
}

/// Remembers a modification time to set once the handle's data is on the server.
pub fn defer_mtime(f: &OpenFile, t: SystemTime) {
    *f.mtime_override.lock() = Some(t);
    f.io.lock().pending_mtime = Some(t);
}

/// The handle made its file (again): the next write at 0 replaces the content with STOR, and
/// its close uploads even if nothing is written.
pub fn mark_created(f: &OpenFile) {
    f.created.store(true, Ordering::Relaxed);
    f.set_dirty_size(Some(0));
}

/// Remembers permission bits to set once the handle's file is on the server.
pub fn defer_mode(f: &OpenFile, mode: u32) {
    f.io.lock().pending_mode = Some(mode);
}

/// Makes the server hold everything written through `f` (flush, fsync, release).
pub fn commit(core: &Core, f: &OpenFile) -> FsResult<()> {
    if f.append && f.is_dirty() {
        // An appended tail lands after earlier creations.
        land_earlier_creations(core, f)?;
    }
    let mut io = f.io.lock();
    commit_locked(core, f, &mut io)
}

/// The end of a released handle: under its lock, what reached it after its upload (a
/// truncation by path) is uploaded too (`upload`: the upload at close succeeded; after a
/// failure the rescue kept the data), and it leaves the registry (`remove`) marked released,
/// so whatever comes later knows it is gone.
pub fn retire(core: &Core, f: &OpenFile, upload: bool, remove: impl FnOnce()) -> FsResult<()> {
    let mut io = f.io.lock();
    let res = if upload { commit_locked(core, f, &mut io) } else { Ok(()) };
    f.released.store(true, Ordering::Relaxed);
    remove();
    res
}

/// Whether the release of `f` can leave its upload to write-back: it holds a whole version of
/// the file in its spool, not yet on the server, and no error.
pub fn can_write_back(f: &OpenFile) -> bool {
    let io = f.io.lock();
    io.error.is_none() && matches!(&io.state, State::Spooled(s) if !s.tail && (s.dirty || f.is_created()))
}

/// Before `path` is renamed: files at or under it that exist only as creations not uploaded yet
/// are made on the server, so they move with it (other handles' unsaved data simply follows the
/// handle to the new name). Only a failure for `path` itself fails the rename; one for a file
/// under it stays with that handle (reported at its close) and does not block the rename.
pub fn land_creations_under(core: &Core, path: &str) -> FsResult<()> {
    for f in in_order_of_closes(core.handles.at_or_under(path)) {
        if !f.is_created() {
            continue;
        }
        let Some(at) = f.path() else { continue };
        if overtaken(core, &f, &mut f.io.lock(), &at) {
            continue;
        }
        let seq = f.close_or(|| core.writeback.next_close());
        let res = commit(core, &f);
        if res.is_ok() {
            landed_outside_queue(core, &f, seq);
        }
        if let Err(e) = res {
            if f.path().as_deref() == Some(path) {
                return Err(e);
            }
            log::warn!("{}: not uploaded before its directory was renamed: errno {e}", f.path().unwrap_or_default());
        }
    }
    Ok(())
}

/// Runs `body` while holding the I/O locks of every handle at or under `tops`, after finishing
/// their streams: meanwhile none of them uploads anything or starts a stream (rename, unlink).
/// Locks are taken in one global order (by address), and no other code waits for a second
/// handle's lock while holding one, so two such callers cannot deadlock. `body` must not touch
/// these handles' I/O.
pub fn with_handles_quiet<T>(core: &Core, tops: &[&str], body: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
    let mut files: Vec<Arc<OpenFile>> = tops.iter().flat_map(|t| core.handles.at_or_under(t)).collect();
    files.sort_by_key(|f| Arc::as_ptr(f) as usize);
    files.dedup_by_key(|f| Arc::as_ptr(f) as usize);
    let deadline = Instant::now() + core.wait_limit();
    let mut guards = Vec::with_capacity(files.len());
    for f in &files {
        guards.push(f.io.try_lock_until(deadline).ok_or(libc::ETIMEDOUT)?);
    }
    for (f, io) in files.iter().zip(guards.iter_mut()) {
        if matches!(io.state, State::Writing(_)) {
            // A failure sticks to that handle for its owner to see.
            let _ = commit_locked(core, f, io);
        }
    }
    body()
}

/// Commits all handles with unsaved data (at unmount), giving up on what is left at `deadline`;
/// each upload marks its journal entry as begun first.
pub fn commit_everything(core: &Core, deadline: Instant) {
    let mut files = core.handles.all();
    // Creations first: appends to the same files land after them.
    files.sort_by_key(|f| !f.is_created());
    for f in files {
        // A queued write-back is the queue's: it lands there, or stays in the journal whole
        // (uploaded here, unbounded and unmarked, a kill could cut it short on the server).
        if f.queued.load(Ordering::Relaxed) || !(f.is_dirty() || f.streaming.load(Ordering::Relaxed)) {
            continue;
        }
        let path = f.path().unwrap_or_default();
        let Some(mut io) = f.io.try_lock_until(deadline) else {
            log::error!("{path}: unsaved data not uploaded at unmount: no time left");
            continue;
        };
        f.mark_journal_started();
        if let Err(e) = commit_locked(core, &f, &mut io) {
            log::error!("{path}: unsaved data could not be uploaded at unmount: errno {e}");
        }
    }
}

/// Checks that the server holds `expected` bytes of `path` after an upload was confirmed
/// (where the server can tell a size): the size the upload's end `reported`, else asked now.
fn verify_size(core: &Core, path: &str, expected: u64, reported: Option<u64>) -> FsResult<()> {
    let size = match reported {
        Some(n) => Ok(Some(n)),
        None => core.backend.size(path),
    };
    match size {
        Ok(Some(n)) if n == expected => Ok(()),
        Ok(Some(n)) => {
            log::error!("{path}: server has {n} bytes after upload, expected {expected}");
            Err(libc::EIO)
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e.errno()),
    }
}

/// Checks that the server holds at least `min` bytes of `path` after an append was confirmed.
fn verify_size_at_least(core: &Core, path: &str, min: u64, reported: Option<u64>) -> FsResult<()> {
    let size = match reported {
        Some(n) => Ok(Some(n)),
        None => core.backend.size(path),
    };
    match size {
        Ok(Some(n)) if n < min => {
            log::error!("{path}: server has {n} bytes after appending {min}");
            Err(libc::EIO)
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e.errno()),
    }
}

/// Commits under the handle's lock. A failure that lost data (a stream that did not land) sticks
/// to the handle: every later write, flush and the release report it; a spool that did not
/// upload stays dirty and is tried again.
fn commit_locked(core: &Core, f: &OpenFile, io: &mut Io) -> FsResult<()> {
    if let Some(e) = io.error {
        return Err(e);
    }
    let Some(path) = f.path() else {
        // Deleted or replaced while open: like a local file, its data goes nowhere, but a temp
        // copy stays readable through the handle.
        match &mut io.state {
            State::Spooled(s) => s.dirty = false,
            _ => io.state = State::Idle,
        }
        f.streaming.store(false, Ordering::Relaxed);
        f.created.store(false, Ordering::Relaxed);
        f.set_dirty_size(None);
        return Ok(());
    };
    // Created to get the bits the server gives, which turned out other than assumed meanwhile:
    // the mode asked for goes with the data (not with an empty APPE that may find another
    // client's file: that one learns after its upload).
    let (given, learned) = core.new_file_mode.get();
    let sure_ours = !f.unverified.load(Ordering::Relaxed);
    if learned && sure_ours && f.learns_mode.swap(false, Ordering::Relaxed) && given != ASSUMED_FILE_MODE {
        io.pending_mode = io.pending_mode.or(Some(ASSUMED_FILE_MODE));
    }
    // A time and a mode waiting for the data go behind it, in the upload's last round trip
    // where the server allows (what it did not take is set on its own below).
    let after = AfterUpload {
        mtime: io.pending_mtime.map(unix_secs),
        mode: io.pending_mode.filter(|_| core.backend.can_chmod()),
    };
    let mut settled = Settled::default();
    // The file turned out to be another client's (an unverified creation): left as it was.
    let mut adopted = false;
    let uploaded = (|| -> FsResult<Option<u64>> {
        Ok(match std::mem::replace(&mut io.state, State::Idle) {
            State::Writing(w) => {
                f.streaming.store(false, Ordering::Relaxed);
                // The streamed bytes are gone from here whatever happens next: never upload the
                // "created" empty version over them later.
                f.created.store(false, Ordering::Relaxed);
                // STOR started at 0 and APPE at the old end: either way the file ends at `pos`.
                let Writer { up, pos, start, _claim, .. } = *w;
                let finished = up.finish_then(after).map(|(size, done)| {
                    settled = done;
                    size
                });
                let checked = finished.map_err(|e| e.errno()).and_then(|size| {
                    if f.append {
                        // O_APPEND: the bytes belong at the end, wherever another client left it.
                        verify_size_at_least(core, &path, pos - start, size).map(|()| size.unwrap_or(pos))
                    } else {
                        verify_size(core, &path, pos, size).map(|()| pos)
                    }
                });
                match checked {
                    Ok(end) => Some(end),
                    Err(e) => {
                        io.server_size = None;
                        io.error = Some(e);
                        f.set_dirty_size(None);
                        core.invalidate_parent(&path);
                        return Err(e);
                    }
                }
            }
            State::Spooled(s) if s.tail => append_tail(core, f, io, s, &path)?,
            State::Spooled(mut s) => {
                // A clean spool of a file this handle created still has to make the file.
                let upload = s.dirty || f.is_created();
                let res = match upload {
                    true => upload_spool(core, &mut s, &path, after).map(|done| {
                        settled = done;
                        Some(s.len)
                    }),
                    false => Ok(None),
                };
                io.state = State::Spooled(s);
                res?
            }
            other => {
                io.state = other;
                match f.is_created() {
                    true if f.unverified.load(Ordering::Relaxed) => {
                        let (size, done) = make_unverified(core, &path, after)?;
                        f.unverified.store(false, Ordering::Relaxed);
                        settled = done;
                        if size > 0 {
                            // Another client's file: left as it was, and now the one this handle has.
                            log::info!("{path}: made by another client since our listing; left as it is");
                            core.invalidate_parent(&path);
                            adopted = true;
                        }
                        Some(size)
                    }
                    true => {
                        settled = upload_empty(core, &path, after)?;
                        Some(0)
                    }
                    false => None,
                }
            }
        })
    })();
    let written = match uploaded {
        Ok(written) => written,
        Err(e) => {
            undo_locking_mode(core, &path, after);
            return Err(e);
        }
    };
    if let Some(size) = written {
        f.made_empty.store(size == 0 && f.is_created(), Ordering::Relaxed);
        // Its time is the moment of this upload (not so for a file left as it was).
        *f.uploaded_at.lock() = (!adopted).then(Instant::now);
        // Our upload is newer than any other handle's that told us about theirs.
        f.remote_changed.store(0, Ordering::Relaxed);
        io.server_size = Some(size);
        f.created.store(false, Ordering::Relaxed);
        f.set_dirty_size(None);
        core.note_written(&path, size, f.modified());
        core.handles.notify_commit(&path, size, f);
        // The file this upload made has the bits the server gives new files, unless a mode
        // went with it (or it was another client's).
        // Where it gave other bits, this file gets the mode asked for now (the data has landed:
        // a refusal is logged, not the upload's failure).
        if f.learns_mode.swap(false, Ordering::Relaxed)
            && after.mode.is_none()
            && !adopted
            && core.new_file_mode.learn(core.backend.as_ref(), &path, size).is_some_and(|m| m != ASSUMED_FILE_MODE)
            && let Err(e) = core.chmod_now(&path, ASSUMED_FILE_MODE)
        {
            log::warn!("{path}: uploaded, but the server did not take its mode {ASSUMED_FILE_MODE:o} (errno {e})");
        }
    }
    if let Some(mode) = io.pending_mode.take() {
        match settled.mode {
            true => core.noted_mode(&path, mode),
            false => core.chmod_now(&path, mode)?,
        }
    }
    if let Some(t) = io.pending_mtime.take() {
        // Its time is this one now, not the moment of the upload.
        *f.uploaded_at.lock() = None;
        // The data has landed: a time the server does not take now is logged, not made the
        // upload's failure (write-back and the commit's callers take an error for "not
        // landed"). A server known to refuse times refused the setattr itself.
        if settled.mtime {
            core.noted_mtime(&path, unix_secs(t));
        } else if let Err(e) = core.set_mtime(&path, t) {
            log::warn!("{path}: uploaded, but the server did not take its time (errno {e})");
        }
        *f.mtime_override.lock() = None;
    }
    Ok(())
}

fn is_tail(io: &Io) -> bool {
    matches!(&io.state, State::Spooled(s) if s.tail)
}

/// Appends an append-only spool to the server's file with APPE; returns the new size where the
/// server tells it. The spool is done with after a success. A failure sticks to the handle and
/// keeps the spool for the release's rescue: bytes may have landed, so sending them again could
/// append them twice.
fn append_tail(core: &Core, f: &OpenFile, io: &mut Io, mut s: Spool, path: &str) -> FsResult<Option<u64>> {
    if !s.dirty {
        return Ok(None);
    }
    // Another handle's creation or truncation to zero that has not landed yet came first (it
    // lands before a tail is committed: land_earlier_creations): until it has, the append waits;
    // nothing was sent, so the tail stays for the next flush, without a sticky error.
    if core.handles.is_pending(path) {
        log::warn!("{path}: appending waits for another handle's creation of it to land");
        io.state = State::Spooled(s);
        return Err(libc::EIO);
    }
    let sent = claim_upload(core, path).and_then(|_claim| {
        let mut up = match start_upload(core, path, WriteMode::Append) {
            Ok(up) => up,
            Err(FsError::Unsupported) => return append_by_copy(core, path, &mut s).map(Some),
            Err(e) => return Err(e.errno()),
        };
        s.file.seek(SeekFrom::Start(0)).map_err(|e| io_errno(&e))?;
        io::copy(&mut (&s.file).take(s.len), &mut Metered { up: &mut up, sent: &core.sent })
            .map_err(|e| io_errno(&e))?;
        let reported = up.finish().map_err(|e| e.errno())?;
        Ok(reported.or_else(|| core.backend.size(path).ok().flatten()))
    });
    match sent {
        Ok(size) => {
            if size.is_none() {
                core.invalidate_parent(path);
                f.set_dirty_size(None);
            }
            Ok(size)
        }
        Err(e) => {
            if s.tail {
                // Bytes may have landed: sending them again could append them twice.
                io.error = Some(e);
            } else {
                f.set_dirty_size(Some(s.len));
            }
            io.state = State::Spooled(s);
            Err(e)
        }
    }
}

/// APPE for a server that refuses it: the current file, then the tail, uploaded whole with STOR
/// (the caller holds the path's upload claim). Returns the new size.
fn append_by_copy(core: &Core, path: &str, tail: &mut Spool) -> FsResult<u64> {
    let mut whole = core.temp_file()?;
    let mut dl = start_download(core, path, 0).map_err(|e| core.refused_errno(path, e, false))?;
    let old = io::copy(&mut dl, &mut whole).map_err(|e| io_errno(&e))?;
    dl.finish().map_err(|e| e.errno())?;
    tail.file.seek(SeekFrom::Start(0)).map_err(|e| io_errno(&e))?;
    io::copy(&mut (&tail.file).take(tail.len), &mut whole).map_err(|e| io_errno(&e))?;
    let mut spool = Spool { file: whole, len: old + tail.len, dirty: true, tail: false };
    // Until the STOR starts the server's file is untouched, and the tail alone stays with the
    // handle (other appenders' bytes may land meanwhile).
    let up = start_upload(core, path, WriteMode::Replace).map_err(|e| e.errno())?;
    match pour_spool(core, &mut spool, path, up, AfterUpload::default()) {
        Ok(_) => Ok(spool.len),
        Err(e) => {
            // The STOR may have emptied the server's file: the whole content (old + appended)
            // becomes the handle's spool, uploaded whole at the next flush or rescued at close.
            *tail = spool;
            Err(e)
        }
    }
}

/// Claims the right to upload `path`, waiting (bounded) for another upload of it to end.
fn claim_upload(core: &Core, path: &str) -> FsResult<PathClaim> {
    let deadline = Instant::now() + core.wait_limit();
    core.handles.uploads.claim(path, deadline).ok_or_else(|| {
        log::warn!("{path}: another upload of it did not end in time");
        libc::ETIMEDOUT
    })
}

/// Creates (or empties) `path` on the server, with what `after` asks where the upload can
/// carry it (which it says).
fn upload_empty(core: &Core, path: &str, after: AfterUpload) -> FsResult<Settled> {
    let _claim = claim_upload(core, path)?;
    let up = start_upload(core, path, WriteMode::Replace).map_err(|e| e.errno())?;
    let (reported, settled) = up.finish_then(after).map_err(|e| e.errno())?;
    verify_size(core, path, 0, reported)?;
    Ok(settled)
}

/// Makes `path` exist without replacing a file another client may have made there since our
/// listing: an empty APPE (creates a missing file, leaves an existing one as it is), with what
/// `after` asks where it can ride along. Returns the file's size and what was set. Where APPE
/// is refused, the server is asked first and an empty file is uploaded only if none is there.
fn make_unverified(core: &Core, path: &str, after: AfterUpload) -> FsResult<(u64, Settled)> {
    let claim = claim_upload(core, path)?;
    match start_upload(core, path, WriteMode::Append) {
        Ok(up) => {
            let (reported, settled) = up.finish_then(after).map_err(|e| e.errno())?;
            let size = reported.or_else(|| core.backend.size(path).ok().flatten()).unwrap_or(0);
            Ok((size, settled))
        }
        Err(FsError::Unsupported) => {
            drop(claim);
            match core.backend.size(path).ok().flatten() {
                Some(size) => Ok((size, Settled::default())),
                None => upload_empty(core, path, after).map(|settled| (0, settled)),
            }
        }
        Err(e) => Err(e.errno()),
    }
}

/// An upload's writer that counts what it takes in [`Core::sent`].
struct Metered<'a> {
    up: &'a mut Box<dyn WriteStream>,
    sent: &'a std::sync::atomic::AtomicU64,
}

impl io::Write for Metered<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.up.write(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.up.flush()
    }
}

/// Uploads a spool whole (with what `after` asks where the upload can carry it, which it
/// says); on success it is clean. On failure it stays dirty for another try.
fn upload_spool(core: &Core, s: &mut Spool, path: &str, after: AfterUpload) -> FsResult<Settled> {
    let _claim = claim_upload(core, path)?;
    let up = start_upload(core, path, WriteMode::Replace).map_err(|e| e.errno())?;
    pour_spool(core, s, path, up, after)
}

/// Sends a whole spool through an upload already started, size checked; the spool is clean
/// after a success.
fn pour_spool(
    core: &Core,
    s: &mut Spool,
    path: &str,
    mut up: Box<dyn WriteStream>,
    after: AfterUpload,
) -> FsResult<Settled> {
    s.file.seek(SeekFrom::Start(0)).map_err(|e| io_errno(&e))?;
    let copied = io::copy(&mut (&s.file).take(s.len), &mut Metered { up: &mut up, sent: &core.sent });
    if let Err(e) = copied {
        return Err(io_errno(&e));
    }
    let (reported, settled) = up.finish_then(after).map_err(|e| e.errno())?;
    verify_size(core, path, s.len, reported)?;
    s.dirty = false;
    Ok(settled)
}

/// After an upload that failed with a mode behind it that takes the owner's own write bit
/// (git's 0444): the server may have run the mode although the data failed (vsftpd runs what
/// comes behind a transfer whatever its outcome), and the next try would be refused. The owner
/// gets its bits back, as far as the server lets (nothing else depends on it).
fn undo_locking_mode(core: &Core, path: &str, after: AfterUpload) {
    if let Some(mode) = after.mode.filter(|m| m & 0o200 == 0) {
        let _ = core.backend.chmod(path, mode | 0o600);
    }
}

/// Makes read-only handle `fh` serve `copy` (`len` bytes) instead of the server's file, as a
/// clean spool it keeps until it is closed, whatever lands on the server meanwhile.
pub fn serve_copy(core: &Core, fh: u64, copy: std::fs::File, len: u64) -> FsResult<()> {
    let f = core.handles.get(fh)?;
    f.serves_copy.store(true, Ordering::Relaxed);
    f.io.lock().state = State::Spooled(Spool { file: copy, len, dirty: false, tail: false });
    Ok(())
}

/// Sets the size of a path that has no writable handle open, through a short-lived handle of
/// its own (so readers of the path learn about the change like from any other writer).
pub fn truncate_path(core: &Core, path: &str, size: u64) -> FsResult<()> {
    let listed = core.entry(path)?.size.unwrap_or(0);
    // The listing may be stale: growing from a wrong end would put zeros in the middle.
    let current = core.backend.size(path).ok().flatten().unwrap_or(listed);
    if size == current {
        return Ok(());
    }
    let fh = core.handles.open(path, true, false, false, Some(current));
    let res = core.handles.get(fh).and_then(|f| {
        if size > current {
            // Append zeros: no need to move the existing bytes.
            let zeros = vec![0u8; 64 * 1024];
            let mut off = current;
            while off < size {
                let n = (size - off).min(zeros.len() as u64) as usize;
                write(core, &f, off, &zeros[..n])?;
                off += n as u64;
            }
        } else {
            truncate(core, &f, size)?;
        }
        commit(core, &f)
    });
    // Out under its lock, as every handle leaves: a truncation that picked it meanwhile lands.
    if let Ok(f) = core.handles.get(fh) {
        let late = retire(core, &f, res.is_ok(), || drop(core.handles.remove(fh)));
        if res.is_ok() && late.is_err() {
            log::debug!("truncate {path} to {size}: a late change failed: {late:?}");
            return late;
        }
    }
    log::debug!("truncate {path} to {size}: {res:?}");
    res
}
