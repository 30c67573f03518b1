//! The disk cache (`-o disk_cache`): content of files read through the mount, kept on local
//! disk across unmounts, so that a second read of a file that did not change on the server is
//! served at local speed instead of crossing the network again.
//!
//! A room of its own, below the model: it stores and serves byte ranges of a file *version*,
//! named by the file's path and told apart by its size and modification time
//! ([`Version`]); the model decides which version a read is for. It knows nothing of FUSE or
//! FTP, and is tested alone.
//!
//! - **Ranges.** A file is cached as the ranges that were read (a read of the tail of a 10 GiB
//!   file keeps only the tail), in a sparse data file.
//! - **Versions.** An entry serves reads only for the version it was filled from: asked for
//!   another size or time, it is dropped.
//! - **Bounded.** At most `capacity` bytes of content, least recently used evicted first.
//! - **Crash-safe.** Each entry is `ID.data` (the content, sparse) and `ID.meta` (path,
//!   version, ranges held). The meta is replaced whole (written to `ID.metatmp`, synced,
//!   renamed) only after the data it names was synced, so after a crash a meta never names
//!   bytes that did not reach the data file; ranges stored after the last save are lost, not
//!   trusted. At start, a meta that cannot be read, whose data file is missing or shorter than
//!   its ranges, and every file that is no entry's, are removed.
//! - **Listings** are kept too ([`listings`]), trusted for `cache_timeout` from their fetch.
//! - **Private.** The directory is the caller's (private, as every directory of ftpfs); files
//!   are made 0600 and opened without following symlinks, and only the mounting user's regular
//!   files are trusted. One mount uses a directory at a time (a lock file).

mod listings;
mod ranges;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lru::LruCache;
use parking_lot::Mutex;

pub use ranges::Ranges;

use crate::checksum::hex;
use crate::private_files::{create_new, create_or_truncate, open_lock, open_trusted};

/// Which version of a file content belongs to: what the server said of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    /// Modification time, seconds since the epoch, and nanoseconds.
    pub mtime: i64,
    pub nanos: u32,
}

/// How often [`DiskCache::keep_saving`] saves what was stored since (a crash loses at most
/// this much of what was read, never trusts anything it should not).
pub const SAVE_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// How long [`DiskCache::open`] waits for another process to let go of the directory.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many read buffers [`DiskCache::read_with`] keeps for the next reads: reads are the hot
/// path of a second read, and a fresh buffer each costs page faults. A buffer is at most one
/// kernel read request (1 MiB).
const SPARE_BUFFERS: usize = 4;

/// A meta file is never longer than this (what is read of one, at most).
const MAX_META: u64 = 1 << 20;

/// Whether `a` is a newer version than `b`, as far as their times tell (a later time; the same
/// time and another size counts as newer: the listing that says so is the later one).
fn newer(a: Version, b: Version) -> bool {
    (a.mtime, a.nanos) > (b.mtime, b.nanos) || ((a.mtime, a.nanos) == (b.mtime, b.nanos) && a.size != b.size)
}

/// The first line of every meta file.
const MAGIC: &str = "ftpfs-disk-cache 1";

struct Item {
    /// The base of its file names: [`id_of`] its path, and this instance's number (an entry
    /// dropped and made again for the same path is another instance, with files of its own).
    id: String,
    version: Version,
    ranges: Ranges,
    /// Ranges as the last saved meta names them.
    saved: Ranges,
    /// Bytes stored since the last save.
    unsaved: u64,
}

#[derive(Default)]
struct Counts {
    hits: u64,
    misses: u64,
    evictions: u64,
}

struct State {
    /// By path, least recently used first out.
    items: LruCache<String, Item>,
    /// Content held, in all.
    bytes: u64,
    counts: Counts,
    /// Instances dropped whose files are still to be removed, outside the lock.
    doomed: Vec<String>,
    /// The number of the next instance.
    next: u64,
}

/// The cache of one server and root, in one directory.
pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    /// The directories whose listing is kept on disk ([`listings`]), with when each was
    /// fetched.
    listed: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Buffers reads went through, kept for the next reads ([`SPARE_BUFFERS`] at most).
    spare: Mutex<Vec<Vec<u8>>>,
    /// Held (flock) while this mount uses the directory.
    _lock: File,
}

/// A file name for `path`'s entry: hex of the first 16 bytes of its SHA-256.
fn id_of(path: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, path.as_bytes());
    hex(&digest.as_ref()[..16])
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Parses a meta file: (path, version, ranges).
fn parse_meta(text: &str) -> Option<(String, Version, Ranges)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ').map(str::to_string);
    let path = String::from_utf8(unhex(&field("path")?)?).ok()?;
    let size = field("size")?.parse().ok()?;
    let mtime = field("mtime")?;
    let (secs, nanos) = mtime.split_once(' ')?;
    let version = Version { size, mtime: secs.parse().ok()?, nanos: nanos.parse().ok()? };
    let ranges = Ranges::from_text(&field("ranges")?)?;
    (ranges.end() <= size).then_some((path, version, ranges))
}

fn meta_text(path: &str, v: Version, ranges: &Ranges) -> String {
    format!(
        "{MAGIC}\npath {}\nsize {}\nmtime {} {}\nranges {}\n",
        hex(path.as_bytes()),
        v.size,
        v.mtime,
        v.nanos,
        ranges.to_text()
    )
}

fn try_lock(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl DiskCache {
    /// Opens the cache in `dir` (a private directory of the caller's), keeping at most
    /// `capacity` bytes: loads what earlier mounts saved and removes what cannot be trusted.
    /// Fails when another mount uses the directory.
    pub fn open(dir: &Path, capacity: u64) -> Result<DiskCache, String> {
        let lock = open_lock(&dir.join("lock")).map_err(|e| format!("{}/lock: {e}", dir.display()))?;
        // A mount of the same server just unmounted may still be saving: it lets go soon.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        while !try_lock(&lock) {
            if std::time::Instant::now() >= deadline {
                return Err(format!("{} is in use by another mount", dir.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            capacity,
            state: Mutex::new(State {
                items: LruCache::unbounded(),
                bytes: 0,
                counts: Counts::default(),
                doomed: Vec::new(),
                // Numbers of earlier mounts' instances are not taken again.
                next: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            }),
            listed: Mutex::new(HashMap::new()),
            spare: Mutex::new(Vec::new()),
            _lock: lock,
        };
        cache.load().map_err(|e| format!("{}: {e}", dir.display()))?;
        cache.load_listings();
        Ok(cache)
    }

    /// The default bound for a cache in `dir`: 10 GiB, or a tenth of the space free there if
    /// that is less.
    pub fn default_capacity(dir: &Path) -> u64 {
        const TEN_GIB: u64 = 10 << 30;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return TEN_GIB };
        // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return TEN_GIB;
        }
        let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
        TEN_GIB.min(free / 10)
    }

    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    /// Reads the saved entries, oldest save first into the LRU order, and removes the rest.
    fn load(&self) -> std::io::Result<()> {
        let mut metas = Vec::new();
        let mut others = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".meta") {
                Some(id) => metas.push((id.to_string(), e.metadata().and_then(|m| m.modified()).ok())),
                None if name == "lock" || (name.starts_with('L') && name.ends_with(".list")) => {}
                None => others.push(name),
            }
        }
        metas.sort_by_key(|m| m.1);
        let mut kept: HashMap<String, ()> = HashMap::new();
        let mut st = self.state.lock();
        for (id, _) in metas {
            match self.trusted_entry(&id) {
                // Out of descriptors, say: neither kept nor removed.
                Err(()) => {}
                Ok(Some((path, version, ranges))) => {
                    st.bytes += ranges.total();
                    kept.insert(id.clone(), ());
                    let item = Item { id, version, saved: ranges.clone(), ranges, unsaved: 0 };
                    if let Some((_, old)) = st.items.push(path, item) {
                        // Two entries for one path (a crash between two saves): the later stays.
                        st.bytes -= old.ranges.total();
                        st.doomed.push(old.id);
                    }
                }
                Ok(None) => {
                    log::info!("disk cache: dropping entry {id}, which cannot be trusted");
                    let _ = std::fs::remove_file(self.file(&id, "meta"));
                    let _ = std::fs::remove_file(self.file(&id, "data"));
                }
            }
        }
        for name in others {
            let id = name.split('.').next().unwrap_or("");
            if !(name.ends_with(".data") && kept.contains_key(id)) {
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
        self.evict(&mut st, 0);
        drop(st);
        self.reap();
        Ok(())
    }

    /// Removes the files of dropped instances (outside the lock: a big file's unlink takes time).
    fn reap(&self) {
        let doomed = std::mem::take(&mut self.state.lock().doomed);
        for id in doomed {
            self.remove_files(&id);
        }
    }

    /// The entry `id` as saved, if its meta reads and its data file holds every range: both
    /// regular files of the mounting user, never followed through a symlink.
    fn trusted_entry(&self, id: &str) -> Result<Option<(String, Version, Ranges)>, ()> {
        let out_of_fds = |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        let meta = match open_trusted(&self.file(id, "meta"), false) {
            Ok(f) => f,
            Err(e) if out_of_fds(&e) => return Err(()),
            Err(_) => return Ok(None),
        };
        let mut text = String::new();
        if std::io::Read::read_to_string(&mut std::io::Read::take(meta, MAX_META), &mut text).is_err() {
            return Ok(None);
        }
        let Some((path, version, ranges)) = parse_meta(&text) else { return Ok(None) };
        let len = match open_trusted(&self.file(id, "data"), false).and_then(|d| d.metadata()) {
            Ok(m) => m.len(),
            Err(e) if out_of_fds(&e) => return Err(()),
            Err(_) => return Ok(None),
        };
        let ours = id.strip_prefix(&id_of(&path)).is_some_and(|n| n.starts_with('-'));
        Ok((ours && len >= ranges.end()).then_some((path, version, ranges)))
    }

    /// Drops least recently used entries until `room` more bytes fit (files removed by
    /// [`DiskCache::reap`]).
    fn evict(&self, st: &mut State, room: u64) {
        while st.bytes + room > self.capacity {
            let Some((_, item)) = st.items.pop_lru() else { break };
            st.bytes -= item.ranges.total();
            st.counts.evictions += 1;
            st.doomed.push(item.id);
        }
    }

    fn remove_files(&self, id: &str) {
        let _ = std::fs::remove_file(self.file(id, "meta"));
        let _ = std::fs::remove_file(self.file(id, "data"));
    }

    /// `[off, off + len)` of `path` (cut at the end of the file), if the cache holds all of it
    /// for version `v`; see [`DiskCache::read_with`].
    pub fn read(&self, path: &str, v: Version, off: u64, len: usize) -> Option<Vec<u8>> {
        let mut held = None;
        self.read_with(path, v, off, len, &mut |b| held = Some(b.to_vec()));
        held
    }

    /// Hands `out` the bytes `[off, off + len)` of `path` (cut at the end of the file) and
    /// returns true, if the cache holds all of them for version `v`. An entry of an older
    /// version is dropped (one of a newer version stays: the reader holds an older listing).
    /// Counts a hit or a miss.
    pub fn read_with(&self, path: &str, v: Version, off: u64, len: usize, out: &mut dyn FnMut(&[u8])) -> bool {
        let end = (off + len as u64).min(v.size);
        let found = {
            let mut st = self.state.lock();
            let found = match st.items.get(path) {
                Some(item) if item.version != v => {
                    if newer(v, item.version) {
                        self.drop_entry(&mut st, path);
                    }
                    None
                }
                Some(item) if item.ranges.covers(off.min(end), end) => Some(item.id.clone()),
                _ => None,
            };
            if found.is_none() {
                st.counts.misses += 1;
            }
            found
        };
        self.reap();
        let Some(id) = found else { return false };
        let want = end.saturating_sub(off);
        let mut buf = self.spare.lock().pop().unwrap_or_default();
        buf.clear();
        // Opened by the instance's own name: one dropped meanwhile is gone, never another's.
        let read = open_trusted(&self.file(&id, "data"), false).and_then(|mut f| {
            f.seek(std::io::SeekFrom::Start(off))?;
            (&mut f).take(want).read_to_end(&mut buf)?;
            match buf.len() as u64 == want {
                true => Ok(()),
                false => Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        });
        let mut st = self.state.lock();
        let held = match read {
            Ok(()) => {
                st.counts.hits += 1;
                drop(st);
                out(&buf);
                true
            }
            Err(e) => {
                log::debug!("disk cache: {path}: {e}");
                st.counts.misses += 1;
                if st.items.peek(path).is_some_and(|i| i.id == id) {
                    self.drop_entry(&mut st, path);
                }
                drop(st);
                self.reap();
                false
            }
        };
        let mut spare = self.spare.lock();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
        held
    }

    fn drop_entry(&self, st: &mut State, path: &str) {
        if let Some(item) = st.items.pop(path) {
            st.bytes -= item.ranges.total();
            st.doomed.push(item.id);
        }
    }

    /// Keeps `data`, read from the server at `off` of version `v` of `path`. An entry of an
    /// older version gives way; for an older version than the entry's, nothing is kept.
    pub fn store(&self, path: &str, v: Version, off: u64, data: &[u8]) {
        let end = off + data.len() as u64;
        if data.is_empty() || end > v.size || data.len() as u64 > self.capacity {
            return;
        }
        let target = {
            let mut st = self.state.lock();
            match st.items.peek(path) {
                Some(i) if i.version != v && !newer(v, i.version) => return,
                Some(i) if i.version != v => self.drop_entry(&mut st, path),
                Some(i) if i.ranges.covers(off, end) => return,
                _ => {}
            }
            self.evict(&mut st, data.len() as u64);
            if st.items.peek(path).is_none() {
                st.next += 1;
                let id = format!("{}-{:x}", id_of(path), st.next);
                match create_new(&self.file(&id, "data")) {
                    Ok(_) => {
                        let item = Item { id, version: v, ranges: Ranges::new(), saved: Ranges::new(), unsaved: 0 };
                        st.items.put(path.to_string(), item);
                    }
                    Err(e) => log::debug!("disk cache: cannot keep {path}: {e}"),
                }
            }
            st.items.get(path).map(|i| i.id.clone())
        };
        self.reap();
        let Some(id) = target else { return };
        if let Err(e) = open_trusted(&self.file(&id, "data"), true).and_then(|f| f.write_all_at(data, off)) {
            log::debug!("disk cache: cannot keep {path}: {e}");
            return;
        }
        let mut st = self.state.lock();
        if let Some(item) = st.items.get_mut(path).filter(|i| i.id == id) {
            let before = item.ranges.total();
            item.ranges.add(off, end);
            let added = item.ranges.total() - before;
            item.unsaved += added;
            st.bytes += added;
        }
    }

    /// Makes what is held of `path` survive a crash or an unmount: its data synced, then its
    /// meta replaced.
    pub fn save(&self, path: &str) {
        let (id, text, ranges) = {
            let st = self.state.lock();
            let Some(item) = st.items.peek(path) else { return };
            if item.ranges == item.saved {
                return;
            }
            (item.id.clone(), meta_text(path, item.version, &item.ranges), item.ranges.clone())
        };
        let res = (|| -> std::io::Result<()> {
            open_trusted(&self.file(&id, "data"), true)?.sync_data()?;
            let tmp = self.file(&id, "metatmp");
            let mut f = create_or_truncate(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, self.file(&id, "meta"))
        })();
        let mut st = self.state.lock();
        match (res, st.items.peek_mut(path)) {
            (Ok(()), Some(item)) if item.id == id => {
                item.unsaved = 0;
                item.saved = ranges;
            }
            (Err(e), _) => log::debug!("disk cache: cannot save {path}: {e}"),
            // Dropped meanwhile: the meta just written names nothing of ours.
            _ => st.doomed.push(id),
        }
        drop(st);
        self.reap();
    }

    /// Saves every [`SAVE_PERIOD`] on a thread of its own, for as long as the cache lives.
    pub fn keep_saving(cache: &std::sync::Arc<DiskCache>) {
        let weak = std::sync::Arc::downgrade(cache);
        let spawned = std::thread::Builder::new().name("disk-cache".into()).spawn(move || {
            loop {
                std::thread::sleep(SAVE_PERIOD);
                let Some(cache) = weak.upgrade() else { return };
                cache.save_all();
            }
        });
        if let Err(e) = spawned {
            log::warn!("disk cache: no thread to save it ({e}); saved at unmount only");
        }
    }

    /// [`DiskCache::save`] for every entry (at unmount).
    pub fn save_all(&self) {
        let paths: Vec<String> = self.state.lock().items.iter().map(|(p, _)| p.clone()).collect();
        for p in paths {
            self.save(&p);
        }
    }

    /// Drops what is held of `path` and below it (a change of ours, a refresh).
    pub fn forget(&self, path: &str) {
        let mut st = self.state.lock();
        let doomed: Vec<String> = st
            .items
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| crate::backend::paths::is_at_or_under(p, path))
            .collect();
        for p in doomed {
            self.drop_entry(&mut st, &p);
        }
        drop(st);
        self.reap();
    }

    /// Drops what is held of the file `path` alone (one of our changes of it).
    pub fn forget_file(&self, path: &str) {
        let mut st = self.state.lock();
        self.drop_entry(&mut st, path);
        drop(st);
        self.reap();
    }

    /// Empties the cache, listings too.
    pub fn clear(&self) {
        self.forget("");
        self.forget_listing("", true);
    }

    /// One line for `ftpfs stats`.
    pub fn describe(&self) -> String {
        let st = self.state.lock();
        format!(
            "{:.1} MiB in {} files of at most {:.1} MiB; {} hits, {} misses, {} evicted",
            st.bytes as f64 / 1048576.0,
            st.items.len(),
            self.capacity as f64 / 1048576.0,
            st.counts.hits,
            st.counts.misses,
            st.counts.evictions
        )
    }

    /// The version of `path` whose content is kept, if any.
    pub fn kept_version(&self, path: &str) -> Option<Version> {
        self.state.lock().items.peek(path).map(|i| i.version)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests;
