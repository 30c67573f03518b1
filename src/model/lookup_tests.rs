//! Looking up one name of a directory that is not cached: asked alone (MLST) for the first
//! few names, so one name of a huge directory never costs its listing; a directory whose names
//! keep being looked up is listed once instead.

use std::sync::Arc;
use std::time::Duration;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::memory::MemoryBackend;

fn model(single: bool) -> (Model, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(2));
    be.mkdir_all("big");
    for i in 0..20 {
        be.put_file(&format!("big/f{i}"), format!("file {i}").as_bytes());
    }
    be.mkdir_all("big/sub");
    be.set_stat_one_supported(single);
    let cfg = ModelConfig::for_tests(dir.path(), Duration::from_secs(3600));
    (Model::new(cfg, be.clone()), be, dir)
}

fn listings(be: &MemoryBackend) -> Vec<String> {
    be.calls().into_iter().filter(|c| c.starts_with("list ")).collect()
}

#[test]
fn one_name_in_an_uncached_directory_is_asked_alone() {
    let (m, be, _dir) = model(true);
    let big = m.lookup(ROOT_INO, "big").expect("big").ino;
    be.clear_calls();
    let st = m.lookup(big, "f7").expect("f7");
    assert_eq!(st.size, 6);
    assert_eq!(m.lookup(big, "sub").map(|s| s.kind), Ok(super::Kind::Dir));
    assert_eq!(m.lookup(big, "missing").err(), Some(libc::ENOENT));
    assert_eq!(be.calls(), ["stat big/f7", "stat big/sub", "stat big/missing"]);
}

#[test]
fn a_directory_whose_names_keep_being_looked_up_is_listed_once() {
    let (m, be, _dir) = model(true);
    let big = m.lookup(ROOT_INO, "big").expect("big").ino;
    be.clear_calls();
    for i in 0..20 {
        assert!(m.lookup(big, &format!("f{i}")).is_ok());
    }
    assert_eq!(listings(&be), ["list big"], "listed once, after the first names alone");
    let alone = be.calls().iter().filter(|c| c.starts_with("stat ")).count();
    assert_eq!(alone, super::core::SINGLE_LOOKUPS as usize);
}

#[test]
fn without_single_lookups_or_when_they_fail_the_directory_is_listed() {
    let (m, be, _dir) = model(false);
    let big = m.lookup(ROOT_INO, "big").expect("big").ino;
    be.clear_calls();
    assert!(m.lookup(big, "f1").is_ok());
    assert_eq!(listings(&be), ["list big"]);

    let (m, be, _dir) = model(true);
    let big = m.lookup(ROOT_INO, "big").expect("big").ino;
    be.fail_nth(crate::backend::memory::Op::Stat, 1, crate::backend::FsError::Broken);
    be.clear_calls();
    assert_eq!(m.lookup(big, "f2").map(|s| s.size), Ok(6));
    assert_eq!(listings(&be), ["list big"], "a failed lookup falls back to the listing");
}

#[test]
fn a_file_created_and_not_uploaded_yet_is_found() {
    let (m, _be, _dir) = model(true);
    let big = m.lookup(ROOT_INO, "big").expect("big").ino;
    let (_, fh) = m.create(big, "new", libc::O_WRONLY, 0o644, 0).expect("create");
    assert!(m.lookup(big, "new").is_ok());
    m.release(fh).expect("close");
    assert!(m.lookup(big, "new").is_ok());
}
