//! Unit tests of [`super::MemoryBackend`]: every semantic and every injected fault, briefly.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

const W: Duration = Duration::from_millis(50);

fn mem() -> MemoryBackend {
    MemoryBackend::new(2)
}

fn read_all(m: &MemoryBackend, path: &str, offset: u64) -> BackendResult<Vec<u8>> {
    let mut r = m.read(path, offset, W)?.expect("slot");
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read");
    r.finish()?;
    Ok(out)
}

fn write_all(m: &MemoryBackend, path: &str, mode: WriteMode, data: &[u8]) -> BackendResult<()> {
    let mut w = m.write(path, mode, W)?.expect("slot");
    w.write_all(data).expect("write");
    w.finish().map(drop)
}

fn err<T>(r: BackendResult<T>) -> FsError {
    r.err().expect("expected an error")
}

/// Waits (10 s at most) until the log holds `n` calls `call`. A request logs its call under the
/// lock it keeps until it waits (for a slot, or while uploads are held): by then it waits.
fn wait_for_calls(m: &MemoryBackend, call: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.calls().iter().filter(|c| *c == call).count() < n {
        assert!(Instant::now() < deadline, "no {n} calls {call:?}: {:?}", m.calls());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn list_entries_and_errors() {
    let m = mem();
    m.put_file("d/f", b"abc");
    m.mkdir_all("d/sub");
    let e = m.list("d").expect("list");
    assert_eq!(e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["f", "sub"]);
    assert_eq!((e[0].kind.clone(), e[0].size, e[0].mode), (EntryKind::File, Some(3), Some(0o644)));
    assert_eq!((e[1].kind.clone(), e[1].size, e[1].mode), (EntryKind::Dir, Some(4096), Some(0o755)));
    assert!(e[0].mtime.is_some_and(|t| t > START_TIME));
    assert_eq!(m.list("").expect("root").len(), 1);
    assert_eq!(err(m.list("x")), FsError::NotFound);
    assert_eq!(err(m.list("d/f")), FsError::NotDir);
    assert_eq!(err(m.list("/d")), FsError::Invalid);
}

#[test]
fn clock_ticks_on_changes() {
    let m = mem();
    assert_eq!(m.mtime(""), Some(START_TIME));
    m.mkdir("a").expect("mkdir");
    assert_eq!(m.mtime("a"), Some(START_TIME + 1));
    assert_eq!(m.mtime(""), Some(START_TIME + 1));
    write_all(&m, "a/f", WriteMode::Replace, b"x").expect("write");
    let t = m.mtime("a/f").expect("mtime");
    assert!(t > START_TIME + 1 && m.mtime("a") > Some(START_TIME + 1));
}

#[test]
fn size_semantics() {
    let m = mem();
    m.put_file("f", b"hello");
    m.mkdir_all("d");
    assert_eq!(m.size("f"), Ok(Some(5)));
    assert_eq!(m.size("x"), Err(FsError::NotFound));
    assert_eq!(m.size("d"), Err(FsError::IsDir));
    m.set_size_supported(false);
    assert_eq!(m.size("f"), Ok(None));
}

#[test]
fn read_snapshot_and_offsets() {
    let m = mem();
    m.put_file("f", b"hello");
    assert_eq!(read_all(&m, "f", 0).expect("read"), b"hello");
    assert_eq!(read_all(&m, "f", 3).expect("read"), b"lo");
    assert_eq!(read_all(&m, "f", 9).expect("read"), b"");
    let mut r = m.read("f", 0, W).expect("read").expect("slot");
    m.put_file("f", b"changed");
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read");
    assert_eq!(out, b"hello");
    m.mkdir_all("d");
    assert_eq!(err(m.read("x", 0, W)), FsError::NotFound);
    assert_eq!(err(m.read("d", 0, W)), FsError::IsDir);
    assert_eq!(m.open_streams(), 1);
    drop(r);
    assert_eq!(m.open_streams(), 0);
}

#[test]
fn write_replace_truncates_at_start_and_lands_immediately() {
    let m = mem();
    m.put_file("f", b"old content");
    let mut w = m.write("f", WriteMode::Replace, W).expect("write").expect("slot");
    assert_eq!(m.file("f").expect("file"), b"");
    w.write_all(b"new").expect("write");
    assert_eq!(read_all(&m, "f", 0).expect("read"), b"new");
    w.finish().expect("finish");
    write_all(&m, "f", WriteMode::Append, b"er").expect("append");
    write_all(&m, "g", WriteMode::Append, b"created").expect("append creates");
    assert_eq!(m.file("f").expect("f"), b"newer");
    assert_eq!(m.file("g").expect("g"), b"created");
    assert_eq!(m.mode("g"), Some(0o644));
    m.mkdir_all("d");
    assert_eq!(err(m.write("x/f", WriteMode::Replace, W)), FsError::NotFound);
    assert_eq!(err(m.write("d", WriteMode::Replace, W)), FsError::IsDir);
    assert!(!m.exists("x/f"));
}

#[test]
fn upload_follows_renamed_file() {
    let m = mem();
    let mut w = m.write("tmp", WriteMode::Replace, W).expect("write").expect("slot");
    w.write_all(b"ab").expect("write");
    m.rename("tmp", "final").expect("rename");
    w.write_all(b"cd").expect("write");
    w.finish().expect("finish");
    assert_eq!(m.files().into_iter().collect::<Vec<_>>(), [("final".to_string(), b"abcd".to_vec())]);
}

#[test]
fn connection_limit_waits_and_frees_on_drop() {
    let m = Arc::new(mem());
    m.put_file("f", b"x");
    let r1 = m.read("f", 0, W).expect("read").expect("slot");
    let w1 = m.write("g", WriteMode::Replace, W).expect("write").expect("slot");
    let start = Instant::now();
    assert!(m.read("f", 0, W).expect("read").is_none());
    assert!(start.elapsed() >= W);
    assert!(m.write("g", WriteMode::Append, Duration::ZERO).expect("write").is_none());
    assert_eq!(m.open_streams(), 2);
    drop(r1);
    assert!(m.read("f", 0, W).expect("read").is_some());
    // A waiter wakes when a slot frees up.
    let reads = m.calls().iter().filter(|c| *c == "read f 0").count();
    let m2 = Arc::clone(&m);
    let t = std::thread::spawn(move || m2.read("f", 0, Duration::from_secs(30)).map(|s| s.is_some()));
    wait_for_calls(&m, "read f 0", reads + 1);
    w1.finish().expect("finish");
    assert_eq!(t.join().expect("join"), Ok(true));
    assert_eq!(m.open_streams(), 0);
    // A failing request takes no slot.
    let _ = m.read("missing", 0, W);
    assert_eq!(m.open_streams(), 0);
}

#[test]
fn mkdir_rmdir_delete() {
    let m = mem();
    m.mkdir("a").expect("mkdir");
    assert_eq!(m.mode("a"), Some(0o755));
    assert_eq!(m.mkdir("a"), Err(FsError::Exists));
    assert_eq!(m.mkdir("x/y"), Err(FsError::NotFound));
    m.put_file("a/f", b"1");
    assert_eq!(m.rmdir("a"), Err(FsError::NotEmpty));
    assert_eq!(m.rmdir("a/f"), Err(FsError::NotDir));
    assert_eq!(m.rmdir("zz"), Err(FsError::NotFound));
    assert_eq!(m.delete("a"), Err(FsError::IsDir));
    assert_eq!(m.delete("zz"), Err(FsError::NotFound));
    m.delete("a/f").expect("delete");
    m.rmdir("a").expect("rmdir");
    assert!(m.dirs().is_empty() && m.files().is_empty());
}

#[test]
fn rename_semantics() {
    let m = mem();
    m.put_file("a/x", b"1");
    m.put_file("a/y", b"2");
    m.mkdir_all("e");
    assert_eq!(m.rename("nope", "z"), Err(FsError::NotFound));
    assert_eq!(m.rename("a/x", "q/x"), Err(FsError::NotFound));
    assert_eq!(m.rename("a", "a/b"), Err(FsError::Invalid));
    assert_eq!(m.rename("a/x", "a/x/z"), Err(FsError::NotDir));
    assert_eq!(m.rename("a/x", "e"), Err(FsError::IsDir));
    assert_eq!(m.rename("e", "a/x"), Err(FsError::NotDir));
    assert_eq!(m.rename("e", "a"), Err(FsError::NotEmpty));
    m.rename("a/x", "a/y").expect("replace file");
    assert_eq!(m.file("a/y").expect("y"), b"1");
    assert!(!m.exists("a/x"));
    m.rename("a", "e").expect("dir over empty dir");
    assert_eq!(m.file("e/y").expect("moved"), b"1");
    assert_eq!(m.dirs(), ["e"]);
    m.rename("e", "e").expect("same name");
}

#[test]
fn set_mtime_and_chmod() {
    let m = mem();
    m.put_file("f", b"");
    m.set_mtime("f", 42).expect("set_mtime");
    assert_eq!(m.mtime("f"), Some(42));
    assert_eq!(m.set_mtime("x", 1), Err(FsError::NotFound));
    m.chmod("f", 0o100600).expect("chmod");
    assert_eq!(m.mode("f"), Some(0o600));
    assert_eq!(m.chmod("x", 0o600), Err(FsError::NotFound));
    m.set_mtime_supported(false);
    assert_eq!(m.set_mtime("f", 1), Err(FsError::Unsupported));
    assert!(m.can_chmod());
    m.set_chmod_supported(false);
    assert_eq!(m.chmod("f", 0o600), Err(FsError::Unsupported));
    assert!(!m.can_chmod());
}

#[test]
fn capabilities_and_shut_down() {
    let m = Arc::new(MemoryBackend::new(1));
    assert!(m.can_name("ok name") && !m.can_name("a\nb") && !m.can_name("a\rb") && !m.can_name("a\0b"));
    assert_eq!(m.wait_limit(), Duration::from_secs(2));
    m.set_wait_limit(Duration::from_millis(5));
    assert_eq!(m.wait_limit(), Duration::from_millis(5));
    m.close_idle();
    m.put_file("f", b"x");
    let r = m.read("f", 0, W).expect("read").expect("slot");
    let m2 = Arc::clone(&m);
    let t = std::thread::spawn(move || m2.read("f", 0, Duration::from_secs(30)).map(|s| s.is_some()));
    // Shut down wakes a request waiting for a slot.
    wait_for_calls(&m, "read f 0", 2);
    m.shut_down();
    assert_eq!(t.join().expect("join"), Err(FsError::Unmounting));
    assert_eq!(m.list(""), Err(FsError::Unmounting));
    assert_eq!(m.mkdir("d"), Err(FsError::Unmounting));
    drop(r);
}

#[test]
fn fail_next_and_nth() {
    let m = mem();
    m.fail_next(Op::Mkdir, FsError::Denied);
    assert_eq!(m.mkdir("a"), Err(FsError::Denied));
    assert!(!m.exists("a"));
    m.mkdir("a").expect("second mkdir");
    m.put_file("f", b"x");
    m.fail_nth(Op::Delete, 2, FsError::TryLater);
    assert_eq!(m.delete("nope"), Err(FsError::NotFound));
    assert_eq!(m.delete("f"), Err(FsError::TryLater));
    assert!(m.exists("f"));
    m.delete("f").expect("delete");
    m.fail_next(Op::Write, FsError::Broken);
    assert_eq!(err(m.write("g", WriteMode::Replace, W)), FsError::Broken);
    assert!(!m.exists("g") && m.open_streams() == 0);
    for (op, call) in [(Op::List, 0), (Op::Size, 1), (Op::Read, 2), (Op::Rename, 3), (Op::Rmdir, 4)] {
        m.fail_next(op, FsError::Failed);
        let r = match call {
            0 => m.list("").map(drop),
            1 => m.size("a").map(drop),
            2 => m.read("a", 0, W).map(drop),
            3 => m.rename("a", "b"),
            _ => m.rmdir("a"),
        };
        assert_eq!(r, Err(FsError::Failed), "{op:?}");
    }
    assert!(m.exists("a") && !m.exists("b"));
}

#[test]
fn refuse_rename_over_existing_leaves_both() {
    let m = mem();
    m.put_file("a", b"A");
    m.put_file("b", b"B");
    m.refuse_rename_over_existing(true);
    assert_eq!(m.rename("a", "b"), Err(FsError::Failed));
    assert_eq!((m.file("a"), m.file("b")), (Some(b"A".to_vec()), Some(b"B".to_vec())));
    m.rename("a", "c").expect("rename to a new name");
}

#[test]
fn refuse_append() {
    let m = mem();
    assert!(m.can_append());
    m.refuse_append(true);
    assert_eq!(err(m.write("f", WriteMode::Append, W)), FsError::Unsupported);
    assert!(!m.can_append() && !m.exists("f"));
    write_all(&m, "f", WriteMode::Replace, b"ok").expect("replace still works");
}

#[test]
fn broken_write_keeps_prefix() {
    let m = mem();
    m.break_write_after(3);
    let mut w = m.write("f", WriteMode::Replace, W).expect("write").expect("slot");
    let e = w.write_all(b"hello").expect_err("broken");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    assert!(w.write(b"x").is_err());
    assert_eq!(w.finish(), Err(FsError::Broken));
    assert_eq!(m.file("f").expect("f"), b"hel");
    write_all(&m, "g", WriteMode::Replace, b"whole").expect("only the next stream breaks");
}

#[test]
fn broken_read_after_bytes() {
    let m = mem();
    m.put_file("f", b"hello");
    m.break_read_after(2);
    let mut r = m.read("f", 0, W).expect("read").expect("slot");
    let mut out = Vec::new();
    assert_eq!(r.read_to_end(&mut out).expect_err("broken").kind(), ErrorKind::ConnectionReset);
    assert_eq!(out, b"he");
    assert_eq!(r.finish(), Err(FsError::Broken));
    assert_eq!(read_all(&m, "f", 0).expect("next read is whole"), b"hello");
}

#[test]
fn fail_finish_next_keeps_bytes() {
    let m = mem();
    m.fail_finish_next(FsError::TryLater);
    assert_eq!(write_all(&m, "f", WriteMode::Replace, b"data"), Err(FsError::TryLater));
    assert_eq!(m.file("f").expect("f"), b"data");
    write_all(&m, "f", WriteMode::Replace, b"again").expect("next finish is fine");
}

#[test]
fn space_limit_stops_writes() {
    let m = mem();
    m.put_file("a", b"12345");
    m.space_limit(Some(8));
    let mut w = m.write("b", WriteMode::Replace, W).expect("write").expect("slot");
    let e = w.write_all(b"abcdef").expect_err("full");
    assert_eq!(e.kind(), ErrorKind::StorageFull);
    assert_eq!(w.finish(), Err(FsError::NoSpace));
    assert_eq!(m.file("b").expect("b"), b"abc");
    // Truncating frees space.
    write_all(&m, "a", WriteMode::Replace, b"xy").expect("fits now");
    m.space_limit(None);
    write_all(&m, "c", WriteMode::Replace, &[0; 100]).expect("unlimited");
}

#[test]
fn delay_applies_to_requests() {
    let m = mem();
    m.delay(Duration::from_millis(30));
    let start = Instant::now();
    m.list("").expect("list");
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn held_uploads_wait_until_let_go() {
    let m = Arc::new(mem());
    m.put_file("f", b"old");
    m.hold_uploads(true);
    let m2 = Arc::clone(&m);
    let t = std::thread::spawn(move || write_all(&m2, "f", WriteMode::Replace, b"new"));
    wait_for_calls(&m, "write f Replace", 1);
    assert_eq!(m.uploads_waiting(), 1);
    // Held before it takes effect: not even emptied yet; other requests go on.
    assert_eq!(m.file("f").expect("f"), b"old");
    assert_eq!(read_all(&m, "f", 0), Ok(b"old".to_vec()));
    m.hold_uploads(false);
    assert_eq!(t.join().expect("join"), Ok(()));
    assert_eq!((m.file("f").expect("f"), m.uploads_waiting()), (b"new".to_vec(), 0));
    // Shut down fails a held upload, which changes nothing.
    m.hold_uploads(true);
    let m2 = Arc::clone(&m);
    let t = std::thread::spawn(move || m2.write("g", WriteMode::Replace, W).map(|s| s.is_some()));
    wait_for_calls(&m, "write g Replace", 1);
    m.shut_down();
    assert_eq!(t.join().expect("join"), Err(FsError::Unmounting));
    assert!(!m.exists("g") && m.open_streams() == 0);
}

#[test]
fn list_hook_runs_after_snapshot_without_lock() {
    let m = Arc::new(mem());
    m.put_file("d/a", b"");
    let seen = Arc::new(AtomicUsize::new(0));
    let (m2, seen2) = (Arc::clone(&m), Arc::clone(&seen));
    m.set_list_hook(Some(Box::new(move |dir: &str| {
        assert_eq!(dir, "d");
        m2.put_file("d/b", b"");
        seen2.fetch_add(1, Ordering::SeqCst);
    })));
    let names: Vec<_> = m.list("d").expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(m.exists("d/b"));
    m.set_list_hook(None);
}

#[test]
fn call_log() {
    let m = mem();
    m.put_file("a", b"");
    m.list("").expect("list");
    let _ = m.rename("a", "b");
    let _ = m.delete("x");
    let _ = m.write("c", WriteMode::Replace, W);
    let _ = m.read("c", 4, W);
    assert_eq!(m.calls(), ["list ", "rename a b", "delete x", "write c Replace", "read c 4"]);
    m.clear_calls();
    assert!(m.calls().is_empty());
}

#[test]
fn direct_access() {
    let m = mem();
    m.put_file("x/y/z", b"1");
    assert_eq!(m.dirs(), ["x", "x/y"]);
    assert!(m.rename_external("x/y", "w/v"));
    assert_eq!(m.file("w/v/z").expect("moved"), b"1");
    assert!(!m.rename_external("nope", "q"));
    m.put_file("w/v/z", b"2");
    assert_eq!(m.file("w/v/z").expect("overwritten"), b"2");
    assert!(m.remove("w"));
    assert!(!m.exists("w/v/z") && !m.remove("w"));
    assert_eq!(m.dirs(), ["x"]);
    assert_eq!((m.mode("nope"), m.mtime("nope")), (None, None));
}
