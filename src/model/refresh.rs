//! `ftpfs refresh`: forgetting, on demand, what the mount holds of a part of the server (the way
//! `rclone rc vfs/refresh` and `vfs/forget` do), so that the next access sees the server as it
//! is now rather than as it was within `cache_timeout`. Listings (which carry every entry's
//! attributes) are dropped at a path, at its parent (which holds the path's own attributes)
//! and, recursively, below it; so is what work ahead fetched there. Open files keep what they
//! read and wrote: they are ours until closed.
//!
//! The kernel keeps attributes, names and pages too; the model only says which inodes it may
//! hold stale ([`Model::refresh`]'s answer), and the adapter tells the kernel.

use super::fs::Model;
use super::inodes::split_path;
use crate::error::FsError;

/// What a refresh dropped, and the inodes whose kernel copies may now be stale.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// The inode numbers (directories and files) at or below the path the kernel may know.
    pub inodes: Vec<u64>,
    /// The same as names in their directories: (the directory's inode number, name).
    pub names: Vec<(u64, String)>,
}

/// `path` (relative to the mount's root, as `ftpfs refresh` sends it) checked: no empty, `.`
/// or `..` part, no NUL.
fn checked(path: &str) -> Result<&str, FsError> {
    let path = path.trim_matches('/');
    let bad = |c: &str| c.is_empty() || c == "." || c == ".." || c.contains('\0');
    if !path.is_empty() && path.split('/').any(bad) {
        return Err(FsError::Invalid);
    }
    Ok(path)
}

impl Model {
    /// Forgets the cached listings at `path` (its own if a directory, its parent's) and, with
    /// `recursive` (or for the root), every listing cached below it; also what work ahead
    /// fetched at or below it. The path need not exist any more.
    pub fn refresh(&self, path: &str, recursive: bool) -> Result<Refreshed, FsError> {
        let path = checked(path)?;
        // The whole mount is everything below its root.
        let recursive = recursive || path.is_empty();
        let dirs = &self.core.dirs;
        if recursive {
            dirs.invalidate_tree(path);
        } else {
            dirs.invalidate(path);
        }
        if !path.is_empty() {
            dirs.invalidate(split_path(path).0);
        }
        self.core.backend.forget(path);
        if let Some(cache) = self.core.disk_cache() {
            cache.forget(path);
        }
        let table = self.inodes.lock();
        let inodes = table.at_or_under(path, recursive);
        let names = inodes
            .iter()
            .filter_map(|&ino| {
                let p = table.path(ino).filter(|p| !p.is_empty())?;
                let (dir, name) = split_path(p);
                Some((table.get(dir)?, name.to_string()))
            })
            .collect();
        Ok(Refreshed { inodes, names })
    }
}

#[cfg(test)]
mod tests {
    use super::checked;

    #[test]
    fn refresh_paths_are_checked() {
        assert_eq!(checked(""), Ok(""));
        assert_eq!(checked("/a/b/"), Ok("a/b"));
        assert!(checked("a/../b").is_err());
        assert!(checked("a//b").is_err());
        assert!(checked("./a").is_err());
    }
}
