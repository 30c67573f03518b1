//! Uploads: STOR and APPE, and the round trips they can spare.
//!
//! - A STOR (or an APPE, for a caller that knows the server takes APPE) whose data connection
//!   was opened ahead may send its first bytes (up to [`EARLY_BYTES`]) and even its end before
//!   the server's 150 is back, on servers known to take the data connection only after the
//!   command: a small file or append then costs one round trip instead of two. The bytes sent this way are kept until the 150 arrives, so
//!   an upload that finds its connection broken can be started again elsewhere
//!   ([`Upload::replay_after_failure`]). Anything but a 150 to such a STOR ends the control
//!   connection: the bytes we sent wait in the server's data listener, and only closing the
//!   session makes sure no later transfer takes them for its own. An upload is sent again
//!   only when the server's session provably did nothing with it.
//! - SIZE is sent right behind the end of the data, before the transfer's reply is read.
//! - While the data flows, NOOPs keep the control connection alive where the server takes them
//!   (see [`super::keepalive`]).
//! - An upload whose data the server took to the end (the server closed the data connection
//!   in order after ours) tells so ([`Upload::delivered`]) even when its final reply never
//!   came: whoever holds another connection may then ask the server what it holds.

use std::borrow::BorrowMut;
use std::io::{self, Write};

use super::control::Connection;
use super::error::{FtpError, Result};
use super::reply::Reply;
use super::stream::NetStream;
use super::transfer::is_transfer_done;

/// Bytes a STOR may send before its preliminary reply is back: well inside the socket buffers
/// of both ends, so the writes never wait for a server that has not read the command yet.
pub const EARLY_BYTES: usize = 64 * 1024;

impl Connection {
    /// Uploads to `path`, replacing it (STOR).
    pub fn stor(&mut self, path: &str) -> Result<Upload<&mut Connection>> {
        Upload::start(self, path, false)
    }

    /// As [`Connection::stor`], sending the data before the server's first reply where a data
    /// connection was opened ahead (see the module's documentation).
    pub fn stor_early(&mut self, path: &str) -> Result<Upload<&mut Connection>> {
        Upload::start_early(self, path)
    }

    /// As [`Connection::appe`], sending the data before the server's first reply where a data
    /// connection was opened ahead. For a caller that knows the server takes APPE (it took
    /// one before): a refusal then comes with the first reply, after the data, and is no
    /// sign that APPE is unknown. Never sent again after a failure (see the module's
    /// documentation).
    pub fn appe_early(&mut self, path: &str) -> Result<Upload<&mut Connection>> {
        Upload::start_early_append(self, path)
    }

    /// Uploads to the end of `path`, creating it if needed (APPE).
    pub fn appe(&mut self, path: &str) -> Result<Upload<&mut Connection>> {
        Upload::start(self, path, true)
    }

    /// Sends STOR (or APPE) on the data connection opened ahead without waiting for its reply;
    /// `None` when this connection cannot (no data connection ahead, TLS on data, a server that
    /// may look at the data connection early, or one that never took a data connection opened
    /// ahead yet). An APPE only for a caller that knows the server takes it (its refusal comes
    /// after the data, where no fallback to a whole copy is left); and an APPE is never sent
    /// again ([`Upload::replay_after_failure`] gives nothing for it): it would double its data.
    fn send_early(&mut self, verb: &str, path: &str) -> Result<Option<NetStream>> {
        let encrypted = self.tls_config.is_some() && self.protect_data;
        let safe = super::transfer::takes_data_after_command(self.welcome());
        if encrypted || !safe || !self.ahead_accepted || self.ahead_refused {
            return Ok(None);
        }
        super::command::check_arg(path)?;
        let Some(tcp) = self.take_ahead() else { return Ok(None) };
        let stream = NetStream::Plain(tcp);
        stream.set_timeouts(Some(self.opts.timeout))?;
        if let Err(e) = self.send(verb, Some(path)) {
            self.dead = true;
            return Err(e);
        }
        Ok(Some(stream))
    }

    /// Reads the first reply to an upload sent ahead of its data (see the module's
    /// documentation).
    fn confirm_early_stor(&mut self) -> Result<()> {
        let reply = self.read_reply()?;
        if reply.is_preliminary() {
            return Ok(());
        }
        self.dead = true;
        if reply.code == 425 {
            log::info!("server refused a data connection opened ahead ({})", reply.text());
        }
        if reply.is_positive() {
            return Err(FtpError::protocol(format!("upload: final reply {} without data", reply.code)));
        }
        Err(reply.into_error())
    }
}

/// Whether a failure of an upload before its preliminary reply (a STOR sent early, or the
/// start of any STOR or APPE) proves the server's session never acted on it and never will:
/// the session ended before any reply (end of stream, reset, 421) or the server refused the
/// data connection (425). Only then may the upload be sent again elsewhere: after a timeout or
/// a garbled reply the old session may still carry the command out later with what it got
/// (nothing at all, for a STOR whose 150 never came: an empty file), over the copy sent again.
pub fn session_took_no_action(e: &FtpError) -> bool {
    e.is_session_ended() || e.code() == Some(425)
}

/// A command sent behind an upload's data, in its last round trip (see
/// [`Upload::end_with_size_then`]): what the file gets once its content is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Its modification time (seconds since the epoch, UTC) with MFMT.
    Mfmt(i64),
    /// Its modification time with the two-argument MDTM (a server known to take it).
    MdtmSet(i64),
    /// Its permission bits with SITE CHMOD.
    Chmod(u32),
}

impl Settle {
    /// The command's verb and argument for `path`.
    fn command(&self, path: &str) -> Result<(&'static str, String)> {
        use super::control::{chmod_arg, time_arg};
        Ok(match *self {
            Settle::Mfmt(t) => ("MFMT", time_arg(path, t)?),
            Settle::MdtmSet(t) => ("MDTM", time_arg(path, t)?),
            Settle::Chmod(mode) => ("SITE", chmod_arg(path, mode)),
        })
    }

    /// Whether a reply with `code` says the server did it.
    fn taken(&self, code: u16) -> bool {
        match self {
            Settle::Mfmt(_) | Settle::MdtmSet(_) => super::control::time_set(code),
            Settle::Chmod(_) => super::control::mode_set(code),
        }
    }
}

/// The size in a reply to SIZE; `None` when the server gave none.
fn size_reply(reply: Reply) -> Result<Option<u64>> {
    if reply.ends_session() {
        return Err(reply.into_error());
    }
    Ok((reply.code == 213).then(|| reply.text().trim().parse().ok()).flatten())
}

/// A running upload. Implements [`Write`]; [`Upload::finish`] closes the data connection and
/// returns only when the server confirmed (226/250) that it holds the file.
pub struct Upload<C: BorrowMut<Connection>> {
    /// Always `Some` until `into_connection` moves it out of an upload that is then dropped.
    conn: Option<C>,
    data: Option<NetStream>,
    /// While the STOR's preliminary reply is unread: a copy of every byte sent so far.
    early: Option<Vec<u8>>,
    /// The failure a write reported, returned again by the finish.
    failed: Option<FtpError>,
    /// The upload failed before its preliminary reply, in a way another connection may not.
    replayable: bool,
    /// An APPE: never sent again, whatever broke.
    append: bool,
    /// Bytes written to the data connection.
    sent: u64,
    /// Set when the server ended the data connection in order after our end, with the number
    /// of bytes sent (see [`Upload::delivered`]).
    delivered: Option<u64>,
}

impl<C: BorrowMut<Connection>> Upload<C> {
    /// Sends STOR (or APPE when `append`) for `path` on `conn` and waits for its first reply.
    pub fn start(mut conn: C, path: &str, append: bool) -> Result<Upload<C>> {
        let verb = if append { "APPE" } else { "STOR" };
        let data = conn.borrow_mut().start_transfer(verb, Some(path))?;
        Ok(Upload::new(conn, data, false))
    }

    /// Sends STOR for `path` on `conn`, without waiting for its first reply where the
    /// connection allows (see the module's documentation).
    pub fn start_early(mut conn: C, path: &str) -> Result<Upload<C>> {
        match conn.borrow_mut().send_early("STOR", path)? {
            Some(data) => Ok(Upload::new(conn, data, true)),
            None => Upload::start(conn, path, false),
        }
    }

    /// Sends APPE for `path` on `conn`, without waiting for its first reply where the
    /// connection allows (see [`Connection::appe_early`]).
    pub fn start_early_append(mut conn: C, path: &str) -> Result<Upload<C>> {
        match conn.borrow_mut().send_early("APPE", path)? {
            Some(data) => {
                let mut up = Upload::new(conn, data, true);
                up.append = true;
                Ok(up)
            }
            None => Upload::start(conn, path, true),
        }
    }

    fn new(conn: C, data: NetStream, early: bool) -> Upload<C> {
        Upload {
            conn: Some(conn),
            data: Some(data),
            early: early.then(Vec::new),
            failed: None,
            replayable: false,
            append: false,
            sent: 0,
            delivered: None,
        }
    }

    fn connection(&mut self) -> &mut Connection {
        match self.conn.as_mut() {
            Some(c) => c.borrow_mut(),
            None => unreachable!("an upload always holds its connection until consumed"),
        }
    }

    /// After a failure of an upload started early, before its preliminary reply came: the
    /// bytes it had sent, to send again on another connection. `None` when the server refused
    /// the upload itself (it would refuse it again) or it was not started early.
    pub fn replay_after_failure(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.replayable) {
            return None;
        }
        self.early.take()
    }

    /// After the end of the upload, also when its final reply did not come: `Some(bytes sent)`
    /// when the server had accepted the upload (its preliminary reply) and, after our end of the
    /// data connection, ended it in order: it read all the data. Whether it stored them is for
    /// its reply, or, when that was lost, for what it answers on another connection.
    pub fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    /// The failure a write reported (a refusal reported there has its reply here).
    pub fn take_failure(&mut self) -> Option<FtpError> {
        self.failed.take()
    }

    /// Ends an upload that failed: the connection is not trusted any more.
    fn end_on(&mut self, e: &FtpError) {
        self.data = None;
        self.connection().dead = true;
        self.replayable = self.early.is_some() && !self.append && session_took_no_action(e);
    }

    /// Waits for the preliminary reply of a STOR started early.
    fn confirm(&mut self) -> Result<()> {
        if self.early.is_some() {
            if let Err(e) = self.connection().confirm_early_stor() {
                self.end_on(&e);
                return Err(e);
            }
            self.early = None;
        }
        Ok(())
    }

    /// Ends the upload and waits for the server's confirmation.
    pub fn finish(mut self) -> Result<()> {
        self.end()
    }

    /// As [`Upload::finish`], keeping the upload for [`Upload::replay_after_failure`].
    pub fn end(&mut self) -> Result<()> {
        let Some(mut d) = self.data.take() else { return Err(self.failed.take().unwrap_or(FtpError::Closed)) };
        let ended = d.flush().and_then(|_| d.end_our_side());
        self.confirm()?;
        let flushed = self.drain(d, ended);
        let reply = self.connection().finish_transfer();
        flushed.map_err(FtpError::Io)?;
        reply.map(drop)
    }

    /// Ends the upload and asks for the file's size in the same round trip: SIZE is sent right
    /// behind the end of the data, before the transfer's reply is read. `None`: the server
    /// gave no size. A server that answers SIZE before it has finished the transfer (its
    /// answer then comes first) gets a SIZE of its own after the transfer's reply, and no more
    /// pipelining on this connection.
    pub fn finish_with_size(mut self, path: &str) -> Result<Option<u64>> {
        self.end_with_size(path)
    }

    /// As [`Upload::finish_with_size`], keeping the upload for [`Upload::replay_after_failure`].
    pub fn end_with_size(&mut self, path: &str) -> Result<Option<u64>> {
        self.end_with_size_then(path, &[]).map(|(size, _)| size)
    }

    /// As [`Upload::end_with_size`], with `then` sent behind the SIZE in the same round trip
    /// (a time, a mode: what the file gets once its data is there). Returns, for each, whether
    /// the server took it after the transfer had ended; one not taken (refused, or answered by a
    /// server that reads commands during a transfer, which may have run it before the data's
    /// end, or not sent because this connection does not pipeline) is for the caller to set
    /// again on its own.
    pub fn end_with_size_then(&mut self, path: &str, then: &[Settle]) -> Result<(Option<u64>, Vec<bool>)> {
        super::command::check_arg(path)?;
        let not_taken = vec![false; then.len()];
        // Only where the server reads nothing during a transfer: one that answers at once could
        // run them before the data's end (which would undo a time, and a mode with it).
        let then = if super::transfer::answers_in_order(self.connection().welcome()) { then } else { &[] };
        if !self.connection().pipeline_size {
            self.end()?;
            return Ok((size_reply(self.connection().command("SIZE", Some(path))?)?, not_taken));
        }
        // Each that can be written goes; one that cannot (a time past year 9999, a line too
        // long) is left for the caller, whose own try reports it: never a failed upload.
        let mut behind = Vec::new();
        let mut sent_then = Vec::new();
        for (i, s) in then.iter().enumerate() {
            let line = s.command(path).and_then(|(verb, arg)| self.connection().command_line(verb, Some(&arg)));
            if let Ok(line) = line {
                behind.extend(line);
                sent_then.push(i);
            }
        }
        let Some(mut d) = self.data.take() else { return Err(self.failed.take().unwrap_or(FtpError::Closed)) };
        let ended = d.flush().and_then(|_| d.end_our_side());
        // SIZE goes out while the server still finishes the data connection: a round trip less.
        let sent = self.connection().command_line("SIZE", Some(path)).and_then(|mut lines| {
            lines.extend(behind);
            self.connection().send_lines(&lines)
        });
        if let Err(e) = sent {
            if self.early.is_none() {
                // Whether the server took the data still counts (see `delivered`).
                let _ = self.drain(d, ended);
            }
            // The transfer's reply is unread: this connection cannot be trusted any more. What
            // the session did with an upload sent early decides whether it may be sent again.
            let e = match self.early.is_some() {
                true => match self.connection().confirm_early_stor() {
                    Ok(()) => FtpError::protocol(format!("connection broke at the end of an upload: {e}")),
                    Err(reply) => reply,
                },
                false => e,
            };
            self.end_on(&e);
            return Err(e);
        }
        // And the next transfer's EPSV, where the server answers in order.
        let epsv = self.connection().send_epsv_ahead();
        self.confirm()?;
        let flushed = self.drain(d, ended);
        let conn = self.connection();
        let mut replies = Vec::with_capacity(2 + sent_then.len());
        for _ in 0..2 + sent_then.len() {
            replies.push(conn.read_reply()?);
        }
        if epsv {
            conn.leave_epsv_ahead();
        }
        if let Some(odd) = replies.iter().find(|r| r.code < 200) {
            // Not the replies expected: which answers what is unknown from here on.
            conn.dead = true;
            return Err(FtpError::protocol(format!("unexpected reply after an upload: {}", odd.code)));
        }
        // The transfer's reply comes first where the server answers in order; anywhere else, it
        // answered what went behind the data during the transfer. There only a 226 counts: a
        // 250 may answer a time or a mode.
        let done = |(i, r): (usize, &Reply)| r.code == 226 || (i == 0 && r.code == 250);
        let (transfer, size, taken) = match replies.iter().enumerate().position(done) {
            Some(0) | None => {
                let mut replies = replies.into_iter();
                let (Some(transfer), Some(size)) = (replies.next(), replies.next()) else {
                    unreachable!("two replies at least were read")
                };
                let mut taken = not_taken;
                for (&i, r) in sent_then.iter().zip(replies) {
                    taken[i] = then[i].taken(r.code);
                }
                (transfer, size, taken)
            }
            // Another reply came first: the server answers commands during a transfer, so the
            // SIZE may count a file still being written, and what went behind it may have run
            // before the data's end.
            Some(at) => {
                log::info!("server answered SIZE during a transfer ({}); no more pipelining", replies[0].code);
                conn.pipeline_size = false;
                let again = conn.command("SIZE", Some(path))?;
                (replies.swap_remove(at), again, not_taken)
            }
        };
        if let Err(e) = conn.settle_noops() {
            // The transfer's own reply stands; the connection is dead and not used again.
            log::debug!("after an upload: {e}");
        }
        flushed.map_err(FtpError::Io)?;
        if !is_transfer_done(transfer.code) {
            return Err(transfer.into_error());
        }
        Ok((size_reply(size)?, taken))
    }

    /// Reads the data connection to the server's end after ours (`ended`: flushed and ended on
    /// our side) and closes it; notes the upload as delivered when the server ended it in order.
    /// Meanwhile (the server may still be reading what the network holds of it) NOOPs keep the
    /// control connection alive where the server takes them, within the `timeout` option.
    fn drain(&mut self, mut d: NetStream, ended: io::Result<()>) -> io::Result<()> {
        let confirmed = self.early.is_none();
        let conn = self.connection();
        let tick = (conn.keeps_transfers_alive() && confirmed)
            .then(|| (conn.opts.keepalive.min(conn.opts.timeout), conn.opts.timeout));
        let clean = ended.is_ok() && d.drain_to_end_ticking(tick, || conn.keep_alive_in_transfer());
        drop(d);
        if clean && self.early.is_none() && self.failed.is_none() {
            self.delivered = Some(self.sent);
        }
        ended
    }

    /// Ends the upload (as [`Upload::finish`]) and hands back the connection.
    pub fn into_connection(mut self) -> (C, Result<()>) {
        let res = self.end();
        match self.conn.take() {
            Some(conn) => (conn, res),
            None => unreachable!("an upload always holds its connection until consumed"),
        }
    }
}

impl<C: BorrowMut<Connection>> Write for Upload<C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Under a bandwidth limit, a burst's worth at a time: no long sleep after a big write.
        let buf = match &self.connection().opts.limits.up {
            Some(rate) => &buf[..buf.len().min(rate.chunk())],
            None => buf,
        };
        if self.early.as_ref().is_some_and(|sent| sent.len() + buf.len() > EARLY_BYTES)
            && let Err(e) = self.confirm()
        {
            return Err(self.report(e));
        }
        if self.data.is_none() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "upload already finished"));
        }
        if self.early.is_none() {
            self.connection().keep_alive_in_transfer();
        }
        let Some(d) = self.data.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "upload already finished"));
        };
        let res = d.write(buf);
        if let Ok(n) = &res {
            self.sent += *n as u64;
            let limits = self.connection().opts.limits.clone();
            if let Some(rate) = &limits.up {
                rate.take(*n as u64);
            }
        }
        match (res, self.early.as_mut()) {
            (Ok(n), Some(sent)) => {
                sent.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            (Err(e), Some(_)) => {
                // The data connection broke before the 150: what the session did with the STOR
                // decides whether it may be sent again (see `session_took_no_action`).
                let e = match self.connection().confirm_early_stor() {
                    // The transfer had started: the server holds part of it. Not sent again.
                    Ok(()) => FtpError::protocol(format!("data connection broke during an upload: {e}")),
                    Err(reply) => reply,
                };
                self.end_on(&e);
                Err(self.report(e))
            }
            (res, None) => res,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.data.as_mut() {
            Some(d) => d.flush(),
            None => Ok(()),
        }
    }
}

impl<C: BorrowMut<Connection>> Upload<C> {
    /// Keeps `e` for [`Upload::take_failure`] and the finish; the I/O error a write returns.
    fn report(&mut self, e: FtpError) -> io::Error {
        let io = io::Error::new(io::ErrorKind::BrokenPipe, e.to_string());
        self.failed = Some(e);
        io
    }
}

impl<C: BorrowMut<Connection>> Drop for Upload<C> {
    fn drop(&mut self) {
        // An upload dropped without finish(): the server may keep what it got so far. Read its
        // reply so the connection stays in sync, or mark it dead.
        let Some(mut d) = self.data.take() else { return };
        let _ = d.shutdown();
        drop(d);
        if self.conn.is_none() {
            return;
        }
        if self.early.is_some() {
            // Its first reply is unread too: nothing tells which reply answers what.
            self.connection().dead = true;
            return;
        }
        let conn = self.connection();
        if let Err(e) = conn.finish_transfer() {
            log::debug!("upload dropped before finish: {e}");
            if !matches!(e, FtpError::Reply { .. }) {
                conn.dead = true;
            }
        }
    }
}
