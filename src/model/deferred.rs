//! The model's side of write-back: what a handle hands to the write-back room
//! ([`super::writeback`]) at close(2) and at its release, and what that room calls back through
//! [`Version`] (upload the handle, let it go, set its data aside). Handles, spools and the
//! registry stay here; the journal, the queue and the order of versions stay there.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::FsResult;
use super::core::Core;
use super::files::OpenFile;
use super::handle_io;
use super::open_file::State;
use super::writeback::{Reserve, Version};

/// A released handle whose upload the queue runs.
struct Deferred {
    core: Arc<Core>,
    fh: u64,
    file: Arc<OpenFile>,
}

impl Version for Deferred {
    fn upload(&self) -> FsResult<()> {
        handle_io::commit(&self.core, &self.file)
    }

    fn finish(&self, uploaded: bool) -> FsResult<()> {
        // Out under its lock: a truncation that reached it after the upload lands too, and one
        // that comes later sees it released.
        let core = &self.core;
        if uploaded {
            core.note_landed(&self.file, self.file.close_seq.load(Ordering::Relaxed));
        }
        handle_io::retire(core, &self.file, uploaded, || drop(core.handles.remove(self.fh)))
    }

    fn set_aside(&self) {
        super::rescue::rescue(&self.core, &self.file);
    }
}

/// Copies the whole version the spool of `f` holds into `out`; `None`: it holds none to
/// upload (nothing changed, or only an appended tail).
fn copy_spool(f: &OpenFile, out: &mut File) -> io::Result<Option<u64>> {
    let mut io = f.io.lock();
    let State::Spooled(s) = &mut io.state else { return Ok(None) };
    if s.tail || !(s.dirty || f.is_created()) {
        return Ok(None);
    }
    s.file.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut (&s.file).take(s.len), out)?;
    if copied != s.len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the spool is shorter than the file"));
    }
    Ok(Some(s.len))
}

/// At close(2): the handle's version goes into the journal (its own fsynced copy) before
/// close returns, so a crash between close and release loses nothing; the close takes its
/// place in the order of versions. `false`: not journaled (the caller uploads).
pub(super) fn journal_at_close(core: &Core, f: &OpenFile, path: &str) -> bool {
    let wb = &core.writeback;
    let mut fill = |out: &mut File| copy_spool(f, out);
    // This close's place in the order, written into its entry; the handle's version is this
    // close's from now (a write from here on makes it newer again).
    let seq = wb.next_close();
    let before = (f.close_seq.swap(seq, Ordering::Relaxed), f.changed_since_close.swap(false, Ordering::Relaxed));
    // Taken out while it is written: the journal lock is never held while the spool's is.
    let earlier = f.journal.lock().take();
    let res = match earlier {
        // Journaled at an earlier close of a duplicate: this close's version replaces it.
        Some(mut entry) => {
            let res = wb.rejournal(seq, path, &mut entry, &mut fill).map(|n| n.is_some());
            *f.journal.lock() = Some(entry);
            res
        }
        None => wb.journal(seq, path, &mut fill).map(|made| match made {
            Some(entry) => {
                *f.journal.lock() = Some(entry);
                true
            }
            None => false,
        }),
    };
    let journaled = match res {
        Ok(true) => true,
        Ok(false) => false,
        Err(e) => {
            log::warn!("{path}: cannot journal for write-back ({e}); uploading at close");
            false
        }
    };
    if !journaled {
        // The caller uploads; the handle is what it was.
        f.close_seq.store(before.0, Ordering::Relaxed);
        f.changed_since_close.fetch_or(before.1, Ordering::Relaxed);
        return false;
    }
    // Deleted or renamed while the entry was written: it follows (a crash must neither bring a
    // deleted file back nor write under the old name).
    match f.path() {
        None => f.forget_journal(),
        Some(now) if now != path => rename_entry(f),
        Some(_) => {}
    }
    true
}

/// Defers the release of handle `fh` (open on `path`): its version is journaled (at its close,
/// or now) and queued. `false`: not deferred (the caller uploads now).
pub(super) fn defer(core: &Arc<Core>, fh: u64, file: Arc<OpenFile>, path: &str) -> bool {
    let wb = &core.writeback;
    let seq = file.close_or(|| wb.next_close());
    file.close_seq.store(seq, Ordering::Relaxed);
    let ticket = match wb.reserve(path, seq) {
        Reserve::Refused => return false,
        Reserve::Superseded => {
            file.forget_journal();
            core.handles.remove(fh);
            return true;
        }
        Reserve::Granted(t) => t,
    };
    let taken = file.journal.lock().take();
    let entry = match taken {
        Some(entry) => entry,
        None => match wb.journal(seq, path, &mut |out| copy_spool(&file, out)) {
            Ok(Some(entry)) => entry,
            Ok(None) => return false,
            Err(e) => {
                log::warn!("{path}: cannot journal for write-back ({e}); uploading at close");
                return false;
            }
        },
    };
    file.queued.store(true, Ordering::Relaxed);
    ticket.queue(entry, Box::new(Deferred { core: core.clone(), fh, file }));
    true
}

/// After a rename: the journal entries of handles now at or under `to` (journaled at a
/// close, not released yet) name their new path, so that a crash before their release does
/// not upload them under the old name.
pub(super) fn follow_rename(moved: &[Arc<OpenFile>]) {
    for f in moved {
        rename_entry(f);
    }
}

/// The journal entry of `f` (if any) names the handle's path now.
fn rename_entry(f: &OpenFile) {
    let (Some(path), Some(entry)) = (f.path(), f.journal.lock().clone()) else { return };
    if let Err(e) = entry.rename(&path) {
        log::error!("{path}: its write-back journal entry still names the old path: {e}");
    }
}
