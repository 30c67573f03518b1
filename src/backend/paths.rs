//! Mount-relative paths, as the backend trait speaks them: `""` is the root, `"a/b"` is `b` in
//! directory `a`. The few helpers every layer above the wire uses to take them apart.

/// Joins a relative directory path and a name.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        return name.to_string();
    }
    let mut path = String::with_capacity(parent.len() + 1 + name.len());
    path.push_str(parent);
    path.push('/');
    path.push_str(name);
    path
}

/// True when `path` is `top` or lies under it (`top/...`); everything is under the root `""`.
pub fn is_at_or_under(path: &str, top: &str) -> bool {
    top.is_empty() || path.strip_prefix(top).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Splits a relative path into (parent, name).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}
