//! Exact modification times of many files at once, for servers whose listing shows times
//! coarser than a second (LIST: to the minute for recent files, to the day for files older than
//! six months): MDTM (RFC 3659) for each file, pipelined on one control connection.
//!
//! Up to [`WINDOW`] commands are on the way ahead of their replies, which come back in order
//! (every FTP server answers the commands of one connection in order outside transfers), so a
//! directory of a few hundred files costs about one round trip more than its listing, not one
//! per file. The window keeps the replies we have not read yet (a few dozen bytes each) well
//! within the socket buffers: a server blocked on writing replies nobody reads would stop
//! reading commands, and our next write would wait for it. Commands are written in batches of
//! at most [`BATCH_BYTES`], each once half the window has been answered.

use std::collections::VecDeque;

use super::control::Connection;
use super::error::{FtpError, Result};
use super::listing::parse_mlsd_time;

/// MDTM commands on the way before the first of their replies is read.
pub const WINDOW: usize = 512;

/// The most bytes of commands on the way (the replies, which may echo the path, stay within
/// the socket buffers), and so the most written at once.
pub const BATCH_BYTES: usize = 32 * 1024;

impl Connection {
    /// The MDTM time (seconds since the epoch in UTC, nanoseconds) of each of `paths`, in the
    /// same order; `None` where the server gives none (a directory, a name gone meanwhile, an
    /// answer that is no time) or the name cannot be sent. An error only when the connection
    /// broke or went out of sync (it is then dead: no reply is left unread on a live one).
    pub fn mdtm_many(&mut self, paths: &[String]) -> Result<Vec<Option<(i64, u32)>>> {
        let mut times = vec![None; paths.len()];
        // The commands on the way, with the bytes of each (a reply may echo the path).
        let mut waiting: VecDeque<(usize, usize)> = VecDeque::with_capacity(WINDOW);
        let mut on_the_way = 0;
        let mut next = 0;
        let mut noop_sent = false;
        let mut lines = Vec::new();
        loop {
            // The window is topped up when half of it was answered, in one write.
            if waiting.len() <= WINDOW / 2 && on_the_way <= BATCH_BYTES / 2 {
                lines.clear();
                while next < paths.len() && waiting.len() < WINDOW && on_the_way < BATCH_BYTES {
                    match self.command_line("MDTM", Some(&paths[next])) {
                        Ok(line) => {
                            lines.extend_from_slice(&line);
                            on_the_way += line.len();
                            waiting.push_back((next, line.len()));
                        }
                        Err(e) if self.dead => return Err(e),
                        // Nothing is sent for it (a name that cannot be written on the wire).
                        Err(e) => log::debug!("no MDTM for {:?}: {e}", paths[next]),
                    }
                    next += 1;
                }
                // A NOOP behind the last one: its 200 must come right after the last MDTM's
                // reply, or the server answered more (or less) than it was asked.
                if next == paths.len() && !waiting.is_empty() && !noop_sent {
                    lines.extend_from_slice(&self.command_line("NOOP", None)?);
                    noop_sent = true;
                }
                if !lines.is_empty() {
                    self.send_lines(&lines)?;
                }
            }
            let Some((i, bytes)) = waiting.pop_front() else { break };
            on_the_way -= bytes;
            let reply = self.read_reply()?;
            if reply.ends_session() {
                return Err(reply.into_error());
            }
            if reply.is_preliminary() {
                // No MDTM has a preliminary reply: which reply answers which command is lost.
                self.dead = true;
                return Err(FtpError::protocol(format!("preliminary reply {} to MDTM", reply.code)));
            }
            times[i] = if reply.code == 213 { parse_mlsd_time(reply.text().trim()) } else { None };
        }
        if noop_sent {
            let reply = self.read_reply()?;
            if !reply.is_positive() {
                self.dead = true;
                return Err(FtpError::protocol(format!("reply {} where the NOOP behind MDTMs was due", reply.code)));
            }
        }
        Ok(times)
    }
}
