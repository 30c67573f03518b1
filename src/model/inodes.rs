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
//!
//! Each path is stored once (with its number); the index from path to number holds only the
//! numbers, hashed by path: a number costs about 60 bytes plus its path.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use hashbrown::HashTable;

pub use crate::backend::paths::{child_path, is_at_or_under, split_path};

pub const ROOT_INO: u64 = 1;

/// Numbers handed out without a kernel reference that are kept at most (oldest go first; a
/// later readdir of the name gets a new one).
pub const MAX_UNCOUNTED: usize = 100_000;

/// The queue of uncounted numbers is first rid of the ones gone since at this length, then
/// whenever it doubled since.
const COMPACT_FIRST: usize = 1024;

/// Hashes inode numbers (ours, handed out in sequence: nothing to defend against) with one
/// multiplication, where SipHash would cost more than the rest of a lookup.
#[derive(Default)]
struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Nodes by inode number.
type NodeMap = HashMap<u64, Node, BuildHasherDefault<NumberHasher>>;

struct Node {
    /// `None` once the path was deleted while the kernel still held the number.
    path: Option<Box<str>>,
    lookups: u64,
}

/// The numbers of paths that have one, hashed by path (the paths are in `nodes`).
struct ByPath {
    table: HashTable<u64>,
    hasher: RandomState,
}

impl ByPath {
    fn hash(&self, path: &str) -> u64 {
        self.hasher.hash_one(path)
    }

    fn get(&self, nodes: &NodeMap, path: &str) -> Option<u64> {
        self.table.find(self.hash(path), |ino| path_of(nodes, *ino) == Some(path)).copied()
    }

    /// Indexes `ino` under `path` (which `nodes` holds for it), replacing what was there.
    fn insert(&mut self, nodes: &NodeMap, path: &str, ino: u64) {
        let hash = self.hash(path);
        match self.table.find_mut(hash, |i| path_of(nodes, *i) == Some(path)) {
            Some(slot) => *slot = ino,
            None => {
                let hasher = &self.hasher;
                self.table.insert_unique(hash, ino, |i| hasher.hash_one(path_of(nodes, *i).unwrap_or("")));
            }
        }
    }

    /// Unindexes `path` if it names `ino` (before `nodes` forgets the path).
    fn remove(&mut self, nodes: &NodeMap, path: &str, ino: u64) {
        if let Ok(entry) = self.table.find_entry(self.hash(path), |i| *i == ino && path_of(nodes, *i) == Some(path)) {
            entry.remove();
        }
    }
}

fn path_of(nodes: &NodeMap, ino: u64) -> Option<&str> {
    nodes.get(&ino).and_then(|n| n.path.as_deref())
}

/// The table. Callers wrap it in a lock.
pub struct Inodes {
    nodes: NodeMap,
    by_path: ByPath,
    next: u64,
    /// Numbers made by [`Inodes::peek_or_assign`], oldest first (some may have gone since).
    uncounted: VecDeque<u64>,
    /// The length of `uncounted` at which it is next rid of numbers gone since.
    compact_at: usize,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut nodes = NodeMap::default();
        nodes.insert(ROOT_INO, Node { path: Some("".into()), lookups: 1 });
        let mut by_path = ByPath { table: HashTable::new(), hasher: RandomState::new() };
        by_path.insert(&nodes, "", ROOT_INO);
        Inodes { nodes, by_path, next: ROOT_INO + 1, uncounted: VecDeque::new(), compact_at: COMPACT_FIRST }
    }

    /// The path of an inode number, if it is still known and not deleted.
    pub fn path(&self, ino: u64) -> Option<&str> {
        self.nodes.get(&ino).and_then(|n| n.path.as_deref())
    }

    /// The numbers of `dir` and of the paths below it: every depth with `recursive`, else its
    /// children only; also its parent's.
    pub fn at_or_under(&self, dir: &str, recursive: bool) -> Vec<u64> {
        let parent = split_path(dir).0;
        self.nodes
            .iter()
            .filter(|(_, n)| {
                n.path.as_deref().is_some_and(|p| {
                    let below = is_at_or_under(p, dir);
                    let near = p == dir || split_path(p).0 == dir || (!dir.is_empty() && p == parent);
                    if recursive { below || near } else { near }
                })
            })
            .map(|(&ino, _)| ino)
            .collect()
    }

    /// The inode number of a path if it has one.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.by_path.get(&self.nodes, path)
    }

    /// The number for `path`, creating it if needed, and counts one kernel lookup on it.
    pub fn lookup(&mut self, path: &str) -> u64 {
        let ino = match self.get(path) {
            Some(ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.nodes.insert(ino, Node { path: Some(path.into()), lookups: 0 });
                self.by_path.insert(&self.nodes, path, ino);
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
        let made = self.get(path).is_none();
        let ino = self.lookup(path);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups -= 1;
        }
        if made {
            self.uncounted.push_back(ino);
            if self.uncounted.len() >= self.compact_at {
                // Numbers freed since (forgotten, deleted) or looked up since (counted now)
                // leave the queue, so that it holds about what it stands for.
                let nodes = &self.nodes;
                self.uncounted.retain(|i| nodes.get(i).is_some_and(|n| n.lookups == 0));
                self.compact_at = (self.uncounted.len() * 2).max(COMPACT_FIRST);
            }
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
        self.free(ino);
    }

    /// Forgets `ino` and unindexes its path.
    fn free(&mut self, ino: u64) {
        if let Some(p) = path_of(&self.nodes, ino) {
            let p: Box<str> = p.into();
            self.by_path.remove(&self.nodes, &p, ino);
        }
        self.nodes.remove(&ino);
    }

    /// The kernel dropped `count` references.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(n) = self.nodes.get_mut(&ino) else { return };
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups == 0 {
            self.free(ino);
        }
    }

    /// `path` was deleted: its number stays valid for the kernel but no longer names anything;
    /// one the kernel holds no reference on (handed out by a readdir) is freed at once, rather
    /// than kept, pathless, until [`MAX_UNCOUNTED`] newer ones push it out.
    pub fn remove_path(&mut self, path: &str) {
        if let Some(ino) = self.get(path) {
            self.by_path.remove(&self.nodes, path, ino);
            match self.nodes.get_mut(&ino) {
                Some(n) if n.lookups == 0 && ino != ROOT_INO => {
                    self.nodes.remove(&ino);
                }
                Some(n) => n.path = None,
                None => {}
            }
        }
    }

    /// Moves `from` (and everything under it) to `to`. Whatever was at `to` is replaced.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.remove_path(to);
        let moved: Vec<(u64, Box<str>)> = self
            .nodes
            .iter()
            .filter_map(|(&i, n)| n.path.as_ref().filter(|p| is_at_or_under(p, from)).map(|p| (i, p.clone())))
            .collect();
        for (ino, old) in &moved {
            self.by_path.remove(&self.nodes, old, *ino);
        }
        for (ino, old) in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            // A number still known under the new path (a stale name under the target) no longer
            // names anything.
            self.remove_path(&new);
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.path = Some(new.as_str().into());
            }
            self.by_path.insert(&self.nodes, &new, ino);
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

    /// Numbers handed out by a readdir whose paths were deleted go at once, and the queue of
    /// such numbers holds about what is still there: a mount that creates and deletes names
    /// all day does not grow towards MAX_UNCOUNTED.
    #[test]
    fn uncounted_numbers_of_deleted_paths_go_at_once() {
        let mut t = Inodes::new();
        for i in 0..5000 {
            let p = format!("d/f{i}");
            t.peek_or_assign(&p);
            t.remove_path(&p);
        }
        assert_eq!(t.len(), 1, "only the root is left");
        assert!(t.uncounted.len() <= COMPACT_FIRST, "{} numbers queued", t.uncounted.len());
        // One the kernel holds stays, without its path, until forgotten.
        let a = t.lookup("a");
        t.remove_path("a");
        assert_eq!((t.len(), t.path(a)), (2, None));
        t.forget(a, 1);
        assert_eq!(t.len(), 1);
        // Numbers still there survive the queue's compaction.
        let kept: Vec<u64> = (0..3000).map(|i| t.peek_or_assign(&format!("k{i}"))).collect();
        assert!(kept.iter().enumerate().all(|(i, &ino)| t.path(ino) == Some(format!("k{i}").as_str())));
        assert_eq!(t.len(), 3001);
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
    fn rename_over_names_the_table_still_knows() {
        let mut t = Inodes::new();
        let stale = t.lookup("to/x");
        let x = t.lookup("from/x");
        let to = t.lookup("to");
        t.rename("from", "to");
        assert_eq!(t.get("to/x"), Some(x), "the moved name wins");
        assert_eq!(t.path(to), None);
        t.forget(stale, 1);
        assert_eq!(t.get("to/x"), Some(x), "forgetting the old number leaves the new one");
        assert_eq!(t.path(x), Some("to/x"));
        t.forget(x, 1);
        assert_eq!(t.get("to/x"), None);
        for i in 0..1000 {
            t.lookup(&format!("many/{i}"));
        }
        assert!((0..1000).all(|i| t.get(&format!("many/{i}")).is_some()));
        t.rename("many", "other");
        assert!((0..1000).all(|i| t.get(&format!("many/{i}")).is_none() && t.get(&format!("other/{i}")).is_some()));
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

    /// The table against a plain model of it (a map each way), over random operations on a few
    /// paths that nest: every path keeps the number the model gives it.
    mod against_a_model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Lookup(usize),
            Peek(usize),
            Forget(usize),
            Remove(usize),
            Rename(usize, usize),
        }

        const PATHS: [&str; 8] = ["a", "a/b", "a/b/c", "a/x", "b", "b/b", "c", "ab"];

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..8usize).prop_map(Op::Lookup),
                (0..8usize).prop_map(Op::Peek),
                (0..8usize).prop_map(Op::Forget),
                (0..8usize).prop_map(Op::Remove),
                (0..8usize, 0..8usize).prop_map(|(a, b)| Op::Rename(a, b)),
            ]
        }

        #[derive(Default)]
        struct Model {
            path_of: HashMap<u64, (Option<String>, u64)>,
        }

        impl Model {
            fn ino(&self, path: &str) -> Option<u64> {
                self.path_of.iter().find(|(_, (p, _))| p.as_deref() == Some(path)).map(|(i, _)| *i)
            }
        }

        proptest! {
            #[test]
            fn same_numbers_as_the_model(ops in proptest::collection::vec(op(), 1..60)) {
                let mut t = Inodes::new();
                let mut m = Model::default();
                for op in ops {
                    match op {
                        Op::Lookup(p) | Op::Peek(p) => {
                            let path = PATHS[p];
                            let peek = matches!(op, Op::Peek(_));
                            let ino = if peek { t.peek_or_assign(path) } else { t.lookup(path) };
                            match m.ino(path) {
                                Some(known) => prop_assert_eq!(ino, known),
                                None => {
                                    m.path_of.insert(ino, (Some(path.to_string()), 0));
                                }
                            }
                            if !peek {
                                m.path_of.get_mut(&ino).unwrap().1 += 1;
                            }
                        }
                        Op::Forget(p) => {
                            if let Some(ino) = m.ino(PATHS[p]) {
                                t.forget(ino, 1);
                                let n = m.path_of.get_mut(&ino).unwrap();
                                n.1 = n.1.saturating_sub(1);
                                if n.1 == 0 {
                                    m.path_of.remove(&ino);
                                }
                            }
                        }
                        Op::Remove(p) => {
                            t.remove_path(PATHS[p]);
                            if let Some(ino) = m.ino(PATHS[p]) {
                                m.path_of.get_mut(&ino).unwrap().0 = None;
                            }
                        }
                        Op::Rename(a, b) => {
                            let (from, to) = (PATHS[a], PATHS[b]);
                            if from == to || is_at_or_under(to, from) {
                                continue;
                            }
                            t.rename(from, to);
                            if let Some(ino) = m.ino(to) {
                                m.path_of.get_mut(&ino).unwrap().0 = None;
                            }
                            let moved: Vec<(u64, String)> = m
                                .path_of
                                .iter()
                                .filter_map(|(i, (p, _))| p.as_ref().filter(|p| is_at_or_under(p, from)).map(|p| (*i, p.clone())))
                                .collect();
                            for (ino, old) in moved {
                                let new = format!("{to}{}", &old[from.len()..]);
                                for (i, (p, _)) in m.path_of.iter_mut() {
                                    if *i != ino && p.as_deref() == Some(new.as_str()) {
                                        *p = None;
                                    }
                                }
                                m.path_of.get_mut(&ino).unwrap().0 = Some(new);
                            }
                        }
                    }
                    for path in PATHS {
                        prop_assert_eq!(t.get(path), m.ino(path), "path {}", path);
                        if let Some(ino) = m.ino(path) {
                            prop_assert_eq!(t.path(ino), Some(path));
                        }
                    }
                }
            }
        }
    }
}
