//! The permission bits the server gives a file it makes when nobody asks (its umask), learned
//! once per mount from the first file this mount makes without a mode of its own.
//!
//! A create whose mode is what the server gives anyway needs no SITE CHMOD (a round trip on
//! servers that cannot take it behind the upload). Until the server's bits are known, 0644
//! (umask 022) is assumed, and the first file made with that mode is looked up once after its
//! upload: where the server gave it other bits (vsftpd's own default umask 077 gives 0600),
//! the file gets the mode asked for, and every later create sets its mode again.

use parking_lot::Mutex;

use super::core::Core;
use super::inodes::split_path;
use crate::backend::EntryKind;

/// What a server gives new files unless learned otherwise (umask 022).
pub(super) const ASSUMED_FILE_MODE: u32 = 0o644;

/// The bits learned (`None`: not yet).
#[derive(Default)]
pub(super) struct NewFileMode(Mutex<Option<u32>>);

impl NewFileMode {
    /// The bits a new file gets without a SITE CHMOD, and whether they are learned or assumed.
    pub(super) fn get(&self) -> (u32, bool) {
        match *self.0.lock() {
            Some(mode) => (mode, true),
            None => (ASSUMED_FILE_MODE, false),
        }
    }
}

impl Core {
    /// `path` was just made on the server by our upload with no mode set, for a create that
    /// asked for `wanted` (the assumed bits): learns from the server what bits it gave the
    /// file, and sets `wanted` where they differ. Nothing learned when the server cannot be
    /// asked (the next such file tries again); a failed chmod is logged, the data has landed.
    pub(super) fn learn_new_file_mode(&self, path: &str, wanted: u32) {
        let (parent, name) = split_path(path);
        let entry = match self.backend.stat_one(path) {
            Ok(Some(e)) => Some(e),
            Ok(None) => self.backend.list(parent).ok().and_then(|l| l.into_iter().find(|e| e.name == name)),
            Err(e) => {
                log::debug!("{path}: not looked up for the server's mode of new files ({e})");
                None
            }
        };
        let Some(entry) = entry.filter(|e| e.kind == EntryKind::File) else { return };
        // Listings without modes (DOS, some LIST formats): nothing to learn, nothing shown.
        let given = entry.mode.map_or(wanted, |m| m & 0o7777);
        *self.new_file_mode.0.lock() = Some(given);
        if given == wanted {
            return;
        }
        log::info!("the server gives new files mode {given:o}: a create's mode is set on each");
        if let Err(e) = self.chmod_now(path, wanted) {
            log::warn!("{path}: uploaded, but the server did not take its mode {wanted:o} (errno {e})");
        }
    }
}
