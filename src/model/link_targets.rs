//! Link targets in mount paths, without the server: which ones the kernel may follow without
//! leaving the mount, and the mount path a relative target names (see `model::symlink`).

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
pub(super) fn resolve(dir: &str, target: &str) -> Option<String> {
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
