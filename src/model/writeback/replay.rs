//! The replay of what a crash left in a write-back journal: each entry is checked (it may have
//! been planted by another user, see [`crate::private_files`]) and uploaded before the mount
//! serves anything; what fails is kept in `cache_dir`, never replayed over newer data later.
//! It talks to the server through the backend alone (the mount serves nothing yet).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use crate::backend::{Backend, WriteMode};

/// What a replay works with: the server, where versions are set aside, and how long a request
/// may wait for a connection.
pub(in crate::model) struct Replay<'a> {
    pub backend: &'a dyn Backend,
    pub cache_dir: &'a Path,
    pub wait: Duration,
}

/// Uploads what an earlier mount left in `journal`, oldest first; returns the paths that landed.
/// An entry that fails is not replayed later (it could land over newer data then): its data
/// is kept in `cache_dir` as `ftpfs-unsaved-…` and the log says so. An entry that may not have
/// been written by ftpfs for this user (see [`checked_entry`]) is never uploaded: it is logged
/// and left where it is.
pub(in crate::model) fn recover(core: &Replay<'_>, journal: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(journal) else { return Vec::new() };
    let mut names: Vec<PathBuf> =
        dir.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "path")).collect();
    names.sort();
    let mut entries = Vec::new();
    for name in names {
        let data = name.with_extension("data");
        match checked_entry(&name, &data) {
            // Ordered by their place in the order of closes (entries of older versions of
            // ftpfs have none: by the time of their close).
            Ok((path, file, seq, closed)) => entries.push((path, (seq.unwrap_or(0), closed), name, data, file)),
            Err(why) => {
                log::error!("{}: write-back journal entry refused, not uploaded (left in place): {why}", name.display())
            }
        }
    }
    // Of one file's entries only the newest close lands (the last close wins); the older ones
    // are superseded, and never replayed after it or checked against it.
    entries.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    let mut newest = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == e.0) {
            log::info!("{}: an entry of the write-back journal superseded by a later close; dropped", e.0);
            let _ = std::fs::remove_file(e.3.with_extension("started"));
            let _ = std::fs::remove_file(&e.2);
            let _ = std::fs::remove_file(&e.3);
        } else {
            newest.push(i);
        }
    }
    let mut chosen: Vec<_> =
        entries.into_iter().enumerate().filter(|(i, _)| newest.contains(i)).map(|(_, e)| e).collect();
    chosen.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    let mut landed = Vec::new();
    for (path, (_, closed), name, data, file) in chosen {
        // Kept private if it ends up in cache_dir (an older version made journal files 0644).
        let _ = file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let started = started_at(&name.with_extension("started"));
        match knows_the_servers_version(core, &path, closed, started, &file) {
            Ok(()) => {}
            Err(Doubt::Conflict(why)) => {
                keep_conflict(core, &path, &name, &data, &why);
                continue;
            }
            Err(Doubt::Unsure(why)) => {
                log::error!("{path}: left by an earlier mount, not uploaded now ({why}); it stays in the journal");
                continue;
            }
        }
        match upload_file(core, &path, file) {
            Ok(len) => {
                log::warn!("{path}: uploaded {len} bytes that an earlier mount had not written back");
                let _ = std::fs::remove_file(&name);
                let _ = std::fs::remove_file(&data);
                let _ = std::fs::remove_file(name.with_extension("started"));
                landed.push(path);
            }
            Err(e) => {
                let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
                let kept = core.cache_dir.join(format!("ftpfs-unsaved-{}-{stamp}-recovered", std::process::id()));
                match std::fs::rename(&data, &kept) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&name);
                        let _ = std::fs::remove_file(name.with_extension("started"));
                        log::error!(
                            "{path}: left by an earlier mount, not uploaded ({e}); its data is kept in {}",
                            kept.display()
                        );
                    }
                    Err(e2) => log::error!(
                        "{path}: left by an earlier mount, not uploaded ({e}), and kept as {} ({e2})",
                        data.display()
                    ),
                }
            }
        }
    }
    drop_orphans(journal);
    landed
}

/// Half-written entries go, so the journal can end: files of entries without their `.path`
/// (a crash while a close was journaling it, before the close returned; a marker left behind)
/// and temp files (a copy or a path being written).
fn drop_orphans(journal: &Path) {
    let Ok(dir) = std::fs::read_dir(journal) else { return };
    for e in dir.flatten() {
        let p = e.path();
        let temp = p.extension().is_some_and(|x| x == "datatmp" || x == "pathtmp");
        let orphan = temp
            || p.extension().is_some_and(|x| x == "data" || x == "started" || x == "tmp")
                && std::fs::symlink_metadata(p.with_extension("path")).is_err();
        if orphan && e.file_type().is_ok_and(|t| t.is_file()) {
            log::info!("{}: part of an unfinished write-back journal entry; removed", p.display());
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Whether replaying a version closed at `closed` (and whose upload began at `started`, if it
/// did) can only replace a version this mount knew: the server's file is missing, has no
/// time, was last changed when the version was closed or before, or since its upload began
/// and holds that upload's own bytes (no longer than this version, and its last bytes, up to
/// 64 KiB read back, the same as this version's there: cut short by the crash). A file
/// changed after the close by anyone else is a version the journal never knew: `Err` says
/// why, and nothing is replaced. (Times are compared across the two clocks; a server clock
/// ahead of ours errs on the side of keeping the journal's version aside, one behind on the
/// side of replaying it.)
/// Why an entry is not replayed now.
enum Doubt {
    /// The server holds a version the journal never knew: this one goes aside.
    Conflict(String),
    /// It could not be told (the server's bytes could not be read back): it stays for later.
    Unsure(String),
}

fn knows_the_servers_version(
    core: &Replay<'_>,
    path: &str,
    closed: SystemTime,
    started: Option<SystemTime>,
    ours: &std::fs::File,
) -> Result<(), Doubt> {
    let Some(found) = crate::backend::entry_now(core.backend, path) else { return Ok(()) };
    // To the second where the server tells it (a LIST may give only minutes).
    let exact = core.backend.modified(path).ok().flatten();
    let Some(mtime) = exact.or(found.mtime) else { return Ok(()) };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if mtime <= secs(closed) {
        return Ok(());
    }
    // Servers keep whole seconds (and truncate): one second of slack for an upload's start.
    if started.is_some_and(|t| mtime >= secs(t) - 1) {
        match holds_our_bytes(core, path, found.size, ours) {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => return Err(Doubt::Unsure("its upload's bytes on the server could not be read back".into())),
        }
    }
    Err(Doubt::Conflict(format!(
        "the server's file was changed at {mtime} (s since 1970), after this version was closed at {}, \
         and not by its own upload",
        secs(closed)
    )))
}

/// Whether the server's `path` (of `size` bytes) is this version cut short: no longer than it,
/// and its last bytes (up to 64 KiB) the same as this version's at the same place. `None`:
/// they could not be read.
fn holds_our_bytes(core: &Replay<'_>, path: &str, size: Option<u64>, ours: &std::fs::File) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    const TAIL: u64 = 64 * 1024;
    let (Some(size), Ok(len)) = (size, ours.metadata().map(|m| m.len())) else { return Some(false) };
    if size > len {
        return Some(false);
    }
    let from = size.saturating_sub(TAIL);
    let mut mine = vec![0u8; (size - from) as usize];
    ours.read_exact_at(&mut mine, from).ok()?;
    let mut dl = core.backend.read(path, from, core.wait).ok()??;
    let mut theirs = Vec::with_capacity(mine.len());
    let read = (&mut dl).take(mine.len() as u64).read_to_end(&mut theirs);
    let _ = dl.finish();
    read.ok()?;
    Some(theirs == mine)
}

/// When the upload of a journal entry began (its `.started` marker), if the marker is a plain
/// file of ours.
fn started_at(marker: &Path) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(marker).ok()?;
    (meta.is_file() && meta.uid() == crate::private_files::me()).then(|| meta.modified().ok()).flatten()
}

/// A version the server's newer file must not be replaced with: kept as
/// `cache_dir/ftpfs-conflict-…` and logged; the entry goes, never replayed later.
fn keep_conflict(core: &Replay<'_>, path: &str, name: &Path, data: &Path, why: &str) {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let flat = path.replace('/', "_");
    let tail = crate::printable::tail_bytes(&flat, 150);
    let kept = core.cache_dir.join(format!("ftpfs-conflict-{stamp}-{tail}"));
    match std::fs::rename(data, &kept) {
        Ok(()) => {
            let _ = std::fs::remove_file(name);
            let _ = std::fs::remove_file(name.with_extension("started"));
            log::error!(
                "{path}: left by an earlier mount, not uploaded: {why}; this version is kept in {}",
                kept.display()
            );
        }
        Err(e) => log::error!("{path}: left by an earlier mount, not uploaded: {why}; and not kept aside ({e})"),
    }
}

/// Longest path a journal entry may name, in bytes.
const MAX_ENTRY_PATH: u64 = 64 * 1024;

/// A journal entry as ftpfs wrote it: its `.path` and `.data` files regular files of the
/// mounting user (opened without following symlinks), and the path a
/// mount-relative one (no leading `/`, no `.`, `..` or empty part, no NUL, CR or LF) that stays
/// under the mount's root on the server.
#[allow(clippy::type_complexity)]
fn checked_entry(name: &Path, data: &Path) -> Result<(String, std::fs::File, Option<u64>, SystemTime), String> {
    let mut named = crate::private_files::open_trusted(name, false).map_err(|e| format!("its path file: {e}"))?;
    // Written when the version was closed (or its file renamed since).
    let closed = named.metadata().and_then(|m| m.modified()).map_err(|e| format!("its path file: {e}"))?;
    let mut raw = Vec::new();
    (&mut named).take(MAX_ENTRY_PATH + 1).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    if raw.len() as u64 > MAX_ENTRY_PATH {
        return Err("its path is too long".into());
    }
    let text = String::from_utf8(raw).map_err(|_| "its path is not UTF-8".to_string())?;
    // `ftpfs-seq <close>` on a line of its own first (older versions of ftpfs wrote none).
    let (seq, path) = match text.strip_prefix(super::journal::SEQ_TAG).and_then(|rest| rest.split_once('\n')) {
        Some((n, path)) => {
            (Some(n.parse::<u64>().map_err(|_| "its order of closes is not a number".to_string())?), path)
        }
        None => (None, text.as_str()),
    };
    let path = path.to_string();
    if !is_plain_relative(&path) {
        return Err(format!("its path {path:?} is not a plain path under the mount's root"));
    }
    let file = crate::private_files::open_trusted(data, false).map_err(|e| format!("its data file: {e}"))?;
    Ok((path, file, seq, closed))
}

/// A mount-relative path as the model writes it: `a/b`, never `/a`, `a/../b`, `a//b` or `.`.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\0', '\r', '\n'])
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

fn upload_file(core: &Replay<'_>, path: &str, mut file: std::fs::File) -> Result<u64, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut up =
        core.backend.write(path, WriteMode::Replace, core.wait).map_err(|e| e.to_string())?.ok_or("no connection")?;
    io::copy(&mut (&mut file).take(len), &mut up).map_err(|e| e.to_string())?;
    let reported = up.finish().map_err(|e| e.to_string())?;
    match reported.map_or_else(|| core.backend.size(path).ok().flatten(), Some) {
        Some(n) if n != len => Err(format!("the server has {n} bytes, not {len}")),
        _ => Ok(len),
    }
}

#[cfg(test)]
mod entry_tests {
    use super::is_plain_relative;

    #[test]
    fn only_plain_relative_paths_are_replayed() {
        for ok in ["a", "a/b", "dir/.hidden", "x..y", "a/b c/d"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", ".", "..", "../a", "a/../../b", "a/.", "a\0b", "a\nb", "a\rb"] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }
}
