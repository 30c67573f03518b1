//! Directory listings: the entry type and the parsers for what servers send.
//!
//! Three dialects: MLSD facts (RFC 3659, machine-readable, UTC), Unix `ls -l` style LIST output
//! (vsftpd, pure-ftpd, proftpd, pyftpdlib) and DOS/IIS style LIST output. Whatever the dialect, a
//! name that could escape or confuse the filesystem (`/`, NUL, CR, LF, `.`, `..`, empty) is dropped,
//! and a line that cannot be understood is logged and skipped, never fatal.

mod dos;
mod mlsd;
mod unix;

pub use dos::parse_dos_line;
pub use mlsd::{format_mlsd_time, parse_mlsd_line, parse_mlsd_time};
pub use unix::parse_unix_line;

use time::{Date, Month, PrimitiveDateTime, Time};

/// What kind of object an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link, with its target when the listing shows it.
    Symlink(Option<String>),
}

/// One directory entry as the server described it. Fields the listing did not give are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: Option<u64>,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: Option<i64>,
    /// Sub-second part of `mtime`, in nanoseconds (MLSD only).
    pub mtime_nanos: u32,
    /// How precise `mtime` is, in seconds: the true time lies in `[mtime, mtime + step)`. 1 for
    /// MLSD, MLST and MDTM; 60 for a LIST time of day (`Jun  7 08:09`); 86 400 for a LIST date
    /// with a year (`Jun  7  2021`: files older than six months).
    pub mtime_step: u32,
    /// Permission bits (`0o7777` part of the mode), when known.
    pub mode: Option<u32>,
}

impl Entry {
    pub(crate) fn new(name: String, kind: EntryKind) -> Entry {
        Entry { name, kind, size: None, mtime: None, mtime_nanos: 0, mtime_step: 1, mode: None }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// Which parser to use for a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// MLSD facts.
    Mlsd,
    /// LIST output, Unix or DOS style, detected line by line.
    List,
}

/// What the LIST parsers need to know to turn dates into timestamps.
#[derive(Clone, Copy, Debug)]
pub struct ListContext {
    /// The current time, seconds since the epoch: LIST shows `HH:MM` instead of a year for recent
    /// files, and the year is guessed from this (the "6 month rule").
    pub now: i64,
    /// Offset of the server's LIST times from UTC, in seconds (0 when the server lists in UTC).
    pub tz_offset: i64,
    /// The character set of names (None: UTF-8).
    pub encoding: Option<&'static encoding_rs::Encoding>,
}

impl ListContext {
    pub fn now_utc() -> ListContext {
        ListContext { now: time::OffsetDateTime::now_utc().unix_timestamp(), tz_offset: 0, encoding: None }
    }
}

/// Longest name kept, in bytes (Linux's NAME_MAX): a longer one can be neither looked up nor
/// created through the mount, and past 1024 bytes it would fail the whole directory's readdir.
pub const MAX_NAME: usize = 255;

/// Entries one listing may hold; past this the listing is refused (see [`ListingParser`]).
pub const MAX_LISTING_ENTRIES: usize = 250_000;

/// Memory the parsed entries of one listing may take (their structures, names and link
/// targets); past this the listing is refused.
pub const MAX_LISTING_MEMORY: usize = 48 * 1024 * 1024;

/// Longest listing line parsed, in bytes; a longer one is skipped (no entry has one: a name is
/// at most [`MAX_NAME`] bytes, a link target at most a path).
pub const MAX_LISTING_LINE: usize = 16 * 1024;

/// True when `name` is safe to use as one path component.
pub fn is_acceptable_name(name: &str) -> bool {
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_NAME
        || name.bytes().any(|b| matches!(b, b'/' | 0 | b'\r' | b'\n')))
}

/// Parses a whole listing. Unknown lines are logged and skipped; unsafe names are dropped.
pub fn parse_listing(data: &[u8], dialect: Dialect, ctx: &ListContext) -> Vec<Entry> {
    let mut p = ListingParser::new(dialect, *ctx);
    p.feed(data);
    p.finish()
}

/// The memory one parsed entry takes, about: its structure and what its strings hold.
fn entry_cost(e: &Entry) -> usize {
    let target = match &e.kind {
        EntryKind::Symlink(Some(t)) => t.capacity(),
        _ => 0,
    };
    std::mem::size_of::<Entry>() + e.name.capacity() + target
}

/// Parses a listing as its bytes arrive (the lines parse while the rest is in transit).
///
/// Bounded whatever the server sends: a line longer than [`MAX_LISTING_LINE`] is skipped
/// without being kept, and once the entries reach [`MAX_LISTING_ENTRIES`] or
/// [`MAX_LISTING_MEMORY`] the parser stops taking more and [`ListingParser::overflow`] says
/// which bound was hit (the caller refuses the listing).
pub struct ListingParser {
    dialect: Dialect,
    ctx: ListContext,
    entries: Vec<Entry>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_LISTING_LINE`]: skipped up to its end.
    skipping: bool,
    /// What the entries take, by [`entry_cost`].
    held: usize,
    /// The bound hit, if any: nothing more is parsed.
    overflow: Option<Bound>,
}

/// A bound of [`ListingParser`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Entries,
    Memory,
}

impl ListingParser {
    pub fn new(dialect: Dialect, ctx: ListContext) -> ListingParser {
        ListingParser {
            dialect,
            ctx,
            entries: Vec::new(),
            partial: Vec::new(),
            skipping: false,
            held: 0,
            overflow: None,
        }
    }

    /// Forgets everything fed so far (the listing is asked again).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.partial.clear();
        self.skipping = false;
        self.held = 0;
        self.overflow = None;
    }

    /// Which bound the listing went past (`more than 250000 entries`), if any. The entries
    /// parsed are then incomplete and the listing must be refused.
    pub fn overflow(&self) -> Option<String> {
        self.overflow.map(|bound| match bound {
            Bound::Entries => format!("more than {MAX_LISTING_ENTRIES} entries"),
            Bound::Memory => format!("more than {} MiB of entries once parsed", MAX_LISTING_MEMORY >> 20),
        })
    }

    /// Parses the complete lines of `data` (after what came before).
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let len = self.partial.len() + nl;
            if self.skipping || len > MAX_LISTING_LINE {
                if !self.skipping {
                    log::debug!("listing: skipping a line of {len} bytes");
                }
                self.skipping = false;
                self.partial.clear();
            } else if self.partial.is_empty() {
                self.line(&data[..nl]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&data[..nl]);
                self.line(&line);
                // The buffer is kept for the next line that arrives in pieces.
                line.clear();
                self.partial = line;
            }
            data = &data[nl + 1..];
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + data.len() > MAX_LISTING_LINE {
            log::debug!("listing: skipping a line of more than {MAX_LISTING_LINE} bytes");
            self.skipping = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    /// The entries, the last line parsed even without its line end.
    pub fn finish(mut self) -> Vec<Entry> {
        if !self.skipping {
            let last = std::mem::take(&mut self.partial);
            self.line(&last);
        }
        self.entries
    }

    fn line(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if self.overflow.is_some() || raw.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let line = crate::ftp::reply::decode_text_cow(raw, self.ctx.encoding);
        let parsed = match self.dialect {
            Dialect::Mlsd => parse_mlsd_line(&line),
            Dialect::List => parse_list_line(&line, &self.ctx),
        };
        match parsed {
            Some(e) if is_acceptable_name(&e.name) => {
                let cost = entry_cost(&e);
                if self.entries.len() >= MAX_LISTING_ENTRIES {
                    self.overflow = Some(Bound::Entries);
                } else if self.held + cost > MAX_LISTING_MEMORY {
                    self.overflow = Some(Bound::Memory);
                } else {
                    self.held += cost;
                    self.entries.push(e);
                }
            }
            Some(e) => log::debug!("listing: dropping unsafe name {:?}", e.name),
            None => {
                if !is_total_line(&line) {
                    log::debug!("listing: skipping unrecognised line {:?}", line);
                }
            }
        }
    }
}

/// Parses one LIST line, Unix style first, then DOS style.
pub fn parse_list_line(line: &str, ctx: &ListContext) -> Option<Entry> {
    parse_unix_line(line, ctx).or_else(|| parse_dos_line(line, ctx))
}

fn is_total_line(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    l.starts_with("total ")
}

/// Seconds since the epoch for a civil date and time, or `None` if it does not exist.
pub(crate) fn civil_to_unix(year: i32, month: u8, day: u8, hour: u8, min: u8, sec: u8) -> Option<i64> {
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    let t = Time::from_hms(hour, min, sec).ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp())
}

/// The calendar year of a Unix timestamp (UTC).
pub(crate) fn year_of(unix: i64) -> i32 {
    time::OffsetDateTime::from_unix_timestamp(unix).map(|t| t.year()).unwrap_or(1970)
}

/// Tokens kept per line: enough for every LIST format's columns before the name (a name's own
/// spaces make more; the parsers take the name from its offset).
const MAX_TOKENS: usize = 16;

/// The first whitespace-separated tokens of a line with their byte offsets, without allocating.
pub(crate) struct Tokens<'a> {
    items: [(usize, &'a str); MAX_TOKENS],
    len: usize,
}

impl<'a> std::ops::Deref for Tokens<'a> {
    type Target = [(usize, &'a str)];

    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

/// Splits a line into whitespace-separated tokens with their byte offsets (the first
/// [`MAX_TOKENS`]).
pub(crate) fn tokens(line: &str) -> Tokens<'_> {
    let mut out = Tokens { items: [(0, ""); MAX_TOKENS], len: 0 };
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len < MAX_TOKENS {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if start < i {
            // Spaces and tabs are ASCII: both ends are character boundaries.
            out.items[out.len] = (start, &line[start..i]);
            out.len += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unsafe_names_dropped() {
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let data = b"type=file;size=1; ok\r\ntype=file;size=1; a/b\r\ntype=dir; ..\r\ntype=cdir; .\r\ntype=file; x\rDELE y\r\n";
        let names: Vec<_> = parse_listing(data, Dialect::Mlsd, &ctx).into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["ok"]);
    }

    #[test]
    fn total_and_blank_lines_skipped() {
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let data = b"total 8\r\n\r\n-rw-r--r--    1 1000     1000            5 Jan 01  2020 a\r\n";
        let e = parse_listing(data, Dialect::List, &ctx);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "a");
    }

    #[test]
    fn lines_split_across_pieces() {
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let mut p = ListingParser::new(Dialect::Mlsd, ctx);
        for piece in ["type=file;size=1; a\r", "\ntype=file;si", "ze=2; b€", "\r\ntype=dir; c"] {
            p.feed(piece.as_bytes());
        }
        let got: Vec<(String, Option<u64>)> = p.finish().into_iter().map(|e| (e.name, e.size)).collect();
        assert_eq!(got, [("a".into(), Some(1)), ("b€".into(), Some(2)), ("c".into(), None)]);
    }

    #[test]
    fn bounded_in_entries() {
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let line = |i: usize| format!("type=file;size=1; f{i}\r\n");
        let mut p = ListingParser::new(Dialect::Mlsd, ctx);
        for i in 0..MAX_LISTING_ENTRIES {
            p.feed(line(i).as_bytes());
        }
        assert_eq!(p.overflow(), None, "exactly the bound is fine");
        p.feed(line(MAX_LISTING_ENTRIES).as_bytes());
        assert_eq!(p.overflow().as_deref(), Some("more than 250000 entries"));
        p.feed(line(0).repeat(1000).as_bytes());
        assert_eq!(p.finish().len(), MAX_LISTING_ENTRIES, "nothing is taken past the bound");
    }

    #[test]
    fn bounded_in_memory() {
        // Links with targets of 16 000 bytes: the memory bound comes long before the entries'.
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let target = "d/".repeat(8000);
        let mut p = ListingParser::new(Dialect::List, ctx);
        let mut fed = 0;
        while p.overflow().is_none() {
            p.feed(format!("lrwxrwxrwx 1 u g 9 Jan 02  2024 l{fed} -> {target}\r\n").as_bytes());
            fed += 1;
            assert!(fed < 10_000, "no bound after {fed} links of 16 000 bytes");
        }
        assert_eq!(p.overflow().as_deref(), Some("more than 48 MiB of entries once parsed"));
        let entries = p.finish();
        let held: usize = entries.iter().map(entry_cost).sum();
        assert!(held <= MAX_LISTING_MEMORY && held > MAX_LISTING_MEMORY - 20_000, "{held}");
        p = ListingParser::new(Dialect::List, ctx);
        p.feed(b"-rw-r--r-- 1 u g 1 Jan 02  2024 a\r\n");
        p.clear();
        assert_eq!((p.overflow(), p.finish().len()), (None, 0));
    }

    #[test]
    fn long_lines_and_names_skipped() {
        let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
        let long_line = format!("type=file;size=1; {}\r\n", "x".repeat(MAX_LISTING_LINE));
        let long_name = format!("type=file;size=1; {}\r\n", "y".repeat(MAX_NAME + 1));
        let just = format!("type=file;size=1; {}\r\n", "z".repeat(MAX_NAME));
        let data = format!("type=file; a\r\n{long_line}{long_name}{just}type=file; b");
        for piece in [data.len(), 7, 1000, 4096] {
            let mut p = ListingParser::new(Dialect::Mlsd, ctx);
            for chunk in data.as_bytes().chunks(piece) {
                p.feed(chunk);
                assert!(p.partial.len() <= MAX_LISTING_LINE, "a line of {} bytes kept", p.partial.len());
            }
            let names: Vec<String> = p.finish().into_iter().map(|e| e.name).collect();
            assert_eq!(names, ["a".to_string(), "z".repeat(MAX_NAME), "b".to_string()], "pieces of {piece}");
        }
        // An endless line, never ended: nothing kept, nothing parsed.
        let mut p = ListingParser::new(Dialect::Mlsd, ctx);
        for _ in 0..100 {
            p.feed(&[b'x'; 4096]);
        }
        assert!(p.partial.capacity() <= 2 * MAX_LISTING_LINE);
        assert!(p.finish().is_empty());
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_names_are_safe(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
            for d in [Dialect::Mlsd, Dialect::List] {
                for e in parse_listing(&data, d, &ctx) {
                    prop_assert!(is_acceptable_name(&e.name));
                }
            }
        }

        /// A listing fed in pieces split anywhere (inside a line, inside a CR LF, inside a
        /// UTF-8 character) parses to the same entries as fed whole.
        #[test]
        fn pieces_parse_as_the_whole(
            names in proptest::collection::vec("[a-zé€ ;=.-]{1,12}", 0..20),
            cuts in proptest::collection::vec(0..2000usize, 0..12),
            mlsd in any::<bool>(),
            last_line_end in any::<bool>(),
        ) {
            let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
            let mut data = String::new();
            for (i, n) in names.iter().enumerate() {
                if mlsd {
                    data += &format!("type=file;size={i};modify=20240102030405; {n}\r\n");
                } else {
                    data += &format!("-rw-r--r--    1 u g {i} Jan 02  2024 {n}\r\n");
                }
            }
            if !last_line_end {
                data.truncate(data.trim_end().len());
            }
            let dialect = if mlsd { Dialect::Mlsd } else { Dialect::List };
            let bytes = data.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut p = ListingParser::new(dialect, ctx);
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                p.feed(&bytes[from..c]);
                from = c;
            }
            let pieces = p.finish();
            prop_assert_eq!(pieces, parse_listing(bytes, dialect, &ctx));
        }

        #[test]
        fn list_like_lines_never_panic(
            perm in "[-dlcbps][rwxsStT-]{9}[+@.]?",
            links in "[0-9]{0,3}",
            size in "[0-9]{0,12}",
            month in "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Foo)",
            day in "[0-9]{1,2}",
            when in "([0-9]{1,2}:[0-9]{2}|[0-9]{4})",
            name in "[ -~]{0,30}",
        ) {
            let ctx = ListContext { now: 1_700_000_000, tz_offset: 0, encoding: None };
            let line = format!("{perm} {links} user group {size} {month} {day} {when} {name}");
            if let Some(e) = parse_list_line(&line, &ctx) {
                prop_assert!(!e.name.is_empty() || name.is_empty());
            }
        }
    }
}
