//! Symbolic links as the mount shows and makes them.
//!
//! - **Shown** (`transform_symlinks`, on by default): a link whose target is an absolute server
//!   path inside the mounted directory is shown relative to the link's directory, so that it
//!   leads to the same file through the mount. proftpd's `SITE SYMLINK` stores every target as
//!   an absolute path inside its root (`SITE SYMLINK a l` gives `l -> /a`), and an absolute server
//!   path means nothing on this machine. sshfs has the option off by default because SFTP
//!   servers keep targets as given; FTP servers do not. A target that would still lead out of
//!   the mount is kept from the kernel by the model (`model::symlink`), so a hostile server
//!   cannot point it at a file of this machine (`notes.txt -> /home/you/.bashrc`, written
//!   through). `no_transform_symlinks` shows targets exactly as listed, as sshfs does by default.
//! - **Followed** (`follow_symlinks`, off by default, as in sshfs): a link is shown as what it
//!   leads to, a file (its size and time) or a directory, as the *server* resolves it: SIZE and
//!   MDTM of the link's path, else CWD into it. The kernel then never follows a target on this
//!   machine, whatever the server points it at, and the server's own resolution stops loops
//!   (ELOOP there: the link stays a link); a link to a directory that holds it (its own or one
//!   above, by the path the mount shows it at) stays a link too, so a walk through links always
//!   ends. A link that leads nowhere stays a link, and one whose target would lead out of the
//!   mount on this machine shows no target. Costs one to three round trips per link in each
//!   listing.
//! - **Made**: `ln -s` becomes `SITE SYMLINK target link` where the server offers it (FEAT or
//!   SITE HELP list SYMLINK); a relative target is sent as the absolute server path it names
//!   from the link's directory (proftpd would take it from the session's directory).

use crate::backend::{Entry, EntryKind};
use crate::ftp::{self, Connection, FtpError};

/// `target` as shown for a link in the server directory `link_dir` when the mount's root is
/// `root` (both absolute server paths): relative to `link_dir` when it is an absolute path
/// inside `root`, else unchanged.
pub fn shown_target(root: &str, link_dir: &str, target: &str) -> String {
    let root = root.trim_end_matches('/');
    let inside =
        target.starts_with('/') && (target == root || root.is_empty() || target.starts_with(&format!("{root}/")));
    if !inside {
        return target.to_string();
    }
    let parts = |p: &str| p.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect::<Vec<_>>();
    let (from, to) = (parts(link_dir), parts(target));
    if to.iter().any(|c| c == "..") {
        return target.to_string();
    }
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel: Vec<&str> = std::iter::repeat_n("..", from.len() - common).collect();
    rel.extend(to[common..].iter().map(String::as_str));
    if rel.is_empty() { ".".to_string() } else { rel.join("/") }
}

/// What the server's link at `path` (in the directory `dir`, a path as the mount sees it) leads
/// to: a file (size, time) or a directory; `None` when it leads nowhere, into a loop as far as
/// the server can tell, or to a directory that holds the link (`dir` or above it, by the mount's
/// path or by the server's own: walking it would never end, as `find -L` or `cp -r` would go
/// round). Where a server's PWD shows the path as given rather than resolved, only the mount's
/// path can tell.
pub fn follow_on_server(c: &mut Connection, dir: &str, path: &str) -> ftp::Result<Option<Entry>> {
    let refused = |e: &FtpError| matches!(e, FtpError::Reply { .. });
    match c.size(path) {
        Ok(size) => {
            let mut e = Entry::new("", EntryKind::File);
            e.size = Some(size);
            match c.mdtm(path) {
                Ok((secs, nanos)) => {
                    (e.mtime, e.mtime_nanos, e.mtime_exact) = (Some(secs), nanos, true);
                }
                Err(err) if refused(&err) => {}
                Err(err) => return Err(err),
            }
            return Ok(Some(e));
        }
        Err(e) if refused(&e) => {}
        Err(e) => return Err(e),
    }
    match c.cwd(path) {
        Ok(()) => {
            // Where the link leads, and where the link's directory is, both as the server
            // resolves them (the mount's path to the directory may itself go through links).
            let target = c.pwd()?;
            c.cwd(dir)?;
            let here = c.pwd()?;
            let holds = |d: &str| {
                format!("{}/", d.trim_end_matches('/')).starts_with(&format!("{}/", target.trim_end_matches('/')))
            };
            Ok((!holds(dir) && !holds(&here)).then(|| Entry::new("", EntryKind::Dir)))
        }
        Err(e) if refused(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_targets_inside_the_root_become_relative() {
        assert_eq!(shown_target("/", "/", "/a.txt"), "a.txt");
        assert_eq!(shown_target("/", "/d", "/a.txt"), "../a.txt");
        assert_eq!(shown_target("/", "/d", "/d/e/f"), "e/f");
        assert_eq!(shown_target("/home/u", "/home/u/d", "/home/u/x/y"), "../x/y");
        assert_eq!(shown_target("/home/u", "/home/u", "/home/u"), ".");
        assert_eq!(shown_target("/home/u", "/home/u/d", "/home/uv/x"), "/home/uv/x", "outside the root");
        assert_eq!(shown_target("/home/u", "/home/u/d", "/etc/passwd"), "/etc/passwd");
        assert_eq!(shown_target("/", "/d", "rel/x"), "rel/x", "relative targets as they are");
        assert_eq!(shown_target("/", "/d", "/a/../../etc"), "/a/../../etc", "no guessing through ..");
    }
}
