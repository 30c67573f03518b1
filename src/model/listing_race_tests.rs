//! The listing-cache race, through the whole model on the in-memory backend: a listing that
//! was being fetched while one of our own changes of the same directory ran must not overwrite
//! what that change left in the cache. The fake's list hook runs the change after the listing's
//! entries were taken and before the model stores them: the widest possible window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Model, ModelConfig, ROOT_INO};
use crate::backend::memory::MemoryBackend;

/// A model over a fake holding the files `a` and `b`, listings cached for an hour, and a
/// list hook that runs `change` once, on another thread, during the first listing of the root.
fn model_with_change_during_listing(change: fn(&Model)) -> (Arc<Model>, Arc<MemoryBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let be = Arc::new(MemoryBackend::new(2));
    be.put_file("a", b"old a");
    be.put_file("b", b"old b");
    let cfg = ModelConfig::for_tests(dir.path(), Duration::from_secs(3600));
    let model = Arc::new(Model::new(cfg, be.clone()));
    let fired = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&model);
    be.set_list_hook(Some(Box::new(move |listed: &str| {
        if !listed.is_empty() || fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(m) = weak.upgrade() else { return };
        std::thread::spawn(move || change(&m)).join().expect("the change ran");
    })));
    (model, be, dir)
}

fn names(model: &Model) -> Vec<String> {
    let dir = model.opendir(ROOT_INO).expect("opendir");
    let mut out = Vec::new();
    model
        .readdir(dir.fh, 0, false, &mut |item| {
            out.push(item.name.to_string());
            false
        })
        .expect("readdir");
    model.releasedir(dir.fh);
    out.retain(|n| n != "." && n != "..");
    out.sort();
    out
}

#[test]
fn a_file_deleted_during_a_listing_stays_deleted() {
    let (model, be, _dir) = model_with_change_during_listing(|m| m.unlink(ROOT_INO, "a").expect("unlink a"));
    // This lookup lists the root; the unlink runs while that listing is in flight.
    model.lookup(ROOT_INO, "b").expect("lookup b");
    assert!(!be.exists("a"));
    assert_eq!(model.lookup(ROOT_INO, "a").err(), Some(libc::ENOENT), "the stale listing brought a back");
    assert_eq!(names(&model), ["b"]);
    be.set_list_hook(None);
}

#[test]
fn a_directory_made_during_a_listing_is_seen() {
    let (model, be, _dir) =
        model_with_change_during_listing(|m| assert!(m.mkdir(ROOT_INO, "d", 0o755, 0).is_ok(), "mkdir d"));
    model.lookup(ROOT_INO, "a").expect("lookup a");
    assert!(model.lookup(ROOT_INO, "d").is_ok(), "the stale listing hid the new directory");
    assert_eq!(names(&model), ["a", "b", "d"]);
    be.set_list_hook(None);
}

#[test]
fn a_rename_during_a_listing_is_seen() {
    let (model, be, _dir) =
        model_with_change_during_listing(|m| m.rename(ROOT_INO, "a", ROOT_INO, "z", false).expect("rename a"));
    model.lookup(ROOT_INO, "b").expect("lookup b");
    assert_eq!(model.lookup(ROOT_INO, "a").err(), Some(libc::ENOENT));
    assert!(model.lookup(ROOT_INO, "z").is_ok());
    assert_eq!(names(&model), ["b", "z"]);
    be.set_list_hook(None);
}
