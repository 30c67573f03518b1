//! The files of one write-back journal entry: a version's own copy of the data (`N.data`), the
//! path it belongs to (`N.path`: a line `ftpfs-seq <close>` with the version's place in the
//! order of closes, then the path; its mtime is the moment of the close) and, once its upload
//! began, a marker (`N.started`). Every file is private (0600) and written whole before it is
//! given its name: the data into `N.datatmp`, fsynced, renamed; the path likewise through
//! `N.pathtmp`; then the directory is fsynced. A crash leaves either a whole entry or parts
//! that the replay removes (a `.data` without its `.path`, temp files).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// One entry of the journal, by its file names.
#[derive(Clone, Debug)]
pub(in crate::model) struct JournalEntry {
    data: PathBuf,
    name: PathBuf,
    /// The length of the data.
    len: u64,
    /// The version's place in the order of closes.
    seq: u64,
}

/// The first line of a `.path` file: the version's place in the order of closes.
pub(super) const SEQ_TAG: &str = "ftpfs-seq ";

/// What a `.path` file holds for version `seq` of `path`.
fn path_file(seq: u64, path: &str) -> Vec<u8> {
    format!("{SEQ_TAG}{seq}\n{path}").into_bytes()
}

impl JournalEntry {
    /// Writes a new entry `id` in `dir` for `path`: `fill` writes the version's bytes into the
    /// file it is given and returns their count (`None`: nothing to keep; no entry is made).
    pub(super) fn create(
        dir: &Path,
        id: u64,
        seq: u64,
        path: &str,
        fill: &mut dyn FnMut(&mut File) -> io::Result<Option<u64>>,
    ) -> io::Result<Option<JournalEntry>> {
        let data = dir.join(format!("{id:020}.data"));
        let mut entry = JournalEntry { data, name: dir.join(format!("{id:020}.path")), len: 0, seq };
        let res = entry.write_data(fill).and_then(|len| {
            let Some(len) = len else { return Ok(None) };
            write_atomically(&entry.name, &entry.name.with_extension("pathtmp"), &path_file(seq, path))?;
            sync_dir(dir)?;
            Ok(Some(len))
        });
        match res {
            Ok(Some(len)) => {
                entry.len = len;
                Ok(Some(entry))
            }
            other => {
                entry.remove();
                other.map(|_| None)
            }
        }
    }

    /// A newer close of the same handle: its bytes replace the entry's data whole (a reader of
    /// the old copy keeps it), and the entry's time becomes now. `None`: nothing to keep (the
    /// entry stays as it was).
    pub(super) fn refill(
        &mut self,
        seq: u64,
        path: &str,
        fill: &mut dyn FnMut(&mut File) -> io::Result<Option<u64>>,
    ) -> io::Result<Option<u64>> {
        let Some(len) = self.write_data(fill)? else { return Ok(None) };
        self.len = len;
        self.seq = seq;
        // Written anew: its time is the moment of this close.
        write_atomically(&self.name, &self.name.with_extension("pathtmp"), &path_file(seq, path))?;
        if let Some(dir) = self.name.parent() {
            sync_dir(dir)?;
        }
        Ok(Some(len))
    }

    /// The data written through a temp name, fsynced, then renamed over `N.data`.
    fn write_data(&self, fill: &mut dyn FnMut(&mut File) -> io::Result<Option<u64>>) -> io::Result<Option<u64>> {
        let tmp = self.data.with_extension("datatmp");
        let _ = std::fs::remove_file(&tmp);
        let mut out = crate::private_files::create_new(&tmp)?;
        let res = fill(&mut out).and_then(|len| {
            if len.is_some() {
                out.sync_all()?;
                std::fs::rename(&tmp, &self.data)?;
            }
            Ok(len)
        });
        if !matches!(res, Ok(Some(_))) {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// The version's copy of the data (never changed once written: a newer close renames a
    /// new copy over it).
    pub(in crate::model) fn data(&self) -> &Path {
        &self.data
    }

    /// The length of the version.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The version's place in the order of closes.
    pub(in crate::model) fn seq(&self) -> u64 {
        self.seq
    }

    /// The file moved: the entry names `path` now, and keeps its time (a replay orders a
    /// path's entries by it).
    pub(in crate::model) fn rename(&self, path: &str) -> io::Result<()> {
        let closed = std::fs::metadata(&self.name).and_then(|m| m.modified());
        let tmp = self.name.with_extension("pathtmp");
        let mut f = crate::private_files::create_or_truncate(&tmp)?;
        io::Write::write_all(&mut f, &path_file(self.seq, path))?;
        if let Ok(t) = closed {
            f.set_modified(t)?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.name)?;
        self.name.parent().map_or(Ok(()), sync_dir)
    }

    /// Its upload begins now: a replay after a crash can tell the server's newer file is its
    /// own bytes cut short (see [`super::replay`]).
    pub(in crate::model) fn mark_started(&self) {
        let _ = crate::private_files::create_or_truncate(&self.data.with_extension("started"));
    }

    /// The entry is done with: its files go.
    pub(in crate::model) fn remove(&self) {
        let _ = std::fs::remove_file(self.data.with_extension("started"));
        let _ = std::fs::remove_file(&self.name);
        let _ = std::fs::remove_file(&self.data);
    }
}

/// Makes the directory's entries durable (the journal survives a crash of the machine).
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `to` through `tmp`, fsynced, so a crash never leaves half a file there.
fn write_atomically(to: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = crate::private_files::create_or_truncate(tmp)?;
    io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_with(bytes: &'static [u8]) -> impl FnMut(&mut File) -> io::Result<Option<u64>> {
        move |f: &mut File| {
            io::Write::write_all(f, bytes)?;
            Ok(Some(bytes.len() as u64))
        }
    }

    #[test]
    fn an_entry_is_its_own_copy_and_a_refill_replaces_it_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let mut e =
            JournalEntry::create(dir.path(), 7, 1, "a/b", &mut fill_with(b"first")).expect("io").expect("entry");
        assert_eq!(e.len(), 5);
        assert_eq!(std::fs::read(e.data()).expect("data"), b"first");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("{:020}.path", 7))).expect("path"),
            "ftpfs-seq 1\na/b"
        );
        let reader = File::open(e.data()).expect("reader");
        assert_eq!(e.refill(2, "a/b", &mut fill_with(b"second!")).expect("io"), Some(7));
        assert_eq!(e.len(), 7);
        assert_eq!(std::fs::read(e.data()).expect("data"), b"second!");
        // A reader of the first copy keeps it.
        assert_eq!(io::read_to_string(reader).expect("read"), "first");
        let name = dir.path().join(format!("{:020}.path", 7));
        let closed = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options().write(true).open(&name).expect("path file").set_modified(closed).expect("time");
        e.rename("c").expect("rename");
        assert_eq!(
            std::fs::read_to_string(&name).expect("path"),
            "ftpfs-seq 2\nc",
            "the rename lost the place in the order"
        );
        let kept = std::fs::metadata(&name).and_then(|m| m.modified()).expect("time");
        assert_eq!(kept, closed, "the rename changed the time of the close");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        assert_eq!(names.len(), 2, "only the data and the path are left: {names:?}");
        e.remove();
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn nothing_to_keep_or_a_failed_fill_leaves_no_file() {
        let dir = tempfile::tempdir().expect("dir");
        let none = JournalEntry::create(dir.path(), 1, 1, "x", &mut |_| Ok(None)).expect("io");
        assert!(none.is_none());
        let failed =
            JournalEntry::create(dir.path(), 2, 2, "x", &mut |_| Err(io::Error::from_raw_os_error(libc::ENOSPC)));
        assert_eq!(failed.err().and_then(|e| e.raw_os_error()), Some(libc::ENOSPC));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0, "no part of an entry is left");
    }
}
