//! Atomic uploads on the in-memory server, through the model: a reader of the server sees the
//! old file or the new one, never a part; a failed upload leaves the old version; temporary
//! files are hidden, and stale ones cleaned up; the replaced file's mode is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Backend;
use super::atomic::{AtomicUploads, PART_PREFIX};
use super::memory::MemoryBackend;
use crate::model::{Model, ModelConfig, ROOT_INO};

fn mount(be: &Arc<MemoryBackend>, cache: &std::path::Path) -> Model {
    let atomic: Arc<dyn Backend> = Arc::new(AtomicUploads::new(be.clone(), false));
    let cfg = ModelConfig {
        cache_timeout: Duration::from_secs(3600),
        uid: 0,
        gid: 0,
        umask: 0,
        read_only: false,
        cache_dir: cache.to_path_buf(),
        writeback: None,
        writeback_uploads: 1,
        atomic_upload: true,
        ignore_time_errors: false,
        raw_link_targets: false,
    };
    Model::new(cfg, atomic)
}

fn parts(be: &MemoryBackend) -> Vec<String> {
    be.files().into_keys().filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(PART_PREFIX))).collect()
}

/// Rewrites `name` with `data` in 4 KiB writes, then closes it; the close's result.
fn rewrite(m: &Model, name: &str, data: &[u8]) -> Result<(), i32> {
    let ino = m.lookup(ROOT_INO, name).expect("lookup").ino;
    let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    for (i, chunk) in data.chunks(4096).enumerate() {
        m.write(fh, (i * 4096) as u64, chunk)?;
    }
    let res = m.flush(fh);
    let _ = m.release(fh);
    res
}

#[test]
fn a_reader_of_the_server_never_sees_a_half_written_file() {
    let dir = tempfile::tempdir().expect("dir");
    let be = Arc::new(MemoryBackend::new(4));
    let old = vec![b'o'; 3000];
    be.put_file("f", &old);
    be.chmod("f", 0o640).expect("chmod");
    let new: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let m = mount(&be, dir.path());
    // A slow link: the upload takes a while, and the watcher looks many times meanwhile.
    be.slow_writes(Duration::from_millis(1));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (be, done, old, new) = (be.clone(), done.clone(), old.clone(), new.clone());
        std::thread::spawn(move || {
            let (mut looks, mut in_flight) = (0u32, 0u32);
            while !done.load(Ordering::Relaxed) {
                let seen = be.file("f").unwrap_or_default();
                assert!(seen == old || seen == new, "a reader of the server saw {} bytes of a part", seen.len());
                in_flight += u32::from(!parts(&be).is_empty());
                looks += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            (looks, in_flight)
        })
    };
    rewrite(&m, "f", &new).expect("close");
    done.store(true, Ordering::Relaxed);
    let (looks, in_flight) = watcher.join().expect("the watcher saw a part of the file");
    assert!(in_flight > 0, "the upload was never seen in flight ({looks} looks): the test proves nothing");
    assert_eq!(be.file("f"), Some(new), "the new version did not land");
    assert!(parts(&be).is_empty(), "a temporary file is left: {:?}", parts(&be));
    assert_eq!(be.mode("f"), Some(0o640), "the replaced file's mode was not kept");
}

#[test]
fn a_failed_upload_leaves_the_old_version() {
    let dir = tempfile::tempdir().expect("dir");
    let be = Arc::new(MemoryBackend::new(4));
    be.put_file("f", b"the old version");
    let m = mount(&be, dir.path());
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(fh, 0, &[b'n'; 20_000]), Ok(20_000));
    // The upload at close breaks, and so does the one tried again at release.
    be.break_write_after(5000);
    assert!(m.flush(fh).is_err(), "a broken upload closed without an error");
    be.break_write_after(5000);
    assert!(m.release(fh).is_err(), "a broken upload released without an error");
    assert_eq!(be.file("f").as_deref(), Some(&b"the old version"[..]), "the failed upload replaced the old version");
    assert!(parts(&be).is_empty(), "the failed upload's temporary file is left: {:?}", parts(&be));
}

#[test]
fn temporary_files_are_hidden_and_stale_ones_cleaned_up() {
    let dir = tempfile::tempdir().expect("dir");
    let be = Arc::new(MemoryBackend::new(4));
    be.put_file("a", b"a");
    let running = format!("{PART_PREFIX}1-a");
    let left = format!("{PART_PREFIX}2-a");
    be.put_file(&running, b"another client's upload, running");
    be.put_file(&left, b"left by a crash");
    let m = mount(&be, dir.path());
    assert_eq!(m.lookup(ROOT_INO, &running).err(), Some(libc::ENOENT), "a temporary file is visible");
    let dh = m.opendir(ROOT_INO).expect("opendir").fh;
    let mut names = Vec::new();
    m.readdir(dh, 0, false, &mut |item| {
        if item.name != "." && item.name != ".." {
            names.push(item.name.to_string());
        }
        false
    })
    .expect("readdir");
    m.releasedir(dh);
    assert_eq!(names, vec!["a".to_string()], "the listing shows temporary files");
    // Stale: two listings at least this far apart (our clock) show it unchanged.
    let atomic = AtomicUploads::with_stale(be.clone(), false, Duration::from_millis(200));
    assert_eq!(atomic.list("").expect("list").len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    be.put_file(&running, b"another client's upload, running, grown");
    assert_eq!(atomic.list("").expect("list").len(), 1);
    assert!(be.exists(&running), "a running upload's temporary file was deleted");
    assert!(!be.exists(&left), "a stale temporary file was not cleaned up");
    // The time the server shows does not matter (its clock may be far off ours): only change.
    let read_only = AtomicUploads::with_stale(be.clone(), true, Duration::ZERO);
    read_only.list("").expect("list");
    read_only.list("").expect("list");
    assert!(be.exists(&running), "a read-only mount deleted a temporary file");
}

#[test]
fn a_server_that_will_not_rename_over_a_file_still_gets_it_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let be = Arc::new(MemoryBackend::new(4));
    be.put_file("f", b"old");
    be.refuse_rename_over_existing(true);
    let m = mount(&be, dir.path());
    rewrite(&m, "f", b"new version").expect("close");
    assert_eq!(be.file("f").as_deref(), Some(&b"new version"[..]));
    assert!(parts(&be).is_empty());
}

/// A file is never streamed with atomic uploads: a stream may be finished early (when another
/// transfer needs its connection, or a reader in the mount opens the file) and go on with
/// APPE, which would put a part of the file on the server. Nothing goes up before the close.
#[test]
fn nothing_is_uploaded_before_the_close() {
    let dir = tempfile::tempdir().expect("dir");
    let be = Arc::new(MemoryBackend::new(4));
    be.put_file("f", b"old");
    let m = mount(&be, dir.path());
    let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
    let w = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
    assert_eq!(m.write(w, 0, b"first half, "), Ok(12));
    assert!(parts(&be).is_empty(), "an upload started before the close: {:?}", parts(&be));
    assert_eq!(m.write(w, 12, b"second half"), Ok(11));
    assert_eq!(be.file("f").as_deref(), Some(&b"old"[..]));
    m.flush(w).expect("close");
    m.release(w).expect("release");
    assert_eq!(be.file("f").as_deref(), Some(&b"first half, second half"[..]));
    assert!(parts(&be).is_empty());
}

/// Where the server will not rename the upload over the file, and the way aside fails too (or
/// the upload cannot take the name even then), the old file stays in place: the server never
/// ends with neither version.
#[test]
fn a_refused_replacement_never_leaves_neither_version() {
    use super::memory::Op;
    use crate::backend::FsError;
    for refusals in [vec![1, 2], vec![1, 3]] {
        let dir = tempfile::tempdir().expect("dir");
        let be = Arc::new(MemoryBackend::new(4));
        be.put_file("f", b"the old version");
        let m = mount(&be, dir.path());
        let ino = m.lookup(ROOT_INO, "f").expect("lookup").ino;
        let fh = m.open(ino, libc::O_WRONLY | libc::O_TRUNC).expect("open").fh;
        assert_eq!(m.write(fh, 0, b"new"), Ok(3));
        for &n in &refusals {
            be.fail_nth(Op::Rename, n, FsError::Denied);
        }
        assert!(m.flush(fh).is_err(), "{refusals:?}: a refused replacement closed without an error");
        assert_eq!(be.file("f").as_deref(), Some(&b"the old version"[..]), "{refusals:?}: the old version is gone");
        assert!(parts(&be).is_empty(), "{refusals:?}: temporary files left: {:?}", parts(&be));
        let _ = m.release(fh);
    }
}
