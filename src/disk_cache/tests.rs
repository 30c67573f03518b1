//! The disk cache alone, on a temporary directory: ranges, versions, the bound, crashes.

use std::os::unix::fs::PermissionsExt;

use super::*;

const V1: Version = Version { size: 1000, mtime: 1_700_000_000, nanos: 0 };

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The data file of `path`'s entry.
fn data_file_of(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    let prefix = format!("{}-", id_of(path));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(".data")
        })
        .unwrap_or_else(|| panic!("no data file of {path}"))
}

#[test]
fn serves_only_the_ranges_it_holds_of_the_version_it_holds() {
    let d = dir();
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    let data = content(1000);
    assert_eq!(c.read("a/f", V1, 0, 100), None);
    c.store("a/f", V1, 900, &data[900..]);
    assert_eq!(c.read("a/f", V1, 900, 100).as_deref(), Some(&data[900..]), "the tail alone");
    assert_eq!(c.read("a/f", V1, 950, 4096).as_deref(), Some(&data[950..]), "cut at the end of the file");
    assert_eq!(c.read("a/f", V1, 0, 100), None, "the head was never read");
    assert_eq!(c.bytes(), 100);
    c.store("a/f", V1, 0, &data[..900]);
    assert_eq!(c.read("a/f", V1, 0, 1000).as_deref(), Some(&data[..]));
    // An older version asked (a reader with an older listing): a miss, the entry stays.
    let v0 = Version { mtime: V1.mtime - 1, ..V1 };
    assert_eq!(c.read("a/f", v0, 0, 10), None);
    c.store("a/f", v0, 0, b"old bytes!");
    assert_eq!(c.read("a/f", V1, 0, 1000).as_deref(), Some(&data[..]), "never overwritten by older bytes");
    // A newer version: not served, and the entry goes.
    let v2 = Version { mtime: V1.mtime + 1, ..V1 };
    assert_eq!(c.read("a/f", v2, 0, 10), None);
    assert_eq!(c.bytes(), 0);
    assert_eq!(c.read("a/f", V1, 0, 10), None);
    assert!(c.describe().contains("hits"), "{}", c.describe());
}

#[test]
fn survives_a_remount_once_saved() {
    let d = dir();
    let data = content(1000);
    {
        let c = DiskCache::open(d.path(), 1 << 20).unwrap();
        c.store("f", V1, 0, &data);
        c.save_all();
        assert!(DiskCache::open(d.path(), 1 << 20).is_err(), "one mount at a time");
    }
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    assert_eq!(c.read("f", V1, 0, 1000).as_deref(), Some(&data[..]));
    for e in std::fs::read_dir(d.path()).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private files");
    }
}

/// A crash (the process gone without saving): what was saved is kept, what was stored after
/// the last save is not trusted, and leftovers of a save cut short are removed.
#[test]
fn a_crash_keeps_what_was_saved_and_nothing_else() {
    let d = dir();
    let data = content(1000);
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    c.store("f", V1, 0, &data[..500]);
    c.save("f");
    c.store("f", V1, 500, &data[500..]);
    c.store("g", V1, 0, &data);
    // The crash: no save; a meta being written and a stray file are left behind.
    std::fs::write(d.path().join("0123.metatmp"), b"half").unwrap();
    std::fs::write(d.path().join(format!("{}-1.meta", id_of("h"))), b"not a meta").unwrap();
    drop(c);
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    assert_eq!(c.read("f", V1, 0, 500).as_deref(), Some(&data[..500]));
    assert_eq!(c.read("f", V1, 500, 10), None, "stored after the last save");
    assert_eq!(c.read("g", V1, 0, 10), None, "never saved");
    let names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(
        !names.iter().any(|n| n.ends_with("metatmp") || n.starts_with(&id_of("g")) || n.starts_with(&id_of("h"))),
        "{names:?}"
    );
    // A data file cut short (a disk that lost writes) takes its entry with it.
    c.save_all();
    drop(c);
    std::fs::OpenOptions::new().write(true).open(data_file_of(d.path(), "f")).unwrap().set_len(10).unwrap();
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    assert_eq!(c.read("f", V1, 0, 10), None);
    assert_eq!(c.bytes(), 0);
}

#[test]
fn bounded_in_bytes_least_recently_used_first() {
    let d = dir();
    let c = DiskCache::open(d.path(), 2500).unwrap();
    let data = content(1000);
    for f in ["a", "b", "c"] {
        c.store(f, V1, 0, &data);
        assert!(c.bytes() <= 2500);
    }
    assert_eq!(c.read("a", V1, 0, 10), None, "the oldest went");
    assert!(c.read("b", V1, 0, 10).is_some());
    c.store("d", V1, 0, &data);
    assert!(c.read("b", V1, 0, 10).is_some(), "used lately: kept");
    assert_eq!(c.read("c", V1, 0, 10), None);
    assert!(c.describe().contains("evicted"), "{}", c.describe());
    // Restarted with less room: the least recently saved go.
    c.save_all();
    drop(c);
    let c = DiskCache::open(d.path(), 1000).unwrap();
    assert_eq!(c.bytes(), 1000);
}

#[test]
fn forgets_paths_and_trees() {
    let d = dir();
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    let data = content(1000);
    for f in ["d/a", "d/sub/b", "dx", "e"] {
        c.store(f, V1, 0, &data);
    }
    c.forget("d");
    assert_eq!(c.read("d/a", V1, 0, 1), None);
    assert_eq!(c.read("d/sub/b", V1, 0, 1), None);
    assert!(c.read("dx", V1, 0, 1).is_some(), "a sibling with the same prefix stays");
    c.clear();
    assert_eq!(c.bytes(), 0);
}

/// Files planted in the directory by someone else are not trusted: a symlink as a data file is
/// never followed.
#[test]
fn a_planted_symlink_is_not_followed() {
    let d = dir();
    let data = content(1000);
    {
        let c = DiskCache::open(d.path(), 1 << 20).unwrap();
        c.store("f", V1, 0, &data);
        c.save_all();
    }
    let secret = d.path().join("secret");
    std::fs::write(&secret, vec![b's'; 1000]).unwrap();
    let data_file = data_file_of(d.path(), "f");
    std::fs::remove_file(&data_file).unwrap();
    std::os::unix::fs::symlink(&secret, &data_file).unwrap();
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    assert_eq!(c.read("f", V1, 0, 10), None);
    assert!(std::fs::symlink_metadata(&data_file).is_err(), "the symlink is removed");
}

#[test]
fn metas_round_trip_and_refuse_nonsense() {
    let mut r = Ranges::new();
    r.add(0, 10);
    let text = meta_text("a b/ü\nc", V1, &r);
    assert_eq!(parse_meta(&text), Some(("a b/ü\nc".to_string(), V1, r)));
    assert_eq!(parse_meta("ftpfs-disk-cache 1\npath zz\n"), None);
    let mut past_end = Ranges::new();
    past_end.add(0, 2000);
    assert_eq!(parse_meta(&meta_text("f", V1, &past_end)), None, "ranges past the size");
}

/// An entry dropped and made again while a read or a store of the old one is under way: the
/// old one's bytes never show up in the new one, nor the new one's holes as a hit.
#[test]
fn a_new_instance_never_serves_the_old_ones_bytes() {
    let d = dir();
    let c = DiskCache::open(d.path(), 1 << 20).unwrap();
    let data = content(1000);
    c.store("f", V1, 0, &data);
    let first = data_file_of(d.path(), "f");
    c.forget_file("f");
    assert!(!first.exists(), "the dropped instance's files go");
    c.store("f", V1, 500, &data[500..]);
    let second = data_file_of(d.path(), "f");
    assert_ne!(first, second, "another instance, other files");
    assert_eq!(c.read("f", V1, 0, 10), None, "the head is not this instance's");
    assert_eq!(c.read("f", V1, 500, 500).as_deref(), Some(&data[500..]));
}
