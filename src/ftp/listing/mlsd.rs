//! MLSD/MLST fact lines (RFC 3659 §7): `fact=value;fact=value; name`.
//!
//! Parsed leniently: fact names are case-insensitive, a leading space or a missing space before
//! the name is tolerated, unknown facts are ignored, and cdir/pdir entries are skipped.

use super::{Entry, EntryKind, civil_to_unix};

/// Parses one MLSD line (or the fact line of an MLST reply). Returns `None` for lines that are
/// not entries (cdir, pdir, garbage).
pub fn parse_mlsd_line(line: &str) -> Option<Entry> {
    let line = line.trim_start_matches(' ');
    let (facts, name) = split_facts_and_name(line)?;
    let mut kind = EntryKind::File;
    let mut size = None;
    let mut sizd = None;
    let mut mtime = None;
    let mut mode = None;
    for fact in facts.split(';') {
        let Some((key, value)) = fact.split_once('=') else { continue };
        let key = key.trim();
        if key.eq_ignore_ascii_case("type") {
            kind = parse_type(value)?;
        } else if key.eq_ignore_ascii_case("size") {
            size = value.trim().parse::<u64>().ok();
        } else if key.eq_ignore_ascii_case("sizd") {
            sizd = value.trim().parse::<u64>().ok();
        } else if key.eq_ignore_ascii_case("modify") {
            mtime = parse_mlsd_time(value.trim());
        } else if key.eq_ignore_ascii_case("unix.mode") {
            mode = parse_octal_mode(value);
        }
    }
    let mut e = Entry::new(name.to_string(), kind);
    e.size = size.or(sizd);
    if let Some((secs, nanos)) = mtime {
        e.mtime = Some(secs);
        e.mtime_nanos = nanos;
    }
    e.mode = mode;
    Some(e)
}

/// `0644`, `644`, or pyftpdlib's Python-style `0o644`.
fn parse_octal_mode(v: &str) -> Option<u32> {
    let v = v.trim();
    let digits = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")).unwrap_or(v);
    u32::from_str_radix(digits, 8).ok().map(|m| m & 0o7777)
}

fn split_facts_and_name(line: &str) -> Option<(&str, &str)> {
    if let Some((facts, name)) = line.split_once(' ')
        && facts.contains('=')
    {
        return Some((facts, name));
    }
    // No space after the facts: the name is what follows the last ';' (names with ';' lose).
    let (facts, name) = line.rsplit_once(';')?;
    if !facts.contains('=') || name.contains('=') || name.is_empty() {
        return None;
    }
    Some((facts, name))
}

fn parse_type(value: &str) -> Option<EntryKind> {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    match lower.as_str() {
        "file" => Some(EntryKind::File),
        "dir" => Some(EntryKind::Dir),
        "cdir" | "pdir" => None,
        _ if lower.starts_with("os.unix=slink") || lower.starts_with("os.unix=symlink") => {
            let target = v.split_once(':').map(|(_, t)| t.to_string()).filter(|t| !t.is_empty());
            Some(EntryKind::Symlink(target))
        }
        _ if lower.starts_with("os.unix=") => Some(EntryKind::File),
        _ => Some(EntryKind::File),
    }
}

/// `YYYYMMDDHHMMSS[.sss]` in UTC → (seconds, nanoseconds).
pub fn parse_mlsd_time(v: &str) -> Option<(i64, u32)> {
    let (main, frac) = match v.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (v, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main[r].parse::<u32>().ok();
    let secs = civil_to_unix(
        n(0..4)? as i32,
        n(4..6)? as u8,
        n(6..8)? as u8,
        n(8..10)? as u8,
        n(10..12)? as u8,
        n(12..14)?.min(59) as u8,
    )?;
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        _ => 0,
    };
    Some((secs, nanos))
}

/// Seconds since the epoch → `YYYYMMDDHHMMSS` (UTC), as MFMT and MDTM use it.
pub fn format_mlsd_time(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    if t.year() < 0 || t.year() > 9999 {
        return None;
    }
    Some(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyftpdlib_lines() {
        let e = parse_mlsd_line(
            "type=file;size=1234;modify=20240315120000;perm=radfwMT;unix.mode=0644;unix.uid=1000;unix.gid=1000;unique=803g2; hello world.txt",
        )
        .unwrap();
        assert_eq!(e.name, "hello world.txt");
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, Some(1234));
        assert_eq!(e.mtime, Some(1710504000));
        assert_eq!(e.mode, Some(0o644));
        let d = parse_mlsd_line("type=dir;modify=20240315120000;perm=flcdmpe; sub").unwrap();
        assert!(d.is_dir());
        assert!(parse_mlsd_line("type=cdir;modify=20240315120000; .").is_none());
        assert!(parse_mlsd_line("type=pdir;modify=20240315120000; ..").is_none());
    }

    #[test]
    fn lenient_forms() {
        let e = parse_mlsd_line(" Type=File;Size=5;Modify=20240101000000.5; x").unwrap();
        assert_eq!((e.name.as_str(), e.size, e.mtime_nanos), ("x", Some(5), 500_000_000));
        let e = parse_mlsd_line("type=file;size=5;name-without-space").unwrap();
        assert_eq!(e.name, "name-without-space");
        let e = parse_mlsd_line("type=OS.unix=slink:/etc/target;size=5; link").unwrap();
        assert_eq!(e.kind, EntryKind::Symlink(Some("/etc/target".into())));
        let e = parse_mlsd_line("type=OS.unix=symlink;size=5; link2").unwrap();
        assert_eq!(e.kind, EntryKind::Symlink(None));
        let e = parse_mlsd_line("type=file;modify=20240101000000.123; x").unwrap();
        assert_eq!(e.mtime_nanos, 123_000_000);
        let e = parse_mlsd_line("type=file;modify=garbage; x").unwrap();
        assert_eq!(e.mtime, None);
        assert!(parse_mlsd_line("").is_none());
        assert!(parse_mlsd_line("just a name").is_none());
    }

    #[test]
    fn time_roundtrip() {
        assert_eq!(format_mlsd_time(1710504000).as_deref(), Some("20240315120000"));
        assert_eq!(parse_mlsd_time("20240315120000"), Some((1710504000, 0)));
        assert_eq!(format_mlsd_time(0).as_deref(), Some("19700101000000"));
    }

    proptest::proptest! {
        #[test]
        fn time_format_parse_roundtrip(t in 0i64..253_402_300_799) {
            let s = format_mlsd_time(t).unwrap();
            proptest::prop_assert_eq!(parse_mlsd_time(&s), Some((t, 0)));
        }
    }

    #[test]
    fn mode_forms() {
        let e = parse_mlsd_line("type=file;unix.mode=0o755; x").unwrap();
        assert_eq!(e.mode, Some(0o755));
        let e = parse_mlsd_line("type=file;unix.mode=644; x").unwrap();
        assert_eq!(e.mode, Some(0o644));
        let e = parse_mlsd_line("type=file;unix.mode=banana; x").unwrap();
        assert_eq!(e.mode, None);
    }

    #[test]
    fn sizd_for_dirs() {
        let e = parse_mlsd_line("type=dir;sizd=4096; d").unwrap();
        assert_eq!(e.size, Some(4096));
    }
}
