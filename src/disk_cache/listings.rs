//! Listings kept on disk with the content (`-o disk_cache`), so that a mount started again
//! shows a directory listed shortly before without asking the server: each is trusted, as in
//! memory, for `cache_timeout` from when it was fetched, whatever mount fetched it.
//!
//! One file a directory, `L<id>.list`, replaced whole (written to `.listtmp`, renamed; a
//! listing is worth no fsync: one that does not read is dropped). A listing that one of our
//! own changes made stale is removed at the change ([`DiskCache::forget_listing`]).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{DiskCache, hex, id_of, unhex};
use crate::backend::{Entry, EntryKind};
use crate::private_files::{create_or_truncate, open_trusted};

/// The first line of every listing file.
const MAGIC: &str = "ftpfs-listing 1";

/// Listings longer than this are not kept (a directory of a hundred thousand names is listed
/// from the server, as without the cache).
pub const MAX_ENTRIES: usize = 50_000;

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn parse_opt<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
    if s == "-" { Some(None) } else { s.parse().ok().map(Some) }
}

fn kind_text(k: &EntryKind) -> String {
    match k {
        EntryKind::File => "f".into(),
        EntryKind::Dir => "d".into(),
        EntryKind::Symlink(None) => "l".into(),
        EntryKind::Symlink(Some(t)) => format!("l:{}", hex(t.as_bytes())),
    }
}

fn parse_kind(s: &str) -> Option<EntryKind> {
    match s {
        "f" => Some(EntryKind::File),
        "d" => Some(EntryKind::Dir),
        "l" => Some(EntryKind::Symlink(None)),
        _ => Some(EntryKind::Symlink(Some(String::from_utf8(unhex(s.strip_prefix("l:")?)?).ok()?))),
    }
}

/// The text of a listing file.
fn listing_text(dir: &str, fetched: SystemTime, entries: &[Entry]) -> String {
    let at = fetched.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut s = format!("{MAGIC}\ndir {}\nfetched {} {}\n", hex(dir.as_bytes()), at.as_secs(), at.subsec_nanos());
    for e in entries {
        s.push_str(&format!(
            "e {} {} {} {} {} {} {}\n",
            hex(e.name.as_bytes()),
            kind_text(&e.kind),
            opt(e.size),
            opt(e.mtime),
            e.mtime_nanos,
            opt(e.mode),
            if e.mtime_exact { "x" } else { "c" }
        ));
    }
    s
}

/// Parses [`listing_text`]: (dir, when fetched, entries).
fn parse_listing(text: &str) -> Option<(String, SystemTime, Vec<Entry>)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let dir = String::from_utf8(unhex(lines.next()?.strip_prefix("dir ")?)?).ok()?;
    let (secs, nanos) = lines.next()?.strip_prefix("fetched ")?.split_once(' ')?;
    let fetched = UNIX_EPOCH + Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
    let mut entries = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.strip_prefix("e ")?.split(' ').collect();
        let [name, kind, size, mtime, nanos, mode, exact] = f.as_slice() else { return None };
        let name = String::from_utf8(unhex(name)?).ok()?;
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return None;
        }
        entries.push(Entry {
            kind: parse_kind(kind)?,
            size: parse_opt(size)?,
            mtime: parse_opt(mtime)?,
            mtime_nanos: nanos.parse().ok()?,
            mode: parse_opt(mode)?,
            mtime_exact: match *exact {
                "x" => true,
                "c" => false,
                _ => return None,
            },
            ..Entry::new(name, EntryKind::File)
        });
    }
    Some((dir, fetched, entries))
}

/// A listing file is never read past this.
const MAX_FILE: u64 = 64 << 20;

impl DiskCache {
    /// Whether a listing of `dir` is kept.
    pub fn has_listing(&self, dir: &str) -> bool {
        self.listed.lock().contains_key(dir)
    }

    /// The listing of `dir` kept on disk if it was fetched less than `age` ago (an older one is
    /// not even read).
    pub fn listing_younger_than(&self, dir: &str, age: std::time::Duration) -> Option<(SystemTime, Vec<Entry>)> {
        let fetched = *self.listed.lock().get(dir)?;
        if fetched.elapsed().map_or(true, |a| a >= age) {
            return None;
        }
        self.listing(dir)
    }

    /// Finds the listings kept by earlier mounts; removes those that do not read.
    pub(super) fn load_listings(&self) {
        let Ok(files) = std::fs::read_dir(&self.dir) else { return };
        let mut listed = self.listed.lock();
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.starts_with('L') || !name.ends_with(".list") {
                continue;
            }
            let read = open_trusted(&f.path(), false).ok().and_then(|file| {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE), &mut text).ok()?;
                parse_listing(&text)
            });
            match read {
                Some((dir, fetched, _)) if name == format!("L{}.list", id_of(&dir)) => {
                    listed.insert(dir, fetched);
                }
                _ => {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }

    fn listing_file(&self, dir: &str, ext: &str) -> std::path::PathBuf {
        self.dir.join(format!("L{}.{ext}", id_of(dir)))
    }

    /// Keeps the listing of `dir`, fetched from the server at `fetched`.
    pub fn save_listing(&self, dir: &str, fetched: SystemTime, entries: &[Entry]) {
        if entries.len() > MAX_ENTRIES {
            self.forget_listing(dir, false);
            return;
        }
        // A name of its own: two fetches of one directory may save at once.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!("L{}-{n}.listtmp", id_of(dir)));
        let res = create_or_truncate(&tmp)
            .and_then(|mut f| f.write_all(listing_text(dir, fetched, entries).as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, self.listing_file(dir, "list")));
        if res.is_ok() {
            self.listed.lock().insert(dir.to_string(), fetched);
        }
        if let Err(e) = res {
            log::debug!("disk cache: cannot keep the listing of {dir:?}: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The listing of `dir` kept on disk and when it was fetched, if one reads.
    pub fn listing(&self, dir: &str) -> Option<(SystemTime, Vec<Entry>)> {
        if !self.listed.lock().contains_key(dir) {
            return None;
        }
        let path = self.listing_file(dir, "list");
        let mut text = String::new();
        let file = open_trusted(&path, false).ok()?;
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE), &mut text).ok()?;
        match parse_listing(&text) {
            Some((d, fetched, entries)) if d == dir => Some((fetched, entries)),
            _ => {
                self.forget_listing(dir, false);
                None
            }
        }
    }

    /// Drops the listing of `dir` (and, with `tree`, every listing below it) kept on disk: one
    /// of our changes made it stale.
    pub fn forget_listing(&self, dir: &str, tree: bool) {
        let doomed: Vec<String> = {
            let mut listed = self.listed.lock();
            if !tree {
                // The common case (every change of ours): no scan.
                match listed.remove(dir) {
                    Some(_) => vec![dir.to_string()],
                    None => return,
                }
            } else {
                let doomed: Vec<String> =
                    listed.keys().filter(|d| crate::backend::paths::is_at_or_under(d, dir)).cloned().collect();
                for d in &doomed {
                    listed.remove(d);
                }
                doomed
            }
        };
        for d in doomed {
            let _ = std::fs::remove_file(self.listing_file(&d, "list"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry {
            size: Some(7),
            mtime: Some(1_700_000_000),
            mtime_nanos: 5,
            mode: Some(0o640),
            mtime_exact: true,
            ..Entry::new(name, kind)
        }
    }

    #[test]
    fn listings_round_trip_and_refuse_nonsense() {
        let entries = vec![
            entry("a b", EntryKind::File),
            entry("d", EntryKind::Dir),
            entry("l", EntryKind::Symlink(Some("../t x".into()))),
            Entry::new("bare", EntryKind::Symlink(None)),
        ];
        let when = UNIX_EPOCH + Duration::new(1_700_000_123, 456);
        let text = listing_text("dir/sub", when, &entries);
        assert_eq!(parse_listing(&text), Some(("dir/sub".to_string(), when, entries)));
        assert_eq!(parse_listing("ftpfs-listing 1\ndir 61\nfetched 1 0\ne 2f66 f - - 0 - x\n"), None, "a slash");
        assert_eq!(parse_listing("ftpfs-listing 1\ndir 61\n"), None);
    }

    #[test]
    fn kept_until_forgotten() {
        let d = tempfile::tempdir().unwrap();
        let c = DiskCache::open(d.path(), 1 << 20).unwrap();
        let now = SystemTime::now();
        c.save_listing("a", now, &[entry("f", EntryKind::File)]);
        c.save_listing("a/b", now, &[]);
        c.save_listing("ab", now, &[]);
        assert_eq!(c.listing("a").map(|l| l.1.len()), Some(1));
        c.forget_listing("a", true);
        assert!(c.listing("a").is_none() && c.listing("a/b").is_none());
        assert!(c.listing("ab").is_some(), "a sibling with the same prefix stays");
        drop(c);
        let c = DiskCache::open(d.path(), 1 << 20).unwrap();
        assert!(c.listing("ab").is_some(), "kept across a remount");
    }
}
