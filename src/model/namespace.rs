//! Changes to names and attributes: create, mkdir, rmdir, unlink, rename, chmod.
//!
//! The rules: a failed operation never removes anything; a step whose reply is lost is judged
//! by what the server holds afterwards; handles open on a path follow it through a rename and
//! are detached (upload nothing) when it is deleted or replaced; a mode is never set later than
//! the first moment other users could read the data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::FsResult;
use super::core::fresh_entry;
use super::deferred;
use super::fs::{Model, Stat};
use super::handle_io;
use super::inodes::{child_path, is_at_or_under, split_path};
use super::new_file_mode::ASSUMED_FILE_MODE;
use crate::backend::{Entry, EntryKind, FsError};

/// Permission bits a server gives new directories when nobody asks (umask 022); for files see
/// [`super::new_file_mode`].
const DEFAULT_DIR_MODE: u32 = 0o755;

/// What create() found at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creation {
    /// Nothing: a new file, made on the server at the first commit.
    New,
    /// Nothing in a listing too old to be sure: a new file, unless another client made the
    /// name since (found out at the first commit, without replacing it).
    Unverified,
    /// A file that is emptied (O_TRUNC) at the first commit.
    Truncated,
    /// A file another client made that our listing did not show yet: opened, not replaced.
    Existing(u64),
}

/// How long after its MKD a directory this mount made is taken for knowing every name in it.
const MADE_HERE_TRUSTED: Duration = Duration::from_secs(10);

/// Whether `listing` is of a directory this mount made a short while ago (empty then, every
/// change since one of ours): a name missing from it is missing on the server, unless another
/// client made it in those seconds.
fn made_here_lately(listing: &super::cache::DirListing) -> bool {
    listing.made_here && listing.fetched.elapsed() < MADE_HERE_TRUSTED
}

impl Model {
    /// Makes a new, still empty file visible before its first upload, or finds that the file
    /// exists on the server already (our listing was older than another client's change) and
    /// must be opened, not replaced.
    fn create_pending(&self, path: &str, exclusive: bool, truncate: bool, may_check_later: bool) -> FsResult<Creation> {
        self.refuse_if_read_only()?;
        let (parent, name) = split_path(path);
        let listing = self.core.list_dir(parent)?;
        let mut unverified = false;
        let existing = match listing.get(name) {
            Some(e) if e.is_dir() => return Err(libc::EISDIR),
            Some(e) => Some(e.size.unwrap_or(0)),
            // Without O_TRUNC a stale listing must not make us replace a file someone else made
            // (a directory this mount made is trusted for the listing's lifetime: the window
            // for another client is its making, not a listing's age). Asked now where the
            // answer matters now (O_EXCL), else at the first commit (touch: an empty APPE).
            None if !truncate && !made_here_lately(&listing) && listing.fetched.elapsed() > Duration::from_secs(1) => {
                if !exclusive && may_check_later && self.core.backend.can_append() {
                    unverified = true;
                    None
                } else {
                    self.core.backend.size(path).ok().flatten()
                }
            }
            None => None,
        };
        match existing {
            Some(_) if exclusive => Err(libc::EEXIST),
            Some(size) if !truncate => {
                self.core.dirs.invalidate(parent);
                Ok(Creation::Existing(size))
            }
            found => {
                self.core.dirs.upsert(parent, fresh_entry(name, EntryKind::File, 0));
                // Its ctime stays this moment when the server's (whole-second) time shows up.
                self.core.note_change(path);
                if found.is_none() {
                    self.core.touch_dir(parent);
                }
                Ok(match found {
                    Some(_) => Creation::Truncated,
                    None if unverified => Creation::Unverified,
                    None => Creation::New,
                })
            }
        }
    }

    /// A writable handle on a new (or, with O_TRUNC, emptied) file with permission bits `mode`.
    /// A mode that takes from group or others bits of the server's default is set before any
    /// data goes up, so a private file is never readable by others on the server, even for a
    /// moment; any other is set right behind the first upload.
    pub(super) fn create_file(&self, path: &str, flags: i32, mode: u32) -> FsResult<(Stat, u64)> {
        let append = flags & libc::O_APPEND != 0;
        let mode = mode & 0o7777;
        // A mode of its own would be set on whatever file is there: the name is checked first.
        // No chmod for 0644 where the server gives new files that (assumed until learned).
        let (given, learned) = self.core.new_file_mode.get();
        let plain = (mode == ASSUMED_FILE_MODE && given == ASSUMED_FILE_MODE) || !self.core.backend.can_chmod();
        let creation = self.create_pending(path, flags & libc::O_EXCL != 0, flags & libc::O_TRUNC != 0, plain)?;
        let (created, server_size) = match creation {
            Creation::Existing(size) => (false, Some(size)),
            Creation::New | Creation::Unverified | Creation::Truncated => (true, Some(0)),
        };
        let core = &self.core;
        // Registered first, so no other writer can start a stream between pinning and opening.
        let fh = core.handles.open(path, true, append, created, server_size);
        let f = core.handles.get(fh)?;
        if creation == Creation::Unverified {
            f.unverified.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let makes_file = matches!(creation, Creation::New | Creation::Unverified);
        if makes_file && mode == ASSUMED_FILE_MODE && !learned && core.backend.can_chmod() {
            // The first such file tells what the server really gives.
            f.learns_mode.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let ready = handle_io::pin_writers(core, path).and_then(|_| {
            if creation != Creation::New || plain {
                return Ok(());
            }
            // The usual default shows others nothing this mode would hide (it may add bits, or
            // take the owner's own away, as git's 0444): set after the data, in its round trip.
            if ASSUMED_FILE_MODE & 0o077 & !mode == 0 {
                handle_io::defer_mode(&f, mode);
                // Shown at once; set on the server right after the first upload.
                let (parent, name) = split_path(path);
                core.dirs.update(parent, name, |e| e.mode = Some(mode));
                return Ok(());
            }
            // Stricter than the default: an empty file with the right mode first; the data then
            // replaces its content (STOR keeps the mode), as from a fresh creation. The owner
            // keeps the right to read and write until the data is up (the server checks it at
            // each transfer, where a local file checks it at open only); the exact mode follows.
            // The mode goes behind the empty file's upload, in its round trip where possible.
            let first = mode | 0o600;
            handle_io::defer_mode(&f, first);
            handle_io::commit(core, &f)?;
            handle_io::mark_created(&f);
            if first != mode {
                handle_io::defer_mode(&f, mode);
                let (parent, name) = split_path(path);
                core.dirs.update(parent, name, |e| e.mode = Some(mode));
            }
            Ok(())
        });
        match ready.and_then(|_| self.stat(path)) {
            Ok(st) => Ok((st, fh)),
            Err(e) => {
                core.handles.remove(fh);
                Err(e)
            }
        }
    }

    /// mkdir with permission bits `mode & !umask`, set with a chmod when they differ from the
    /// server's default.
    pub fn mkdir(&self, parent: u64, name: &str, mode: u32, umask: u32) -> FsResult<Stat> {
        let path = self.child(parent, name)?;
        self.mkdir_path(&path, mode & !umask)?;
        self.looked_up(&path)
    }

    fn mkdir_path(&self, path: &str, mode: u32) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let (parent, name) = split_path(path);
        let core = &self.core;
        let mut ours = true;
        if let Err(e) = core.backend.mkdir(path) {
            // "Exists", "not allowed" and "no parent" share one reply on many servers: look.
            core.dirs.invalidate(parent);
            let found = core.entry(path);
            // A reply lost after the server made it: done.
            let made = !e.is_definite() && found.as_ref().is_ok_and(Entry::is_dir);
            if !made {
                return Err(Self::mkdir_error(found, e, || self.stat(parent).is_ok()));
            }
            // Whose it is (ours, made before the reply was lost, or another client's) is not
            // known: its listing comes from the server.
            ours = false;
        }
        core.dirs.upsert(parent, fresh_entry(name, EntryKind::Dir, 4096));
        if ours {
            core.dirs.put_made(path);
        } else {
            core.dirs.invalidate(path);
        }
        core.note_change(path);
        core.touch_dir(parent);
        let mode = mode & 0o7777;
        if mode != DEFAULT_DIR_MODE {
            self.chmod(path, mode)?;
        }
        Ok(())
    }

    /// The errno of a refused MKD, from what the server holds now.
    fn mkdir_error(found: FsResult<Entry>, e: FsError, parent_exists: impl FnOnce() -> bool) -> i32 {
        match found {
            Ok(_) => libc::EEXIST,
            Err(libc::ENOENT) if matches!(e, FsError::Exists | FsError::Denied | FsError::NotFound) => {
                if parent_exists() { libc::EACCES } else { libc::ENOENT }
            }
            Err(_) => e.errno(),
        }
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let path = self.child(parent, name)?;
        self.core.writeback.wait_under(&path)?;
        let (parent, _) = split_path(&path);
        let core = &self.core;
        if let Err(e) = core.backend.rmdir(&path) {
            core.dirs.invalidate(&path);
            core.dirs.invalidate(parent);
            match core.list_dir(&path) {
                Ok(l) if !l.is_empty() => return Err(libc::ENOTEMPTY),
                // A reply lost after the server removed it: done.
                Err(libc::ENOENT) if !e.is_definite() => {}
                Err(libc::ENOENT) => return Err(libc::ENOENT),
                // Empty, or (vsftpd) not listable either way: the parent's listing tells.
                _ => return Err(core.refused_errno(&path, e, true)),
            }
        }
        self.forget_path(&path);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let path = self.child(parent, name)?;
        // Its write-backs land first, and none is queued until the delete is done (a release
        // queued meanwhile would keep a journal entry that a crash would bring back).
        let _frozen = self.core.writeback.freeze(&path, &path)?;
        let (parent, name) = split_path(&path);
        let core = &self.core;
        if core.entry(&path).map(|e| e.is_dir()).unwrap_or(false) {
            return Err(libc::EISDIR);
        }
        // Handles on the file end their streams and upload nothing while the delete runs; then
        // they are detached, as from an unlinked local file.
        handle_io::with_handles_quiet(core, &[&path], || {
            if let Err(e) = core.backend.delete(&path) {
                core.dirs.invalidate(parent);
                // A creation not uploaded yet exists only here: deleting it is forgetting it.
                // Looked up in the listing itself, which does not count pending creations.
                let on_server = core.list_dir(parent).map(|l| l.contains(name)).unwrap_or(true);
                // Gone after a lost reply (the server deleted it) is done too.
                if on_server {
                    return Err(core.refused_errno(&path, e, false));
                }
                if e.is_definite() && !core.handles.is_pending(&path) {
                    return Err(e.errno());
                }
            }
            // Their data goes nowhere now, also not from the journal after a crash.
            for f in core.handles.at_or_under(&path) {
                f.forget_journal();
            }
            core.writeback.forget_path(&path);
            core.handles.detach(&path);
            self.forget_path(&path);
            Ok(())
        })
    }

    fn forget_path(&self, path: &str) {
        if let Some(cache) = self.core.disk_cache() {
            cache.forget(path);
        }
        let (parent, name) = split_path(path);
        self.core.dirs.remove(parent, name);
        self.core.dirs.invalidate_tree(path);
        self.inodes.lock().remove_path(path);
        self.core.touch_dir(parent);
    }

    /// rename, replacing an existing target (POSIX) unless `noreplace`. Handles open on the
    /// source move with it; handles open on a replaced target are detached. A failed rename
    /// never removes anything.
    pub fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, noreplace: bool) -> FsResult<()> {
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        // Write-backs land under their own names first (the journal knows them by those), and
        // none starts under either name until the rename is done.
        let _frozen = self.core.writeback.freeze(&from, &to)?;
        if noreplace && self.stat(&to).is_ok() {
            return Err(libc::EEXIST);
        }
        self.rename_path(&from, &to)
    }

    fn rename_path(&self, from: &str, to: &str) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let (from_parent, from_name) = split_path(from);
        let (to_parent, to_name) = split_path(to);
        if from == to {
            return Ok(());
        }
        if is_at_or_under(to, from) {
            return Err(libc::EINVAL);
        }
        let core = &self.core;
        let source = core.entry(from)?;
        let target = match core.entry(to) {
            Ok(t) => Some(t),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(t) = &target {
            match (source.is_dir(), t.is_dir()) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                (true, true) if !core.list_dir(to)?.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        // Files still open under the old name land first, so they move with it. Then no
        // handle on either side uploads anything until the paths are updated: nothing can land
        // over the file just renamed into place.
        handle_io::land_creations_under(core, from)?;
        handle_io::with_handles_quiet(core, &[from, to], || {
            self.rename_on_server(from, to, target.as_ref())?;
            core.dirs.remove(to_parent, to_name);
            core.dirs.invalidate_tree(to);
            core.dirs.invalidate_tree(from);
            match core.dirs.remove(from_parent, from_name) {
                Some(mut e) => {
                    e.name = to_name.to_string();
                    core.dirs.upsert(to_parent, e);
                }
                None => core.dirs.invalidate(to_parent),
            }
            self.inodes.lock().rename(from, to);
            for f in core.handles.at_or_under(to) {
                f.forget_journal();
            }
            core.writeback.forget_path(to);
            core.handles.detach(to);
            core.handles.renamed(from, to);
            deferred::follow_rename(&core.handles.at_or_under(to));
            core.writeback.follow_rename(from, to);
            core.touch_dir(from_parent);
            core.touch_dir(to_parent);
            core.note_change(to);
            // Content kept on disk under either name (and below a directory) is another file's.
            if let Some(cache) = core.disk_cache() {
                cache.forget(from);
            }
            Ok(())
        })
    }

    /// Renames on the server; when the server refuses because the target exists, the target
    /// is moved aside under a hidden name, the rename done, and the aside copy deleted, or put
    /// back if the rename still fails.
    fn rename_on_server(&self, from: &str, to: &str, target: Option<&Entry>) -> FsResult<()> {
        let core = &self.core;
        let Err(e) = core.backend.rename(from, to) else { return Ok(()) };
        // What the server holds now tells what the refusal meant.
        core.invalidate_parent(from);
        core.invalidate_parent(to);
        if core.entry(from).is_err() {
            // A reply lost after the server renamed: done.
            if !e.is_definite() && self.on_server(to) == Ok(true) {
                return Ok(());
            }
            return Err(libc::ENOENT);
        }
        let refused_over_existing = target.is_some() && self.on_server(to) == Ok(true) && e.is_definite();
        if !refused_over_existing {
            // The source is there: a "not found" (vsftpd's "550 Rename failed.") was a refusal.
            return Err(core.refused_errno(from, e, core.entry(from).is_ok_and(|s| s.is_dir())));
        }
        log::debug!("rename over existing {to} refused ({e}); moving the target aside first");
        let (to_parent, _) = split_path(to);
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let aside = child_path(to_parent, &format!(".ftpfs-aside-{}-{stamp}", std::process::id()));
        // Each step's reply may be lost after the server did it: then the server's state decides.
        if let Err(e2) = core.backend.rename(to, &aside)
            && !self.moved(to, &aside)
        {
            log::debug!("cannot move {to} aside: {e2}");
            return Err(e.errno());
        }
        if let Err(e3) = core.backend.rename(from, to)
            && !self.moved(from, to)
        {
            if core.backend.rename(&aside, to).is_err() && !self.moved(&aside, to) {
                log::error!(
                    "rename {from} → {to} failed ({e3}) and the old {to} could not be put back: it is kept as {aside}"
                );
            }
            core.invalidate_parent(to);
            return Err(e3.errno());
        }
        let removed = match target.is_some_and(Entry::is_dir) {
            true => core.backend.rmdir(&aside),
            false => core.backend.delete(&aside),
        };
        if let Err(e5) = removed {
            log::warn!("renamed over {to}, but its old version left as {aside} could not be deleted: {e5}");
        }
        core.invalidate_parent(to);
        Ok(())
    }

    /// True when, on the server now, `from` is gone and `to` exists: a rename whose reply was
    /// lost took place.
    fn moved(&self, from: &str, to: &str) -> bool {
        self.core.invalidate_parent(from);
        self.core.invalidate_parent(to);
        self.on_server(from) == Ok(false) && self.on_server(to) == Ok(true)
    }

    /// Whether the server's listing holds `path` (a creation not uploaded yet does not count).
    fn on_server(&self, path: &str) -> FsResult<bool> {
        let (parent, name) = split_path(path);
        self.core.list_dir(parent).map(|l| l.contains(name))
    }

    /// chmod where the server can (elsewhere a no-op that succeeds, documented). A file that
    /// exists only as a creation not uploaded yet gets its mode after the upload.
    pub(super) fn chmod(&self, path: &str, mode: u32) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let core = &self.core;
        if !core.backend.can_chmod() {
            return Ok(());
        }
        let creators = core.handles.creators_of(path);
        if creators.is_empty() {
            return core.chmod_now(path, mode);
        }
        for f in creators {
            handle_io::defer_mode(&f, mode & 0o7777);
        }
        let (parent, name) = split_path(path);
        core.dirs.update(parent, name, |e| e.mode = Some(mode & 0o7777));
        Ok(())
    }
}
