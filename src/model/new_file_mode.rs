//! The permission bits the server gives a file it makes when nobody asks (its umask), learned
//! once per mount from the first file this mount makes without a mode of its own.
//!
//! A create of mode 0644 (umask 022) needs no SITE CHMOD (a round trip on servers that cannot
//! take it behind the upload) where the server gives new files those bits. Until known, they
//! are assumed, and the first file made with that mode is looked up once after its upload:
//! where the server gave it other bits (vsftpd's own default umask 077 gives 0600), the file
//! gets the mode asked for, and every later create of 0644 sets its mode too (behind the data).
//! What is learned never spares a chmod of any other mode: a stricter one (0600) is set before
//! any data goes up whatever the server is believed to give, so a wrong lesson (another
//! client's file, a mode set meanwhile) cannot leave a private file readable.

use parking_lot::Mutex;

use crate::backend::{Backend, EntryKind, entry_now};

/// What a server gives new files unless learned otherwise (umask 022).
pub(super) const ASSUMED_FILE_MODE: u32 = 0o644;

/// The bits learned (`None`: not yet).
#[derive(Default)]
pub(super) struct NewFileMode(Mutex<Option<u32>>);

impl NewFileMode {
    /// The bits a new file gets without a SITE CHMOD, and whether they are learned (else
    /// assumed).
    pub(super) fn get(&self) -> (u32, bool) {
        match *self.0.lock() {
            Some(mode) => (mode, true),
            None => (ASSUMED_FILE_MODE, false),
        }
    }
}

impl NewFileMode {
    /// `path` was just made on the server by our upload of `size` bytes with no mode set:
    /// learns from the server what bits it gave the file, and returns them. Nothing learned
    /// when the server cannot be asked or shows another file there (the next such file tries
    /// again). Listings without modes (DOS, some LIST formats) teach the assumed bits: nothing
    /// else is shown there.
    pub(super) fn learn(&self, backend: &dyn Backend, path: &str, size: u64) -> Option<u32> {
        let Some(entry) = entry_now(backend, path) else {
            log::debug!("{path}: not found again to learn the server's mode of new files");
            return None;
        };
        if entry.kind != EntryKind::File || entry.size.is_some_and(|s| s != size) {
            log::debug!("{path}: another file than our upload; the server's mode of new files not learned from it");
            return None;
        }
        let given = entry.mode.map_or(ASSUMED_FILE_MODE, |m| m & 0o7777);
        *self.0.lock() = Some(given);
        if given != ASSUMED_FILE_MODE {
            log::info!(
                "the server gives new files mode {given:o}: a create's mode {ASSUMED_FILE_MODE:o} is set on each"
            );
        }
        Some(given)
    }
}
