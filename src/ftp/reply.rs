//! Reading FTP replies from the control connection (RFC 959 §4.2).
//!
//! A reply is `NNN text` on one line, or `NNN-text` … `NNN text` over several lines, where the
//! lines in between may start with anything (even other digits). The reader bounds the length of
//! one line and of a whole reply, so a hostile server cannot make us buffer without limit; read
//! timeouts come from the socket underneath.

use std::io::{self, BufRead};

use super::error::{FtpError, Result};

/// Longest control line we accept, in bytes (without CR/LF).
pub const MAX_LINE: usize = 8 * 1024;
/// Longest multi-line reply we accept, in lines.
pub const MAX_REPLY_LINES: usize = 10_000;
/// Longest multi-line reply we accept, in bytes.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

use crate::printable::printable;

/// One complete server reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The text of every line, with the leading `NNN-`/`NNN ` removed where present.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply's text: the first line's text, or all lines joined for multi-line replies.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The text of the last line (where servers put the useful part of multi-line replies).
    pub fn last_line(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }

    /// 1xx: preliminary, another reply follows.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2xx: completed.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: intermediate, the server waits for another command.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// True when the server ends the session with this reply: 421, or vsftpd's `500 OOPS: …`
    /// (an internal failure, such as no free passive port, after which its session process
    /// exits). The connection is then broken, whatever the command was.
    pub fn ends_session(&self) -> bool {
        super::error::ends_session(self.code, &self.text())
    }

    /// Turns a reply into an error (for negative or unexpected replies). The text is kept as
    /// the server sent it (the errno table reads it); the error shows it escaped.
    pub fn into_error(self) -> FtpError {
        FtpError::Reply { code: self.code, text: self.text() }
    }
}

/// `NNN text`, escaped for a message (see [`printable`]): never the raw text of the server.
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, printable(&self.text()))
    }
}

/// Reads one line of at most `max` bytes, without the trailing LF (and CR). Returns `Ok(None)` at
/// end of stream before any byte. A line longer than `max` is an error, and at most `max` bytes
/// are ever buffered.
pub fn read_line_bounded<R: BufRead>(reader: &mut R, max: usize) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FtpError::Io(e)),
        };
        if available.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(FtpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a line",
            )));
        }
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let take = if done { used - 1 } else { used };
        // One extra byte for the CR that precedes LF.
        if line.len() + take > max + 1 {
            return Err(FtpError::protocol(format!("line longer than {max} bytes")));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(used);
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > max {
                return Err(FtpError::protocol(format!("line longer than {max} bytes")));
            }
            return Ok(Some(line));
        }
    }
}

/// Parses `NNN` at the start of a line, with the separator that follows (' ', '-' or end).
fn code_of(line: &[u8]) -> Option<(u16, Option<u8>)> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    Some((code, line.get(3).copied()))
}

/// Bytes from the server as text: UTF-8 (lossy) or the server's configured character set.
pub fn decode_text(bytes: &[u8], encoding: Option<&'static encoding_rs::Encoding>) -> String {
    decode_text_cow(bytes, encoding).into_owned()
}

/// As [`decode_text`], borrowing `bytes` when they need no change.
pub fn decode_text_cow<'a>(
    bytes: &'a [u8],
    encoding: Option<&'static encoding_rs::Encoding>,
) -> std::borrow::Cow<'a, str> {
    match encoding {
        Some(enc) => enc.decode_without_bom_handling(bytes).0,
        None => String::from_utf8_lossy(bytes),
    }
}

fn text_after_code(line: &[u8], encoding: Option<&'static encoding_rs::Encoding>) -> String {
    let rest = if line.len() > 4 { &line[4..] } else { &[][..] };
    decode_text(rest, encoding)
}

/// Reads one complete reply. End of stream is an error (the server closed the connection).
pub fn read_reply<R: BufRead>(reader: &mut R) -> Result<Reply> {
    read_reply_in(reader, None)
}

/// [`read_reply`] for a server whose texts (paths in 257 replies) use `encoding`.
pub fn read_reply_in<R: BufRead>(reader: &mut R, encoding: Option<&'static encoding_rs::Encoding>) -> Result<Reply> {
    let first = match read_line_bounded(reader, MAX_LINE)? {
        Some(l) => l,
        None => {
            return Err(FtpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the control connection",
            )));
        }
    };
    let (code, sep) = code_of(&first).ok_or_else(|| {
        FtpError::protocol(format!(
            "reply does not start with a code: {:?}",
            String::from_utf8_lossy(&first[..first.len().min(80)])
        ))
    })?;
    if !(100..600).contains(&code) {
        return Err(FtpError::protocol(format!("reply code {code} out of range")));
    }
    let mut lines = vec![text_after_code(&first, encoding)];
    match sep {
        None | Some(b' ') => return Ok(Reply { code, lines }),
        Some(b'-') => {}
        // Tolerate "220text" style replies by treating them as single-line.
        Some(_) => return Ok(Reply { code, lines: vec![decode_text(&first[3..], encoding)] }),
    }
    let mut total = first.len();
    loop {
        let line = read_line_bounded(reader, MAX_LINE)?.ok_or_else(|| {
            FtpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection in the middle of a reply",
            ))
        })?;
        total += line.len() + 2;
        if total > MAX_REPLY_BYTES || lines.len() >= MAX_REPLY_LINES {
            return Err(FtpError::protocol("multi-line reply too long"));
        }
        // The end is the first line of "3 digits + space" (or just 3 digits); servers sometimes
        // close with a different code than they opened with, so do not insist on equality.
        if let Some((_, sep)) = code_of(&line)
            && (sep.is_none() || sep == Some(b' '))
        {
            lines.push(text_after_code(&line, encoding));
            return Ok(Reply { code, lines });
        }
        lines.push(decode_text(&line, encoding));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn parse(s: &str) -> Result<Reply> {
        read_reply(&mut Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn single_line() {
        let r = parse("220 Welcome\r\n").unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["Welcome"]);
    }

    #[test]
    fn bare_lf_and_no_text() {
        let r = parse("200\n").unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(r.text(), "");
    }

    #[test]
    fn multi_line_with_digit_lines_inside() {
        let r = parse("211-Features:\r\n MDTM\r\n123 not the end\r\n211-still not\r\n211 End\r\n").unwrap();
        assert_eq!(r.code, 211);
        // "123 not the end" does end it per the lenient rule; check that behaviour explicitly.
        assert_eq!(r.lines.len(), 3);
        let r = parse("211-Features:\r\n MDTM\r\n UTF8\r\n211 End\r\n").unwrap();
        assert_eq!(r.lines, vec!["Features:", " MDTM", " UTF8", "End"]);
    }

    #[test]
    fn pure_ftpd_greeting() {
        let s = "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n\
                 220-You are user number 1 of 50 allowed.\r\n\
                 220-Local time is now 10:00. Server port: 21.\r\n\
                 220 You will be disconnected after 15 minutes of inactivity.\r\n";
        let r = parse(s).unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines.len(), 4);
        assert!(r.last_line().starts_with("You will be"));
    }

    #[test]
    fn two_replies_in_a_row() {
        let mut c = Cursor::new(b"150 Opening\r\n226 Done\r\n".to_vec());
        assert_eq!(read_reply(&mut c).unwrap().code, 150);
        assert_eq!(read_reply(&mut c).unwrap().code, 226);
        assert!(read_reply(&mut c).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(parse("hello\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse("099 x\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse(""), Err(FtpError::Io(_))));
        assert!(matches!(parse("220-unfinished\r\n"), Err(FtpError::Io(_))));
    }

    #[test]
    fn endless_line_is_bounded() {
        let mut s = String::from("220 ");
        s.push_str(&"x".repeat(MAX_LINE * 4));
        assert!(matches!(parse(&s), Err(FtpError::Protocol(_))));
    }

    #[test]
    fn huge_multiline_is_bounded() {
        let mut s = String::from("220-start\r\n");
        for _ in 0..(MAX_REPLY_LINES + 5) {
            s.push_str("x\r\n");
        }
        s.push_str("220 end\r\n");
        assert!(matches!(parse(&s), Err(FtpError::Protocol(_))));
    }

    #[test]
    fn control_characters_are_escaped() {
        let r = parse("550-first \x1b[31m\r\n550 second\x07\r\n").unwrap();
        assert_eq!(r.to_string(), "550 first \\x1b[31m\\nsecond\\x07");
        assert!(r.clone().into_error().to_string().ends_with("first \\x1b[31m\\nsecond\\x07"));
        // The text itself stays as sent: parsers and the errno table read it.
        assert_eq!(r.text(), "first \x1b[31m\nsecond\x07");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = read_reply(&mut Cursor::new(bytes));
        }

        #[test]
        fn roundtrip_multiline(code in 100u16..600, body in proptest::collection::vec("[a-zA-Z .:-]{0,40}", 0..20)) {
            let mut s = format!("{code}-first\r\n");
            for l in &body { s.push(' '); s.push_str(l); s.push_str("\r\n"); }
            s.push_str(&format!("{code} last\r\n"));
            let r = parse(&s).unwrap();
            prop_assert_eq!(r.code, code);
            prop_assert_eq!(r.lines.len(), body.len() + 2);
            prop_assert_eq!(r.last_line(), "last");
        }

        #[test]
        fn line_reader_respects_bound(len in 0usize..300, max in 1usize..200) {
            let mut data = vec![b'a'; len];
            data.extend_from_slice(b"\r\n");
            let res = read_line_bounded(&mut Cursor::new(data), max);
            if len <= max { prop_assert_eq!(res.unwrap().unwrap().len(), len); } else { prop_assert!(res.is_err()); }
        }
    }
}
