//! How writes become uploads on one handle: the pattern of `dd of=FILE` or a shell's `>`
//! (create, close of a duplicate descriptor, then writes from 0) makes the empty file, then
//! streams the data over it with one STOR (which, unlike an APPE, may send its data before the
//! server's first reply: a round trip less on a far link); a change by another handle in
//! between is kept where not overwritten.

use std::sync::Arc;
use std::time::Duration;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::memory::MemoryBackend;

fn model() -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(3));
    let cfg = ModelConfig::for_tests(dir.path(), Duration::from_secs(3600));
    (Model::new(cfg, be.clone()), be, dir)
}

fn writes(be: &MemoryBackend) -> Vec<String> {
    be.calls().into_iter().filter(|c| c.starts_with("write ")).collect()
}

#[test]
fn create_then_close_of_a_duplicate_then_writes_stream_one_upload_over_the_empty_file() {
    let (m, be, _dir) = model();
    let (_, fh) = m.create(ROOT_INO, "out", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    // dd moves the file to stdout: the close of the original descriptor flushes an empty file.
    m.flush(fh).expect("flush of the duplicate");
    assert_eq!(be.file("out").as_deref(), Some(&b""[..]), "close(2) made the file");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for (i, chunk) in body.chunks(65_536).enumerate() {
        assert_eq!(m.write(fh, (i * 65_536) as u64, chunk), Ok(chunk.len()));
    }
    m.flush(fh).expect("flush");
    m.release(fh).expect("close");
    assert_eq!(be.file("out"), Some(body));
    assert_eq!(writes(&be), ["write out Replace", "write out Replace"], "one empty file, then one STOR");
}

#[test]
fn another_handles_upload_in_between_is_not_replaced_by_the_stream() {
    let (m, be, _dir) = model();
    let (_, fh) = m.create(ROOT_INO, "out", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    m.flush(fh).expect("flush of the duplicate");
    // Another handle writes and closes first.
    let ino = m.lookup(ROOT_INO, "out").expect("lookup").ino;
    let other = m.open(ino, libc::O_WRONLY).expect("open").fh;
    assert_eq!(m.write(other, 0, b"0123456789"), Ok(10));
    m.flush(other).expect("flush");
    m.release(other).expect("close");
    // Ours now writes at 0 over part of it: like on a local disk, the rest stays.
    assert_eq!(m.write(fh, 0, b"abc"), Ok(3));
    m.flush(fh).expect("flush");
    m.release(fh).expect("close");
    assert_eq!(be.file("out").as_deref(), Some(&b"abc3456789"[..]));
}

/// truncate(2) by path while a writer's handle is still open but holds nothing unsaved (closed,
/// its release on its way): the server's file is truncated at once, and the release uploads
/// nothing over it. (The truncation used to go into that handle's state, and was lost when the
/// release ran at the same moment.)
#[test]
fn truncate_by_path_beside_a_clean_writer_lands_on_the_server() {
    let (m, be, _dir) = model();
    let (st, fh) = m.create(ROOT_INO, "g", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"hello world"), Ok(11));
    m.flush(fh).expect("flush");
    assert_eq!(m.setattr(st.ino, None, None, Some(2), None).map(|s| s.size), Ok(2));
    assert_eq!(be.file("g").as_deref(), Some(&b"he"[..]), "on the server before the release");
    m.release(fh).expect("release");
    assert_eq!(be.file("g").as_deref(), Some(&b"he"[..]));
}

/// A writer holding unsaved data: truncate(2) by path cuts its version, which its close uploads.
#[test]
fn truncate_by_path_cuts_an_unsaved_version() {
    let (m, be, _dir) = model();
    let (st, fh) = m.create(ROOT_INO, "h", libc::O_WRONLY | libc::O_TRUNC, 0o644, 0).expect("create");
    assert_eq!(m.write(fh, 0, b"hello world"), Ok(11));
    m.flush(fh).expect("flush");
    assert_eq!(m.write(fh, 11, b"!!"), Ok(2));
    assert_eq!(m.setattr(st.ino, None, None, Some(3), None).map(|s| s.size), Ok(3));
    m.release(fh).expect("release");
    assert_eq!(be.file("h").as_deref(), Some(&b"hel"[..]));
}
