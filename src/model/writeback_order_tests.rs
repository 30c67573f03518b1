//! Write-back keeps versions in order and its journal honest, on the in-memory server: a
//! journal entry is the version that was closed, whatever is written after the close; a version
//! fsynced is never overwritten by an older close released later; a version left in the
//! journal by failed uploads goes when a newer one lands or its file is deleted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Model, ROOT_INO};
use crate::backend::FsError;
use crate::backend::memory::{MemoryBackend, Op};

use super::writeback_tests::{model, setup, wait_held, with_ext, write_file};

/// The `.path` files in `journal`: one per entry.
fn entries(journal: &Path) -> usize {
    with_ext(journal, "path")
}

/// Waits (30 s at most) until every handle is gone and the queue is empty: the deferred
/// uploads ended, and the queue has taken note of how.
fn wait_uploads_ended(m: &Model) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.open_handles() > 0 || !m.describe_writeback().starts_with("0 uploads queued") {
        assert!(Instant::now() < deadline, "a write-back upload never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The journal keeps its own copy of the closed version (issue 26, finding 6: it was a hard
/// link to the handle's live spool, so writes after the close changed the journalled version
/// and a crash replayed bytes no close ever wrote).
#[test]
fn a_journal_entry_is_the_closed_version_not_what_came_after() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, fh) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"closed version"), Ok(14));
    m.flush(fh).expect("close");
    // Written through a duplicate after that close, never closed: a crash comes first.
    assert_eq!(m.write(fh, 0, b"NOT CLOSED YET, LONGER"), Ok(22));
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    for e in std::fs::read_dir(&journal).expect("journal").flatten() {
        std::fs::copy(e.path(), left.join(e.file_name())).expect("copy");
    }
    let be2 = Arc::new(MemoryBackend::new(2));
    let m2 = model(&be2, dir.path(), None);
    assert_eq!(m2.recover_journal(&left), 1);
    assert_eq!(be2.file("f").as_deref(), Some(&b"closed version"[..]), "the replay is not the version closed");
    // The mount itself goes on: the later close is the one that lands.
    m.flush(fh).expect("second close");
    m.release(fh).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"NOT CLOSED YET, LONGER"[..]));
    assert_eq!(entries(&journal), 0);
}

/// fsync takes a place in the order of versions: a close made before it and released after
/// it is older, and never lands over the fsynced data (it did before: the queue knew only the
/// closes it had seen).
#[test]
fn an_fsynced_version_is_not_overwritten_by_an_older_close() {
    let (be, dir, journal) = setup();
    be.put_file("f", b"base");
    let m = model(&be, dir.path(), Some(&journal));
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let older = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(older, 0, b"older"), Ok(5));
    m.flush(older).expect("close of the older version");
    let newer = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(newer, 0, b"newer, fsynced"), Ok(14));
    m.fsync(newer).expect("fsync");
    assert_eq!(be.file("f").as_deref(), Some(&b"newer, fsynced"[..]), "fsync returned before the data landed");
    m.release(older).expect("release of the older close");
    m.flush(newer).expect("close");
    m.release(newer).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"newer, fsynced"[..]), "an older close landed over fsynced data");
    assert_eq!(entries(&journal), 0, "the superseded version left its entry behind");
}

/// Five failed attempts in a row: the upload gives up for this mount and its version stays in
/// the journal for the next one.
fn fail_every_attempt(be: &MemoryBackend) {
    for n in 1..=5 {
        be.fail_nth(Op::Write, n, FsError::Broken);
    }
}

/// A version left in the journal after its uploads failed is dropped when a newer version of
/// the file lands in the same mount, or the file is deleted: otherwise the next mount would
/// find it older than the server's file (set aside as a conflict, noise) or, after a delete,
/// bring the file back.
#[test]
fn a_version_left_in_the_journal_goes_when_a_newer_one_lands_or_the_file_is_deleted() {
    let (be, dir, journal) = setup();
    be.put_file("g", b"on the server");
    let m = model(&be, dir.path(), Some(&journal));
    fail_every_attempt(&be);
    write_file(&m, "f", b"never landed");
    wait_uploads_ended(&m);
    assert!(be.file("f").is_none(), "the injected failures did not happen");
    assert_eq!(entries(&journal), 1, "the failed version is not kept in the journal");
    assert!(m.describe_writeback().contains("1 left in the journal"), "{}", m.describe_writeback());
    // Its close reports the earlier failure (once), and its own version lands.
    let (_, fh) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"newer, landed"), Ok(13));
    assert_eq!(m.flush(fh), Err(libc::EIO));
    m.release(fh).expect("release");
    wait_uploads_ended(&m);
    assert_eq!(be.file("f").as_deref(), Some(&b"newer, landed"[..]));
    assert_eq!(entries(&journal), 0, "the older version stays in the journal after a newer one landed");

    fail_every_attempt(&be);
    let ino = m.lookup(ROOT_INO, "g").expect("lookup").ino;
    let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(fh, 0, b"never landed either"), Ok(19));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    wait_uploads_ended(&m);
    assert_eq!(entries(&journal), 1, "the failed version is not kept in the journal");
    m.unlink(ROOT_INO, "g").expect("unlink");
    assert_eq!(entries(&journal), 0, "a deleted file's version stays in the journal");
    m.stop();
    assert!(be.file("g").is_none());
}

/// A version left in the journal follows a rename of its file: the next mount lands it under
/// the new name.
#[test]
fn a_version_left_in_the_journal_follows_a_rename() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.put_file("f", b"old");
    fail_every_attempt(&be);
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(fh, 0, b"not landed"), Ok(10));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    wait_uploads_ended(&m);
    assert_eq!(entries(&journal), 1);
    m.rename(ROOT_INO, "f", ROOT_INO, "g", false).expect("rename");
    m.stop();
    let be2 = Arc::new(MemoryBackend::new(2));
    be2.put_file("g", b"old");
    // Renamed on the server, the file kept its time: from before the close.
    crate::backend::Backend::set_mtime(&*be2, "g", 1_000_000_000).expect("mtime");
    let m2 = model(&be2, dir.path(), None);
    assert_eq!(m2.recover_journal(&journal), 1);
    assert_eq!(be2.file("g").as_deref(), Some(&b"not landed"[..]), "the version did not follow the rename");
    assert!(be2.file("f").is_none());
}

/// A write-back that failed is reported by the next close of a writer of the file, once (as
/// by fsync): `cp` over a file whose earlier version never landed does not exit 0 silently.
/// A reader's close reports nothing.
#[test]
fn a_failed_write_back_is_reported_by_the_next_writers_close() {
    let (be, dir, journal) = setup();
    be.put_file("f", b"on the server");
    let m = model(&be, dir.path(), Some(&journal));
    fail_every_attempt(&be);
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(fh, 0, b"never landed"), Ok(12));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    wait_uploads_ended(&m);
    let reader = m.open(ino, libc::O_RDONLY).expect("open for reading").fh;
    assert_eq!(m.flush(reader), Ok(()), "a reader's close reported the failure");
    m.release(reader).expect("release");
    let writer = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(writer, 0, b"next"), Ok(4));
    assert_eq!(m.flush(writer), Err(libc::EIO), "the next writer's close did not report the failure");
    assert_eq!(m.flush(writer), Ok(()), "the failure is reported once");
    m.release(writer).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"next"[..]));
}

/// A download that broke resumes only on the version it was reading, also when the new
/// version has the same size: the server's exact time (MDTM) says it changed after the read
/// began (issue 26, finding 7: only the size was checked).
#[test]
fn a_resumed_download_never_splices_a_same_size_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(4));
    let old: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    be.put_file("f", &old);
    let m = model(&be, dir.path(), None);
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    be.break_read_after(1 << 20);
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    let mut got = Vec::new();
    m.read(fh, 0, 128 << 10, &mut |d| got.extend_from_slice(d)).expect("first read");
    // Rewritten by another client meanwhile, same size, its time now (the server's clock).
    be.put_file("f", &vec![b'n'; old.len()]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    crate::backend::Backend::set_mtime(&*be, "f", now + 10).expect("mtime");
    let mut res = Ok(());
    let mut off = 128 << 10;
    while off < 3 << 20 && res.is_ok() {
        res = m.read(fh, off, 128 << 10, &mut |d| got.extend_from_slice(d));
        off += 128 << 10;
    }
    assert_eq!(res, Err(libc::EIO), "the read after the break went on (on another version?)");
    assert!(got == old[..got.len()], "spliced: bytes of another version after those of this one");
    m.release(fh).expect("release");
}

/// The same break without a change resumes: a file changed before the read began is the
/// version being read.
#[test]
fn a_resumed_download_of_an_unchanged_file_goes_on() {
    read_across_a_break(-1);
}

/// Reads a 4 MiB file whose time on the server is `changed` s from now through a download that
/// breaks after 1 MiB: it must resume and read the whole file.
fn read_across_a_break(changed: i64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(4));
    let old: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    be.put_file("f", &old);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
    crate::backend::Backend::set_mtime(&*be, "f", now + changed).expect("mtime");
    let m = model(&be, dir.path(), None);
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    be.break_read_after(1 << 20);
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    let mut got = Vec::new();
    let mut off = 0;
    while off < old.len() as u64 {
        m.read(fh, off, 128 << 10, &mut |d| got.extend_from_slice(d)).expect("read across the break");
        off += 128 << 10;
    }
    assert!(got == old, "the resumed read is not the file");
    m.release(fh).expect("release");
}

/// A release that uploads itself (the queue is full) keeps to the order of closes: a close
/// made before a later one that already landed is dropped, not uploaded over it.
#[test]
fn a_release_that_uploads_itself_never_lands_over_a_later_close() {
    let (be, dir, journal) = setup();
    be.put_file("f", b"base");
    let m = model(&be, dir.path(), Some(&journal));
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let older = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(older, 0, b"older close"), Ok(11));
    m.flush(older).expect("close of the older version");
    let newer = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(newer, 0, b"newer close, landed"), Ok(19));
    m.flush(newer).expect("close");
    m.release(newer).expect("release");
    wait_uploads_ended_but(&m, 1);
    assert_eq!(be.file("f").as_deref(), Some(&b"newer close, landed"[..]));
    // The queue fills up with uploads held by the server.
    be.hold_uploads(true);
    for i in 0..64 {
        write_file(&m, &format!("other{i}"), b"x");
    }
    let be2 = be.clone();
    let go = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        be2.hold_uploads(false);
    });
    m.release(older).expect("release of the older close");
    go.join().expect("join");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"newer close, landed"[..]), "an older close landed over a later one");
}

/// A close renamed over a file whose later version landed before is that file's newest
/// version now: it lands (the order of the replaced file's closes went with it).
#[test]
fn a_close_renamed_over_another_file_still_lands() {
    let (be, dir, journal) = setup();
    be.put_file("p", b"p on the server");
    let m = model(&be, dir.path(), Some(&journal));
    let ino = m.lookup(ROOT_INO, "p").expect("lookup").ino;
    // Not truncated: a rename does not land it first (as it does a creation).
    let y = m.open(ino, libc::O_WRONLY).expect("open").fh;
    assert_eq!(m.write(y, 0, b"written through p"), Ok(17));
    m.flush(y).expect("close");
    write_file(&m, "q", b"q, landed later");
    wait_uploads_ended_but(&m, 1);
    assert_eq!(be.file("q").as_deref(), Some(&b"q, landed later"[..]));
    m.rename(ROOT_INO, "p", ROOT_INO, "q", false).expect("rename");
    m.release(y).expect("release");
    m.stop();
    assert_eq!(be.file("q").as_deref(), Some(&b"written through p"[..]), "the close renamed over q was dropped");
    assert_eq!(entries(&journal), 0);
}

/// Waits (30 s at most) until only `open` handles are left and the queue is empty.
fn wait_uploads_ended_but(m: &Model, open: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.open_handles() > open || !m.describe_writeback().starts_with("0 uploads queued") {
        assert!(Instant::now() < deadline, "a write-back upload never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The stop after a signal is bounded: queued uploads the server holds up stay in the journal
/// whole, and nothing else uploads them on the way out (it did: the unmount's last commit of
/// every open handle uploaded each queued one, without a bound and unmarked).
#[test]
fn a_bounded_stop_leaves_queued_uploads_in_the_journal() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.hold_uploads(true);
    for i in 0..6 {
        write_file(&m, &format!("f{i}"), b"queued");
    }
    let t0 = Instant::now();
    m.stop_within(Some(Duration::from_millis(300)));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "the bounded stop took {took:?}");
    be.hold_uploads(false);
    assert_eq!(entries(&journal), 6, "queued uploads are not all in the journal");
    let files = be.files();
    for (path, data) in &files {
        assert!(data == b"queued" || data.is_empty(), "{path} holds {data:?}");
    }
}

/// A replay orders one file's entries by their place in the order of closes, written in the
/// entry, not by the time of their files (coarse, and moved by a clock that steps back).
#[test]
fn a_replay_orders_entries_by_their_close_not_their_file_times() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.hold_uploads(true);
    let (_, a) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(a, 0, b"first close"), Ok(11));
    m.flush(a).expect("first close");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let b = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(b, 0, b"second close"), Ok(12));
    m.flush(b).expect("second close");
    // A crash now; the clock had stepped back between the two closes.
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    let mut paths = Vec::new();
    for e in std::fs::read_dir(&journal).expect("journal").flatten() {
        std::fs::copy(e.path(), left.join(e.file_name())).expect("copy");
        if e.path().extension().is_some_and(|x| x == "path") {
            paths.push(left.join(e.file_name()));
        }
    }
    assert_eq!(paths.len(), 2);
    for p in &paths {
        let second = std::fs::read(p.with_extension("data")).expect("data") == b"second close";
        let t = std::time::SystemTime::now() - Duration::from_secs(if second { 3600 } else { 60 });
        std::fs::File::options().write(true).open(p).expect("path").set_modified(t).expect("time");
    }
    be.hold_uploads(false);
    let be2 = Arc::new(MemoryBackend::new(2));
    let m2 = model(&be2, dir.path(), None);
    assert_eq!(m2.recover_journal(&left), 1);
    assert_eq!(be2.file("f").as_deref(), Some(&b"second close"[..]), "the replay landed the older close");
    m.release(a).expect("release");
    m.release(b).expect("release");
    m.stop();
}

/// A server whose clock is ahead of ours: a file it shows as changed "in the future" but the
/// same as at open (MDTM equals the listing's time) resumes after a break.
#[test]
fn a_resumed_download_trusts_the_servers_own_time_from_the_listing() {
    read_across_a_break(3600);
}

/// A release that reaches the mount while it stops uploads itself; once the stop returns (the
/// process exits right after), the version is on the server and its journal entry gone: the
/// next mount does not upload it again (seen through the kernel: `cp; fusermount -u`).
#[test]
fn a_release_racing_the_stop_leaves_no_journal_entry() {
    let (be, dir, journal) = setup();
    let m = Arc::new(model(&be, dir.path(), Some(&journal)));
    let (_, fh) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"closed as the mount stops"), Ok(25));
    m.flush(fh).expect("close");
    be.hold_uploads(true);
    let stopper = {
        let m = m.clone();
        std::thread::spawn(move || m.stop())
    };
    // The stop has begun (no more deferrals): the release uploads itself, held by the server.
    std::thread::sleep(Duration::from_millis(100));
    let releaser = {
        let m = m.clone();
        std::thread::spawn(move || m.release(fh))
    };
    wait_held(&be, 1);
    be.hold_uploads(false);
    stopper.join().expect("stop");
    assert_eq!(be.file("f").as_deref(), Some(&b"closed as the mount stops"[..]));
    assert_eq!(entries(&journal), 0, "the stop returned with the landed version still in the journal");
    releaser.join().expect("release").expect("release result");
}

/// A handle written after its close holds a version newer than that close: a later close of
/// another handle does not overtake it (it did: a reader landing creations set it clean and
/// its last close uploaded nothing; the other handle's older data stayed).
#[test]
fn a_handle_written_after_its_close_is_not_overtaken() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, g) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(g, 0, b"A"), Ok(1));
    m.flush(g).expect("close of a duplicate");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let h = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(h, 0, b"B"), Ok(1));
    m.flush(h).expect("close");
    m.release(h).expect("release");
    wait_uploads_ended_but(&m, 1);
    assert_eq!(be.file("f").as_deref(), Some(&b"B"[..]));
    assert_eq!(m.write(g, 1, b"C"), Ok(1));
    // A reader makes pending creations land first.
    let r = m.open(ino, libc::O_RDONLY).expect("open for reading").fh;
    let mut seen = Vec::new();
    m.read(r, 0, 16, &mut |d| seen.extend_from_slice(d)).expect("read");
    m.release(r).expect("release reader");
    m.flush(g).expect("last close");
    m.release(g).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"AC"[..]), "the handle closed last lost its data");
}

/// An appended tail is no version of the file: it overtakes no close, and lands after the
/// closes of other handles journaled before it (it was taken for the newest version: a close
/// made before it was dropped as superseded).
#[test]
fn an_append_lands_after_earlier_closes_and_overtakes_none() {
    let (be, dir, journal) = setup();
    be.put_file("f", b"base");
    let m = model(&be, dir.path(), Some(&journal));
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let h = m.open(ino, libc::O_WRONLY).expect("open").fh;
    assert_eq!(m.write(h, 0, b"HHHH"), Ok(4));
    m.flush(h).expect("close of a duplicate: journaled");
    let g = m.open(ino, libc::O_WRONLY | libc::O_APPEND).expect("open for appending").fh;
    assert_eq!(m.write(g, 4, b"+tail"), Ok(5));
    m.flush(g).expect("close of the appender");
    m.release(g).expect("release");
    m.release(h).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"HHHH+tail"[..]));
    assert_eq!(entries(&journal), 0);
}

/// A close whose upload failed keeps its place as the newest: its release neither takes it
/// for overtaken nor drops it, and keeps its data (it used to forget it without a trace).
#[test]
fn a_failed_close_is_not_dropped_as_overtaken() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, f) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(f, 0, b"first"), Ok(5));
    m.flush(f).expect("close of a duplicate");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let h = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(h, 0, b"other"), Ok(5));
    m.flush(h).expect("close");
    m.release(h).expect("release");
    wait_uploads_ended_but(&m, 1);
    assert_eq!(m.write(f, 0, b"newest"), Ok(6));
    // The journal cannot take the last close (the directory is gone), and its upload at close
    // fails: the close fails, and the data is the newest there is all the same.
    std::fs::remove_dir_all(&journal).expect("journal gone");
    be.fail_next(Op::Write, FsError::NoSpace);
    assert!(m.flush(f).is_err(), "the close did not fail");
    // Its release uploads it (it is not overtaken by the other handle's older close).
    m.release(f).expect("release");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"newest"[..]), "the newest data was dropped");
    std::fs::create_dir(&journal).expect("journal dir");
}
