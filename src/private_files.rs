//! What ftpfs keeps on the local disk — temp copies (spools), the write-back journal, data kept
//! after a failed upload — is the user's file data, so it is private to the mounting user, and
//! nothing another local user planted there is ever trusted.
//!
//! The rules (README's threat model says why):
//! - `cache_dir` and every directory above it must belong to the mounting user (or root) and
//!   not be writable by group or others, unless sticky (the rule of OpenSSH's StrictModes): no
//!   one else can then rename or replace what ftpfs uses. A sticky shared directory (`/var/tmp`)
//!   is used through a private `ftpfs-<uid>` directory inside it.
//! - Every directory ftpfs creates is 0700 and every file 0600, whatever the umask.
//! - Files are created with `O_EXCL` or opened with `O_NOFOLLOW`, and a file read back (a
//!   journal entry, a lock) must be a regular file with one link, owned by the mounting user.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory ftpfs creates.
const DIR_MODE: u32 = 0o700;
/// Mode of every file ftpfs creates.
const FILE_MODE: u32 = 0o600;

/// The user ftpfs acts as (files it creates belong to it).
pub fn me() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The default `cache_dir`: `$XDG_CACHE_HOME/ftpfs`, else `$HOME/.cache/ftpfs`, else a
/// per-user directory in `/var/tmp` (on disk, not in a RAM tmpfs).
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
    match (var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(d), _) => d.join("ftpfs"),
        (None, Some(h)) => h.join(".cache").join("ftpfs"),
        (None, None) => PathBuf::from(format!("/var/tmp/ftpfs-{}", me())),
    }
}

/// Makes `dir` ready as a private cache directory and returns the directory to use: `dir`
/// itself (created 0700 if missing, resolved to its real path), or its private `ftpfs-<uid>`
/// subdirectory when `dir` is a sticky directory others may write (such as `/var/tmp`).
/// Refuses, naming the directory, one that another user owns or could change.
pub fn prepare_cache_dir(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| format!("cache_dir {shown}: cannot create it: {e}"))?;
        // Exactly 0700, whatever the umask took away.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| format!("cache_dir {shown}: {e}"))?;
    }
    let real = dir.canonicalize().map_err(|e| format!("cache_dir {shown}: {e}"))?;
    for above in real.ancestors().skip(1) {
        check_ancestor(above).map_err(|why| format!("cache_dir {shown}: {why}"))?;
    }
    let meta = std::fs::symlink_metadata(&real).map_err(|e| format!("cache_dir {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("cache_dir {shown} is not a directory"));
    }
    if meta.uid() != me() {
        return Err(format!(
            "cache_dir {} belongs to uid {}, not to the mounting user (uid {}): choose a directory of your own",
            real.display(),
            meta.uid(),
            me()
        ));
    }
    let mode = meta.mode();
    let use_dir = if mode & 0o022 == 0 {
        real
    } else if mode & 0o1000 != 0 {
        private_dir(&real, &format!("ftpfs-{}", me())).map_err(|e| format!("cache_dir {shown}: {e}"))?
    } else {
        return Err(format!(
            "cache_dir {} is writable by other users (mode {:o}): run `chmod go-w` on it or choose a private directory",
            real.display(),
            mode & 0o7777
        ));
    };
    private_tempfile(&use_dir)
        .map_err(|e| format!("cache_dir {}: cannot write temp files there: {e}", use_dir.display()))?;
    Ok(use_dir)
}

/// A directory above `cache_dir`: root's or the user's, and not writable by others unless
/// sticky (no one else can then move what lies below it).
fn check_ancestor(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != 0 && meta.uid() != me() {
        return Err(format!(
            "{} belongs to uid {}: another user could replace what lies below it",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(format!(
            "{} is writable by other users (mode {:o}) and not sticky: they could replace what lies below it",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// `parent/name` as a private directory: created 0700 if missing; if it exists it must be a
/// real directory (not a symlink) of the mounting user, and is made 0700 (an older version of
/// ftpfs made its directories 0755).
pub fn private_dir(parent: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = parent.join(name);
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    check_private_dir(&dir)?;
    Ok(dir)
}

/// `parent/name` as a new private directory (it must not exist yet).
pub fn new_private_dir(parent: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = parent.join(name);
    std::fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    check_private_dir(&dir)?;
    Ok(dir)
}

/// A directory ftpfs uses: a real directory (not a symlink) owned by the mounting user, made
/// 0700 (whatever the umask was, or what an older version left).
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory (a symlink or a file is never followed)", dir.display()));
    }
    if meta.uid() != me() {
        return Err(format!(
            "{} belongs to uid {}, not to the mounting user (uid {})",
            dir.display(),
            meta.uid(),
            me()
        ));
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

fn no_follow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Makes an open file 0600 whatever the umask left it (umask can only take bits away).
fn exact_mode(f: File) -> io::Result<File> {
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// A new private file at `path` (0600); fails if anything exists there, a symlink included.
pub fn create_new(path: &Path) -> io::Result<File> {
    exact_mode(no_follow().read(true).write(true).create_new(true).open(path)?)
}

/// `path` created or truncated as a private file, never through a symlink.
pub fn create_or_truncate(path: &Path) -> io::Result<File> {
    let f = no_follow().read(true).write(true).create(true).truncate(true).open(path)?;
    trusted(&f)?;
    exact_mode(f)
}

/// An unnamed private temp file in `dir` (0600), gone when closed. `O_TMPFILE` where the file
/// system has it (never named at all), else a named file unlinked at once.
pub fn private_tempfile(dir: &Path) -> io::Result<File> {
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match unnamed {
        Ok(f) => exact_mode(f),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::ENOENT)) => {
            let named = tempfile::Builder::new()
                .prefix(".ftpfs-")
                .permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .tempfile_in(dir)?;
            exact_mode(named.into_file())
        }
        Err(e) => Err(e),
    }
}

/// Opens an existing file ftpfs made earlier (a journal entry, a lock), never through a
/// symlink, and only if it is a regular file with one link owned by the mounting user: anything
/// else may have been planted.
pub fn open_trusted(path: &Path, write: bool) -> io::Result<File> {
    let f = no_follow()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    trusted(&f)?;
    Ok(f)
}

/// A lock file in a directory ftpfs made: created if missing, else trusted as above.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let f = no_follow().read(true).write(true).create(true).truncate(false).open(path)?;
    trusted(&f)?;
    exact_mode(f)
}

fn trusted(f: &File) -> io::Result<()> {
    let meta = f.metadata()?;
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    if !meta.file_type().is_file() {
        return refuse("not a regular file".into());
    }
    if meta.uid() != me() {
        return refuse(format!("owned by uid {}, not by the mounting user", meta.uid()));
    }
    if meta.nlink() != 1 {
        return refuse(format!("{} hard links (a link to another file?)", meta.nlink()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn what_ftpfs_creates_is_private_whatever_the_umask() {
        let top = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's creation mask; restored below.
        let old = unsafe { libc::umask(0) };
        let cache = top.path().join("a/b");
        let made = (|| -> Result<(PathBuf, PathBuf, File), String> {
            let used = prepare_cache_dir(&cache)?;
            let sub = private_dir(&used, "writeback")?;
            create_new(&used.join("f")).map_err(|e| e.to_string())?;
            let tmp = private_tempfile(&used).map_err(|e| e.to_string())?;
            Ok((used, sub, tmp))
        })();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let (used, sub, tmp) = made.unwrap();
        assert_eq!(used, cache.canonicalize().unwrap());
        assert_eq!(mode(&used), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&used.join("f")), 0o600);
        assert_eq!(tmp.metadata().unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn a_shared_sticky_directory_is_used_through_a_private_one() {
        let top = tempfile::tempdir().unwrap();
        let shared = top.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let used = prepare_cache_dir(&shared).unwrap();
        assert_eq!(used, shared.canonicalize().unwrap().join(format!("ftpfs-{}", me())));
        assert_eq!(mode(&used), 0o700);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_cache_dir(&open).unwrap_err();
        assert!(e.contains("writable by other users") && e.contains("open"), "{e}");
        // And below such a directory, even a private one.
        let below = open.join("mine");
        std::fs::create_dir(&below).unwrap();
        std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = prepare_cache_dir(&below).unwrap_err();
        assert!(e.contains("not sticky"), "{e}");
    }

    #[test]
    fn symlinks_and_planted_files_are_never_followed() {
        let top = tempfile::tempdir().unwrap();
        let secret = top.path().join("secret");
        std::fs::write(&secret, b"s").unwrap();
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(open_trusted(&link, false).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(open_lock(&link).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(create_new(&link).is_err());
        assert!(create_or_truncate(&link).is_err());
        assert_eq!(std::fs::read(&secret).unwrap(), b"s", "the target is untouched");
        let hard = top.path().join("hard");
        std::fs::hard_link(&secret, &hard).unwrap();
        assert!(open_trusted(&hard, false).is_err(), "a second link to some other file is refused");
        let dir_link = top.path().join("dirlink");
        std::os::unix::fs::symlink(top.path(), &dir_link).unwrap();
        assert!(check_private_dir(&dir_link).is_err());
    }
}
