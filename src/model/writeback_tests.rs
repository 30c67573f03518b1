//! Write-back on the in-memory server: close() returns before the upload, everything that
//! comes after sees the data, failures reach fsync, unmount waits, and a journal left behind
//! is uploaded by the next mount.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::FsError;
use crate::backend::memory::MemoryBackend;

const SLOW: Duration = Duration::from_millis(300);

pub(super) fn model(be: &Arc<MemoryBackend>, cache: &Path, journal: Option<&Path>) -> Model {
    let cfg = ModelConfig {
        writeback: journal.map(Path::to_path_buf),
        writeback_uploads: 3,
        ..ModelConfig::for_tests(cache, Duration::from_secs(3600))
    };
    Model::new(cfg, be.clone())
}

pub(super) fn setup() -> (Arc<MemoryBackend>, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).expect("journal dir");
    (Arc::new(MemoryBackend::new(4)), dir, journal)
}

/// How many files in `journal` end in `.ext`.
pub(super) fn with_ext(journal: &Path, ext: &str) -> usize {
    std::fs::read_dir(journal)
        .expect("journal")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .count()
}

/// What a crash would leave of `journal` now: a copy of it in `top/left`.
fn crash_copy(journal: &Path, top: &Path) -> std::path::PathBuf {
    let left = top.join("left");
    std::fs::create_dir(&left).expect("dir");
    for e in std::fs::read_dir(journal).expect("journal").filter_map(Result::ok) {
        std::fs::copy(e.path(), left.join(e.file_name())).expect("copy");
    }
    left
}

/// Creates `name` with `data` and closes it.
pub(super) fn write_file(m: &Model, name: &str, data: &[u8]) {
    let (_, fh) = m.create(ROOT_INO, name, libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, data), Ok(data.len()));
    m.flush(fh).expect("flush");
    m.release(fh).expect("close");
}

fn read_file(m: &Model, name: &str) -> Vec<u8> {
    let ino = m.lookup(ROOT_INO, name).expect("lookup").ino;
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    let mut out = Vec::new();
    m.read(fh, 0, 1 << 20, &mut |d| out.extend_from_slice(d)).expect("read");
    m.release(fh).expect("close");
    out
}

fn journal_entries(journal: &Path) -> usize {
    std::fs::read_dir(journal).map(|d| d.count()).unwrap_or(0)
}

/// Waits (30 s at most) until `n` uploads are held by [`MemoryBackend::hold_uploads`].
pub(super) fn wait_held(be: &MemoryBackend, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while be.uploads_waiting() < n {
        assert!(Instant::now() < deadline, "{} uploads started, not {n}", be.uploads_waiting());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets held uploads go after a moment, from another thread: a request that must wait for an
/// upload is (most likely) waiting by then, and one that does not wait sees it missing.
fn let_uploads_go_soon(be: &Arc<MemoryBackend>) -> std::thread::JoinHandle<()> {
    let be = be.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        be.hold_uploads(false);
    })
}

#[test]
fn close_returns_before_the_upload_and_later_requests_see_the_data() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.hold_uploads(true);
    write_file(&m, "f", b"written back");
    // Closed, and not on the server yet: the upload is held until the test lets it go.
    assert!(be.file("f").is_none(), "close waited for the upload");
    // (Its `.started` marker may be there too once a worker took it up.)
    assert_eq!((with_ext(&journal, "data"), with_ext(&journal, "path")), (1, 1), "data and path in the journal");
    // A reader is served the spool at once; a writer's open waits for the upload.
    assert_eq!(read_file(&m, "f"), b"written back");
    assert!(be.file("f").is_none(), "the reader waited for the upload");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let go = let_uploads_go_soon(&be);
    let fh = m.open(ino, libc::O_WRONLY).expect("open for writing").fh;
    assert_eq!(be.file("f").as_deref(), Some(&b"written back"[..]), "the writer did not wait for the upload");
    go.join().expect("join");
    m.release(fh).expect("close");
    assert_eq!(journal_entries(&journal), 0, "the journal forgets what landed");
    assert_eq!(m.open_handles(), 0);
}

#[test]
fn unmount_waits_for_every_write_back() {
    let (be, dir, journal) = setup();
    // The unmount gives up once no upload ended for this long: far more than one takes, even
    // on a loaded machine.
    be.set_wait_limit(Duration::from_secs(10));
    let m = model(&be, dir.path(), Some(&journal));
    be.delay(SLOW);
    for i in 0..9 {
        write_file(&m, &format!("f{i}"), format!("file {i}").as_bytes());
    }
    m.stop();
    for i in 0..9 {
        assert_eq!(be.file(&format!("f{i}")), Some(format!("file {i}").into_bytes()), "f{i}");
    }
    assert_eq!(journal_entries(&journal), 0);
}

#[test]
fn a_failed_write_back_is_reported_by_fsync_and_its_data_kept() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.fail_finish_next(FsError::NoSpace);
    write_file(&m, "f", b"no room for this");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    assert_eq!(m.fsync(fh), Err(libc::ENOSPC));
    assert_eq!(m.fsync(fh), Ok(()), "reported once");
    m.release(fh).expect("close");
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("ftpfs-unsaved-"))
        .collect();
    assert_eq!(kept.len(), 1, "the data is kept in cache_dir");
    assert_eq!(std::fs::read(kept[0].path()).expect("kept file"), b"no room for this");
}

#[test]
fn closes_of_one_file_land_in_order_and_renames_wait() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.delay(Duration::from_millis(50));
    for round in 0..3 {
        write_file(&m, "f", format!("version {round}").as_bytes());
    }
    m.rename(ROOT_INO, "f", ROOT_INO, "g", false).expect("rename");
    assert_eq!(be.file("g").as_deref(), Some(&b"version 2"[..]));
    assert!(be.file("f").is_none());
    m.stop();
}

#[test]
fn a_journal_left_by_a_crash_is_uploaded_by_the_next_mount() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.hold_uploads(true);
    write_file(&m, "crashed", b"only in the journal");
    // What a kill -9 now, before the upload, would leave behind.
    let left = crash_copy(&journal, dir.path());
    assert!(be.file("crashed").is_none(), "the upload was held");
    be.hold_uploads(false);
    m.stop();
    // The next mount, on a server that never got the file.
    let be2 = Arc::new(MemoryBackend::new(2));
    let m2 = model(&be2, dir.path(), Some(&left));
    assert_eq!(m2.recover_journal(&left), 1);
    assert_eq!(be2.file("crashed").as_deref(), Some(&b"only in the journal"[..]));
    assert_eq!(journal_entries(&left), 0);
}

/// A journal entry whose recovery failed is not replayed by a later mount over newer data: its
/// data is kept in cache_dir instead.
#[test]
fn a_failed_recovery_is_kept_aside_not_replayed_later() {
    let (be, dir, _journal) = setup();
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    std::fs::write(left.join("00000000000000000001.data"), b"v1 (old)").expect("data");
    std::fs::write(left.join("00000000000000000001.path"), b"f").expect("path");
    let m2 = model(&be, dir.path(), None);
    be.fail_next(crate::backend::memory::Op::Write, FsError::Broken);
    assert_eq!(m2.recover_journal(&left), 0);
    write_file(&m2, "f", b"v2 (newer, written later)");
    let m3 = model(&be, dir.path(), None);
    assert_eq!(m3.recover_journal(&left), 0);
    assert_eq!(be.file("f").as_deref(), Some(&b"v2 (newer, written later)"[..]), "old journal data replayed");
    let kept = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-recovered"))
        .count();
    assert_eq!(kept, 1, "the data that could not be recovered is kept in cache_dir");
}

/// chmod and utimes right after a write-back close, while its upload runs, are not lost.
#[test]
fn mode_and_time_set_after_close_survive_the_upload() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.hold_uploads(true);
    write_file(&m, "secret", b"private key");
    // The upload has started (held); setattr must wait for it, and it goes on meanwhile.
    wait_held(&be, 1);
    let ino = m.lookup(ROOT_INO, "secret").expect("lookup").ino;
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let go = let_uploads_go_soon(&be);
    m.setattr(ino, None, Some(0o600), None, Some(super::SetTime::At(t))).expect("setattr");
    go.join().expect("join");
    m.stop();
    assert_eq!(be.file("secret").as_deref(), Some(&b"private key"[..]));
    assert_eq!(be.mode("secret"), Some(0o600), "chmod 600 lost");
    assert_eq!(be.mtime("secret"), Some(1_000_000), "utimes lost");
}

/// `echo 1 >f; echo 2 >f`: the kernel may handle the first RELEASE after the second; the
/// second close still wins.
#[test]
fn the_later_close_wins_whatever_the_release_order() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, h1) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    m.write(h1, 0, b"1 old").expect("write");
    m.flush(h1).expect("close 1");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let h2 = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    m.write(h2, 0, b"2 new").expect("write");
    m.flush(h2).expect("close 2");
    m.release(h2).expect("release 2");
    m.release(h1).expect("release 1");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"2 new"[..]), "the first close's data won");
}

/// An unmount that gives up on a slow server leaves what did not land in the journal.
#[test]
fn uploads_cut_short_by_the_unmount_stay_in_the_journal() {
    let (be, dir, journal) = setup();
    be.set_wait_limit(Duration::from_millis(300));
    let m = model(&be, dir.path(), Some(&journal));
    // A server that never answers the uploads (until the unmount cuts them short).
    be.hold_uploads(true);
    for i in 0..3 {
        write_file(&m, &format!("f{i}"), format!("file {i}").as_bytes());
    }
    // All three running (one per upload thread), none by the unmount itself.
    wait_held(&be, 3);
    m.stop();
    // The uploads cut short end; their handles go.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.open_handles() > 0 {
        assert!(Instant::now() < deadline, "{} uploads still running", m.open_handles());
        std::thread::sleep(Duration::from_millis(5));
    }
    let missing = (0..3).filter(|i| be.file(&format!("f{i}")).is_none()).count();
    assert_eq!(missing, 3, "an upload held back landed");
    let with = |ext: &str| with_ext(&journal, ext);
    assert_eq!((with("path"), with("data")), (missing, missing), "each missing file stays in the journal");
    assert_eq!(with("started"), missing, "each marked as begun (a replay may replace its own partial upload)");
}

/// close(2) returned: the data is in the journal even if the process dies before the kernel's
/// RELEASE reaches it.
#[test]
fn a_crash_between_close_and_release_loses_nothing() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, fh) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"closed, not released"), Ok(20));
    m.flush(fh).expect("close");
    // What a kill -9 now would leave behind.
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    for e in std::fs::read_dir(&journal).expect("journal").filter_map(Result::ok) {
        std::fs::copy(e.path(), left.join(e.file_name())).expect("copy");
    }
    let be2 = Arc::new(MemoryBackend::new(2));
    let m2 = model(&be2, dir.path(), None);
    assert_eq!(m2.recover_journal(&left), 1);
    assert_eq!(be2.file("f").as_deref(), Some(&b"closed, not released"[..]));
    m.release(fh).expect("release");
    m.stop();
    assert_eq!(journal_entries(&journal), 0);
}

#[test]
fn readers_of_a_pending_upload_read_the_newest_close() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.put_file("f", b"old on the server");
    be.delay(SLOW);
    write_file(&m, "f", b"first version");
    write_file(&m, "f", b"second, longer version");
    // Both versions wait (one upload per path at a time); a reader sees the newest.
    assert_eq!(read_file(&m, "f"), b"second, longer version");
    assert_eq!(m.getattr(m.lookup(ROOT_INO, "f").expect("lookup").ino).expect("stat").size, 22);
    // A reader opened before the upload lands keeps reading the same bytes after it landed.
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    let mut head = Vec::new();
    m.read(fh, 0, 6, &mut |d| head.extend_from_slice(d)).expect("read");
    m.fsync(fh).expect("fsync waits for the upload");
    assert_eq!(be.file("f").as_deref(), Some(&b"second, longer version"[..]));
    let mut tail = Vec::new();
    m.read(fh, 6, 100, &mut |d| tail.extend_from_slice(d)).expect("read");
    m.release(fh).expect("close");
    assert_eq!([head, tail].concat(), b"second, longer version");
    // With nothing pending, reads go to the server again.
    assert_eq!(read_file(&m, "f"), b"second, longer version");
}

/// A journal another user could have planted uploads nothing it should not: a path that
/// leaves the mount's root or is absolute, data or path files that are symlinks (to a file only
/// the mounting user can read). Such entries are left where they are; a
/// good entry beside them still lands.
#[test]
fn a_planted_journal_uploads_nothing_and_follows_nothing() {
    let (be, dir, _journal) = setup();
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"only root may read this").expect("secret");
    let entry = |n: u32, path: &str| {
        let name = left.join(format!("{n:020}.path"));
        std::fs::write(&name, path).expect("path");
        (name, left.join(format!("{n:020}.data")))
    };
    let (_, d) = entry(1, "../escaped");
    std::fs::write(d, b"x").expect("data");
    let (_, d) = entry(2, "/etc/absolute");
    std::fs::write(d, b"x").expect("data");
    let (_, d) = entry(3, "stolen");
    std::os::unix::fs::symlink(&secret, d).expect("symlink");
    let (name, d) = entry(5, "path_is_a_symlink");
    std::fs::write(d, b"x").expect("data");
    std::fs::remove_file(&name).expect("rm");
    std::os::unix::fs::symlink(&secret, &name).expect("symlink");
    let (_, d) = entry(6, "a/./b");
    std::fs::write(d, b"x").expect("data");
    let (_, d) = entry(7, "good");
    std::fs::write(d, b"mine").expect("data");
    let m = model(&be, dir.path(), None);
    assert_eq!(m.recover_journal(&left), 1, "only the good entry lands");
    assert_eq!(be.file("good").as_deref(), Some(&b"mine"[..]));
    for never in ["escaped", "etc/absolute", "stolen", "path_is_a_symlink", "a/b", "../escaped"] {
        assert!(be.file(never).is_none(), "{never} was uploaded");
    }
    assert_eq!(journal_entries(&left), 10, "refused entries (path and data files) are left for the user");
    assert_eq!(std::fs::read(&secret).expect("secret"), b"only root may read this");
}

/// An unmount waits for an upload that takes longer than `timeout` as long as its bytes move:
/// it lands whole and leaves nothing in the journal (issue 26: the wait counted finished
/// uploads only, and cut a long one off mid-way).
#[test]
fn an_unmount_waits_for_a_long_upload_that_moves() {
    let (be, dir, journal) = setup();
    be.set_wait_limit(Duration::from_millis(300));
    let m = model(&be, dir.path(), Some(&journal));
    // About 2 s in all at 8 ms per write of 8 KiB: far beyond the 300 ms without progress.
    be.slow_writes(Duration::from_millis(8));
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253) as u8).collect();
    write_file(&m, "big", &data);
    m.stop();
    assert!(be.file("big").as_deref() == Some(&data[..]), "the upload was cut short by the unmount");
    assert_eq!(journal_entries(&journal), 0, "nothing left in the journal");
}

/// A deferred upload that fails in a way the server may not repeat (a broken connection) is
/// tried again within the mount, after a pause, and lands; nothing is kept aside (issue 26: it
/// stayed in the journal until the next mount, and `cp` had exited 0).
#[test]
fn a_broken_background_upload_is_tried_again_and_lands() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    be.fail_next(crate::backend::memory::Op::Write, FsError::Broken);
    write_file(&m, "f", b"must reach the server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while be.file("f").as_deref() != Some(&b"must reach the server"[..]) {
        assert!(Instant::now() < deadline, "the failed upload was never tried again");
        std::thread::sleep(Duration::from_millis(20));
    }
    m.stop();
    assert_eq!(journal_entries(&journal), 0, "nothing left in the journal");
    let aside = std::fs::read_dir(dir.path())
        .expect("cache")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ftpfs-unsaved"))
        .count();
    assert_eq!(aside, 0, "nothing kept aside");
}

/// What a crash leaves in the journal follows the renames and deletes that came after a close
/// (issue 26: the entry kept the name of the first flush, and a replay wrote the data under
/// the old name, or brought a deleted file back).
#[test]
fn a_crash_after_rename_or_delete_replays_under_the_new_name_or_not_at_all() {
    let (be, dir, journal) = setup();
    be.put_file("existing", b"on the server");
    let m = model(&be, dir.path(), Some(&journal));
    let closed = |name: &str, data: &[u8]| {
        let (_, fh) = m.create(ROOT_INO, name, libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
        assert_eq!(m.write(fh, 0, data), Ok(data.len()));
        m.flush(fh).expect("close(2): journaled");
        fh
    };
    let _moved = closed("old", b"moved");
    let _gone = closed("deleted", b"deleted");
    // A change of an existing file, closed: a rename does not land it first.
    let ino = m.lookup(ROOT_INO, "existing").expect("lookup").ino;
    let changed = m.open(ino, libc::O_WRONLY).expect("open").fh;
    assert_eq!(m.write(changed, 0, b"changed, moved"), Ok(14));
    m.flush(changed).expect("close(2): journaled");
    // A creation lands before its rename (and its journal entry goes: the server has it).
    m.rename(ROOT_INO, "old", ROOT_INO, "new", false).expect("rename");
    assert_eq!(be.file("new").as_deref(), Some(&b"moved"[..]));
    m.rename(ROOT_INO, "existing", ROOT_INO, "renamed", false).expect("rename");
    m.unlink(ROOT_INO, "deleted").expect("unlink");
    // The process dies now, before the releases.
    let left = crash_copy(&journal, dir.path());
    let be2 = Arc::new(MemoryBackend::new(2));
    let m2 = model(&be2, dir.path(), None);
    assert_eq!(m2.recover_journal(&left), 1);
    assert_eq!(be2.file("renamed").as_deref(), Some(&b"changed, moved"[..]));
    assert!(be2.file("existing").is_none(), "replayed under the old name");
    assert!(be2.file("new").is_none(), "a version already on the server replayed again");
    assert!(be2.file("deleted").is_none(), "a deleted file came back");
}

/// A crash's journal never replaces a version another client wrote after it was closed: that
/// entry is kept aside as `ftpfs-conflict-…` and the newer file stays (issue 26: a kill -9
/// after `cp` returned, a newer version written on the server, and the next mount put the old
/// one back). A file last changed before the close, or since the entry's upload began (its own
/// bytes, cut short), is replaced as before.
#[test]
fn a_replay_never_replaces_a_newer_version_from_elsewhere() {
    use crate::backend::Backend;
    let (be, dir, _journal) = setup();
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    let entry = |n: u32, path: &str, data: &[u8]| {
        std::fs::write(left.join(format!("{n:020}.data")), data).expect("data");
        std::fs::write(left.join(format!("{n:020}.path")), path).expect("path");
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    // Written elsewhere after the close (the server's clock says a minute later).
    entry(1, "newer", b"old version from the journal");
    be.put_file("newer", b"newer");
    be.set_mtime("newer", now + 60).expect("mtime");
    // Last changed long before the close: the journal's version is the newer one.
    entry(2, "older", b"journal's version");
    be.put_file("older", b"old");
    be.set_mtime("older", now - 3600).expect("mtime");
    // Changed after the close, but by this entry's own upload (cut short by the crash).
    entry(3, "partial", b"the whole version");
    be.put_file("partial", b"the wh");
    be.set_mtime("partial", now + 60).expect("mtime");
    std::fs::write(left.join(format!("{:020}.started", 3)), b"").expect("marker");
    let started = std::time::SystemTime::now() + Duration::from_secs(30);
    std::fs::File::options()
        .write(true)
        .open(left.join(format!("{:020}.started", 3)))
        .expect("marker")
        .set_modified(started)
        .expect("time");
    // Written elsewhere after this entry's upload began (its bytes are not the entry's).
    entry(5, "overwritten", b"ours, begun");
    be.put_file("overwritten", b"theirs");
    be.set_mtime("overwritten", now + 60).expect("mtime");
    let marker = left.join(format!("{:020}.started", 5));
    std::fs::write(&marker, b"").expect("marker");
    std::fs::File::options().write(true).open(&marker).expect("marker").set_modified(started).expect("time");
    // Not on the server at all.
    entry(4, "new", b"brand new");
    let m = model(&be, dir.path(), None);
    assert_eq!(m.recover_journal(&left), 3);
    assert_eq!(be.file("overwritten").as_deref(), Some(&b"theirs"[..]), "a newer version was replaced");
    assert_eq!(be.file("newer").as_deref(), Some(&b"newer"[..]), "a newer version was replaced");
    assert_eq!(be.file("older").as_deref(), Some(&b"journal's version"[..]));
    assert_eq!(be.file("partial").as_deref(), Some(&b"the whole version"[..]));
    assert_eq!(be.file("new").as_deref(), Some(&b"brand new"[..]));
    let mut kept: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ftpfs-conflict-"))
        .map(|e| std::fs::read(e.path()).expect("kept"))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![b"old version from the journal".to_vec(), b"ours, begun".to_vec()],
        "the conflicting versions are kept aside"
    );
    assert_eq!(journal_entries(&left), 0, "every entry is done with");
}

/// A handle closed again (through a duplicate descriptor) after another handle's close lands
/// its newer version: each close takes a new place in the order (issue 26: the handle kept the
/// number of its first close, so the other handle's older version won and this one was
/// dropped as superseded).
#[test]
fn a_second_close_of_a_handle_is_newer_than_the_closes_before_it() {
    let (be, dir, journal) = setup();
    let m = model(&be, dir.path(), Some(&journal));
    let (_, a) = m.create(ROOT_INO, "f", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(a, 0, b"A1"), Ok(2));
    m.flush(a).expect("first close of a");
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let b = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open b").fh;
    assert_eq!(m.write(b, 0, b"B"), Ok(1));
    m.flush(b).expect("close b");
    m.release(b).expect("release b");
    assert_eq!(m.write(a, 2, b"A2"), Ok(2));
    m.flush(a).expect("second close of a: the newest");
    m.release(a).expect("release a");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"A1A2"[..]), "the newest close lost");
}

/// A download that broke resumes only on the version it was reading: when the file was
/// replaced meanwhile (another size), the read fails with EIO instead of handing out the rest
/// of the new version after the start of the old one (issue 26, finding 7; every mode).
#[test]
fn a_resumed_download_never_splices_two_versions() {
    let (be, dir, _journal) = setup();
    let old: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    be.put_file("f", &old);
    let m = model(&be, dir.path(), None);
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    // The download's connection breaks after 2 MiB.
    be.break_read_after(2 << 20);
    let fh = m.open(ino, libc::O_RDONLY).expect("open").fh;
    let mut got = Vec::new();
    m.read(fh, 0, 128 << 10, &mut |d| got.extend_from_slice(d)).expect("first read");
    assert!(got == old[..128 << 10]);
    // Replaced by another client meanwhile (another size).
    be.put_file("f", &vec![b'n'; 3 << 20]);
    let mut res = Ok(());
    let mut off = 128 << 10;
    while off < 4 << 20 && res.is_ok() {
        res = m.read(fh, off, 128 << 10, &mut |d| got.extend_from_slice(d));
        off += 128 << 10;
    }
    assert_eq!(res, Err(libc::EIO), "the read after the break went on (on another version?)");
    assert!(got == old[..got.len()], "spliced: bytes of another version after {} of this one", 128 << 10);
    m.release(fh).expect("release");
}

/// The release of a second writer of a file whose upload is pending does not wait for that
/// upload (issue 26, finding 8: it waited up to 600 s, holding one of the kernel's few
/// background slots), and the later close still wins.
#[test]
fn a_release_does_not_wait_for_the_files_earlier_upload() {
    let (be, dir, journal) = setup();
    be.put_file("f", b"0123456789");
    let m = Arc::new(model(&be, dir.path(), Some(&journal)));
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let a = m.open(ino, libc::O_WRONLY).expect("open a").fh;
    let b = m.open(ino, libc::O_WRONLY).expect("open b").fh;
    // Changes in the middle of the file: both handles hold spools, for write-back.
    assert_eq!(m.write(a, 2, b"aa"), Ok(2));
    assert_eq!(m.write(b, 4, b"bb"), Ok(2));
    be.hold_uploads(true);
    m.flush(a).expect("close a");
    m.release(a).expect("release a");
    wait_held(&be, 1);
    m.flush(b).expect("close b");
    let (tx, rx) = std::sync::mpsc::channel();
    let m2 = m.clone();
    std::thread::spawn(move || tx.send(m2.release(b)).expect("send"));
    let released = rx.recv_timeout(Duration::from_secs(5));
    be.hold_uploads(false);
    assert_eq!(released, Ok(Ok(())), "the release waited for the earlier upload");
    m.stop();
    assert_eq!(be.file("f").as_deref(), Some(&b"0123bb6789"[..]), "the later close wins");
}

/// Of several journal entries for one file only the newest close lands: the older ones are
/// superseded, never replayed after it nor set aside as conflicts; parts of unfinished entries
/// (a `.data` or marker without its `.path`) are removed (issue 26 review: the newest version
/// was set aside as a conflict with the older one on the server).
#[test]
fn a_replay_lands_only_the_newest_close_of_each_file() {
    let (be, dir, _journal) = setup();
    let left = dir.path().join("left");
    std::fs::create_dir(&left).expect("dir");
    let now = std::time::SystemTime::now();
    let entry = |n: u32, path: &str, data: &[u8], age: u64| {
        std::fs::write(left.join(format!("{n:020}.data")), data).expect("data");
        let name = left.join(format!("{n:020}.path"));
        std::fs::write(&name, path).expect("path");
        let f = std::fs::File::options().write(true).open(&name).expect("path");
        f.set_modified(now - Duration::from_secs(age)).expect("time");
    };
    // The entry numbered first was closed last (a handle closed again after another's close).
    entry(1, "f", b"v3 newest", 10);
    entry(2, "f", b"v1 oldest", 30);
    entry(3, "f", b"v2", 20);
    std::fs::write(left.join(format!("{:020}.data", 9)), b"never closed").expect("orphan");
    std::fs::write(left.join(format!("{:020}.started", 9)), b"").expect("orphan");
    let m = model(&be, dir.path(), None);
    assert_eq!(m.recover_journal(&left), 1);
    assert_eq!(be.file("f").as_deref(), Some(&b"v3 newest"[..]));
    let conflicts = std::fs::read_dir(dir.path())
        .expect("cache")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ftpfs-"))
        .count();
    assert_eq!(conflicts, 0, "nothing set aside");
    assert_eq!(journal_entries(&left), 0, "superseded entries and unfinished parts are gone");
}
