//! Sets of byte ranges (half-open, `[start, end)`), kept sorted, disjoint and merged: which
//! parts of a file the disk cache holds.

/// Sorted, disjoint, non-adjacent ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new() -> Ranges {
        Ranges(Vec::new())
    }

    /// Adds `[start, end)`, merging with what it touches.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Every range that overlaps or touches [s, e) is merged into it.
        let first = self.0.partition_point(|&(_, re)| re < s);
        let mut last = first;
        while last < self.0.len() && self.0[last].0 <= e {
            s = s.min(self.0[last].0);
            e = e.max(self.0[last].1);
            last += 1;
        }
        self.0.splice(first..last, [(s, e)]);
    }

    /// Whether all of `[start, end)` is held.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.0.partition_point(|&(_, re)| re <= start);
        self.0.get(i).is_some_and(|&(rs, re)| rs <= start && end <= re)
    }

    /// Bytes held in all.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    /// The end of the last range (0 when empty).
    pub fn end(&self) -> u64 {
        self.0.last().map_or(0, |r| r.1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The ranges as text: `0-4096,8192-9000` (empty for none).
    pub fn to_text(&self) -> String {
        self.0.iter().map(|(s, e)| format!("{s}-{e}")).collect::<Vec<_>>().join(",")
    }

    /// Parses [`Ranges::to_text`]; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Ranges> {
        let mut r = Ranges::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (s, e) = part.split_once('-')?;
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            if s >= e {
                return None;
            }
            r.add(s, e);
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_what_touches() {
        let mut r = Ranges::new();
        r.add(10, 20);
        r.add(30, 40);
        assert_eq!(r.to_text(), "10-20,30-40");
        r.add(20, 30);
        assert_eq!(r.to_text(), "10-40");
        r.add(0, 5);
        r.add(5, 10);
        assert_eq!(r.to_text(), "0-40");
        assert!(r.covers(0, 40) && !r.covers(0, 41) && r.covers(7, 7));
        assert_eq!(Ranges::from_text("0-40"), Some(r));
        assert_eq!(Ranges::from_text("5-3"), None);
        assert_eq!(Ranges::from_text("x"), None);
    }

    proptest! {
        /// Against a set of bytes: the same bytes held, whatever the order of adds.
        #[test]
        fn holds_exactly_what_was_added(adds in proptest::collection::vec((0u64..200, 0u64..40), 0..30)) {
            let mut r = Ranges::new();
            let mut held = [false; 240];
            for (s, len) in adds {
                r.add(s, s + len);
                for b in &mut held[s as usize..(s + len) as usize] {
                    *b = true;
                }
            }
            prop_assert_eq!(r.total(), held.iter().filter(|&&b| b).count() as u64);
            for s in 0..240u64 {
                for e in s..240u64 {
                    let all = held[s as usize..e as usize].iter().all(|&b| b);
                    prop_assert_eq!(r.covers(s, e), all, "{}..{} in {}", s, e, r.to_text());
                }
            }
            let pairs: Vec<(u64, u64)> = r.iter().collect();
            prop_assert!(pairs.windows(2).all(|w| w[0].1 < w[1].0), "sorted, apart: {}", r.to_text());
            prop_assert_eq!(Ranges::from_text(&r.to_text()), Some(r));
        }
    }
}
