//! Opening data connections (RFC 959 PASV/PORT, RFC 2428 EPSV/EPRT).
//!
//! Passive mode tries EPSV first and falls back to PASV on this connection when the server
//! says it does not know EPSV on a session that still answers, or its port cannot be reached;
//! never after a transient refusal or a session the server ended (a new connection tries EPSV
//! again). After PASV we connect to the control
//! connection's peer address, not to the address in the 227 reply, unless the caller opted in
//! (a hostile server could otherwise make us connect anywhere: CVE-2020-8284). Active mode
//! listens on the control connection's local address and announces it with EPRT (IPv6) or PORT,
//! and takes only a data connection that comes from the control connection's peer address (as
//! vsftpd and curl do): anyone else who finds the port first is turned away.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::control::{Connection, DataMode};
use super::error::{FtpError, Result};
use super::stream::NetStream;

/// A data connection that is either already connected (passive) or waiting for the server to
/// connect (active).
pub(super) enum PendingData {
    Connected(TcpStream),
    Listening(TcpListener),
}

impl PendingData {
    /// Turns the pending connection into a stream, accepting the server's connection in active
    /// mode (within `timeout`, and only from `server`, the control connection's peer address).
    pub(super) fn establish(self, server: IpAddr, timeout: Duration) -> Result<NetStream> {
        let tcp = match self {
            PendingData::Connected(s) => s,
            PendingData::Listening(l) => {
                let s = accept_with_timeout(&l, server, timeout)?;
                super::keepalive::set_tcp_keepalive(&s);
                s
            }
        };
        let stream = NetStream::Plain(tcp);
        stream.set_timeouts(Some(timeout))?;
        Ok(stream)
    }
}

/// Accepts the first connection that comes from `server` (an IPv4 address and its IPv4-mapped
/// IPv6 form count as one) within `timeout`; connections from anywhere else are closed at once
/// and the wait goes on.
fn accept_with_timeout(listener: &TcpListener, server: IpAddr, timeout: Duration) -> Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let mut refused = 0u32;
    loop {
        match listener.accept() {
            Ok((s, from)) if from.ip().to_canonical() != server.to_canonical() => {
                // Once per transfer at warning level: a flood of them cannot flood the log.
                refused += 1;
                if refused == 1 {
                    log::warn!("refused an active-mode data connection from {from}: the server is {server}");
                } else {
                    log::debug!("refused active-mode data connection {refused} from {from}");
                }
                drop(s);
            }
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(FtpError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "server did not open the active-mode data connection",
                    )));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(FtpError::Io(e)),
        }
    }
}

/// Parses the port of a 229 reply: `Entering Extended Passive Mode (|||6446|)`.
pub fn parse_229(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let delim = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(delim).collect();
    // "|||port|" splits into ["", "", "", "port", ""].
    if parts.len() != 5 {
        return None;
    }
    let port: u16 = parts[3].parse().ok()?;
    (port != 0).then_some(port)
}

/// Parses the address of a 227 reply: six comma-separated numbers `h1,h2,h3,h4,p1,p2`, found
/// anywhere in the text (servers differ on the parentheses).
pub fn parse_227(text: &str) -> Option<SocketAddr> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let candidate: String = text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == ',').collect();
    let nums: Vec<u16> = candidate.split(',').map(|n| n.parse::<u16>()).collect::<std::result::Result<_, _>>().ok()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    let port = nums[4] * 256 + nums[5];
    (port != 0).then_some(SocketAddr::new(IpAddr::V4(ip), port))
}

/// How long a data connection opened ahead stays usable. Servers give up on passive data
/// connections that no transfer uses (pyftpdlib after 30 s, others on their idle timeout).
const AHEAD_MAX_AGE: Duration = Duration::from_secs(10);

/// True when the server has neither closed nor reset `s`, nor sent anything on it.
fn still_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = matches!(s.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).is_ok() && open
}

impl Connection {
    /// Whether [`Connection::open_data_ahead`] would open anything: passive mode with EPSV
    /// proven on this connection, nothing opened yet, and the server never refused one.
    pub fn wants_data_ahead(&self) -> bool {
        if self.epsv_pending || self.ahead_port.is_some() {
            return !self.dead;
        }
        !self.dead
            && self.ahead.is_none()
            && !self.ahead_refused
            && self.epsv_worked
            && !self.epsv_failed
            && self.opts.use_epsv
            && matches!(self.opts.data_mode, DataMode::Passive)
    }

    /// Opens a data connection ahead with EPSV even though EPSV was not tried on this
    /// connection yet (a failure changes nothing: the first transfer finds out as usual).
    pub fn try_data_ahead(&mut self) -> Result<()> {
        self.connect_ahead_port();
        if self.ahead.is_some() || self.epsv_failed || !self.opts.use_epsv {
            return Ok(());
        }
        if !matches!(self.opts.data_mode, DataMode::Passive) {
            return Ok(());
        }
        let stream = self.epsv_connect()?;
        self.ahead = Some((stream, Instant::now()));
        Ok(())
    }

    /// A data connection for the next transfer is open ahead, or its EPSV is on the way.
    pub fn has_data_ahead(&self) -> bool {
        !self.dead && (self.epsv_pending || self.ahead_port.is_some() || self.ahead.is_some())
    }

    /// Whether the data connection opened ahead (if any) has had a round trip since its
    /// handshake began: bytes sent on it earlier wait for the handshake's end, so a transfer
    /// on it would cost a round trip more than one on a connection whose data connection is
    /// settled. (A kernel or a proxy may complete `connect` at once, before the server's end
    /// took part.) True when nothing is open ahead, or the round trip is not known.
    pub fn data_ahead_settled(&self) -> bool {
        if self.epsv_pending || self.ahead_port.is_some() {
            // Its handshake has not even begun.
            return false;
        }
        match (&self.ahead, self.round_trip) {
            (Some((_, opened)), Some(rtt)) => opened.elapsed() >= rtt,
            _ => true,
        }
    }

    /// EPSV worked on this connection.
    pub fn epsv_proven(&self) -> bool {
        self.epsv_worked && !self.epsv_failed
    }

    /// EPSV worked on another connection to the same server: this one may open data
    /// connections ahead before its first transfer.
    pub fn trust_epsv(&mut self) {
        self.epsv_worked = true;
    }

    /// Opens the passive data connection of the next transfer now (EPSV and the TCP handshake),
    /// while nobody waits for this connection.
    pub fn open_data_ahead(&mut self) -> Result<()> {
        self.connect_ahead_port();
        if !self.wants_data_ahead() {
            return Ok(());
        }
        let stream = self.epsv_connect()?;
        self.ahead = Some((stream, Instant::now()));
        Ok(())
    }

    /// The data connection opened ahead, if it is still usable.
    pub(super) fn take_ahead(&mut self) -> Option<TcpStream> {
        self.connect_ahead_port();
        let (stream, opened) = self.ahead.take()?;
        (opened.elapsed() < AHEAD_MAX_AGE && still_open(&stream)).then_some(stream)
    }

    /// Prepares a data connection before the transfer command is sent; `true` when it is one
    /// opened ahead.
    pub(super) fn open_data(&mut self) -> Result<(PendingData, bool)> {
        if let Some(stream) = self.take_ahead() {
            return Ok((PendingData::Connected(stream), true));
        }
        self.open_data_now().map(|d| (d, false))
    }

    pub(super) fn open_data_now(&mut self) -> Result<PendingData> {
        match self.opts.data_mode {
            DataMode::Active => self.open_active(),
            DataMode::Passive => {
                if self.opts.use_epsv && !self.epsv_failed {
                    match self.open_epsv() {
                        Ok(d) => return Ok(d),
                        Err(e) if self.dead => return Err(e),
                        // PASV cannot name an IPv6 address (through a proxy it needs none).
                        Err(e) if self.peer.is_ipv6() && self.opts.proxy.is_none() => return Err(e),
                        Err(e) => {
                            self.confirm_epsv_unusable(e)?;
                            self.epsv_failed = true;
                        }
                    }
                }
                self.open_pasv()
            }
        }
    }

    /// Decides whether a failed EPSV means this connection should use PASV: the server said it
    /// does not know EPSV (500–502, 504, 522 to EPSV itself) and the session is alive (NOOP
    /// answers), or the port it named could not be reached (PASV may name a reachable one).
    /// Anything else (a transient 4xx, a session the server ended) is returned as the error,
    /// and nothing is downgraded: one busy moment must not cost the EPSV of a whole mount.
    fn confirm_epsv_unusable(&mut self, e: FtpError) -> Result<()> {
        let unusable = match &e {
            FtpError::Reply { code: 500..=502 | 504 | 522, .. } => match self.noop() {
                Ok(()) => true,
                Err(noop) if noop.is_fatal_for_connection() => return Err(noop),
                Err(noop) => {
                    // A session that refuses NOOP is in no state to trust: a fresh one is.
                    log::debug!("NOOP after a refused EPSV: {noop}");
                    self.dead = true;
                    return Err(FtpError::Closed);
                }
            },
            FtpError::Io(_) => true,
            // A 229 without a port we can read, on a session still in sync.
            FtpError::Protocol(_) => !self.dead,
            _ => false,
        };
        if !unusable {
            return Err(e);
        }
        log::info!("EPSV failed ({e}); using PASV on this connection");
        Ok(())
    }

    /// Connects to the data port `addr.port()`: at `addr` directly, or through the proxy at the
    /// host name the user gave, since the control connection's peer is then the proxy. Only an
    /// address a PASV reply announced (`announced`), with `pasv_ip`, is asked of the proxy as it is.
    fn connect_data(&self, addr: SocketAddr, announced: bool) -> Result<TcpStream> {
        let s = self.connect_data_tcp(addr, announced)?;
        super::keepalive::set_tcp_keepalive(&s);
        Ok(s)
    }

    fn connect_data_tcp(&self, addr: SocketAddr, announced: bool) -> Result<TcpStream> {
        match &self.opts.proxy {
            None => Ok(TcpStream::connect_timeout(&addr, self.opts.timeout)?),
            Some(proxy) => {
                let host = if announced && self.opts.trust_pasv_address {
                    addr.ip().to_string()
                } else {
                    self.opts.host.clone()
                };
                let s = proxy.connect(&host, addr.port(), self.opts.timeout, None)?;
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
                Ok(s)
            }
        }
    }

    fn open_epsv(&mut self) -> Result<PendingData> {
        self.epsv_connect().map(PendingData::Connected)
    }

    /// Lets the end of a transfer send the EPSV of the next one (on servers that answer in
    /// order), so that the next data connection is open ahead without a round trip of its own.
    pub fn set_open_ahead(&mut self, on: bool) {
        self.open_ahead = on;
    }

    /// Sends EPSV for the next transfer behind the end of the current one, before its final
    /// reply is read; `true` when sent: the caller leaves that reply for later with
    /// [`Connection::leave_epsv_ahead`] after reading the replies before it. Only where the server is
    /// known to answer commands in order after a transfer, never during it.
    pub(super) fn send_epsv_ahead(&mut self) -> bool {
        let encrypted = self.tls_config.is_some() && self.protect_data;
        if !self.open_ahead
            || !self.wants_data_ahead()
            || encrypted
            || !super::transfer::answers_in_order(self.welcome())
        {
            return false;
        }
        self.send("EPSV", None).is_ok()
    }

    /// Leaves the reply to an EPSV sent by [`Connection::send_epsv_ahead`] for later: it is
    /// read before the next reply (whatever was sent behind it meanwhile), or by whoever opens
    /// data connections ahead for an idle connection, so the transfer that sent it returns
    /// without waiting a round trip for it.
    pub(super) fn leave_epsv_ahead(&mut self) {
        self.epsv_pending = !self.dead;
    }

    /// Reads the reply of an EPSV left by [`Connection::leave_epsv_ahead`], if any, and keeps
    /// the port it names: connected only when a transfer or the pool's preparation of an idle
    /// connection needs it, so replies read behind it do not wait for that handshake. Nothing
    /// is opened ahead when the reply is no 229. An error only when the connection broke or
    /// the server ended the session there (the connection is dead then): the caller reports
    /// that error rather than a bare "closed".
    pub(super) fn settle_epsv_ahead(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.epsv_pending) {
            return Ok(());
        }
        let reply = self.read_reply()?;
        if reply.ends_session() {
            return Err(reply.into_error());
        }
        match self.port_of_229(&reply) {
            Ok(addr) => self.ahead_port = Some((addr, Instant::now())),
            Err(e) => log::debug!("no data connection opened ahead: {e}"),
        }
        Ok(())
    }

    /// Connects the data connection of a port kept by [`Connection::settle_epsv_ahead`].
    fn connect_ahead_port(&mut self) {
        if let Err(e) = self.settle_epsv_ahead() {
            log::debug!("no data connection opened ahead: {e}");
            return;
        }
        let Some((addr, named)) = self.ahead_port.take() else { return };
        if named.elapsed() >= AHEAD_MAX_AGE {
            return;
        }
        match self.connect_data(addr, false) {
            Ok(stream) => {
                self.epsv_worked = true;
                self.ahead = Some((stream, named));
            }
            Err(e) => log::debug!("no data connection opened ahead: {e}"),
        }
    }

    fn epsv_connect(&mut self) -> Result<TcpStream> {
        let reply = self.command("EPSV", None)?;
        self.connect_229(reply)
    }

    /// The address of the port an EPSV reply names (on the control connection's peer).
    fn port_of_229(&self, reply: &super::reply::Reply) -> Result<SocketAddr> {
        if reply.code != 229 {
            return Err(reply.clone().into_error());
        }
        let port =
            parse_229(&reply.text()).ok_or_else(|| FtpError::protocol(format!("bad EPSV reply: {}", reply.text())))?;
        Ok(SocketAddr::new(self.peer.ip(), port))
    }

    /// Connects to the port an EPSV reply names.
    fn connect_229(&mut self, reply: super::reply::Reply) -> Result<TcpStream> {
        let addr = self.port_of_229(&reply)?;
        let stream = self.connect_data(addr, false)?;
        self.epsv_worked = true;
        Ok(stream)
    }

    fn open_pasv(&mut self) -> Result<PendingData> {
        let reply = self.command_expect("PASV", None, |c| c == 227)?;
        let announced =
            parse_227(&reply.text()).ok_or_else(|| FtpError::protocol(format!("bad PASV reply: {}", reply.text())))?;
        let addr = if self.opts.trust_pasv_address {
            announced
        } else {
            if announced.ip() != self.peer.ip() {
                log::debug!("ignoring PASV address {} (using the control peer)", announced.ip());
            }
            SocketAddr::new(self.peer.ip(), announced.port())
        };
        Ok(PendingData::Connected(self.connect_data(addr, true)?))
    }

    fn open_active(&mut self) -> Result<PendingData> {
        let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))?;
        let addr = listener.local_addr()?;
        match addr.ip() {
            IpAddr::V4(ip) => {
                let o = ip.octets();
                let arg = format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], addr.port() >> 8, addr.port() & 0xff);
                self.command_expect("PORT", Some(&arg), |c| c == 200)?;
            }
            IpAddr::V6(ip) => {
                let arg = format!("|2|{ip}|{}|", addr.port());
                self.command_expect("EPRT", Some(&arg), |c| c == 200)?;
            }
        }
        Ok(PendingData::Listening(listener))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    #[test]
    fn epsv_replies() {
        assert_eq!(parse_229("Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(parse_229("Entering Extended Passive Mode (!!!6446!)"), Some(6446));
        assert_eq!(parse_229("(|||0|)"), None);
        assert_eq!(parse_229("(|||99999|)"), None);
        assert_eq!(parse_229("(|||abc|)"), None);
        assert_eq!(parse_229("no parens"), None);
        assert_eq!(parse_229("(||1|2|3|)"), None);
    }

    #[test]
    fn pasv_replies() {
        assert_eq!(parse_227("Entering Passive Mode (127,0,0,1,39,16)."), Some("127.0.0.1:10000".parse().unwrap()));
        assert_eq!(parse_227("Entering Passive Mode 10,0,0,5,4,1"), Some("10.0.0.5:1025".parse().unwrap()));
        assert_eq!(parse_227("=192,168,1,2,0,21"), Some("192.168.1.2:21".parse().unwrap()));
        assert_eq!(parse_227("Entering Passive Mode (300,0,0,1,1,1)"), None);
        assert_eq!(parse_227("Entering Passive Mode (1,2,3,4,5)"), None);
        assert_eq!(parse_227("Entering Passive Mode (1,2,3,4,0,0)"), None);
        assert_eq!(parse_227("nonsense"), None);
    }

    /// A TCP connection to `to` from the local address `from` (bound before connecting, which
    /// std cannot do): on loopback, any 127.x.y.z stands for another host.
    fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        };
        let SocketAddr::V4(to) = to else { return Err(io::Error::other("IPv4 only")) };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: socket(2) takes no pointers; a valid descriptor is owned by `fd` at once.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (local, remote) = (sockaddr(from, 0), sockaddr(*to.ip(), to.port()));
        // SAFETY: the addresses are valid sockaddr_in values of length `len` for the calls.
        if unsafe { libc::bind(fd.as_raw_fd(), (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::connect(fd.as_raw_fd(), (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::from(fd))
    }

    #[test]
    fn active_mode_takes_only_the_server() {
        let server = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Someone else connects first: turned away (closed), and the wait goes on for the server.
        let foreign = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).expect("connect from 127.0.0.2");
        let legit = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            TcpStream::connect(addr).unwrap()
        });
        let got = accept_with_timeout(&listener, server, Duration::from_secs(5)).expect("the server's connection");
        assert_eq!(got.peer_addr().unwrap().ip(), server);
        let legit = legit.join().unwrap();
        assert_eq!(got.peer_addr().unwrap(), legit.local_addr().unwrap());
        foreign.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!((&foreign).read(&mut byte), Ok(0) | Err(_)), "the foreign connection is closed");

        // Only a foreign peer: the wait ends at the timeout with the usual error.
        let _foreign = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).expect("connect from 127.0.0.3");
        let started = Instant::now();
        let err = accept_with_timeout(&listener, server, Duration::from_millis(300)).expect_err("foreign only");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(&err, FtpError::Io(e) if e.kind() == io::ErrorKind::TimedOut), "{err:?}");

        // The server named in its IPv4-mapped IPv6 form is the same server.
        let _legit = TcpStream::connect(addr).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        accept_with_timeout(&listener, mapped, Duration::from_secs(5)).expect("mapped form");
    }

    proptest! {
        #[test]
        fn address_parsers_never_panic(s in "\\PC{0,80}") {
            let _ = parse_227(&s);
            let _ = parse_229(&s);
        }
    }
}
