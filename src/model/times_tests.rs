//! File times: set on the server where it can, EPERM where it cannot (never a success for a
//! time that was not set) unless `ignore_time_errors`; directory times that the server refuses
//! are left to it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::{Model, ModelConfig, ROOT_INO, SetTime};
use crate::backend::memory::MemoryBackend;

fn model(settable: bool, ignore: bool) -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(2));
    be.put_file("f", b"data");
    be.mkdir_all("d");
    be.set_mtime_supported(settable);
    let cfg =
        ModelConfig { ignore_time_errors: ignore, ..ModelConfig::for_tests(dir.path(), Duration::from_secs(3600)) };
    (Model::new(cfg, be.clone()), be, dir)
}

const WHEN: i64 = 1_623_053_350; // 2021-06-07 08:09:10 UTC

fn set(m: &Model, name: &str, time: SetTime) -> Result<(), i32> {
    let ino = m.lookup(ROOT_INO, name)?.ino;
    m.setattr(ino, None, None, None, Some(time)).map(drop)
}

fn at(secs: i64) -> SetTime {
    SetTime::At(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

#[test]
fn a_time_the_server_sets_is_kept_and_shown() {
    let (m, be, _dir) = model(true, false);
    set(&m, "f", at(WHEN)).expect("set");
    assert_eq!(be.mtime("f"), Some(WHEN));
    let shown = m.lookup(ROOT_INO, "f").expect("lookup").mtime;
    assert_eq!(shown.duration_since(UNIX_EPOCH).expect("after epoch").as_secs() as i64, WHEN);
}

#[test]
fn a_time_the_server_cannot_set_fails_with_eperm() {
    let (m, be, _dir) = model(false, false);
    let before = be.mtime("f");
    assert_eq!(set(&m, "f", at(WHEN)), Err(libc::EPERM));
    assert_eq!(set(&m, "f", SetTime::Now), Err(libc::EACCES), "touch of an existing file (utimensat(2))");
    assert_eq!(be.mtime("f"), before);
    let shown = m.lookup(ROOT_INO, "f").expect("lookup").mtime;
    assert_ne!(shown.duration_since(UNIX_EPOCH).expect("after epoch").as_secs() as i64, WHEN, "not shown as set");
    // A directory's time is the server's: refused quietly (tar, cp -a go on).
    assert_eq!(set(&m, "d", at(WHEN)), Ok(()));
}

#[test]
fn ignore_time_errors_makes_an_unsettable_time_a_quiet_success() {
    let (m, be, _dir) = model(false, true);
    let before = be.mtime("f");
    assert_eq!(set(&m, "f", at(WHEN)), Ok(()));
    assert_eq!(be.mtime("f"), before, "nothing was set");
}

/// `cp -p`: the time is set while the data is not uploaded yet. Known unsettable: refused at
/// once (the close that uploads must not fail over it). A refusal found only at the upload is
/// logged: the close reports the data, which landed.
#[test]
fn a_time_deferred_to_the_upload_never_fails_the_close() {
    let (m, be, _dir) = model(false, false);
    let (st, fh) = m.create(ROOT_INO, "new", libc::O_WRONLY, 0o644, 0).expect("create");
    m.write(fh, 0, b"copied").expect("write");
    let res = m.setattr(st.ino, Some(fh), None, None, Some(at(WHEN)));
    assert_eq!(res.map(drop), Err(libc::EPERM), "refused before it is deferred");
    assert_eq!(m.release(fh), Ok(()));
    assert_eq!(be.file("new").as_deref(), Some(&b"copied"[..]));

    let (m, be, _dir) = model(true, false);
    let (st, fh) = m.create(ROOT_INO, "new", libc::O_WRONLY, 0o644, 0).expect("create");
    m.write(fh, 0, b"copied").expect("write");
    m.setattr(st.ino, Some(fh), None, None, Some(at(WHEN))).expect("deferred");
    be.fail_next(crate::backend::memory::Op::SetMtime, crate::error::FsError::Denied);
    assert_eq!(m.release(fh), Ok(()), "the data landed; the time's refusal is logged");
    assert_eq!(be.file("new").as_deref(), Some(&b"copied"[..]));
}
