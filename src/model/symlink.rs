//! `ln -s`: a symbolic link made on the server (`SITE SYMLINK`, where the server offers it;
//! EPERM elsewhere, as before). A relative target is resolved from the link's directory here,
//! in mount paths, because the server would resolve it from its session's directory; an
//! absolute target is sent as it is. How links are shown: `remote::symlinks`.

use super::FsResult;
use super::fs::{Model, Stat};
use super::inodes::split_path;
use crate::backend::LinkTarget;
use crate::error::FsError;

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
        let target = if target.starts_with('/') {
            LinkTarget::Verbatim(target)
        } else {
            resolved = resolve(dir, target).ok_or(libc::EINVAL)?;
            LinkTarget::InMount(&resolved)
        };
        let made = core.backend.symlink(target, &path);
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
        // is (proftpd: type=file), and the kernel takes an answer that is no link as an error.
        core.list_dir(dir)?;
        match self.looked_up(&path) {
            Ok(st) if st.kind == super::Kind::Symlink => Ok(st),
            Ok(_) => Err(libc::EIO),
            Err(e) => Err(e),
        }
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
}
