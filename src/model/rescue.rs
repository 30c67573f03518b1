//! Keeping the data of a handle whose upload failed at close: its temp copy becomes a named
//! file in `cache_dir` (and the name is logged) instead of being deleted with the handle.

use std::io::{self, Read, Seek, SeekFrom};
use std::time::SystemTime;

use super::core::Core;
use super::files::OpenFile;
use super::open_file::{Spool, State};

/// The release of `f` failed to upload its data: the temp copy is kept as a named file in
/// `cache_dir` (and the name logged), instead of being deleted with the handle. The temp file
/// itself gets the name (no second copy needed on a full disk); copying is the fallback.
pub(super) fn rescue(core: &Core, f: &OpenFile) {
    let mut io = f.io.lock();
    let State::Spooled(s) = &mut io.state else { return };
    if !(s.dirty || f.is_created()) {
        return;
    }
    let path = f.path().unwrap_or_default();
    let stamp = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let name = format!(
        "ftpfs-unsaved-{}-{stamp}-{}",
        std::process::id(),
        crate::printable::tail_bytes(&path.replace('/', "_"), 150)
    );
    let kept = core.cfg.cache_dir.join(name);
    match keep_spool(s, &kept) {
        Ok(()) => log::error!("{path}: upload failed at close; its data is kept in {}", kept.display()),
        Err(e) => {
            let _ = std::fs::remove_file(&kept);
            log::error!("{path}: upload failed at close, and keeping its data in {} failed too: {e}", kept.display());
        }
    }
}

/// Gives the spool's (unnamed) temp file the name `kept`, or copies it there.
fn keep_spool(s: &mut Spool, kept: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    s.file.set_len(s.len)?;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", s.file.as_raw_fd())).map_err(io::Error::other)?;
    let to = std::ffi::CString::new(kept.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that live across the call.
    let linked =
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if linked == 0 {
        return Ok(());
    }
    let mut out = crate::private_files::create_new(kept)?;
    s.file.seek(SeekFrom::Start(0))?;
    io::copy(&mut (&s.file).take(s.len), &mut out)?;
    // Durable like the link would be (the journal's entry points at it).
    out.sync_all()
}
