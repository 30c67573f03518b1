//! Unix `ls -l` style LIST lines:
//! `perm [links] owner [group] size Mon DD HH:MM|YYYY name[ -> target]`.
//!
//! The owner, group and link count columns vary between servers, so the parser anchors on the
//! date (a month name, a day, and a time or year) and takes the size just before it. `HH:MM` means
//! "within the last six months": the year is the current one unless that lands in the future.

use super::{Entry, EntryKind, ListContext, civil_to_unix, tokens, year_of};

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// Parses one Unix-style LIST line; `None` if it does not look like one.
pub fn parse_unix_line(line: &str, ctx: &ListContext) -> Option<Entry> {
    let toks = tokens(line);
    let (_, perm) = *toks.first()?;
    let kind_char = perm.chars().next()?;
    if perm.len() < 10 || !"-dlbcpsD".contains(kind_char) || !perm.is_char_boundary(10) {
        return None;
    }
    let bits = &perm[1..10];
    if !bits.bytes().all(|c| b"rwxsStTlL-".contains(&c)) {
        return None;
    }
    // Find the date: month, day, time-or-year, preceded by a numeric size.
    let idx = (2..toks.len().saturating_sub(2)).find(|&i| {
        month_number(toks[i].1).is_some()
            && toks[i + 1].1.parse::<u8>().is_ok_and(|d| (1..=31).contains(&d))
            && is_time_or_year(toks[i + 2].1)
            && toks[i - 1].1.bytes().all(|b| b.is_ascii_digit())
    })?;
    let size: u64 = toks[idx - 1].1.parse().ok()?;
    let month = month_number(toks[idx].1)?;
    let day: u8 = toks[idx + 1].1.parse().ok()?;
    let (when_start, when) = toks[idx + 2];
    let mtime = date_to_unix(month, day, when, ctx);
    // The name starts one space after the time/year column.
    let name_start = when_start + when.len() + 1;
    let raw_name = line.get(name_start..)?;
    if raw_name.is_empty() {
        return None;
    }
    let (name, kind) = match kind_char {
        'd' => (raw_name.to_string(), EntryKind::Dir),
        'l' => match raw_name.split_once(" -> ") {
            Some((n, t)) => (n.to_string(), EntryKind::Symlink(Some(t.to_string()))),
            None => (raw_name.to_string(), EntryKind::Symlink(None)),
        },
        _ => (raw_name.to_string(), EntryKind::File),
    };
    let mut e = Entry::new(name, kind);
    e.size = Some(size);
    e.mtime = mtime;
    e.mtime_step = if when.contains(':') { 60 } else { 86_400 };
    e.mode = Some(mode_bits(bits));
    Some(e)
}

fn month_number(tok: &str) -> Option<u8> {
    if tok.len() != 3 {
        return None;
    }
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(tok)).map(|i| i as u8 + 1)
}

fn is_time_or_year(tok: &str) -> bool {
    match tok.split_once(':') {
        Some((h, m)) => {
            (1..=2).contains(&h.len()) && m.len() == 2 && h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
        }
        None => tok.len() == 4 && tok.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn date_to_unix(month: u8, day: u8, when: &str, ctx: &ListContext) -> Option<i64> {
    let local = match when.split_once(':') {
        Some((h, m)) => {
            let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
            let year = year_of(ctx.now + ctx.tz_offset);
            let this_year = civil_to_unix(year, month, day, h, m, 0);
            // A date more than a day in the future belongs to last year (6-month rule).
            match this_year {
                Some(t) if t - ctx.tz_offset <= ctx.now + 86_400 => Some(t),
                _ => civil_to_unix(year - 1, month, day, h, m, 0),
            }
        }
        None => civil_to_unix(when.parse().ok()?, month, day, 0, 0, 0),
    }?;
    Some(local - ctx.tz_offset)
}

fn mode_bits(bits: &str) -> u32 {
    let b = bits.as_bytes();
    let mut mode = 0;
    let on = |c: u8| !matches!(c, b'-' | b'S' | b'T' | b'l' | b'L');
    for (i, &c) in b.iter().enumerate().take(9) {
        if on(c) {
            mode |= 1 << (8 - i);
        }
    }
    if matches!(b.get(2), Some(b's' | b'S')) {
        mode |= 0o4000;
    }
    if matches!(b.get(5), Some(b's' | b'S' | b'l' | b'L')) {
        mode |= 0o2000;
    }
    if matches!(b.get(8), Some(b't' | b'T')) {
        mode |= 0o1000;
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-15 12:00:00 UTC
    const NOW: i64 = 1_710_504_000;

    fn ctx() -> ListContext {
        ListContext { now: NOW, tz_offset: 0, encoding: None }
    }

    fn p(line: &str) -> Entry {
        parse_unix_line(line, &ctx()).unwrap_or_else(|| panic!("did not parse: {line}"))
    }

    #[test]
    fn vsftpd_captured() {
        // Captured from vsftpd 3.0.3 `LIST -a`.
        let e = p("-rw-r--r--    1 1001     1001           11 Mar 14 09:30 hello.txt");
        assert_eq!(e.name, "hello.txt");
        assert_eq!(e.size, Some(11));
        assert_eq!(e.mtime, civil_to_unix(2024, 3, 14, 9, 30, 0));
        assert_eq!(e.mtime_step, 60, "a time of day: to the minute");
        assert_eq!(e.mode, Some(0o644));
        let d = p("drwxr-xr-x    2 1001     1001         4096 Jan 02  2019 sub dir");
        assert!(d.is_dir());
        assert_eq!(d.name, "sub dir");
        assert_eq!(d.mtime, civil_to_unix(2019, 1, 2, 0, 0, 0));
        assert_eq!(d.mtime_step, 86_400, "a date with a year: to the day");
        let l = p("lrwxrwxrwx    1 1001     1001            9 Mar 14 09:30 link -> hello.txt");
        assert_eq!(l.name, "link");
        assert_eq!(l.kind, EntryKind::Symlink(Some("hello.txt".into())));
        let h = p("-rw-------    1 1001     1001            3 Mar 14 09:30 .hidden");
        assert_eq!(h.name, ".hidden");
        assert_eq!(h.mode, Some(0o600));
    }

    #[test]
    fn pyftpdlib_captured() {
        let e = p("-rw-r--r--   1 root     root            5 Mar 15 11:59 a b  c.txt");
        assert_eq!(e.name, "a b  c.txt");
    }

    #[test]
    fn pure_ftpd_captured() {
        let e = p("-rw-r--r--    1 ftpuser    ftpgroup          42 Dec 31  2023 report.pdf");
        assert_eq!(e.size, Some(42));
        assert_eq!(e.mtime, civil_to_unix(2023, 12, 31, 0, 0, 0));
        let d = p("drwxr-xr-x    3 ftpuser    ftpgroup        4096 Mar  1 08:05 photos");
        assert_eq!(d.mtime, civil_to_unix(2024, 3, 1, 8, 5, 0));
    }

    #[test]
    fn without_group_and_without_links() {
        let e = p("-rw-r--r--   1 owner 77 Feb  3 2021 nogroup");
        assert_eq!((e.size, e.name.as_str()), (Some(77), "nogroup"));
        let e = p("-rw-r--r-- owner group 88 Feb  3 2021 nolinks");
        assert_eq!((e.size, e.name.as_str()), (Some(88), "nolinks"));
        let e = p("-rw-r--r--   0 owner group 5 Feb  3 2021 zero links");
        assert_eq!(e.name, "zero links");
    }

    #[test]
    fn six_month_rule() {
        // "Dec 20 10:00" seen in March 2024 means December 2023.
        let e = p("-rw-r--r--   1 u g 1 Dec 20 10:00 old");
        assert_eq!(e.mtime, civil_to_unix(2023, 12, 20, 10, 0, 0));
        // Later today is still this year (clock skew of under a day).
        let e = p("-rw-r--r--   1 u g 1 Mar 15 18:00 today");
        assert_eq!(e.mtime, civil_to_unix(2024, 3, 15, 18, 0, 0));
    }

    #[test]
    fn timezone_offset() {
        let c = ListContext { now: NOW, tz_offset: 3600, encoding: None };
        let e = parse_unix_line("-rw-r--r-- 1 u g 1 Jan 01 2020 x", &c).unwrap();
        assert_eq!(e.mtime, civil_to_unix(2020, 1, 1, 0, 0, 0).map(|t| t - 3600));
    }

    #[test]
    fn special_bits_and_acl_marker() {
        let e = p("-rwsr-sr-t+  1 u g 1 Jan 01 2020 s");
        assert_eq!(e.mode, Some(0o7755));
        let e = p("drwxrwxrwT   1 u g 1 Jan 01 2020 t");
        assert_eq!(e.mode, Some(0o1776));
    }

    #[test]
    fn not_unix() {
        assert!(parse_unix_line("total 12", &ctx()).is_none());
        assert!(parse_unix_line("01-31-24  02:15PM       <DIR>          dir", &ctx()).is_none());
        assert!(parse_unix_line("-rw-r--r-- 1 u g x Jan 01 2020 bad-size", &ctx()).is_none());
        assert!(parse_unix_line("-rw-r--r-- 1 u g 1 Jan 01 2020", &ctx()).is_none());
        assert!(parse_unix_line("-rw-r--r-- 1 u g 1 Jan 01 2020 ", &ctx()).is_none());
    }
}
