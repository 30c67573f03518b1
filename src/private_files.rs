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
//!   journal entry, a lock) must be a regular file owned by the mounting user.

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

/// The default `cache_dir`: `$XDG_CACHE_HOME/ftpfs`, else `$HOME/.cache/ftpfs`, else the
/// mounting user's home from the password database, else `/var/tmp` (used through a private
/// `ftpfs-<uid>` inside it): on disk, not in a RAM tmpfs. A `$XDG_CACHE_HOME` or `$HOME` that
/// belongs to another user (`sudo -E` keeps the user's) is passed over: root would otherwise
/// create root-owned directories in the user's home.
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    default_from(var("XDG_CACHE_HOME"), var("HOME"), home_of_me())
}

fn default_from(xdg: Option<PathBuf>, home: Option<PathBuf>, passwd_home: Option<PathBuf>) -> PathBuf {
    let mine = |p: &PathBuf| p.is_absolute() && nearest_existing(p).is_some_and(|m| m.uid() == me());
    if let Some(d) = xdg.filter(mine) {
        return d.join("ftpfs");
    }
    match [home, passwd_home].into_iter().flatten().find(mine) {
        Some(h) => h.join(".cache").join("ftpfs"),
        None => PathBuf::from("/var/tmp"),
    }
}

/// The metadata of `p`, or of its nearest ancestor that exists.
fn nearest_existing(p: &Path) -> Option<std::fs::Metadata> {
    p.ancestors().find_map(|a| std::fs::metadata(a).ok())
}

/// The mounting user's home directory from the password database.
fn home_of_me() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes into it and `buf`
    // (whose length it is told) and sets `found` to it or to null.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(me(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into `buf`, NUL-terminated, while `buf` lives.
    let dir = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()))).filter(|p| p.is_absolute())
}

/// Makes `dir` ready as a private cache directory and returns the directory to use: `dir`
/// itself (created 0700 if missing, resolved to its real path), or its private `ftpfs-<uid>`
/// subdirectory when `dir` is a sticky directory others may write (such as `/var/tmp`).
/// Refuses, naming the directory, one that another user owns or could change; nothing is
/// created below a directory that fails these checks. `tighten`: the directory is ftpfs's
/// default one, made 0700 if an older version left it open to others.
pub fn prepare_cache_dir(dir: &Path, tighten: bool) -> Result<PathBuf, String> {
    let shown = dir.display();
    if std::fs::symlink_metadata(dir).is_err() {
        // Check where it would be made before making anything.
        let existing = dir
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .and_then(|a| a.canonicalize().ok())
            .ok_or_else(|| format!("cache_dir {shown}: no part of it exists"))?;
        for above in existing.ancestors() {
            check_ancestor(above).map_err(|why| format!("cache_dir {shown}: {why}"))?;
        }
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
            "cache_dir {} belongs to uid {}, not to the mounting user (uid {}): choose one of your own with -o cache_dir=DIR",
            real.display(),
            meta.uid(),
            me()
        ));
    }
    let mode = meta.mode();
    let use_dir = if mode & 0o022 == 0 {
        if tighten && mode & 0o077 != 0 {
            check_private_dir(&real).map_err(|e| format!("cache_dir {shown}: {e}"))?;
        }
        real
    } else if mode & 0o1000 != 0 {
        private_dir(&real, &format!("ftpfs-{}", me())).map_err(|e| format!("cache_dir {shown}: {e}"))?
    } else {
        return Err(format!(
            "cache_dir {} is writable by other users (mode {:o}): run `chmod go-w` on it or choose a private directory with -o cache_dir=DIR",
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
/// 0700 (whatever the umask was, or what an older version left). Checked and changed through
/// one descriptor opened without following a symlink.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => {
                format!("{} is not a directory (a symlink or a file is never followed)", dir.display())
            }
            _ => format!("{}: {e}", dir.display()),
        })?;
    let meta = opened.metadata().map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != me() {
        return Err(format!(
            "{} belongs to uid {}, not to the mounting user (uid {})",
            dir.display(),
            meta.uid(),
            me()
        ));
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        opened
            .set_permissions(std::fs::Permissions::from_mode(DIR_MODE))
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

/// `path` created or truncated as a private file, never through a symlink (and emptied only
/// once it proved to be a file of ours).
pub fn create_or_truncate(path: &Path) -> io::Result<File> {
    let f = no_follow().read(true).write(true).create(true).truncate(false).open(path)?;
    trusted(&f)?;
    f.set_len(0)?;
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
/// symlink, and only if it is a regular file owned by the mounting user: anything else may
/// have been planted. (A second hard link is no sign of planting: only the user can make one
/// in the user's private directories, and on NFS an unlinked open temp file has one.)
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
        let cache = top.path().join("a/b");
        let made = (|| -> Result<(PathBuf, PathBuf, File), String> {
            let used = prepare_cache_dir(&cache, true)?;
            let sub = private_dir(&used, "writeback")?;
            create_new(&used.join("f")).map_err(|e| e.to_string())?;
            let tmp = private_tempfile(&used).map_err(|e| e.to_string())?;
            Ok((used, sub, tmp))
        })();
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
        let used = prepare_cache_dir(&shared, false).unwrap();
        assert_eq!(used, shared.canonicalize().unwrap().join(format!("ftpfs-{}", me())));
        assert_eq!(mode(&used), 0o700);
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_cache_dir(&open, false).unwrap_err();
        assert!(e.contains("writable by other users") && e.contains("open"), "{e}");
        // And below such a directory, even a private one.
        let below = open.join("mine");
        std::fs::create_dir(&below).unwrap();
        std::fs::set_permissions(&below, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = prepare_cache_dir(&below, false).unwrap_err();
        assert!(e.contains("not sticky"), "{e}");
        // And nothing is created below such a directory.
        let e = prepare_cache_dir(&open.join("new/cache"), false).unwrap_err();
        assert!(e.contains("not sticky"), "{e}");
        assert!(!open.join("new").exists(), "made before it was checked");
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
        let fifo = top.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_trusted(&fifo, false).is_err(), "a planted FIFO is refused without hanging");
        std::fs::write(&secret, b"s").unwrap();
        let planted = top.path().join("planted");
        std::fs::write(&planted, b"keep").unwrap();
        std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
        if me() == 0 {
            assert!(create_or_truncate(&planted).is_err(), "another user's file");
            assert_eq!(std::fs::read(&planted).unwrap(), b"keep", "refused without being emptied");
        }
        let dir_link = top.path().join("dirlink");
        std::os::unix::fs::symlink(top.path(), &dir_link).unwrap();
        assert!(check_private_dir(&dir_link).is_err());
    }

    #[test]
    fn a_home_of_another_user_is_passed_over() {
        let top = tempfile::tempdir().unwrap();
        let theirs = top.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let mine = top.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        if me() == 0 {
            std::os::unix::fs::lchown(&theirs, Some(65534), Some(65534)).unwrap();
            // sudo -E: the user's XDG_CACHE_HOME and HOME, root's home in the password database.
            let got = default_from(Some(theirs.join(".cache")), Some(theirs.clone()), Some(mine.clone()));
            assert_eq!(got, mine.join(".cache/ftpfs"));
            assert_eq!(default_from(None, Some(theirs), None), PathBuf::from("/var/tmp"));
        }
        assert_eq!(default_from(Some(mine.join("c")), None, None), mine.join("c/ftpfs"));
        assert_eq!(default_from(None, Some(mine.clone()), None), mine.join(".cache/ftpfs"));
        assert_eq!(default_from(Some("relative".into()), None, None), PathBuf::from("/var/tmp"));
    }
}
