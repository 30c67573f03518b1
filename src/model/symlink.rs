//! Symbolic links in the model: which targets the kernel may be given, and `ln -s`.
//!
//! - **Shown**: a target is a path on the server. One that would lead out of the mount when the
//!   kernel follows it here (absolute, or with more `..` than the link is deep, or with a `..`
//!   after a name, which a link on the way could take anywhere) is not shown, whatever the
//!   listing's source (the server, work ahead, the disk cache): the link reads as the file the
//!   server makes of it. Not with `no_transform_symlinks`. How the server's absolute targets
//!   inside the mount become relative: `remote::symlinks`.
//! - **Made**: `ln -s` is a link made on the server (`SITE SYMLINK`, where the server offers it;
//!   EPERM elsewhere). A relative target is resolved from the link's directory here, in mount
//!   paths, because the server would resolve it from its session's directory; an absolute target
//!   is refused (EPERM: it names a path of this machine, which the server cannot link to), unless
//!   targets are shown raw, when it is sent as it is.

use super::FsResult;
use super::fs::{Model, Stat};
use super::inodes::split_path;
use super::link_targets::resolve;
use crate::backend::LinkTarget;
use crate::error::FsError;

impl Model {
    /// Makes `name` in `parent` a symbolic link to `target`.
    pub fn symlink(&self, parent: u64, name: &str, target: &str) -> FsResult<Stat> {
        let path = self.child(parent, name)?;
        self.refuse_if_read_only()?;
        let core = &self.core;
        if core.entry(&path).is_ok() {
            return Err(libc::EEXIST);
        }
        let dir = split_path(&path).0;
        let resolved;
        let sent = if target.starts_with('/') {
            if !core.cfg.raw_link_targets {
                return Err(libc::EPERM);
            }
            LinkTarget::Verbatim(target)
        } else {
            resolved = resolve(dir, target).ok_or(libc::EINVAL)?;
            LinkTarget::InMount(&resolved)
        };
        let made = core.backend.symlink(sent, &path);
        // The listing shows the link as the server made it (its target as the server keeps it).
        core.dirs.invalidate(dir);
        match made {
            Ok(()) => {}
            Err(FsError::Unsupported) => return Err(libc::EPERM),
            Err(e) => return Err(e.errno()),
        }
        core.note_change(&path);
        core.touch_dir(dir);
        // From the directory's listing: a server's MLST of a link may describe it as the file it
        // is (proftpd: type=file). The kernel takes an answer that is no link as an error, and
        // a listing may show the link as what it leads to (`follow_symlinks`): the answer is the
        // link as made.
        core.list_dir(dir)?;
        let mut st = self.looked_up(&path)?;
        if st.kind != super::Kind::Symlink {
            st.kind = super::Kind::Symlink;
            st.size = target.len() as u64;
            st.perm = 0o777;
            st.nlink = 1;
        }
        Ok(st)
    }
}
