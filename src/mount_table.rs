//! Which mount is on a path, from /proc/self/mountinfo: its device number (which names the
//! mount's control socket), its type and who mounted it. Reads no file system, so a hung mount
//! cannot stop it; used by the mount itself and by the commands that talk to a running mount.

use std::path::Path;

/// The `major:minor` of the newest mount on `path`.
pub fn mount_device(path: &Path) -> Option<String> {
    mount_entry(path).map(|m| m.device)
}

/// What /proc/self/mountinfo says of a mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor`.
    pub device: String,
    /// `fuse.ftpfs`, `ext4`, …
    pub kind: String,
    /// A FUSE mount's `user_id=` (who mounted it).
    pub user_id: Option<u32>,
}

/// The newest mount on `path`, from /proc/self/mountinfo (which escapes space, tab, newline
/// and backslash in paths as octal). Reads no file system, so a hung mount cannot stop it.
pub fn mount_entry(path: &Path) -> Option<MountEntry> {
    let escaped = path
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = mountinfo.lines().rfind(|l| l.split(' ').nth(4) == Some(escaped.as_str()))?;
    let device = line.split(' ').nth(2)?.to_string();
    // After the optional fields comes " - TYPE SOURCE OPTIONS".
    let mut tail = line.split_once(" - ")?.1.split(' ');
    let kind = tail.next()?.to_string();
    let options = tail.nth(1).unwrap_or("");
    let user_id = options.split(',').find_map(|o| o.strip_prefix("user_id=")).and_then(|v| v.parse().ok());
    Some(MountEntry { device, kind, user_id })
}
