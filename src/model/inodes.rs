//! Inode numbers for remote paths, stable while the kernel holds them.
//!
//! FTP has no inode numbers, so we hand them out per path: the same path keeps its number as
//! long as the kernel has a lookup reference on it (counted by lookup/forget). A rename moves the
//! number, and every number under a renamed directory, to the new path. Paths here are relative
//! to the mount's remote root: `""` is the root, `"a/b"` a child.
//!
//! Numbers the kernel holds no reference on (handed out by a plain readdir) are kept only for
//! the most recent [`MAX_UNCOUNTED`] of them; numbers the kernel forgot are freed at once, so
//! the table stays bounded on a mount that lives for days.

use std::collections::{HashMap, VecDeque};

pub use crate::backend::paths::{child_path, is_at_or_under, split_path};

pub const ROOT_INO: u64 = 1;

/// Numbers handed out without a kernel reference that are kept at most (oldest go first; a
/// later readdir of the name gets a new one).
pub const MAX_UNCOUNTED: usize = 100_000;

struct Node {
    /// `None` once the path was deleted while the kernel still held the number.
    path: Option<String>,
    lookups: u64,
}

/// The table. Callers wrap it in a lock.
pub struct Inodes {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
    next: u64,
    /// Numbers made by [`Inodes::peek_or_assign`], oldest first (some may have gone since).
    uncounted: VecDeque<u64>,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, Node { path: Some(String::new()), lookups: 1 });
        let mut by_path = HashMap::new();
        by_path.insert(String::new(), ROOT_INO);
        Inodes { nodes, by_path, next: ROOT_INO + 1, uncounted: VecDeque::new() }
    }

    /// The path of an inode number, if it is still known and not deleted.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.nodes.get(&ino).and_then(|n| n.path.as_deref())
    }

    /// The inode number of a path if it has one.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The number for `path`, creating it if needed, and counts one kernel lookup on it.
    pub fn lookup(&mut self, path: &str) -> u64 {
        let ino = match self.by_path.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.nodes.insert(ino, Node { path: Some(path.to_string()), lookups: 0 });
                self.by_path.insert(path.to_string(), ino);
                ino
            }
        };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
        ino
    }

    /// The number for `path` without counting a lookup (readdir without plus).
    pub fn peek_or_assign(&mut self, path: &str) -> u64 {
        let made = !self.by_path.contains_key(path);
        let ino = self.lookup(path);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups -= 1;
        }
        if made {
            self.uncounted.push_back(ino);
            while self.uncounted.len() > MAX_UNCOUNTED {
                if let Some(old) = self.uncounted.pop_front() {
                    self.drop_if_unreferenced(old);
                }
            }
        }
        ino
    }

    /// Frees `ino` if the kernel holds no reference on it.
    fn drop_if_unreferenced(&mut self, ino: u64) {
        if ino == ROOT_INO || self.nodes.get(&ino).is_none_or(|n| n.lookups > 0) {
            return;
        }
        if let Some(n) = self.nodes.remove(&ino)
            && let Some(p) = n.path
            && self.by_path.get(&p) == Some(&ino)
        {
            self.by_path.remove(&p);
        }
    }

    /// The kernel dropped `count` references.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(n) = self.nodes.get_mut(&ino) else { return };
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups == 0 {
            if let Some(p) = n.path.take()
                && self.by_path.get(&p) == Some(&ino)
            {
                self.by_path.remove(&p);
            }
            self.nodes.remove(&ino);
        }
    }

    /// `path` was deleted: its number stays valid for the kernel but no longer names anything.
    pub fn remove_path(&mut self, path: &str) {
        if let Some(ino) = self.by_path.remove(path)
            && let Some(n) = self.nodes.get_mut(&ino)
        {
            n.path = None;
        }
    }

    /// Moves `from` (and everything under it) to `to`. Whatever was at `to` is replaced.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.remove_path(to);
        let moved: Vec<(String, u64)> =
            self.by_path.iter().filter(|(p, _)| is_at_or_under(p, from)).map(|(p, &i)| (p.clone(), i)).collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let new = format!("{to}{}", &old[from.len()..]);
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }

    /// Number of inodes known (for tests and statistics).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_or_under() {
        assert!(is_at_or_under("a", "a"));
        assert!(is_at_or_under("a/b", "a"));
        assert!(!is_at_or_under("ab", "a"));
        assert!(!is_at_or_under("b/a", "a"));
        assert!(is_at_or_under("x", ""));
    }

    #[test]
    fn stable_numbers_and_forget() {
        let mut t = Inodes::new();
        let a = t.lookup("a");
        assert_eq!(t.lookup("a"), a);
        assert_eq!(t.path(a), Some("a"));
        t.forget(a, 1);
        assert_eq!(t.path(a), Some("a"));
        t.forget(a, 1);
        assert_eq!(t.path(a), None);
        let a2 = t.lookup("a");
        assert_ne!(a2, a);
    }

    #[test]
    fn rename_moves_subtree() {
        let mut t = Inodes::new();
        let d = t.lookup("d");
        let f = t.lookup("d/f");
        let g = t.lookup("d/sub/g");
        let other = t.lookup("dx");
        let target = t.lookup("e");
        t.rename("d", "e");
        assert_eq!(t.path(d), Some("e"));
        assert_eq!(t.path(f), Some("e/f"));
        assert_eq!(t.path(g), Some("e/sub/g"));
        assert_eq!(t.path(other), Some("dx"));
        assert_eq!(t.path(target), None);
        assert_eq!(t.get("e/f"), Some(f));
        assert_eq!(t.get("d/f"), None);
    }

    #[test]
    fn removed_path_keeps_number_until_forget() {
        let mut t = Inodes::new();
        let a = t.lookup("a");
        t.remove_path("a");
        assert_eq!(t.path(a), None);
        assert_eq!(t.get("a"), None);
        t.forget(a, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn paths() {
        assert_eq!(child_path("", "a"), "a");
        assert_eq!(child_path("a", "b"), "a/b");
        assert_eq!(split_path("a/b/c"), ("a/b", "c"));
        assert_eq!(split_path("a"), ("", "a"));
    }

    #[test]
    fn numbers_without_a_kernel_reference_are_bounded() {
        let mut t = Inodes::new();
        let held = t.lookup("held");
        let first = t.peek_or_assign("d/0");
        assert_eq!(t.peek_or_assign("d/0"), first, "the same name keeps its number meanwhile");
        // Looked up by the kernel later: no longer dropped with the uncounted ones.
        let looked = t.peek_or_assign("d/1");
        assert_eq!(t.lookup("d/1"), looked);
        for i in 2..MAX_UNCOUNTED + 10 {
            t.peek_or_assign(&format!("d/{i}"));
        }
        assert!(t.len() <= MAX_UNCOUNTED + 3, "{} numbers held", t.len());
        assert_eq!(t.get("d/0"), None, "the oldest uncounted number went");
        assert_eq!(t.path(looked), Some("d/1"), "a number the kernel holds stays");
        assert_eq!(t.path(held), Some("held"));
        let again = t.peek_or_assign("d/0");
        assert_ne!(again, first, "a name seen again gets a new number");
    }
}
