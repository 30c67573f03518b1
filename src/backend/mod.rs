//! The narrow interface between the filesystem model and a server: what the model may ask of
//! storage, in mount-relative paths, with typed errors ([`FsError`]).
//!
//! Two implementations: [`crate::remote::FtpBackend`] (the FTP connection pool) and
//! [`memory::MemoryBackend`] (an in-memory server with fault injection, for tests of the model
//! without sockets, root or a kernel). Retrying after a broken connection is the
//! implementation's business: an error returned here is final for this request.
//!
//! Paths are relative to the mount root, `""` being the root itself and `"a/b"` a file in `a`.

pub mod ahead;
#[cfg(test)]
mod ahead_tests;
pub mod atomic;
#[cfg(test)]
mod atomic_tests;
pub mod delayed;
pub mod memory;
pub mod paths;

use std::io::{Read, Write};
use std::time::Duration;

pub use crate::checksum::Algorithm;
pub use crate::error::FsError;

pub type BackendResult<T> = Result<T, FsError>;

/// The target of a symbolic link to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkTarget<'a> {
    /// A path in the mount (as every path here: relative to its root), from a relative target.
    InMount(&'a str),
    /// An absolute target, kept as given.
    Verbatim(&'a str),
}

/// What a directory entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link, with its target when the server told it.
    Symlink(Option<String>),
}

/// One name in a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: Option<u64>,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: Option<i64>,
    /// Sub-second part of `mtime`, in nanoseconds.
    pub mtime_nanos: u32,
    /// Permission bits (`0o7777` part of the mode), when known.
    pub mode: Option<u32>,
    /// `mtime` is the server's time to the second or better (MLSD, MDTM), not a listing's
    /// minute or day: size and time then tell versions of a file apart (the disk cache).
    pub mtime_exact: bool,
}

impl Entry {
    /// An entry with nothing known but its name and kind.
    pub fn new(name: impl Into<String>, kind: EntryKind) -> Entry {
        Entry { name: name.into(), kind, size: None, mtime: None, mtime_nanos: 0, mode: None, mtime_exact: false }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// How an upload treats the file's existing content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// The upload becomes the whole file (STOR).
    Replace,
    /// The upload is added at the file's end, creating it if missing (APPE).
    Append,
}

impl WriteMode {
    /// Whether the upload adds to the file's end.
    pub fn appends(self) -> bool {
        self == WriteMode::Append
    }
}

/// A download in progress. Reading returns the file's bytes from the requested offset to its
/// end; [`ReadStream::finish`] after end of stream confirms the server sent everything.
/// Dropping it early abandons the transfer cleanly.
pub trait ReadStream: Read + Send {
    fn finish(self: Box<Self>) -> BackendResult<()>;
}

/// An upload in progress. [`WriteStream::finish`] returns once the server confirmed it holds
/// every byte written. Dropping it without finish leaves whatever the server got so far.
pub trait WriteStream: Write + Send {
    /// Ends the upload once the server confirmed it. `Some(n)`: the server says the file now
    /// holds `n` bytes (asked in the same round trip where it can tell); `None`: not known.
    fn finish(self: Box<Self>) -> BackendResult<Option<u64>>;

    /// As [`WriteStream::finish`], also setting what `after` asks once the data is there, in
    /// the upload's last round trip where the server allows. Returns which of them were set;
    /// the others (refused, or not foldable into the upload here) are for the caller to set
    /// on their own, which also reports their errors.
    fn finish_then(self: Box<Self>, after: AfterUpload) -> BackendResult<(Option<u64>, Settled)> {
        let _ = after;
        self.finish().map(|size| (size, Settled::default()))
    }
}

/// What a file gets once an upload's data is there (see [`WriteStream::finish_then`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfterUpload {
    /// Its modification time, seconds since the epoch.
    pub mtime: Option<i64>,
    /// Its permission bits.
    pub mode: Option<u32>,
}

/// Which parts of an [`AfterUpload`] an upload's finish set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub mtime: bool,
    pub mode: bool,
}

/// What the model needs from a server.
pub trait Backend: Send + Sync {
    /// The entries of directory `dir` (without `.` and `..`).
    fn list(&self, dir: &str) -> BackendResult<Vec<Entry>>;

    /// The entry of `path` (not the root), asked for that one name where the server can tell
    /// all of it at once (MLST). `Ok(None)`: it cannot; the caller lists the directory.
    fn stat_one(&self, _path: &str) -> BackendResult<Option<Entry>> {
        Ok(None)
    }

    /// The size of file `path` as the server reports it now; `None` when the server offers no
    /// way to ask for one name.
    fn size(&self, path: &str) -> BackendResult<Option<u64>>;

    /// The modification time of file `path` to the second, asked for that one name (MDTM);
    /// `None` when the server offers no way to (listings may give only minutes).
    fn modified(&self, _path: &str) -> BackendResult<Option<i64>> {
        Ok(None)
    }

    /// Starts downloading `path` from byte `offset`. `Ok(None)`: no connection became free
    /// within `wait` (the caller may free one and ask again).
    fn read(&self, path: &str, offset: u64, wait: Duration) -> BackendResult<Option<Box<dyn ReadStream>>>;

    /// Starts uploading to `path`. `Ok(None)`: no connection became free within `wait`.
    /// [`FsError::Unsupported`] for [`WriteMode::Append`]: the server refuses appends (then
    /// [`Backend::can_append`] says false from now on).
    fn write(&self, path: &str, mode: WriteMode, wait: Duration) -> BackendResult<Option<Box<dyn WriteStream>>>;

    fn mkdir(&self, path: &str) -> BackendResult<()>;
    fn rmdir(&self, path: &str) -> BackendResult<()>;
    fn delete(&self, path: &str) -> BackendResult<()>;

    /// Renames `from` to `to`. Whether an existing `to` is replaced depends on the server; a
    /// refusal because `to` exists is a definite error ([`FsError::is_definite`]).
    fn rename(&self, from: &str, to: &str) -> BackendResult<()>;

    /// True when the server offers setting modification times.
    fn can_set_mtime(&self) -> bool;

    /// Sets the modification time (seconds since the epoch). [`FsError::Unsupported`] where the
    /// server cannot.
    fn set_mtime(&self, path: &str, secs: i64) -> BackendResult<()>;

    /// Sets permission bits. [`FsError::Unsupported`] where the server cannot (then
    /// [`Backend::can_chmod`] says false from now on).
    fn chmod(&self, path: &str, mode: u32) -> BackendResult<()>;

    /// False once the server refused an append.
    fn can_append(&self) -> bool;

    /// False once the server refused a chmod as unsupported.
    fn can_chmod(&self) -> bool;

    /// True when `name` can be sent to the server (its character set can carry it).
    fn can_name(&self, name: &str) -> bool;

    /// How long a request may wait for the server or for a free connection.
    fn wait_limit(&self) -> Duration;

    /// How many connections background work could use right now without making a request
    /// wait: idle or not made yet, keeping one for requests.
    fn spare_connections(&self) -> usize {
        0
    }

    /// As [`Backend::spare_connections`], waiting up to `wait` for one to become spare.
    fn wait_for_spare(&self, wait: Duration) -> usize {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let spare = self.spare_connections();
            if spare > 0 || std::time::Instant::now() >= deadline {
                return spare;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many directories [`Backend::list_several`] lists together, in about the time of
    /// one listing (1: it lists them one after another).
    fn lists_at_once(&self) -> usize {
        1
    }

    /// The listings of `dirs`, in their order, each as [`Backend::list`] would give it; for
    /// work ahead, where [`Backend::lists_at_once`] says this is cheaper than one by one.
    fn list_several(&self, dirs: &[String]) -> Vec<BackendResult<Vec<Entry>>> {
        dirs.iter().map(|d| self.list(d)).collect()
    }

    /// The server cannot be reached now: changes are refused before they start.
    fn is_offline(&self) -> bool {
        false
    }

    /// Makes `link` a symbolic link to `target` (see [`LinkTarget`]); NotPermitted where the
    /// server cannot make links.
    fn symlink(&self, _target: LinkTarget<'_>, _link: &str) -> BackendResult<()> {
        Err(FsError::NotPermitted)
    }

    /// The digest algorithms the server computes over a file (none: it computes none).
    fn checksums(&self) -> Vec<Algorithm> {
        Vec::new()
    }

    /// The server's digest of the file at `path` with `a` (one of [`Backend::checksums`]),
    /// lower-case hex.
    fn checksum(&self, _path: &str, _a: Algorithm) -> BackendResult<String> {
        Err(FsError::Unsupported)
    }

    /// What is cached of `path` and below it (work ahead) may be stale: `ftpfs refresh`.
    fn forget(&self, _path: &str) {}

    /// A directory is being read (opendir): a hint for work ahead, nothing to do otherwise.
    fn opened_dir(&self, _dir: &str) {}

    /// Closes idle connections (unmount).
    fn close_idle(&self);

    /// Fails every waiting and later request with [`FsError::Unmounting`].
    fn shut_down(&self);
}

/// The server's entry of `path` now, asked for that one name (MLST) or else found in a listing
/// of its directory; `None` when there is none or asking failed.
pub fn entry_now(backend: &dyn Backend, path: &str) -> Option<Entry> {
    match backend.stat_one(path) {
        Ok(Some(e)) => return Some(e),
        Err(FsError::NotFound) => return None,
        _ => {}
    }
    let (parent, name) = paths::split_path(path);
    backend.list(parent).ok()?.into_iter().find(|e| e.name == name)
}
