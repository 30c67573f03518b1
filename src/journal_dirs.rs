//! Where a mount's write-back journal lives, and which journals of earlier mounts it recovers.
//!
//! `cache_dir/writeback/<key>/<pid>-<nanoseconds>/`, where `<key>` is a SHA-256 of the whole
//! server identity (scheme, user, host, port, remote root): two servers never share a journal,
//! however long or alike their names. Each mount's directory is flock-ed while it lives; one
//! that no live process holds is an orphan of a crash, recovered (uploaded) by the next mount.
//! Every directory and lock is checked as [`crate::private_files`] says: a planted symlink,
//! a directory or lock of another user, is skipped and logged, never followed.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cli::Target;
use crate::private_files::{check_private_dir, create_new, new_private_dir, open_lock, private_dir};

/// The journal directory's name for a server: hex SHA-256 of its identity.
pub fn journal_key(target: &Target) -> String {
    let scheme = if target.implicit_tls { "ftps" } else { "ftp" };
    let root = target.dir.as_deref().unwrap_or("");
    // NUL separates the parts: none of them can hold one.
    let identity = format!("{scheme}\0{}\0{}\0{}\0{root}", target.user, target.host.to_ascii_lowercase(), target.port);
    let digest = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The name earlier versions gave the journal (the URL without password, percent-encoded and
/// cut at 200 characters): its orphans are still recovered.
fn legacy_key(target: &Target) -> String {
    let url = target.display_url();
    let key: String = percent_encoding::utf8_percent_encode(&url, percent_encoding::NON_ALPHANUMERIC).collect();
    key.chars().take(200).collect()
}

/// This mount's write-back journal, locked (flock) for the life of the process, and the
/// journals of earlier mounts of the same server and root that no live process holds (each
/// locked now, for its recovery), oldest first.
pub fn writeback_journal(cache_dir: &Path, target: &Target) -> Result<(PathBuf, Vec<(PathBuf, File)>), String> {
    let fail = |e: String| format!("cannot use {} for write-back: {e}", cache_dir.display());
    let top = private_dir(cache_dir, "writeback").map_err(fail)?;
    let base = private_dir(&top, &journal_key(target)).map_err(fail)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let own = new_private_dir(&base, &format!("{}-{stamp}", std::process::id())).map_err(fail)?;
    // The new directory's name is durable before anything is journaled in it.
    File::open(&base).and_then(|d| d.sync_all()).map_err(|e| fail(format!("{}: {e}", base.display())))?;
    let lock = create_new(&own.join("lock")).map_err(|e| fail(format!("{}/lock: {e}", own.display())))?;
    if !try_lock(&lock) {
        return Err(format!("cannot lock {} for write-back", own.display()));
    }
    // Held until the process ends.
    std::mem::forget(lock);
    Ok((own.clone(), find_orphans(&top, &base, &own, target)))
}

/// For a mount without write-back: the journals an earlier write-back mount of the same server
/// and root left behind (a crash, `kill -9`), each locked, for this mount to replay before it
/// serves anything. Nothing is created.
pub fn orphan_journals(cache_dir: &Path, target: &Target) -> Vec<(PathBuf, File)> {
    let top = cache_dir.join("writeback");
    let base = top.join(journal_key(target));
    if std::fs::symlink_metadata(&top).is_ok() {
        if let Err(e) = check_private_dir(&top) {
            log::error!("write-back journals not recovered: {e}");
            return Vec::new();
        }
        if std::fs::symlink_metadata(&base).is_ok()
            && let Err(e) = check_private_dir(&base)
        {
            log::error!("write-back journals not recovered: {e}");
            return Vec::new();
        }
    }
    find_orphans(&top, &base, Path::new(""), target)
}

/// The journals under `base` (but `own`), and under the places earlier versions used, that no
/// live process holds, oldest first.
fn find_orphans(top: &Path, base: &Path, own: &Path, target: &Target) -> Vec<(PathBuf, File)> {
    let mut orphans = if std::fs::symlink_metadata(base).is_ok() { orphans_in(base, own) } else { Vec::new() };
    // Where earlier versions kept it: under this cache_dir, and under their default /var/tmp.
    let old_top = Path::new("/var/tmp/writeback");
    let mut legacy = vec![top.join(legacy_key(target))];
    if old_top != top && std::fs::symlink_metadata(old_top).is_ok() {
        match check_private_dir(old_top) {
            Ok(()) => legacy.push(old_top.join(legacy_key(target))),
            Err(e) => log::error!("write-back journals of an earlier version not recovered: {e}"),
        }
    }
    for dir in legacy.iter().filter(|d| std::fs::symlink_metadata(d).is_ok()) {
        match check_private_dir(dir) {
            Ok(()) => orphans.extend(orphans_in(dir, own)),
            Err(e) => log::error!("write-back journal of an earlier version not recovered: {e}"),
        }
    }
    // Oldest first: by the time in the name (`<pid>-<nanoseconds>`).
    let stamp = |p: &Path| -> u128 {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('-').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    orphans.sort_by_key(|(dir, _)| stamp(dir));
    orphans
}

/// The journals in `base` (but `own`) that no live process holds, each locked now. One that is
/// not a private directory of ours, or whose lock is not a plain file of ours, is skipped with
/// a log line: it was not made by ftpfs for this user.
fn orphans_in(base: &Path, own: &Path) -> Vec<(PathBuf, File)> {
    let mut orphans = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else { return orphans };
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir == own {
            continue;
        }
        if let Err(e) = check_private_dir(&dir) {
            log::error!("write-back journal skipped: {e}");
            continue;
        }
        match open_lock(&dir.join("lock")) {
            Ok(lock) if try_lock(&lock) => orphans.push((dir, lock)),
            Ok(_) => {}
            Err(e) => log::error!("write-back journal {} skipped: its lock: {e}", dir.display()),
        }
    }
    orphans
}

/// An exclusive flock without waiting.
fn try_lock(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this File owns.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes a journal directory that holds nothing but its lock file.
pub fn remove_if_only_lock(dir: &Path) {
    let only_lock = std::fs::read_dir(dir).map(|d| d.flatten().all(|e| e.file_name() == "lock")).unwrap_or(false);
    if only_lock {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str, host: &str, port: u16, dir: Option<&str>) -> Target {
        Target {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dir: dir.map(str::to_string),
            implicit_tls: false,
        }
    }

    #[test]
    fn each_server_identity_has_its_own_key() {
        let a = journal_key(&target("a,b", "h", 21, Some("/x")));
        let b = journal_key(&target("a_b", "h", 21, Some("/x")));
        assert_ne!(a, b, "names that clean to the same URL differ");
        assert_ne!(a, journal_key(&target("a,b", "h", 2121, Some("/x"))));
        assert_ne!(a, journal_key(&target("a,b", "h", 21, Some("/y"))));
        let long = "d".repeat(500);
        let l1 = journal_key(&target("u", "h", 21, Some(&format!("/{long}1"))));
        let l2 = journal_key(&target("u", "h", 21, Some(&format!("/{long}2"))));
        assert_ne!(l1, l2, "long roots that differ only at the end");
        assert_eq!(a.len(), 64);
        assert_eq!(a, journal_key(&target("a,b", "H", 21, Some("/x"))), "host names are not case-sensitive");
    }
}
