//! Commands that move data: RETR (from an offset), STOR, APPE, LIST, MLSD, NLST.
//!
//! The sequence is always: open the data connection, send the command, expect 125/150, move the
//! bytes, then read the final 226/250. Data is read to end of stream before the final reply
//! (vsftpd may send 226 before we drained the socket). A download ended early is closed and the
//! control connection is brought back in sync by reading the transfer's reply and a NOOP's 200;
//! if that cannot be proven, the connection is marked dead and never reused.

use std::borrow::BorrowMut;
use std::io::{self, Read};

use super::control::Connection;
use super::data::PendingData;
use super::error::{FtpError, Result};
use super::listing::{Dialect, Entry, ListContext, ListingParser, MAX_LISTING_ENTRIES};
use super::reply::Reply;
use super::stream::NetStream;

/// Largest listing we accept, in bytes on the data connection: a hostile server cannot make
/// us read (or, for a raw listing, buffer) without end. The entries parsed from a listing have
/// bounds of their own ([`super::listing::MAX_LISTING_ENTRIES`],
/// [`super::listing::MAX_LISTING_MEMORY`]).
pub const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// What a listing's bytes are handed to: `Err` with the bound it went past stops the listing.
type Sink<'a> = &'a mut dyn FnMut(&[u8]) -> std::result::Result<(), String>;

/// A listing refused for going past a bound: logged with the directory and the bound.
fn too_large(verb: &str, arg: Option<&str>, bound: &str) -> FtpError {
    let dir = arg.map(|a| a.strip_prefix("-a ").unwrap_or(a)).unwrap_or(".");
    log::warn!("{verb} of {dir} refused: {bound} (a bound against hostile servers)");
    FtpError::TooLarge(format!("listing of {dir} refused: {bound}"))
}

/// Servers that accept a passive data connection only once its command came (the connection
/// waits in their listener until then): data and end of data may be sent before the command's
/// reply, and a download's data connection half-closed early (tests/wire.rs checks both on
/// each). Not pyftpdlib: it takes the connection at once and may see its end before the
/// command: it stores an empty file (the upload's size check caught it on the fake WAN), or
/// takes the half-close of a download for an abort.
pub(super) fn takes_data_after_command(welcome: &str) -> bool {
    ["vsFTPd", "Pure-FTPd", "ProFTPD"].iter().any(|name| welcome.contains(name))
}

/// Servers that read no command during a transfer and answer the ones sent behind its end
/// after its final reply (tests/wire.rs checks this). Not pyftpdlib and ProFTPD (they answer
/// at once, before the transfer's reply), nor Pure-FTPd (a command read during a transfer gets
/// "500 Unknown command", and one behind it none at all).
pub(super) fn answers_in_order(welcome: &str) -> bool {
    welcome.contains("vsFTPd")
}

/// Commands whose data flows from the server to us.
const DOWNLOADS: [&str; 4] = ["RETR", "LIST", "MLSD", "NLST"];

pub(super) fn is_transfer_done(code: u16) -> bool {
    code == 226 || code == 250
}

impl Connection {
    /// Opens the data channel, sends `verb arg` and waits for the preliminary reply.
    pub(super) fn start_transfer(&mut self, verb: &str, arg: Option<&str>) -> Result<NetStream> {
        self.start_transfer_at(verb, arg, 0)
    }

    /// As [`Connection::start_transfer`], with REST `rest` before the command when non-zero.
    fn start_transfer_at(&mut self, verb: &str, arg: Option<&str>, rest: u64) -> Result<NetStream> {
        if let Some(a) = arg {
            super::command::check_arg(a)?;
        }
        let (mut pending, ahead) = self.open_data()?;
        self.half_close_download(&pending, verb);
        let mut reply = self.send_transfer_command(verb, arg, rest)?;
        if ahead && reply.code == 425 {
            // The server did not take the connection opened ahead: open one now, and from now on.
            log::info!("server refused a data connection opened ahead ({}); opening them on demand", reply.text());
            self.ahead_refused = true;
            pending = self.open_data_now()?;
            self.half_close_download(&pending, verb);
            reply = self.send_transfer_command(verb, arg, rest)?;
        }
        if reply.ends_session() {
            return Err(reply.into_error());
        }
        if !reply.is_preliminary() {
            // 4xx/5xx: refused; the data connection is simply dropped and the session is in sync.
            if reply.is_positive() {
                // A final reply without any 1xx: nothing is left to read on the control side.
                return Err(FtpError::protocol(format!("{verb}: final reply {} without data", reply.code)));
            }
            return Err(reply.into_error());
        }
        self.ahead_accepted |= ahead;
        let res = pending.establish(self.peer.ip(), self.opts.timeout);
        let stream = self.mark_dead_on(res)?;
        match (&self.tls_config, self.protect_data) {
            // The data handshake resumes this control connection's session (require_ssl_reuse).
            (Some(cfg), true) => {
                let tcp = stream.into_plain().ok_or_else(|| FtpError::protocol("data stream is not plain TCP"))?;
                let name = self
                    .opts
                    .tls
                    .as_ref()
                    .map(|t| t.server_name())
                    .ok_or_else(|| FtpError::protocol("no TLS context"))?;
                let res = super::tls::handshake(tcp, cfg.clone(), name);
                self.mark_dead_on(res)
            }
            _ => Ok(stream),
        }
    }

    /// We never send on a plain download's data connection: saying so before the command spares
    /// the server waiting for our end of it before its final reply (vsftpd waits), a round trip.
    /// Only on servers known to read that as intended: pyftpdlib takes it for an abort.
    fn half_close_download(&self, pending: &PendingData, verb: &str) {
        let encrypted = self.tls_config.is_some() && self.protect_data;
        if let (PendingData::Connected(tcp), false) = (pending, encrypted)
            && DOWNLOADS.contains(&verb)
            && takes_data_after_command(self.welcome())
        {
            let _ = tcp.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Sends REST (when `rest` > 0) and the transfer command; the command's first reply.
    fn send_transfer_command(&mut self, verb: &str, arg: Option<&str>, rest: u64) -> Result<Reply> {
        if rest > 0 {
            let offset = rest.to_string();
            self.command_expect("REST", Some(&offset), |code| code == 350)?;
        }
        self.send(verb, arg)?;
        self.read_reply()
    }

    /// Reads the final reply of a transfer whose data connection is closed, and the replies of
    /// NOOPs sent during it that come after it.
    pub(super) fn finish_transfer(&mut self) -> Result<Reply> {
        let reply = self.read_reply()?;
        if let Err(e) = self.settle_noops() {
            // The transfer's own reply stands; the connection is dead and not used again.
            log::debug!("after a transfer: {e}");
        }
        if is_transfer_done(reply.code) { Ok(reply) } else { Err(reply.into_error()) }
    }

    /// After a transfer ended early: reads whatever the server says about the aborted transfer,
    /// then proves the stream is in sync with a NOOP. Marks the connection dead otherwise.
    fn resync_after_abort(&mut self) {
        let ok = (|| -> Result<bool> {
            let first = self.read_reply()?;
            if first.ends_session() {
                return Ok(false);
            }
            self.send("NOOP", None)?;
            // The NOOP's 200 may be preceded by one more transfer reply (426 then 226).
            for _ in 0..3 {
                let r = self.read_reply()?;
                if r.code == 200 {
                    return Ok(true);
                }
                if !(r.code == 225 || r.code == 226 || r.code == 250 || (400..500).contains(&r.code)) {
                    return Ok(false);
                }
            }
            Ok(false)
        })();
        if !matches!(ok, Ok(true)) {
            log::debug!("connection out of sync after an early end of transfer; dropping it");
            self.dead = true;
        }
    }

    /// Downloads `path` starting at byte `offset` (REST when non-zero). Read the returned
    /// [`Download`] and call [`Download::finish`]; dropping it early aborts cleanly.
    pub fn retr(&mut self, path: &str, offset: u64) -> Result<Download<&mut Connection>> {
        Download::start(self, path, offset)
    }

    /// Runs a listing command, handing its bytes to `sink` as they arrive.
    fn listing_into(&mut self, verb: &str, arg: Option<&str>, sink: Sink) -> Result<()> {
        let data = self.start_transfer(verb, arg)?;
        let mut dl = Download { conn: Some(self), data: Some(data), eof: false };
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = match dl.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FtpError::Io(e)),
            };
            total += n;
            if total > MAX_LISTING_BYTES {
                return Err(too_large(verb, arg, &format!("more than {} MiB", MAX_LISTING_BYTES >> 20)));
            }
            sink(&buf[..n]).map_err(|bound| too_large(verb, arg, &bound))?;
        }
        dl.end().map(drop)
    }

    /// Runs a listing command and returns its raw bytes, of at most `max_lines` lines.
    fn listing_bytes(&mut self, verb: &str, arg: Option<&str>, max_lines: usize) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut lines = 0;
        self.listing_into(verb, arg, &mut |b| {
            bytes.extend_from_slice(b);
            lines += b.iter().filter(|&&c| c == b'\n').count();
            if lines > max_lines { Err(format!("more than {max_lines} entries")) } else { Ok(()) }
        })?;
        Ok(bytes)
    }

    /// LIST of a directory into `sink` (`restart` empties it before a second attempt). Uses
    /// `LIST -a` when the server accepts it (vsftpd then shows dotfiles), remembering the answer.
    fn list_into(&mut self, path: &str, sink: Sink, restart: &mut dyn FnMut()) -> Result<()> {
        super::command::check_arg(path)?;
        if self.list_a != Some(false) {
            let arg = format!("-a {path}");
            match self.listing_into("LIST", Some(&arg), sink) {
                Ok(()) => {
                    self.list_a = Some(true);
                    return Ok(());
                }
                Err(FtpError::Reply { code, .. }) if self.list_a.is_none() && (500..600).contains(&code) => {
                    // Either "-a" is not understood or the path is really missing: plain LIST
                    // tells which, and only its success settles the question.
                    restart();
                    self.listing_into("LIST", Some(path), sink)?;
                    log::info!("server refused LIST -a ({code}); using plain LIST");
                    self.list_a = Some(false);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.listing_into("LIST", Some(path), sink)
    }

    /// LIST of a directory, raw.
    pub fn list_raw(&mut self, path: &str) -> Result<Vec<u8>> {
        let raw = std::cell::RefCell::new(Vec::new());
        let mut sink = |b: &[u8]| {
            raw.borrow_mut().extend_from_slice(b);
            Ok(())
        };
        self.list_into(path, &mut sink, &mut || raw.borrow_mut().clear())?;
        Ok(raw.into_inner())
    }

    /// LIST of a directory, parsed (Unix or DOS style) as it arrives.
    pub fn list(&mut self, path: &str, ctx: &ListContext) -> Result<Vec<Entry>> {
        let parser = std::cell::RefCell::new(ListingParser::new(
            Dialect::List,
            ListContext { encoding: self.encoding(), ..*ctx },
        ));
        let mut sink = |b: &[u8]| {
            let mut p = parser.borrow_mut();
            p.feed(b);
            p.overflow().map_or(Ok(()), Err)
        };
        self.list_into(path, &mut sink, &mut || parser.borrow_mut().clear())?;
        Ok(parser.into_inner().finish())
    }

    /// MLSD of a directory, parsed as it arrives.
    pub fn mlsd(&mut self, path: &str) -> Result<Vec<Entry>> {
        let ctx = ListContext { encoding: self.encoding(), ..ListContext::now_utc() };
        let mut parser = ListingParser::new(Dialect::Mlsd, ctx);
        self.listing_into("MLSD", Some(path), &mut |b| {
            parser.feed(b);
            parser.overflow().map_or(Ok(()), Err)
        })?;
        Ok(parser.finish())
    }

    /// NLST: names only (some servers send paths; `.` and `..` are left out).
    pub fn nlst(&mut self, path: &str) -> Result<Vec<String>> {
        // `.` and `..` may come on top of the names.
        let raw = self.listing_bytes("NLST", Some(path), MAX_LISTING_ENTRIES + 2)?;
        Ok(raw
            .split(|&b| b == b'\n')
            .map(|l| super::reply::decode_text(l.strip_suffix(b"\r").unwrap_or(l), self.encoding()))
            .filter(|n| {
                let last = n.rsplit('/').next().unwrap_or(n);
                !n.is_empty() && last != "." && last != ".."
            })
            .collect())
    }
}

/// A running download. Implements [`Read`]; call [`Download::finish`] after end of stream to
/// check the server's final reply. Dropped early, it closes the data connection and resyncs.
/// `C` is the connection, borrowed (`&mut Connection`) or owned by the download (a pool lease).
pub struct Download<C: BorrowMut<Connection>> {
    /// Always `Some` until `into_connection` moves it out of a download that is then dropped.
    conn: Option<C>,
    data: Option<NetStream>,
    eof: bool,
}

impl<C: BorrowMut<Connection>> Download<C> {
    /// Sends REST (when `offset` > 0) and RETR for `path` on `conn`.
    pub fn start(mut conn: C, path: &str, offset: u64) -> Result<Download<C>> {
        super::command::check_arg(path)?;
        let data = conn.borrow_mut().start_transfer_at("RETR", Some(path), offset)?;
        Ok(Download { conn: Some(conn), data: Some(data), eof: false })
    }

    fn connection(&mut self) -> &mut Connection {
        match self.conn.as_mut() {
            Some(c) => c.borrow_mut(),
            None => unreachable!("a download always holds its connection until consumed"),
        }
    }

    /// Ends the transfer: at end of stream, checks the server's final reply; before it, closes the
    /// data connection early and brings the control connection back in sync (or marks it dead).
    pub fn finish(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if !self.eof {
            // Not drained: this is an early end.
            self.abort();
            return Ok(());
        }
        if let Some(mut d) = self.data.take() {
            let _ = d.close_gracefully();
        }
        let conn = self.connection();
        let epsv = conn.send_epsv_ahead();
        let res = conn.finish_transfer().map(drop);
        if epsv {
            conn.leave_epsv_ahead();
        }
        res
    }

    /// Ends the transfer before end of stream, leaving the connection in sync or marked dead.
    pub fn abort(&mut self) {
        if let Some(mut d) = self.data.take() {
            let _ = d.shutdown();
            drop(d);
            if self.eof {
                let _ = self.connection().finish_transfer();
            } else {
                self.connection().resync_after_abort();
            }
        }
    }

    /// Ends the transfer (as [`Download::finish`]) and hands back the connection.
    pub fn into_connection(mut self) -> (C, Result<()>) {
        let res = self.end();
        // `data` is None now, so Drop has nothing left to do with the connection.
        match self.conn.take() {
            Some(conn) => (conn, res),
            None => unreachable!("a download always holds its connection until consumed"),
        }
    }
}

impl<C: BorrowMut<Connection>> Read for Download<C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_none() {
            return Ok(0);
        }
        self.connection().keep_alive_in_transfer();
        // Under a bandwidth limit, a burst's worth at a time: no long sleep after a big read.
        let buf = match &self.connection().opts.limits.down {
            Some(rate) => {
                let chunk = buf.len().min(rate.chunk());
                &mut buf[..chunk]
            }
            None => buf,
        };
        let Some(d) = self.data.as_mut() else { return Ok(0) };
        let n = d.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        if let Some(rate) = &self.connection().opts.limits.down {
            rate.take(n as u64);
        }
        Ok(n)
    }
}

impl<C: BorrowMut<Connection>> Drop for Download<C> {
    fn drop(&mut self) {
        // Not finished by hand: end it the same way, and never reuse a connection whose final
        // reply was not the expected one.
        if self.data.is_some() && self.end().is_err() {
            self.connection().dead = true;
        }
    }
}
