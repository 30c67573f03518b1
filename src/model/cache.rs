//! The directory listing cache: one listing per directory, kept for `cache_timeout`.
//!
//! A listing answers readdir and the getattr/lookup of every child (a name missing from a fresh
//! listing is a negative answer, with no extra round trip). Our own changes patch the cached
//! listings they touch instead of dropping them, so `cp -r` into a directory does not re-list it
//! after every file; changes made by other clients show up once the listing's TTL has passed.
//!
//! Bounded in directories, in entries and in bytes (least recently used listings go first), so
//! a mount that lives for days through many directories keeps its memory, whatever the length
//! of the names a server sends.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use super::inodes::is_at_or_under;
use crate::backend::{Entry, EntryKind};

/// Marks an unknown size, time or mode in a [`Slot`].
const UNKNOWN_SIZE: u64 = u64::MAX;
const UNKNOWN_MTIME: i64 = i64::MIN;
const UNKNOWN_MODE: u32 = u32::MAX;

/// What a [`Slot`] is.
const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;
/// A symbolic link whose target follows the name in `text`.
const KIND_LINK: u8 = 2;
/// A symbolic link whose target nobody told us.
const KIND_LINK_UNKNOWN: u8 = 3;
/// Or-ed into a slot's kind: its time is exact ([`Entry::mtime_exact`]).
const EXACT_TIME: u8 = 0x80;

/// One entry as a listing keeps it: 48 bytes and one allocation (the name, followed by a link's
/// target), so that a directory of 100 000 names costs a few MiB.
#[derive(Clone, Debug)]
struct Slot {
    text: Box<str>,
    size: u64,
    mtime: i64,
    mtime_nanos: u32,
    mode: u32,
    name_len: u32,
    kind: u8,
}

impl Slot {
    fn new(e: Entry) -> Slot {
        let name_len = e.name.len() as u32;
        let (text, kind) = match e.kind {
            EntryKind::File => (e.name.into_boxed_str(), KIND_FILE),
            EntryKind::Dir => (e.name.into_boxed_str(), KIND_DIR),
            EntryKind::Symlink(Some(target)) => ((e.name + &target).into_boxed_str(), KIND_LINK),
            EntryKind::Symlink(None) => (e.name.into_boxed_str(), KIND_LINK_UNKNOWN),
        };
        Slot {
            text,
            size: e.size.unwrap_or(UNKNOWN_SIZE),
            mtime: e.mtime.unwrap_or(UNKNOWN_MTIME),
            mtime_nanos: e.mtime_nanos,
            mode: e.mode.unwrap_or(UNKNOWN_MODE),
            name_len,
            kind: if e.mtime_exact { kind | EXACT_TIME } else { kind },
        }
    }

    fn name(&self) -> &str {
        self.text.get(..self.name_len as usize).unwrap_or(&self.text)
    }

    /// The memory this entry takes in a listing, about.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Slot>() + self.text.len()
    }

    fn entry(&self) -> Entry {
        let kind = match self.kind & !EXACT_TIME {
            KIND_DIR => EntryKind::Dir,
            KIND_LINK => EntryKind::Symlink(Some(self.text.get(self.name_len as usize..).unwrap_or("").to_string())),
            KIND_LINK_UNKNOWN => EntryKind::Symlink(None),
            _ => EntryKind::File,
        };
        Entry {
            name: self.name().to_string(),
            kind,
            size: (self.size != UNKNOWN_SIZE).then_some(self.size),
            mtime: (self.mtime != UNKNOWN_MTIME).then_some(self.mtime),
            mtime_nanos: self.mtime_nanos,
            mode: (self.mode != UNKNOWN_MODE).then_some(self.mode),
            mtime_exact: self.kind & EXACT_TIME != 0,
        }
    }
}

/// Versions of listings: a new one for each listing fetched and each patch of one.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// One directory's entries, sorted by name (found by binary search).
#[derive(Clone, Debug)]
pub struct DirListing {
    pub fetched: Instant,
    /// Different for every listing fetched and after every change of one.
    version: u64,
    slots: Vec<Slot>,
    /// How many entries are directories (a directory's link count is 2 plus this).
    subdirs: usize,
    /// The memory the entries take, about ([`Slot::bytes`] summed).
    bytes: usize,
    /// Made by this mount's own MKD (empty then, every change since one of ours), not fetched:
    /// a name missing from it is missing on the server unless another client made it there
    /// within the listing's lifetime.
    pub made_here: bool,
}

impl DirListing {
    pub fn new(entries: Vec<Entry>) -> DirListing {
        let mut slots: Vec<Slot> = entries.into_iter().map(Slot::new).collect();
        slots.sort_by(|a, b| a.name().cmp(b.name()));
        slots.dedup_by(|a, b| a.name() == b.name());
        slots.shrink_to_fit();
        let subdirs = slots.iter().filter(|s| s.kind & !EXACT_TIME == KIND_DIR).count();
        let bytes = slots.iter().map(Slot::bytes).sum();
        let version = VERSIONS.fetch_add(1, Ordering::Relaxed);
        DirListing { fetched: Instant::now(), version, slots, subdirs, bytes, made_here: false }
    }

    /// The memory the entries take, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many entries are directories.
    pub fn subdirs(&self) -> usize {
        self.subdirs
    }

    /// Puts `slot` at `i` (a new place when `insert`), keeping the count of directories.
    fn place(&mut self, i: usize, slot: Slot, insert: bool) {
        self.subdirs += usize::from(slot.kind & !EXACT_TIME == KIND_DIR);
        self.bytes += slot.bytes();
        if insert {
            self.slots.insert(i, slot);
        } else {
            let old = std::mem::replace(&mut self.slots[i], slot);
            self.subdirs -= usize::from(old.kind & !EXACT_TIME == KIND_DIR);
            self.bytes -= old.bytes();
        }
    }

    fn take(&mut self, i: usize) -> Slot {
        let old = self.slots.remove(i);
        self.subdirs -= usize::from(old.kind & !EXACT_TIME == KIND_DIR);
        self.bytes -= old.bytes();
        old
    }

    /// Tells this listing from every other one, and from itself before a change.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The `i`th entry in name order.
    pub fn at(&self, i: usize) -> Option<Entry> {
        self.slots.get(i).map(Slot::entry)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(Slot::name)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.slots.binary_search_by(|s| s.name().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.find(name).ok().map(|i| self.slots[i].entry())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    fn upsert(&mut self, entry: Entry) {
        match self.find(&entry.name) {
            Ok(i) => self.place(i, Slot::new(entry), false),
            Err(i) => self.place(i, Slot::new(entry), true),
        }
    }

    fn update(&mut self, name: &str, f: impl FnOnce(&mut Entry)) {
        if let Ok(i) = self.find(name) {
            let mut e = self.slots[i].entry();
            f(&mut e);
            if e.name == name {
                self.place(i, Slot::new(e), false);
            } else {
                self.take(i);
                self.upsert(e);
            }
        }
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let i = self.find(name).ok()?;
        Some(self.take(i).entry())
    }
}

/// Entries of all cached listings together, at most (the most recent listing is kept even
/// when it alone is larger).
pub const MAX_CACHED_ENTRIES: usize = 1_000_000;

/// Memory of all cached listings together, at most (the most recent listing is kept even when
/// it alone is larger; one listing is itself bounded, see [`crate::ftp::listing`]). A million
/// entries of names of 20 bytes take this much.
pub const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// The listings and how many entries (and bytes) they hold together.
struct Listings {
    lru: LruCache<String, Arc<DirListing>>,
    entries: usize,
    max_entries: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Listings {
    fn get(&mut self, dir: &str) -> Option<&Arc<DirListing>> {
        self.lru.get(dir)
    }

    fn pop(&mut self, dir: &str) -> Option<Arc<DirListing>> {
        let l = self.lru.pop(dir)?;
        self.entries -= l.len();
        self.bytes -= l.bytes();
        Some(l)
    }

    fn put(&mut self, dir: String, l: Arc<DirListing>) {
        self.entries += l.len();
        self.bytes += l.bytes();
        if let Some((_, old)) = self.lru.push(dir, l) {
            self.entries -= old.len();
            self.bytes -= old.bytes();
        }
        self.trim();
    }

    /// Changes the listing of `dir` in place (if cached), keeping the count.
    fn change<T>(&mut self, dir: &str, f: impl FnOnce(&mut DirListing) -> T) -> Option<T> {
        let l = self.lru.get_mut(dir)?;
        let (before, bytes_before) = (l.len(), l.bytes());
        let l = Arc::make_mut(l);
        let out = f(l);
        l.version = VERSIONS.fetch_add(1, Ordering::Relaxed);
        let (after, bytes_after) = (l.len(), l.bytes());
        self.entries = self.entries + after - before;
        self.bytes = self.bytes + bytes_after - bytes_before;
        self.trim();
        Some(out)
    }

    /// Drops least recently used listings while over the entry or byte bound, never the last
    /// one.
    fn trim(&mut self) {
        while (self.entries > self.max_entries || self.bytes > self.max_bytes) && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((_, old)) => {
                    self.entries -= old.len();
                    self.bytes -= old.bytes();
                }
                None => break,
            }
        }
    }
}

/// Tells the listener of a change when dropped: after the change and after the lock is let
/// go (declared before the lock's guard, it is dropped after it).
struct Told<'a>(&'a DirCache, &'a str, bool);

impl Drop for Told<'_> {
    fn drop(&mut self) {
        self.0.tell(self.1, self.2);
    }
}

/// What [`DirCache::set_listener`] takes: told (directory, whole tree below it too).
type Listener = Box<dyn Fn(&str, bool) + Send + Sync>;

/// Listings by directory path (relative to the mount root), bounded and with a TTL.
pub struct DirCache {
    ttl: Duration,
    map: Mutex<Listings>,
    /// Listings being fetched: id → (directory, spoiled by a change since the fetch began).
    fetches: Mutex<HashMap<u64, (String, bool)>>,
    next_fetch: std::sync::atomic::AtomicU64,
    /// Told of every change of ours to a listing (the directory, and whether everything below
    /// it changed too): a copy kept elsewhere (on disk) is stale.
    listener: std::sync::OnceLock<Listener>,
}

/// A listing fetch in flight; unregistered when dropped.
pub struct Fetch<'a> {
    cache: &'a DirCache,
    id: u64,
}

impl Fetch<'_> {
    /// Stores the fetched entries unless a change of the directory happened meanwhile.
    /// `Ok`: stored; `Err`: spoiled, the listing is returned but not kept.
    pub fn finish(self, entries: Vec<Entry>) -> Result<Arc<DirListing>, Arc<DirListing>> {
        let listing = Arc::new(DirListing::new(entries));
        let mut map = self.cache.map.lock();
        match self.cache.fetches.lock().remove(&self.id) {
            Some((dir, false)) => {
                map.put(dir, listing.clone());
                Ok(listing)
            }
            _ => Err(listing),
        }
    }
}

impl Fetch<'_> {
    /// Stores a listing fetched `age` ago (kept on disk by an earlier mount) unless a change of
    /// ours came since this fetch began, or `dir` is cached: it is trusted for what is left of
    /// the TTL. `None`: not stored.
    pub fn finish_aged(self, entries: Vec<Entry>, age: Duration) -> Option<Arc<DirListing>> {
        let fetched = Instant::now().checked_sub(age)?;
        if age >= self.cache.ttl {
            return None;
        }
        let mut map = self.cache.map.lock();
        let (dir, spoiled) = self.cache.fetches.lock().remove(&self.id)?;
        if spoiled || map.lru.contains(&dir) {
            return None;
        }
        let mut l = DirListing::new(entries);
        l.fetched = fetched;
        let l = Arc::new(l);
        map.put(dir, l.clone());
        Some(l)
    }

    /// True when a change of ours to the directory came since the fetch began (what it got
    /// may be older than our own change).
    pub fn spoiled(&self) -> bool {
        self.cache.fetches.lock().get(&self.id).is_none_or(|(_, spoiled)| *spoiled)
    }
}

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        self.cache.fetches.lock().remove(&self.id);
    }
}

impl DirCache {
    /// A cache of at most `capacity` listings, `max_entries` entries and [`MAX_CACHED_BYTES`]
    /// in all.
    pub fn new(ttl: Duration, capacity: usize, max_entries: usize) -> DirCache {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        let listings =
            Listings { lru: LruCache::new(cap), entries: 0, max_entries, bytes: 0, max_bytes: MAX_CACHED_BYTES };
        DirCache {
            ttl,
            map: Mutex::new(listings),
            fetches: Mutex::new(HashMap::new()),
            next_fetch: std::sync::atomic::AtomicU64::new(0),
            listener: std::sync::OnceLock::new(),
        }
    }

    /// Sets the [`DirCache::listener`] (once).
    pub fn set_listener(&self, f: impl Fn(&str, bool) + Send + Sync + 'static) {
        let _ = self.listener.set(Box::new(f));
    }

    fn tell(&self, dir: &str, tree: bool) {
        if let Some(f) = self.listener.get() {
            f(dir, tree);
        }
    }

    /// The version of the listing of `dir` held now, if any (not counted as a use).
    pub fn version_of(&self, dir: &str) -> Option<u64> {
        self.map.lock().lru.peek(dir).map(|l| l.version)
    }

    /// Registers a fetch of `dir`'s listing about to be sent.
    pub fn begin_fetch(&self, dir: &str) -> Fetch<'_> {
        let id = self.next_fetch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fetches.lock().insert(id, (dir.to_string(), false));
        Fetch { cache: self, id }
    }

    /// A change of the directories `affected` accepts: fetches of them in flight are spoiled.
    fn spoil(&self, affected: impl Fn(&str) -> bool) {
        for (dir, spoiled) in self.fetches.lock().values_mut() {
            if affected(dir) {
                *spoiled = true;
            }
        }
    }

    /// The cached listing of `dir` if it is younger than the TTL.
    pub fn get_fresh(&self, dir: &str) -> Option<Arc<DirListing>> {
        let mut map = self.map.lock();
        match map.get(dir) {
            Some(l) if l.fetched.elapsed() < self.ttl => Some(l.clone()),
            Some(_) => {
                map.pop(dir);
                None
            }
            None => None,
        }
    }

    /// How many subdirectories `dir` has, when its listing is cached and fresh.
    pub fn subdirs(&self, dir: &str) -> Option<usize> {
        let mut map = self.map.lock();
        map.get(dir).filter(|l| l.fetched.elapsed() < self.ttl).map(|l| l.subdirs())
    }

    /// Stores a listing we know to be current (a directory just created is empty).
    pub fn put(&self, dir: &str, entries: Vec<Entry>) -> Arc<DirListing> {
        let l = Arc::new(DirListing::new(entries));
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.put(dir.to_string(), l.clone());
        l
    }

    /// The listing of a directory this mount has just made: empty, and known to be ours.
    pub fn put_made(&self, dir: &str) {
        let mut l = DirListing::new(Vec::new());
        l.made_here = true;
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.put(dir.to_string(), Arc::new(l));
    }

    /// Adds or replaces one entry in the cached listing of `dir` (if cached).
    pub fn upsert(&self, dir: &str, entry: Entry) {
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.change(dir, |l| l.upsert(entry));
    }

    /// Changes one entry in place (if cached).
    pub fn update(&self, dir: &str, name: &str, f: impl FnOnce(&mut Entry)) {
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.change(dir, |l| l.update(name, f));
    }

    /// Removes one entry from the cached listing of `dir` and returns it (if cached).
    pub fn remove(&self, dir: &str, name: &str) -> Option<Entry> {
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.change(dir, |l| l.remove(name)).flatten()
    }

    /// Forgets the listing of `dir`.
    pub fn invalidate(&self, dir: &str) {
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, false);
        let _told = Told(self, dir, false);
        let mut map = self.map.lock();
        self.spoil(|d| d == dir);
        map.pop(dir);
    }

    /// Forgets the listings of `dir` and of everything under it.
    pub fn invalidate_tree(&self, dir: &str) {
        // Before the change too: a copy read meanwhile is not taken for current.
        self.tell(dir, true);
        let _told = Told(self, dir, true);
        let mut map = self.map.lock();
        self.spoil(|d| is_at_or_under(d, dir));
        let doomed: Vec<String> = map.lru.iter().map(|(k, _)| k.clone()).filter(|k| is_at_or_under(k, dir)).collect();
        for k in doomed {
            map.pop(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::EntryKind;

    fn e(name: &str) -> Entry {
        let mut e = Entry::new(name, EntryKind::File);
        e.size = Some(name.len() as u64);
        e
    }

    #[test]
    fn ttl_and_patching() {
        // Patching, with a TTL no pause of a loaded machine outlasts.
        let c = DirCache::new(Duration::from_secs(10), 10, 1000);
        c.put("d", vec![e("b"), e("a")]);
        let l = c.get_fresh("d").unwrap();
        assert_eq!(l.names().collect::<Vec<_>>(), vec!["a", "b"]);
        c.upsert("d", e("ccc"));
        c.remove("d", "a");
        let l = c.get_fresh("d").unwrap();
        assert!(l.get("a").is_none());
        assert_eq!(l.get("ccc").unwrap().size, Some(3));
        assert_eq!(l.get("b").unwrap().size, Some(1));
        c.update("d", "b", |x| x.size = Some(99));
        assert_eq!(c.get_fresh("d").unwrap().get("b").unwrap().size, Some(99));
        // Expiry, on a cache of its own with a short TTL: a listing (patched or not) is fresh
        // until the TTL has passed since it was stored, then gone.
        let ttl = Duration::from_millis(50);
        let c = DirCache::new(ttl, 10, 1000);
        let stored = Instant::now();
        c.put("d", vec![e("a")]);
        c.upsert("d", e("b"));
        let deadline = stored + Duration::from_secs(10);
        while c.get_fresh("d").is_some() {
            assert!(Instant::now() < deadline, "still fresh after {:?}", stored.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stored.elapsed() >= ttl, "expired after {:?}, before its TTL", stored.elapsed());
        assert!(c.get_fresh("d").is_none(), "an expired listing stays gone");
    }

    #[test]
    fn entries_come_back_as_they_went_in_sorted_by_name() {
        let link = Entry { size: Some(5), mtime: Some(-7), mtime_nanos: 9, mode: Some(0o700), ..e("l") };
        let entries = vec![
            Entry { kind: EntryKind::Symlink(Some("target/x".into())), ..link.clone() },
            Entry::new("unknown", EntryKind::Symlink(None)),
            Entry::new("d", EntryKind::Dir),
            e("z"),
            Entry { size: Some(1), ..e("z") },
        ];
        let mut l = DirListing::new(entries.clone());
        assert_eq!(l.names().collect::<Vec<_>>(), ["d", "l", "unknown", "z"]);
        assert_eq!(l.get("l"), Some(entries[0].clone()));
        assert_eq!(l.get("unknown"), Some(entries[1].clone()));
        assert_eq!(l.get("d"), Some(entries[2].clone()), "nothing known stays unknown");
        assert_eq!(l.get("z"), Some(entries[3].clone()), "the first of two equal names is kept");
        assert_eq!(l.at(0), l.get("d"));
        assert_eq!(l.at(4), None);
        l.upsert(e("b"));
        l.upsert(Entry { size: Some(42), ..e("z") });
        l.update("l", |x| x.mode = Some(0o755));
        assert_eq!(l.names().collect::<Vec<_>>(), ["b", "d", "l", "unknown", "z"]);
        assert_eq!(l.get("z").and_then(|x| x.size), Some(42));
        assert_eq!(
            l.get("l").map(|x| (x.mode, x.kind)),
            Some((Some(0o755), EntryKind::Symlink(Some("target/x".into()))))
        );
        assert_eq!(l.subdirs(), 1);
        l.upsert(Entry::new("d2", EntryKind::Dir));
        l.upsert(Entry::new("d2", EntryKind::Dir));
        assert_eq!(l.subdirs(), 2);
        l.update("d2", |x| x.kind = EntryKind::File);
        assert_eq!(l.subdirs(), 1);
        assert_eq!(l.remove("d").map(|x| x.kind), Some(EntryKind::Dir));
        assert_eq!(l.subdirs(), 0);
        l.remove("d2");
        assert!(l.remove("d").is_none() && !l.contains("d") && l.contains("b"));
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn a_patch_makes_a_new_version() {
        let c = DirCache::new(Duration::from_secs(10), 10, 1000);
        let first = c.put("d", vec![e("a")]);
        let held = c.get_fresh("d").unwrap();
        c.upsert("d", e("b"));
        let now = c.get_fresh("d").unwrap();
        assert_ne!(now.version(), first.version());
        assert_eq!(held.len(), 1, "a listing handed out is a snapshot");
        assert_ne!(c.put("e", vec![]).version(), c.put("f", vec![]).version());
    }

    #[test]
    fn invalidate_tree() {
        let c = DirCache::new(Duration::from_secs(10), 10, 1000);
        for d in ["a", "a/b", "ab", "a/b/c"] {
            c.put(d, vec![]);
        }
        c.invalidate_tree("a");
        assert!(c.get_fresh("a").is_none() && c.get_fresh("a/b").is_none() && c.get_fresh("a/b/c").is_none());
        assert!(c.get_fresh("ab").is_some());
    }

    #[test]
    fn a_fetch_spoiled_by_a_change_is_not_stored() {
        let c = DirCache::new(Duration::from_secs(10), 10, 1000);
        let f = c.begin_fetch("d");
        assert!(!f.spoiled());
        c.upsert("d", e("new"));
        assert!(f.spoiled());
        assert!(f.finish(vec![e("old")]).is_err());
        assert!(c.get_fresh("d").is_none());
        let f = c.begin_fetch("d");
        let other = c.begin_fetch("x");
        c.invalidate_tree("x");
        assert!(other.finish(vec![]).is_err());
        assert!(f.finish(vec![e("a")]).is_ok());
        assert!(c.get_fresh("d").unwrap().get("a").is_some());
        let f = c.begin_fetch("d/sub");
        c.invalidate_tree("d");
        assert!(f.finish(vec![]).is_err());
        drop(c.begin_fetch("gone"));
        assert!(c.fetches.lock().is_empty());
    }

    /// Long names (255 bytes, the longest a name can be) in listings of ordinary size: far
    /// fewer entries than the entry bound, but more memory than the byte bound.
    #[test]
    fn bounded_in_bytes_whatever_the_names() {
        let c = DirCache::new(Duration::from_secs(600), 4096, MAX_CACHED_ENTRIES);
        let name = |d: usize, i: usize| format!("{d:04}-{i:06}-{}", "x".repeat(243));
        for d in 0..300 {
            c.put(&format!("d{d}"), (0..1000).map(|i| e(&name(d, i))).collect());
        }
        assert!(c.get_fresh("d0").is_none(), "300 000 entries of 255-byte names (90 MB) all kept");
        assert!(c.get_fresh("d299").is_some(), "the most recent listing goes last");
        let map = c.map.lock();
        assert!(map.bytes <= MAX_CACHED_BYTES && map.bytes > MAX_CACHED_BYTES / 2, "{}", map.bytes);
        assert_eq!(map.bytes, map.lru.iter().map(|(_, l)| l.bytes()).sum::<usize>());
        drop(map);
        // Patches count too: the byte count follows them exactly.
        c.upsert("d299", e(&"y".repeat(255)));
        c.remove("d299", &name(299, 0));
        c.update("d299", &name(299, 1), |x| x.name = "short".into());
        let map = c.map.lock();
        assert_eq!(map.bytes, map.lru.iter().map(|(_, l)| l.bytes()).sum::<usize>());
        assert!(map.bytes <= MAX_CACHED_BYTES);
    }

    #[test]
    fn bounded_in_entries_least_recently_used_first() {
        let c = DirCache::new(Duration::from_secs(10), 100, 10);
        let four = |p: &str| (0..4).map(|i| e(&format!("{p}{i}"))).collect::<Vec<_>>();
        c.put("a", four("a"));
        c.put("b", four("b"));
        assert!(c.get_fresh("a").is_some(), "a is now the most recently used");
        c.put("c", four("c"));
        // 12 entries > 10: b, the least recently used, goes.
        assert!(c.get_fresh("b").is_none());
        assert!(c.get_fresh("a").is_some() && c.get_fresh("c").is_some());
        assert_eq!(c.map.lock().entries, 8);
        // Patches count too.
        for i in 0..3 {
            c.upsert("c", e(&format!("new{i}")));
        }
        assert_eq!(c.map.lock().entries, 7, "a went when c grew past the bound");
        assert!(c.get_fresh("a").is_none());
        // One listing larger than the bound alone is still kept.
        c.put("big", (0..50).map(|i| e(&format!("x{i}"))).collect());
        assert_eq!(c.get_fresh("big").map(|l| l.len()), Some(50));
        assert_eq!(c.map.lock().entries, 50);
        c.invalidate("big");
        assert_eq!(c.map.lock().entries, 0);
    }
}
