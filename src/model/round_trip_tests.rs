//! What a new file costs the server (issue 31), on the in-memory server: one upload per new
//! file, its time and mode behind the data where the server takes them there, no time asked
//! for "now" right after our own upload, no size asked of a name in a directory we made.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Model, ModelConfig, ROOT_INO, SetTime};
use crate::backend::memory::MemoryBackend;

fn model(folds: bool) -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(3));
    be.set_folds_after_upload(folds);
    let cfg = ModelConfig::for_tests(dir.path(), Duration::from_secs(3600));
    (Model::new(cfg, be.clone()), be, dir)
}

/// The calls that changed the server (uploads, times, modes), in order.
fn changes(be: &MemoryBackend) -> Vec<String> {
    let kinds = ["write ", "finish_then ", "chmod ", "set_mtime "];
    be.calls().into_iter().filter(|c| kinds.iter().any(|k| c.starts_with(k))).collect()
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("after the epoch").as_secs() as i64
}

const NEW: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;

#[test]
fn a_read_only_object_is_one_upload_with_its_mode_behind() {
    // git writes each object with mode 0444: nothing hidden from others that the default
    // (0644) shows, so no empty file first; the mode rides the one upload.
    let (m, be, _dir) = model(true);
    let (_, fh) = m.create(ROOT_INO, "obj", NEW, 0o444, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"blob"), Ok(4));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("obj").as_deref(), Some(&b"blob"[..]));
    assert_eq!(be.mode("obj"), Some(0o444));
    assert_eq!(changes(&be), ["write obj Replace", "finish_then obj mode 444"]);
}

#[test]
fn where_nothing_can_go_behind_the_data_the_mode_is_set_on_its_own() {
    let (m, be, _dir) = model(false);
    let (_, fh) = m.create(ROOT_INO, "obj", NEW, 0o444, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"blob"), Ok(4));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.mode("obj"), Some(0o444));
    assert_eq!(changes(&be), ["write obj Replace", "chmod obj 444"]);
}

#[test]
fn a_private_file_gets_its_mode_with_the_empty_file_before_any_data() {
    // cp -p: created 0600 (stricter than the default: set before any data goes up), then its
    // data, time and final mode, which go behind the data in one upload.
    let (m, be, _dir) = model(true);
    let (st, fh) = m.create(ROOT_INO, "copy", NEW, 0o600, 0).expect("create");
    assert_eq!(be.mode("copy"), Some(0o600), "the empty file has its mode before data goes up");
    assert_eq!(m.write(fh, 0, b"secret"), Ok(6));
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    m.setattr(st.ino, Some(fh), None, None, Some(SetTime::At(when))).expect("futimens");
    m.setattr(st.ino, Some(fh), Some(0o640), None, None).expect("fchmod");
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("copy").as_deref(), Some(&b"secret"[..]));
    assert_eq!(be.mode("copy"), Some(0o640));
    assert_eq!(be.mtime("copy"), Some(secs(when)));
    let c = changes(&be);
    assert_eq!(c.iter().filter(|c| c.starts_with("write ")).count(), 2, "{c:?}");
    assert!(!c.iter().any(|c| c.starts_with("chmod ") || c.starts_with("set_mtime ")), "nothing on its own: {c:?}");
}

#[test]
fn touch_costs_one_upload() {
    // touch: the close of a duplicate descriptor uploads the empty file, then "now" is the
    // server's time of that upload: nothing more is sent.
    let (m, be, _dir) = model(true);
    let (st, fh) = m.create(ROOT_INO, "t", libc::O_CREAT | libc::O_WRONLY, 0o644, 0).expect("create");
    m.flush(fh).expect("close of the duplicate");
    m.setattr(st.ino, None, None, None, Some(SetTime::Now)).expect("utimensat now");
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("t").as_deref(), Some(&b""[..]));
    assert_eq!(changes(&be), ["write t Replace"]);
    // Later, "now" on the same file is sent.
    std::thread::sleep(Duration::from_millis(1100));
    m.setattr(st.ino, None, None, None, Some(SetTime::Now)).expect("touch again");
    assert!(changes(&be).iter().any(|c| c.starts_with("set_mtime t ")), "{:?}", changes(&be));
}

#[test]
fn a_shell_redirection_replaces_the_empty_file_it_made() {
    // `echo data > f`: the empty file at the first close, then the data with STOR (sent early
    // on a far server), never appended to an empty file someone else may have filled.
    let (m, be, _dir) = model(true);
    let (_, fh) = m.create(ROOT_INO, "f", libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    m.flush(fh).expect("close of the duplicate");
    assert_eq!(m.write(fh, 0, b"data\n"), Ok(5));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("f").as_deref(), Some(&b"data\n"[..]));
    assert_eq!(changes(&be), ["write f Replace", "write f Replace"]);
}

#[test]
fn a_new_name_in_a_directory_we_made_is_not_asked_of_the_server() {
    let (m, be, _dir) = model(true);
    // The mount's first new file looks up what bits the server gave it (once per mount).
    let (_, fh) = m.create(ROOT_INO, "first", NEW, 0o644, 0).expect("create");
    m.release(fh).expect("release");
    let d = m.mkdir(ROOT_INO, "d", 0o755, 0).expect("mkdir");
    // Past the second in which any listing is trusted for an O_CREAT without O_TRUNC.
    std::thread::sleep(Duration::from_millis(1100));
    be.clear_calls();
    let (_, fh) = m.create(d.ino, "new", NEW, 0o644, 0).expect("create");
    m.release(fh).expect("release");
    let asked: Vec<String> =
        be.calls().into_iter().filter(|c| c.starts_with("size ") || c.starts_with("list ")).collect();
    assert!(asked.is_empty(), "asked the server: {asked:?}");
    assert_eq!(be.file("d/new").as_deref(), Some(&b""[..]));
}

#[test]
fn a_new_name_in_a_listed_directory_is_asked_once_the_listing_is_a_second_old() {
    // The same create where the listing came from the server: another client may have made
    // the name since, and O_EXCL must not replace its file.
    let (m, be, _dir) = model(true);
    be.mkdir_all("d");
    let d = m.lookup(ROOT_INO, "d").expect("lookup");
    m.lookup(d.ino, "x").expect_err("nothing there yet");
    std::thread::sleep(Duration::from_millis(1100));
    be.put_file("d/new", b"another client's");
    assert_eq!(m.create(d.ino, "new", NEW, 0o644, 0).map(|_| ()), Err(libc::EEXIST));
    assert_eq!(be.file("d/new").as_deref(), Some(&b"another client's"[..]));
}

/// A directory listed from the server more than a second ago, with the model looking at it.
fn old_listing(m: &Model, be: &MemoryBackend) -> u64 {
    be.mkdir_all("d");
    let d = m.lookup(ROOT_INO, "d").expect("lookup");
    m.lookup(d.ino, "x").expect_err("nothing there yet");
    std::thread::sleep(Duration::from_millis(1100));
    d.ino
}

#[test]
fn touch_in_a_listed_directory_makes_the_file_without_asking_first() {
    // O_CREAT without O_TRUNC from a listing over a second old: instead of a SIZE round trip
    // at create, the empty file is made with an empty APPE (it leaves a file made meanwhile
    // by another client as it is).
    let (m, be, _dir) = model(true);
    let d = old_listing(&m, &be);
    be.clear_calls();
    let (_, fh) = m.create(d, "t", libc::O_CREAT | libc::O_WRONLY, 0o644, 0).expect("create");
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("d/t").as_deref(), Some(&b""[..]));
    let calls = be.calls();
    assert!(!calls.iter().any(|c| c.starts_with("size ")), "{calls:?}");
    assert_eq!(changes(&be), ["write d/t Append"]);
}

#[test]
fn touch_leaves_a_file_another_client_made_since_our_listing() {
    let (m, be, _dir) = model(true);
    let d = old_listing(&m, &be);
    be.put_file("d/t", b"another client's");
    let (st, fh) = m.create(d, "t", libc::O_CREAT | libc::O_WRONLY, 0o644, 0).expect("create");
    m.flush(fh).expect("close of the duplicate");
    // Its time is not the moment of our (empty) append: "now" is sent.
    m.setattr(st.ino, None, None, None, Some(SetTime::Now)).expect("utimensat now");
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("d/t").as_deref(), Some(&b"another client's"[..]));
    assert!(changes(&be).iter().any(|c| c.starts_with("set_mtime d/t ")), "{:?}", changes(&be));
    assert_eq!(m.lookup(d, "t").expect("lookup").size, 16, "shown as it is");
}

#[test]
fn data_written_to_a_name_another_client_made_goes_into_its_file() {
    // As open(2) without O_TRUNC on an existing file: our bytes over the start of it, the
    // rest kept, never the whole file replaced by ours.
    let (m, be, _dir) = model(true);
    let d = old_listing(&m, &be);
    be.put_file("d/w", b"0123456789");
    let (_, fh) = m.create(d, "w", libc::O_CREAT | libc::O_WRONLY, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"abc"), Ok(3));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("d/w").as_deref(), Some(&b"abc3456789"[..]));
}

#[test]
fn an_appender_never_replaces_the_empty_file_it_made() {
    // `cmd >> new.log`: the empty file at the first close; meanwhile another client appends;
    // our bytes go after theirs (APPE), never over them.
    let (m, be, _dir) = model(true);
    let (_, fh) =
        m.create(ROOT_INO, "new.log", libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND, 0o644, 0).expect("create");
    m.flush(fh).expect("close of the duplicate");
    be.put_file("new.log", b"theirs\n");
    assert_eq!(m.write(fh, 0, b"ours\n"), Ok(5));
    m.flush(fh).expect("close");
    m.release(fh).expect("release");
    assert_eq!(be.file("new.log").as_deref(), Some(&b"theirs\nours\n"[..]));
}

#[test]
fn a_failed_upload_with_a_read_only_mode_behind_it_gives_the_owner_its_bits_back() {
    // vsftpd runs what comes behind a transfer whatever its outcome: after a failed upload
    // the file may be 0444 already, and the next try would be refused.
    let (m, be, _dir) = model(true);
    let (_, fh) = m.create(ROOT_INO, "obj", NEW, 0o444, 0).expect("create");
    be.fail_finish_next(crate::backend::FsError::NoSpace);
    assert_eq!(m.write(fh, 0, b"blob"), Ok(4));
    assert_eq!(m.flush(fh), Err(libc::ENOSPC));
    assert!(be.calls().iter().any(|c| c == "chmod obj 644"), "{:?}", be.calls());
    // A streamed upload that failed stays failed for this handle (its bytes cannot be sent
    // again); what it held is kept by the rescue at release.
    assert_eq!(m.release(fh), Err(libc::ENOSPC));
}

/// The lookups of names and listings the server was asked for.
fn lookups(be: &MemoryBackend) -> Vec<String> {
    be.calls().into_iter().filter(|c| c.starts_with("list ") || c.starts_with("stat ")).collect()
}

fn make(m: &Model, name: &str, mode: u32) {
    let (_, fh) = m.create(ROOT_INO, name, NEW, mode, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"data"), Ok(4));
    m.release(fh).expect("release");
}

/// A model of a server that gives new files 0600 (vsftpd's own default umask 077) and answers
/// MLST, its root listed (a create's own check of a name lists the directory) and no call
/// recorded yet.
fn model_on_umask_077() -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let (m, be, dir) = model(true);
    be.set_new_file_mode(0o600);
    be.set_stat_one_supported(true);
    let listed = m.opendir(ROOT_INO).expect("opendir");
    m.readdir(listed.fh, 0, false, &mut |_| false).expect("readdir");
    m.releasedir(listed.fh);
    be.clear_calls();
    (m, be, dir)
}

#[test]
fn a_server_giving_new_files_other_bits_is_found_out_by_the_first_one() {
    // vsftpd's own default (umask 077) makes files 0600: a create asking for 0644 cannot
    // count on the server's default.
    let (m, be, _dir) = model_on_umask_077();
    make(&m, "first", 0o644);
    assert_eq!(be.mode("first"), Some(0o644), "the first file gets the mode asked for");
    assert_eq!(lookups(&be), ["stat first"], "one lookup to learn the server's bits: {:?}", be.calls());
    assert_eq!(changes(&be), ["write first Replace", "chmod first 644"]);
    be.clear_calls();
    // From now on 0644 is a mode of its own (behind the data); a private mode still goes on
    // the empty file before any data, whatever the server was found to give.
    make(&m, "second", 0o644);
    make(&m, "private", 0o600);
    assert_eq!(be.mode("second"), Some(0o644));
    assert_eq!(be.mode("private"), Some(0o600));
    assert_eq!(
        changes(&be),
        [
            "write second Replace",
            "finish_then second mode 644",
            "write private Replace",
            "finish_then private mode 600",
            "write private Replace"
        ]
    );
    assert!(lookups(&be).is_empty(), "learned once: {:?}", lookups(&be));
    let st = m.lookup(ROOT_INO, "second").expect("lookup");
    assert_eq!(st.perm, 0o644);
}

#[test]
fn files_created_before_the_lesson_get_their_mode_with_their_data() {
    // Several files open at once before the first lands (cp -r under write-back): one
    // lookup, and the others get 0644 behind their data.
    let (m, be, _dir) = model_on_umask_077();
    let handles: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let (_, fh) = m.create(ROOT_INO, n, NEW, 0o644, 0).expect("create");
            assert_eq!(m.write(fh, 0, n.as_bytes()), Ok(1));
            fh
        })
        .collect();
    be.clear_calls();
    for fh in handles {
        m.release(fh).expect("release");
    }
    for n in ["a", "b", "c"] {
        assert_eq!(be.mode(n), Some(0o644), "{n}");
    }
    assert_eq!(lookups(&be), ["stat a"], "{:?}", be.calls());
    // (Each upload started with its first write.)
    assert_eq!(changes(&be), ["chmod a 644", "finish_then b mode 644", "finish_then c mode 644"]);
}

#[test]
fn a_server_giving_the_assumed_bits_costs_one_lookup_per_mount() {
    let (m, be, _dir) = model(false);
    assert_eq!(m.lookup(ROOT_INO, "a").err(), Some(libc::ENOENT));
    be.clear_calls();
    for name in ["a", "b", "c"] {
        make(&m, name, 0o644);
        assert_eq!(be.mode(name), Some(0o644));
    }
    // The server answers no MLST here: the directory is listed.
    assert_eq!(lookups(&be), ["stat a", "list "], "{:?}", be.calls());
    assert!(!changes(&be).iter().any(|c| c.starts_with("chmod ")), "{:?}", changes(&be));
}
