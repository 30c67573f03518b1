//! Listings of several directories in one round trip, over the control connection: `STAT -a
//! dir` (RFC 959 4.1.3: STAT with a pathname answers like LIST, on the control connection),
//! pipelined for a batch of directories. A LIST needs a data connection of its own (EPSV or
//! PASV, a TCP handshake, the transfer), so a directory walk over a far link lists a handful of
//! directories per round trip at best; a batch of STATs lists dozens in one.
//!
//! Used only where verified: vsftpd, whose `STAT -a path` runs the very code of its
//! `LIST -a path` and answers `213-Status follows:` … `213 End of status` (an empty body for a
//! missing path, as its LIST does). Only for work ahead: a batch that goes wrong costs nothing
//! but the connection.
//!
//! **A name can forge a reply.** vsftpd writes names as they are, so a file named
//! `"a\r\n213 End of status\r\n…"` ends a STAT reply early and makes what follows in its name
//! look like the next replies: the listings of the other directories of the batch. Data
//! connections do not have this problem (a LIST's lines cannot end anything but a line). So
//! behind the batch goes `REST N` with a random `N` the server echoes (`350 Restart position
//! accepted (N).`), then `REST 0`: a forged reply leaves the server's real ones unread in front
//! of the echo, which then does not come in its place. The batch is refused as a whole and the
//! connection dropped. A planted name cannot know `N`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use super::control::Connection;
use super::error::{FtpError, Result};
use super::listing::{Dialect, Entry, ListContext, ListingParser};
use super::reply::{MAX_LINE, read_line_bounded};

/// Directories in one batch at most.
pub const MAX_BATCH: usize = 32;

/// Bytes of listings one batch may bring over the control connection; past this the batch is
/// refused (and the connection, which is then in the middle of a reply, dropped).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// A number nobody who planted names on the server can know in advance.
fn sentinel() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    h.write_u128(now.as_nanos());
    // vsftpd echoes REST offsets of up to 15 digits (longer ones read as 0): about 50 bits.
    1 + h.finish() % (SENTINEL_LIMIT - 1)
}

/// Sentinels are below this.
const SENTINEL_LIMIT: u64 = 1_000_000_000_000_000;

/// Whether a server with this greeting lists by STAT as it does by LIST (see the module doc).
pub fn stat_lists_like_list(welcome: &str) -> bool {
    welcome.contains("vsFTPd")
}

impl Connection {
    /// Whether [`Connection::stat_listings`] may be used on this connection.
    pub fn can_list_by_stat(&self) -> bool {
        !self.dead && self.list_a != Some(false) && stat_lists_like_list(self.welcome())
    }

    /// The LIST-style listings of `dirs` (server paths), in their order, by pipelined `STAT -a`.
    /// An error when a directory cannot be sent, when the replies went out of step, or when
    /// the connection broke (the connection is dead then): no listing of the batch is kept.
    pub fn stat_listings(&mut self, dirs: &[String], ctx: &ListContext) -> Result<Vec<Vec<Entry>>> {
        if dirs.len() > MAX_BATCH {
            return Err(FtpError::InvalidArgument(format!("more than {MAX_BATCH} directories in one STAT batch")));
        }
        let nonce = sentinel();
        let mut lines = Vec::new();
        for d in dirs {
            // An absolute path never starts with '-', so it is never taken for options.
            if !d.starts_with('/') {
                return Err(FtpError::InvalidArgument(format!("not an absolute path: {d:?}")));
            }
            lines.extend_from_slice(&self.command_line("STAT", Some(&format!("-a {d}")))?);
        }
        lines.extend_from_slice(&self.command_line("REST", Some(&nonce.to_string()))?);
        lines.extend_from_slice(&self.command_line("REST", Some("0"))?);
        self.send_lines(&lines)?;
        let res = self.read_stat_batch(dirs.len(), nonce, ctx);
        if res.is_err() {
            // Replies may be left unread: nothing else may be read on this connection.
            self.dead = true;
        }
        res
    }

    fn read_stat_batch(&mut self, n: usize, nonce: u64, ctx: &ListContext) -> Result<Vec<Vec<Entry>>> {
        self.settle_epsv_ahead()?;
        let ctx = ListContext { encoding: self.encoding(), ..*ctx };
        let mut budget = MAX_BATCH_BYTES;
        let mut listings = Vec::with_capacity(n);
        for _ in 0..n {
            listings.push(self.read_stat_listing(&ctx, &mut budget)?);
        }
        let echo = self.read_reply()?;
        let expected = format!("({nonce})");
        if echo.code != 350 || !echo.text().contains(&expected) {
            return Err(FtpError::protocol(format!(
                "replies out of step after a STAT batch ({} {:?} where REST {nonce} was due): a name may \
                 have forged a reply; listings refused",
                echo.code,
                echo.text()
            )));
        }
        let reset = self.read_reply()?;
        if reset.code != 350 {
            return Err(FtpError::protocol(format!("reply {} to REST 0 after a STAT batch", reset.code)));
        }
        Ok(listings)
    }

    /// Reads one reply to `STAT -a dir`: its body parsed as a LIST. A refusal (a one-line 4xx
    /// or 5xx) is an error for the whole batch: the server did not list as expected.
    fn read_stat_listing(&mut self, ctx: &ListContext, budget: &mut usize) -> Result<Vec<Entry>> {
        let first = self.read_raw_line()?;
        if !first.starts_with(b"213-") {
            let shown = String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned();
            // A refusal or the end of the session (421): the server's answer, not a sign that
            // its STAT lists otherwise.
            let code = std::str::from_utf8(first.get(..3).unwrap_or_default()).ok().and_then(|c| c.parse().ok());
            if let Some(code @ 400..=599) = code
                && first.get(3) == Some(&b' ')
            {
                return Err(FtpError::Reply { code, text: shown.get(4..).unwrap_or_default().to_string() });
            }
            return Err(FtpError::protocol(format!("STAT did not list: {shown:?}")));
        }
        let mut parser = ListingParser::new(Dialect::List, *ctx);
        loop {
            let line = self.read_raw_line()?;
            *budget = budget
                .checked_sub(line.len() + 2)
                .ok_or_else(|| FtpError::TooLarge(format!("a STAT batch brought more than {MAX_BATCH_BYTES} bytes")))?;
            // The end: "213 " (the code of the first line and a space), as RFC 959 says.
            if line.starts_with(b"213 ") || line == b"213" {
                break;
            }
            parser.feed(&line);
            parser.feed(b"\n");
            if let Some(bound) = parser.overflow() {
                return Err(FtpError::TooLarge(format!("STAT listing with {bound}")));
            }
        }
        Ok(parser.finish())
    }

    fn read_raw_line(&mut self) -> Result<Vec<u8>> {
        let res = read_line_bounded(&mut self.ctrl, MAX_LINE).and_then(|l| {
            l.ok_or_else(|| {
                FtpError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection in the middle of a STAT reply",
                ))
            })
        });
        self.mark_dead_on(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_differ_and_have_at_most_15_digits() {
        let a = sentinel();
        let b = sentinel();
        assert_ne!(a, b);
        assert!((1..SENTINEL_LIMIT).contains(&a) && (1..SENTINEL_LIMIT).contains(&b));
    }

    #[test]
    fn only_vsftpd_lists_by_stat() {
        assert!(stat_lists_like_list("(vsFTPd 3.0.3)"));
        assert!(!stat_lists_like_list("ProFTPD Server (Debian)"));
        assert!(!stat_lists_like_list("---------- Welcome to Pure-FTPd [privsep] ----------"));
    }
}
