//! DOS/IIS style LIST lines: `MM-DD-YY  HH:MMAM  <DIR>|size  name`.
//!
//! IIS uses 2-digit years by default (00–69 → 20xx) and 12-hour times with AM/PM; with other
//! settings it prints 4-digit years and 24-hour times. Sizes may carry thousands separators.

use super::{Entry, EntryKind, ListContext, civil_to_unix, tokens};

/// Parses one DOS-style LIST line; `None` if it does not look like one.
pub fn parse_dos_line(line: &str, ctx: &ListContext) -> Option<Entry> {
    let toks = tokens(line);
    if toks.len() < 4 {
        return None;
    }
    let date = toks[0].1;
    let mut parts = date.split(['-', '/']);
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let month: u8 = m.parse().ok()?;
    let day: u8 = d.parse().ok()?;
    let year: i32 = match y.len() {
        2 => {
            let y: i32 = y.parse().ok()?;
            if y < 70 { 2000 + y } else { 1900 + y }
        }
        4 => y.parse().ok()?,
        _ => return None,
    };
    // Time: "02:15PM", or "02:15 PM" (two tokens), or "14:15".
    let (mut time_tok, mut next) = (toks[1].1.to_ascii_uppercase(), 2);
    if matches!(toks[2].1.to_ascii_uppercase().as_str(), "AM" | "PM") {
        time_tok.push_str(&toks[2].1.to_ascii_uppercase());
        next = 3;
    }
    let (hour, minute) = parse_time(&time_tok)?;
    let size_tok = toks.get(next)?.1;
    let name_tok = toks.get(next + 1)?;
    let name = line.get(name_tok.0..)?.to_string();
    let mut e = if size_tok.eq_ignore_ascii_case("<DIR>") {
        Entry::new(name, EntryKind::Dir)
    } else {
        let digits: String = size_tok.chars().filter(|c| *c != ',' && *c != '.').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut e = Entry::new(name, EntryKind::File);
        e.size = Some(digits.parse().ok()?);
        e
    };
    e.mtime = civil_to_unix(year, month, day, hour, minute, 0).map(|t| t - ctx.tz_offset);
    e.mtime_step = 60;
    Some(e)
}

fn parse_time(t: &str) -> Option<(u8, u8)> {
    let (clock, meridiem) = if let Some(c) = t.strip_suffix("AM") {
        (c, Some(false))
    } else if let Some(c) = t.strip_suffix("PM") {
        (c, Some(true))
    } else {
        (t, None)
    };
    let (h, m) = clock.split_once(':')?;
    let (mut h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    if m > 59 {
        return None;
    }
    match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&h) {
                return None;
            }
            h %= 12;
            if pm {
                h += 12;
            }
        }
        None if h > 23 => return None,
        None => {}
    }
    Some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ListContext {
        ListContext { now: 1_710_504_000, tz_offset: 0, encoding: None }
    }

    #[test]
    fn iis_default() {
        let d = parse_dos_line("01-31-24  02:15PM       <DIR>          My Documents", &ctx()).unwrap();
        assert!(d.is_dir());
        assert_eq!(d.name, "My Documents");
        assert_eq!(d.mtime, civil_to_unix(2024, 1, 31, 14, 15, 0));
        let f = parse_dos_line("12-05-99  12:05AM              1048576 archive.zip", &ctx()).unwrap();
        assert_eq!(f.size, Some(1_048_576));
        assert_eq!(f.mtime, civil_to_unix(1999, 12, 5, 0, 5, 0));
        let noon = parse_dos_line("06-01-23  12:30PM   10 noon.txt", &ctx()).unwrap();
        assert_eq!(noon.mtime, civil_to_unix(2023, 6, 1, 12, 30, 0));
    }

    #[test]
    fn four_digit_year_24_hour_and_separators() {
        let f = parse_dos_line("03-15-2024  17:45            1,234,567 big file.iso", &ctx()).unwrap();
        assert_eq!(f.size, Some(1_234_567));
        assert_eq!(f.name, "big file.iso");
        assert_eq!(f.mtime, civil_to_unix(2024, 3, 15, 17, 45, 0));
        let f = parse_dos_line("03-15-2024  05:45 PM  12 spaced.txt", &ctx()).unwrap();
        assert_eq!(f.mtime, civil_to_unix(2024, 3, 15, 17, 45, 0));
    }

    #[test]
    fn not_dos() {
        assert!(parse_dos_line("-rw-r--r-- 1 u g 1 Jan 01 2020 x", &ctx()).is_none());
        assert!(parse_dos_line("13-45-24  02:15PM  <DIR> bad", &ctx()).is_some_and(|e| e.mtime.is_none()));
        assert!(parse_dos_line("01-31-24  25:15  1 bad", &ctx()).is_none());
        assert!(parse_dos_line("01-31-24  02:15PM  abc name", &ctx()).is_none());
    }
}
