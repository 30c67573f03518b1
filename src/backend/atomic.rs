//! Atomic uploads (`-o atomic_upload`): a backend in front of another whose whole-file uploads
//! go to a hidden temporary name in the same directory, `.ftpfs-part-<id>-<name>`, and are
//! renamed over the target only once the server confirmed every byte and holds the expected
//! size. Other clients of the server never see a half-written file, and an upload that fails
//! leaves the old version intact.
//!
//! What it owns: the temporary names (hidden from listings and lookups through it; unique per
//! process by a random nonce), the permission bits of a replaced file (set on the temporary
//! file before the rename, where a listing showed them and the server can set them), and the
//! clean-up of temporary files an interrupted upload left behind: one that two listings at
//! least [`STALE`] apart (by our clock: the server's may be off) show unchanged is deleted.
//! Appends (APPE) cannot be atomic and pass through, as does everything else.
//!
//! Rename over an existing file: POSIX servers (vsftpd, pure-ftpd, proftpd, pyftpdlib) replace
//! the target in one step. Where the server refuses, the target is first renamed aside (to a
//! temporary name of ours), the upload renamed in, and the old file deleted; if the upload
//! cannot be renamed in, the old file is renamed back. The name is missing for that moment,
//! never half-written, and the server never ends with neither version.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use super::{Backend, BackendResult, Entry, FsError, ReadStream, WriteMode, WriteStream};

/// The start of every temporary name.
pub const PART_PREFIX: &str = ".ftpfs-part-";
/// The start of the name a replaced file is moved aside to where the server will not rename
/// over it: shown in listings and never cleaned up, so that if neither version can be put back
/// in place, the old one is still there for the user.
pub const KEPT_PREFIX: &str = ".ftpfs-kept-";
/// A temporary file unchanged for this long belongs to an upload that ended without its
/// rename (a crash, a broken connection): the next listing that shows it deletes it.
pub const STALE: Duration = Duration::from_secs(3600);
/// The longest tail of the target's name kept in a temporary name, in bytes (names stay
/// under the usual 255-byte limit).
const NAME_TAIL: usize = 180;
/// Paths whose permission bits are remembered from listings, and temporary files watched for
/// staleness.
const MODES_KEPT: usize = 4096;

/// A temporary file as a listing showed it: when first seen (our clock), its size and time.
type Sighting = (Instant, Option<u64>, Option<i64>);

/// Uploads through temporary names, in front of `inner`.
pub struct AtomicUploads {
    inner: Arc<dyn Backend>,
    /// Permission bits of files as listings showed them.
    modes: Arc<Mutex<LruCache<String, u32>>>,
    /// Makes each temporary name of this process unique.
    next: AtomicU64,
    /// Random, per process: temporary names of two clients never meet.
    nonce: u64,
    /// Temporary files seen in listings: when first seen (our clock) with which size and time.
    seen: Mutex<LruCache<String, Sighting>>,
    /// How long a temporary file must stay unchanged to be taken for a leftover.
    stale: Duration,
    /// A read-only mount deletes nothing, not even stale temporary files.
    read_only: bool,
}

impl AtomicUploads {
    pub fn new(inner: Arc<dyn Backend>, read_only: bool) -> AtomicUploads {
        AtomicUploads::with_stale(inner, read_only, STALE)
    }

    /// As [`AtomicUploads::new`], taking a temporary file unchanged for `stale` for a leftover.
    pub fn with_stale(inner: Arc<dyn Backend>, read_only: bool, stale: Duration) -> AtomicUploads {
        use std::hash::{BuildHasher, Hasher};
        let n = NonZeroUsize::new(MODES_KEPT).unwrap_or(NonZeroUsize::MIN);
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        AtomicUploads {
            inner,
            modes: Arc::new(Mutex::new(LruCache::new(n))),
            next: AtomicU64::new(0),
            nonce,
            seen: Mutex::new(LruCache::new(n)),
            stale,
            read_only,
        }
    }

    /// A new temporary name beside `path`: `<prefix><nonce>-<n>-<name>`.
    fn part_name(&self, path: &str, prefix: &str) -> String {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tail = crate::printable::tail_bytes(name, NAME_TAIL);
        let part = format!("{prefix}{:016x}-{id:x}-{tail}", self.nonce);
        if dir.is_empty() { part } else { format!("{dir}/{part}") }
    }

    /// Whether `name` is a temporary name of this process (never a leftover while it runs).
    fn is_ours(&self, name: &str) -> bool {
        name.starts_with(&format!("{PART_PREFIX}{:016x}-", self.nonce))
    }

    /// A temporary file a listing shows: deleted when an earlier listing at least `stale` ago
    /// showed it the same (size and time), else remembered.
    /// `entries` of `dir` without the temporary names of uploads (stale ones are cleaned up).
    fn without_parts(&self, dir: &str, mut entries: Vec<Entry>) -> Vec<Entry> {
        entries.retain(|e| {
            if !e.name.starts_with(PART_PREFIX) {
                self.remember_mode(dir, e);
                return true;
            }
            self.clean_if_stale(dir, e);
            false
        });
        entries
    }

    fn clean_if_stale(&self, dir: &str, e: &Entry) {
        if self.read_only || e.kind != super::EntryKind::File || self.is_ours(&e.name) {
            return;
        }
        let path = if dir.is_empty() { e.name.clone() } else { format!("{dir}/{}", e.name) };
        let stale = {
            let mut seen = self.seen.lock();
            match seen.get(&path) {
                Some((since, size, mtime)) if (*size, *mtime) == (e.size, e.mtime) => since.elapsed() >= self.stale,
                _ => {
                    seen.put(path.clone(), (Instant::now(), e.size, e.mtime));
                    false
                }
            }
        };
        if stale {
            self.seen.lock().pop(&path);
            match self.inner.delete(&path) {
                Ok(()) => log::info!("{path}: an interrupted atomic upload's temporary file; deleted"),
                Err(err) => log::debug!("{path}: a stale temporary file, not deleted: {err}"),
            }
        }
    }

    fn remember_mode(&self, dir: &str, e: &Entry) {
        if let Some(mode) = e.mode {
            let path = if dir.is_empty() { e.name.clone() } else { format!("{dir}/{}", e.name) };
            self.modes.lock().put(path, mode);
        }
    }
}

/// Whether `path` names one of our temporary files.
pub fn is_part(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| name.starts_with(PART_PREFIX))
}

impl Backend for AtomicUploads {
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>> {
        let entries = self.inner.list(dir)?;
        Ok(self.without_parts(dir, entries))
    }

    fn lists_at_once(&self) -> usize {
        self.inner.lists_at_once()
    }

    fn list_several(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        let listed = self.inner.list_several(dirs);
        dirs.iter().zip(listed).map(|(dir, l)| l.map(|entries| self.without_parts(dir, entries))).collect()
    }

    fn stat_one(&self, path: &str) -> BackendResult<Option<Entry>> {
        if is_part(path) {
            return Err(FsError::NotFound);
        }
        let found = self.inner.stat_one(path)?;
        if let Some(e) = &found {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            self.remember_mode(dir, e);
        }
        Ok(found)
    }

    fn size(&self, path: &str) -> BackendResult<Option<u64>> {
        self.inner.size(path)
    }

    fn modified(&self, path: &str) -> BackendResult<Option<i64>> {
        self.inner.modified(path)
    }

    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        self.inner.read(path, offset, wait)
    }

    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        if mode.appends() {
            return self.inner.write(path, mode, wait);
        }
        let part = self.part_name(path, PART_PREFIX);
        let aside = self.part_name(path, KEPT_PREFIX);
        let Some(up) = self.inner.write(&part, WriteMode::Replace, wait)? else { return Ok(None) };
        let mode = self.modes.lock().get(path).copied();
        Ok(Some(Box::new(AtomicWrite {
            up: Some(up),
            inner: self.inner.clone(),
            modes: self.modes.clone(),
            part,
            aside,
            target: path.to_string(),
            written: 0,
            mode,
        })))
    }

    fn mkdir(&self, path: &str) -> BackendResult<()> {
        self.inner.mkdir(path)
    }

    fn rmdir(&self, path: &str) -> BackendResult<()> {
        self.inner.rmdir(path)
    }

    fn delete(&self, path: &str) -> BackendResult<()> {
        self.modes.lock().pop(path);
        self.inner.delete(path)
    }

    fn rename(&self, from: &str, to: &str) -> BackendResult<()> {
        self.inner.rename(from, to)?;
        // The mode of the file now at `to` is that of `from` (if known).
        let mut modes = self.modes.lock();
        match modes.pop(from) {
            Some(m) => modes.put(to.to_string(), m),
            None => modes.pop(to),
        };
        Ok(())
    }

    fn can_set_mtime(&self) -> bool {
        self.inner.can_set_mtime()
    }

    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()> {
        self.inner.set_mtime(path, secs)
    }

    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()> {
        let res = self.inner.chmod(path, mode);
        if res.is_ok() {
            self.modes.lock().put(path.to_string(), mode);
        }
        res
    }

    fn can_append(&self) -> bool {
        self.inner.can_append()
    }

    fn can_chmod(&self) -> bool {
        self.inner.can_chmod()
    }

    fn can_name(&self, name: &str) -> bool {
        self.inner.can_name(name)
    }

    fn symlink(&self, target: super::LinkTarget<'_>, link: &str) -> BackendResult<()> {
        self.inner.symlink(target, link)
    }

    fn checksums(&self) -> Vec<super::Algorithm> {
        self.inner.checksums()
    }

    fn checksum(&self, path: &str, a: super::Algorithm) -> BackendResult<String> {
        self.inner.checksum(path, a)
    }

    fn wait_limit(&self) -> Duration {
        self.inner.wait_limit()
    }

    fn spare_connections(&self) -> usize {
        self.inner.spare_connections()
    }

    fn wait_for_spare(&self, wait: Duration) -> usize {
        self.inner.wait_for_spare(wait)
    }

    fn opened_dir(&self, dir: &str) {
        self.inner.opened_dir(dir)
    }

    fn forget(&self, path: &str) {
        self.inner.forget(path)
    }

    fn is_offline(&self) -> bool {
        self.inner.is_offline()
    }

    fn close_idle(&self) {
        self.inner.close_idle()
    }

    fn shut_down(&self) {
        self.inner.shut_down()
    }
}

/// An upload to a temporary name that becomes the target at its end. Dropped unfinished (the
/// upload failed or was abandoned), its temporary file is deleted.
struct AtomicWrite {
    /// `None` once finished.
    up: Option<Box<dyn WriteStream>>,
    inner: Arc<dyn Backend>,
    modes: Arc<Mutex<LruCache<String, u32>>>,
    part: String,
    /// Where the old file goes aside when the server will not rename over it.
    aside: String,
    target: String,
    written: u64,
    /// The replaced file's permission bits, where a listing showed them.
    mode: Option<u32>,
}

impl Write for AtomicWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let up = self.up.as_mut().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let n = up.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.up.as_mut().map_or(Ok(()), |up| up.flush())
    }
}

impl Drop for AtomicWrite {
    fn drop(&mut self) {
        if let Some(up) = self.up.take() {
            // The transfer ends first (dropping it abandons it), then its file goes.
            drop(up);
            Self::discard(self.inner.as_ref(), &self.part);
        }
    }
}

impl AtomicWrite {
    /// The temporary file goes (best effort: a stale one is cleaned up later).
    fn discard(inner: &dyn Backend, part: &str) {
        if let Err(e) = inner.delete(part) {
            log::debug!("{part}: temporary file of a failed upload not deleted ({e}); a later listing cleans it up");
        }
    }
}

impl WriteStream for AtomicWrite {
    fn finish(mut self: Box<Self>) -> BackendResult<Option<u64>> {
        let Some(up) = self.up.take() else { return Err(FsError::Invalid) };
        let inner = self.inner.clone();
        let (part, target, written) = (self.part.clone(), self.target.clone(), self.written);
        let reported = match up.finish() {
            Ok(r) => r,
            Err(e) => {
                Self::discard(inner.as_ref(), &part);
                return Err(e);
            }
        };
        // The size is checked before the rename: a short file never replaces the old one.
        let size = match reported {
            Some(n) => Some(n),
            None => inner.size(&part).inspect_err(|_| Self::discard(inner.as_ref(), &part))?,
        };
        if let Some(n) = size.filter(|&n| n != written) {
            log::error!("{target}: the server holds {n} bytes of the upload, not {written}; the old file stays");
            Self::discard(inner.as_ref(), &part);
            return Err(FsError::Broken);
        }
        // The replaced file's mode, set before the upload takes its name (a new file gets the
        // server's default mode, for a moment visible otherwise).
        if let Some(m) = self.mode.filter(|_| inner.can_chmod())
            && let Err(e) = inner.chmod(&part, m)
        {
            log::debug!("{target}: its mode {m:o} not kept by the upload: {e}");
        }
        match inner.rename(&part, &target) {
            Ok(()) => {}
            Err(e) if !e.is_definite() => {
                // After the backend's own retry: the upload may or may not have its name. The
                // old file stays or the new one is in place; a temporary file goes.
                Self::discard(inner.as_ref(), &part);
                return Err(e);
            }
            Err(e) => self.replace_aside(e)?,
        }
        if let Some(m) = self.mode {
            self.modes.lock().put(target, m);
        }
        Ok(Some(written))
    }
}

impl AtomicWrite {
    /// The server refused to rename the upload over the file (`refused`): the old file goes
    /// aside, the upload takes its name, and the old file is deleted; where the upload cannot
    /// take the name, the old file is put back. The server never ends with neither version.
    fn replace_aside(&self, refused: FsError) -> BackendResult<()> {
        let (inner, part, aside, target) = (self.inner.as_ref(), &self.part, &self.aside, &self.target);
        log::debug!("{target}: rename over it refused ({refused}); moving it aside first");
        if let Err(e) = inner.rename(target, aside) {
            log::error!(
                "{target}: the upload could not replace it ({refused}; moving it aside: {e}); the old file stays"
            );
            Self::discard(inner, part);
            return Err(refused);
        }
        match inner.rename(part, target) {
            Ok(()) => {
                if let Err(e) = inner.delete(aside) {
                    log::warn!("{target}: the replaced version stays as {aside} (not deleted: {e})");
                }
                Ok(())
            }
            Err(e) => match inner.rename(aside, target) {
                Ok(()) => {
                    log::error!("{target}: the upload could not replace it ({e}); the old file stays");
                    Self::discard(inner, part);
                    Err(e)
                }
                Err(e2) => {
                    log::error!(
                        "{target}: neither version could be put back in place ({e}, {e2}): the old one is {aside}, the new one {part}"
                    );
                    Err(e)
                }
            },
        }
    }
}
