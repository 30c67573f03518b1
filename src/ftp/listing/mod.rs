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
    let mut entries = Vec::new();
    for raw in data.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let line = crate::ftp::reply::decode_text_cow(raw, ctx.encoding);
        let parsed = match dialect {
            Dialect::Mlsd => parse_mlsd_line(&line),
            Dialect::List => parse_list_line(&line, ctx),
        };
        match parsed {
            Some(e) if is_acceptable_name(&e.name) => entries.push(e),
            Some(e) => log::debug!("listing: dropping unsafe name {:?}", e.name),
            None => {
                if !is_total_line(&line) {
                    log::debug!("listing: skipping unrecognised line {:?}", line);
                }
            }
        }
    }
    entries
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

/// Splits a line into whitespace-separated tokens with their byte offsets.
pub(crate) fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        if c == ' ' || c == '\t' {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
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
