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
use crate::backend::LinkTarget;
use crate::error::FsError;

/// Whether a link in the mount directory `dir` with `target` would lead out of the mount when
/// followed on this machine. `..` is safe only before any name: each step up from the link's
/// own directory stays in real directories of the mount.
pub(super) fn leads_out(dir: &str, target: &str) -> bool {
    // The kernel keeps a target up to its first NUL: `..<NUL>` is `..` to it.
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return true;
    }
    let mut depth = dir.split('/').filter(|c| !c.is_empty()).count();
    let mut named = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if named || depth == 0 => return true,
            ".." => depth -= 1,
            _ => named = true,
        }
    }
    false
}

/// `target` seen from the mount directory `dir`: the mount path it names (`None` when it climbs
/// above the mount's root).
fn resolve(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

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

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn relative_targets_resolve_from_the_link_directory() {
        assert_eq!(resolve("", "a.txt").as_deref(), Some("a.txt"));
        assert_eq!(resolve("d", "a.txt").as_deref(), Some("d/a.txt"));
        assert_eq!(resolve("d/e", "../x/./y").as_deref(), Some("d/x/y"));
        assert_eq!(resolve("d", "..").as_deref(), Some(""));
        assert_eq!(resolve("d", "../../x"), None, "above the mount's root");
    }

    #[test]
    fn targets_that_lead_out_of_the_mount() {
        use super::leads_out;
        assert!(!leads_out("", "a.txt"));
        assert!(!leads_out("d", "../a"));
        assert!(leads_out("d", "../../a"));
        assert!(!leads_out("d/e", "../../x/./y"));
        assert!(leads_out("", "/etc/passwd"));
        assert!(leads_out("", ""));
        assert!(leads_out("d", "a/.."), "a .. after a name: the name may be a link");
        assert!(leads_out("", "s/s/s/../../../../home/you/.bashrc"));
        assert!(!leads_out("", "./x/y"));
        assert!(leads_out("", "..\0"), "the kernel cuts a target at NUL");
        assert!(leads_out("d", "x\0/../../.."));
    }
}
