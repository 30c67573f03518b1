//! A file's digest computed by the server, without downloading it: the command of its own where
//! the server has one (XSHA256, XSHA1, XMD5, XCRC, XSHA512: proftpd's mod_digest, SFTPGo,
//! Serv-U), else HASH (draft-bryan-ftpext-hash: FileZilla Server, proftpd) after
//! `OPTS HASH <algorithm>`, the two pipelined in one round trip. The server's reply is
//! checked for a digest of the algorithm's length in its place; anything else is an error, never
//! a digest.

use super::control::Connection;
use super::error::{FtpError, Result};
use super::features::hash_name;
use crate::checksum::Algorithm;

/// The command of its own for `a`.
fn x_command(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Crc32 => "XCRC",
        Algorithm::Md5 => "XMD5",
        Algorithm::Sha1 => "XSHA1",
        Algorithm::Sha256 => "XSHA256",
        Algorithm::Sha512 => "XSHA512",
    }
}

fn is_digest(word: &str, a: Algorithm) -> bool {
    word.len() == a.hex_len() && word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digest in the final line of an X-command's reply: its first word, a digest of the
/// algorithm's length in hex (proftpd's line is the digest alone, others put the path after it;
/// a path is never taken for the digest).
fn x_reply_digest(last: &str, a: Algorithm) -> Option<String> {
    last.split_whitespace().next().filter(|w| is_digest(w, a)).map(str::to_ascii_lowercase)
}

/// The digest in a HASH reply's text: `<algorithm> <range> <digest> <path>`.
fn hash_reply_digest(last: &str, a: Algorithm) -> Option<String> {
    let mut words = last.split_whitespace();
    let (name, _range, digest) = (words.next()?, words.next()?, words.next()?);
    (name.eq_ignore_ascii_case(hash_name(a)) && is_digest(digest, a)).then(|| digest.to_ascii_lowercase())
}

impl Connection {
    /// The server's digest of the file at `path` with `a`, lower-case hex. The server must
    /// offer `a` (see [`super::Features::checksums`]).
    pub fn checksum(&mut self, path: &str, a: Algorithm) -> Result<String> {
        let digest = if self.features().x_hash.contains(&a) {
            let reply = self.command(x_command(a), Some(path))?;
            if reply.code / 100 != 2 {
                return Err(FtpError::Reply { code: reply.code, text: reply.text() });
            }
            x_reply_digest(reply.lines.last().map_or("", String::as_str), a)
        } else if self.features().hash.contains(&a) {
            let mut lines = self.command_line("OPTS", Some(&format!("HASH {}", hash_name(a))))?;
            lines.extend(self.command_line("HASH", Some(path))?);
            self.send_lines(&lines)?;
            let chosen = self.read_reply()?;
            let reply = self.read_reply()?;
            if chosen.code != 200 {
                return Err(FtpError::Reply { code: chosen.code, text: chosen.text() });
            }
            if reply.code != 213 {
                return Err(FtpError::Reply { code: reply.code, text: reply.text() });
            }
            hash_reply_digest(reply.lines.last().map_or("", String::as_str), a)
        } else {
            return Err(FtpError::Reply { code: 502, text: format!("the server offers no {} digest", a.short_name()) });
        };
        digest.ok_or_else(|| FtpError::protocol(format!("no {} digest in the server's reply", a.short_name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_read_only_where_they_belong() {
        let sha = "A948904F2F0F479B8F8197694B30184B0D2ED1C1CD2A1EC0FB85D299A192A447";
        assert_eq!(x_reply_digest(sha, Algorithm::Sha256).as_deref(), Some(sha.to_ascii_lowercase().as_str()));
        assert_eq!(x_reply_digest(&format!("{sha} /a.txt"), Algorithm::Sha256), Some(sha.to_ascii_lowercase()));
        assert_eq!(x_reply_digest(sha, Algorithm::Sha1), None, "a digest of another length");
        assert_eq!(x_reply_digest("Computing SHA256 digest", Algorithm::Sha256), None);
        assert_eq!(x_reply_digest("done deadbeef", Algorithm::Crc32), None, "a name of the right length");
        let line = format!("SHA-256 0-12 {} a file.txt", sha.to_ascii_lowercase());
        assert_eq!(hash_reply_digest(&line, Algorithm::Sha256), Some(sha.to_ascii_lowercase()));
        assert_eq!(hash_reply_digest(&line, Algorithm::Sha512), None, "another algorithm");
        assert_eq!(hash_reply_digest("SHA-256 0-12 nothex a", Algorithm::Sha256), None);
        assert_eq!(hash_reply_digest("SHA-256", Algorithm::Sha256), None);
    }
}
