//! A command the server carried out but whose reply was lost (the connection broke after it):
//! the model looks at what the server holds and reports success, as a local filesystem would.
//! Renames and deletes with lost replies are also part of the property test.

use std::sync::Arc;
use std::time::Duration;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::memory::{MemoryBackend, Op};

fn model() -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(2));
    be.put_file("f", b"data");
    let cfg = ModelConfig::for_tests(dir.path(), Duration::from_secs(3600));
    (Model::new(cfg, be.clone()), be, dir)
}

#[test]
fn mkdir_whose_reply_was_lost_succeeds() {
    let (m, be, _dir) = model();
    be.lose_reply_next(Op::Mkdir);
    assert!(m.mkdir(ROOT_INO, "d", 0o755, 0).is_ok());
    assert!(be.exists("d"));
    // A real refusal still fails.
    assert_eq!(m.mkdir(ROOT_INO, "d", 0o755, 0).err(), Some(libc::EEXIST));
}

#[test]
fn rmdir_whose_reply_was_lost_succeeds() {
    let (m, be, _dir) = model();
    be.mkdir_all("d");
    be.lose_reply_next(Op::Rmdir);
    assert_eq!(m.rmdir(ROOT_INO, "d"), Ok(()));
    assert!(!be.exists("d"));
    assert_eq!(m.lookup(ROOT_INO, "d").err(), Some(libc::ENOENT));
}

#[test]
fn unlink_and_rename_whose_replies_were_lost_succeed() {
    let (m, be, _dir) = model();
    be.lose_reply_next(Op::Rename);
    assert_eq!(m.rename(ROOT_INO, "f", ROOT_INO, "g", false), Ok(()));
    assert_eq!(be.file("g").as_deref(), Some(&b"data"[..]));
    be.lose_reply_next(Op::Delete);
    assert_eq!(m.unlink(ROOT_INO, "g"), Ok(()));
    assert!(!be.exists("g"));
    assert_eq!(m.lookup(ROOT_INO, "g").err(), Some(libc::ENOENT));
}
