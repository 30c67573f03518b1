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
    /// Permission bits (`0o7777` part of the mode), when known.
    pub mode: Option<u32>,
}

impl Entry {
    pub(crate) fn new(name: String, kind: EntryKind) -> Entry {
        Entry { name, kind, size: None, mtime: None, mtime_nanos: 0, mode: None }
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

/// True when `name` is safe to use as one path component.
pub fn is_acceptable_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.bytes().any(|b| matches!(b, b'/' | 0 | b'\r' | b'\n')))
}

/// Parses a whole listing. Unknown lines are logged and skipped; unsafe names are dropped.
pub fn parse_listing(data: &[u8], dialect: Dialect, ctx: &ListContext) -> Vec<Entry> {
    let mut p = ListingParser::new(dialect, *ctx);
    p.feed(data);
    p.finish()
}

/// Parses a listing as its bytes arrive (the lines parse while the rest is in transit).
pub struct ListingParser {
    dialect: Dialect,
    ctx: ListContext,
    entries: Vec<Entry>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl ListingParser {
    pub fn new(dialect: Dialect, ctx: ListContext) -> ListingParser {
        ListingParser { dialect, ctx, entries: Vec::new(), partial: Vec::new() }
    }

    /// Forgets everything fed so far (the listing is asked again).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.partial.clear();
    }

    /// Parses the complete lines of `data` (after what came before).
    pub fn feed(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(data);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..nl]);
            self.line(&line);
            data = &data[nl + 1..];
        }
        let complete = match data.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.partial.extend_from_slice(&data[last + 1..]);
                &data[..last]
            }
            None => {
                self.partial.extend_from_slice(data);
                return;
            }
        };
        for raw in complete.split(|&b| b == b'\n') {
            self.line(raw);
        }
    }

    /// The entries, the last line parsed even without its line end.
    pub fn finish(mut self) -> Vec<Entry> {
        let last = std::mem::take(&mut self.partial);
        self.line(&last);
        self.entries
    }

    fn line(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let line = crate::ftp::reply::decode_text_cow(raw, self.ctx.encoding);
        let parsed = match self.dialect {
            Dialect::Mlsd => parse_mlsd_line(&line),
            Dialect::List => parse_list_line(&line, &self.ctx),
        };
        match parsed {
            Some(e) if is_acceptable_name(&e.name) => self.entries.push(e),
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
