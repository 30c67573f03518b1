//! One logged-in FTP control connection (RFC 959) and the commands that need no data channel.
//!
//! [`Connection::connect`] resolves the host (IPv4 or IPv6), connects with a timeout, reads the
//! greeting, logs in, asks FEAT, turns UTF-8 on where offered and selects binary mode. After that,
//! every command goes through [`Connection::command`], which validates arguments, logs the line
//! (never a password) and reads the reply. A connection that saw a network or protocol error is
//! marked dead and refuses further use: it is never reused out of sync.
//!
//! [`Connection::connect_until`] does the same under one deadline for the whole start-up (a
//! watchdog shuts the socket down when it passes, so no sum of reads can outlast it); a step that
//! runs out of time fails with a `TimedOut` network error that names it ("no greeting from the
//! server within 3 s").

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::command::{check_arg, check_arg_of, encode_line, is_secret, loggable};
use super::error::{FtpError, Result};
use super::features::Features;
use super::listing::{Entry, format_mlsd_time, parse_mlsd_line, parse_mlsd_time};
use super::proxy::Proxy;
use super::reply::{Reply, read_reply_in};
use super::stream::NetStream;
use super::tls::{TlsContext, TlsMode, handshake};

/// Preliminary (1xx) replies accepted before the final reply to one command; more is a
/// protocol error (a server sending `150` lines without end would hold the request forever).
pub const MAX_PRELIMINARY: usize = 16;

/// The default of [`ConnectOptions::keepalive`]: well inside the idle limits of home routers and
/// cloud NATs (minutes), and one short command per half minute of a transfer.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// How data connections are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// The client connects to the server (EPSV, then PASV).
    Passive,
    /// The server connects to a listener of ours (EPRT/PORT).
    Active,
}

/// Everything needed to open and log in a connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    /// Connect, reply and data-idle timeout.
    pub timeout: Duration,
    pub data_mode: DataMode,
    /// Try EPSV before PASV.
    pub use_epsv: bool,
    /// Connect to the address in a 227 reply instead of the control connection's peer.
    pub trust_pasv_address: bool,
    /// FTPS: when TLS starts, and the configuration it uses (set when `tls_mode` is not Off).
    pub tls_mode: TlsMode,
    pub tls: Option<Arc<TlsContext>>,
    /// The server's character set for names, when it is not UTF-8 (RFC 2640 is the default).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// What FEAT answered on an earlier connection to the same server: later connections do
    /// not ask again and set up their session in one round trip.
    pub known_features: Option<Features>,
    /// Reach the server (control and data connections) through this proxy.
    pub proxy: Option<Arc<Proxy>>,
    /// Silence on the control connection during a transfer after which a NOOP is sent, on
    /// servers that take one then (see [`super::keepalive`]); zero: never.
    pub keepalive: Duration,
    /// Bandwidth and command rate limits shared by the mount's connections.
    pub limits: Arc<super::throttle::Limits>,
}

impl ConnectOptions {
    pub fn new(host: &str, port: u16, user: &str, password: &str) -> ConnectOptions {
        ConnectOptions {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: Secret::new(password),
            timeout: Duration::from_secs(30),
            data_mode: DataMode::Passive,
            use_epsv: true,
            trust_pasv_address: false,
            tls_mode: TlsMode::Off,
            tls: None,
            encoding: None,
            known_features: None,
            proxy: None,
            keepalive: DEFAULT_KEEPALIVE,
            limits: Arc::default(),
        }
    }
}

/// Representation type for transfers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    /// TYPE I: bytes as they are (the default after login).
    Binary,
    /// TYPE A: text with line-end conversion.
    Ascii,
}

/// A logged-in control connection.
pub struct Connection {
    pub(super) ctrl: BufReader<NetStream>,
    pub(super) opts: ConnectOptions,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) features: Features,
    /// EPSV is unknown to the server or its ports unreachable: PASV on this connection.
    pub(super) epsv_failed: bool,
    /// EPSV worked on this connection: a data connection may be opened ahead.
    pub(super) epsv_worked: bool,
    /// A passive data connection opened ahead of the next transfer, and when.
    pub(super) ahead: Option<(TcpStream, Instant)>,
    /// The server refused a data connection opened ahead: open them only on demand.
    pub(super) ahead_refused: bool,
    /// The server took a data connection opened ahead for a transfer: a STOR may send its
    /// first bytes on one before its preliminary reply is back.
    pub(super) ahead_accepted: bool,
    /// Whoever lends this connection wants the next data connection opened ahead: the end of a
    /// transfer may carry the EPSV for it (see [`Connection::set_open_ahead`]).
    pub(super) open_ahead: bool,
    /// An EPSV sent behind the end of a transfer whose reply is not read yet: it is the next
    /// reply on the wire, read (and its data connection opened) before any other.
    pub(super) epsv_pending: bool,
    /// The port named by such an EPSV once its reply was read, and when: connected on demand.
    pub(super) ahead_port: Option<(SocketAddr, Instant)>,
    /// SIZE may be sent behind an upload's data, before its reply (until the server shows
    /// it answers commands during a transfer).
    pub(super) pipeline_size: bool,
    /// Whether `LIST -a` works (None = not tried yet).
    pub(super) list_a: Option<bool>,
    pub(super) dead: bool,
    /// The login and session set-up are done: a 530 now means the server dropped the login
    /// ([`FtpError::LoggedOut`]), not that it refused our credentials.
    logged_in: bool,
    transfer_type: TransferType,
    welcome: String,
    /// This connection's TLS configuration (shared with its data connections), if any.
    pub(super) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// PROT P is in force: data connections are encrypted.
    pub(super) protect_data: bool,
    /// The start-up deadline of [`Connection::connect_until`], until [`Connection::clear_deadline`].
    watchdog: Option<Watchdog>,
    /// The server is known to answer NOOPs sent during a transfer (see [`super::keepalive`]).
    pub(super) noop_in_transfer: bool,
    /// NOOPs sent during a transfer whose `200` is not read yet.
    pub(super) noops_unanswered: usize,
    /// NOOPs sent during transfers, in all.
    pub(super) noops_sent: u64,
    /// When the last command was sent.
    pub(super) last_sent: Instant,
    /// The shortest time a command took to be answered: the round trip to the server, at most.
    pub(super) round_trip: Option<Duration>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("peer", &self.peer).field("dead", &self.dead).finish()
    }
}

/// Opens a TCP connection to the first address of `host:port` that answers within `timeout`,
/// all attempts together ending by `deadline` when there is one.
pub(super) fn connect_tcp(host: &str, port: u16, timeout: Duration, deadline: Option<Instant>) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = None;
    for addr in &addrs {
        let Some(wait) = time_left(timeout, deadline) else {
            last = Some(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            break;
        };
        match TcpStream::connect_timeout(addr, wait) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => FtpError::Io(e),
        None => FtpError::Io(io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"))),
    })
}

/// How long the next wait may take: `timeout`, or less when `deadline` comes first. None when
/// the deadline has passed.
fn time_left(timeout: Duration, deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(timeout),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(timeout))
        }
    }
}

/// `3 s`, `2.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A step of a connect that ran out of time becomes a `TimedOut` network error that names it:
/// `{step} within {within}`. Out of time means a socket timeout, or any network failure once
/// `deadline` has passed (the watchdog shut the socket down). Other errors pass unchanged.
fn name_timeout(e: FtpError, step: &str, deadline: Option<Instant>, within: Duration) -> FtpError {
    let late = deadline.is_some_and(|d| Instant::now() >= d);
    let out_of_time = match &e {
        FtpError::Io(io) => late || matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock),
        FtpError::Closed => late,
        _ => false,
    };
    if out_of_time {
        FtpError::Io(io::Error::new(io::ErrorKind::TimedOut, format!("{step} within {}", seconds(within))))
    } else {
        e
    }
}

/// Shuts a control connection's socket down when its start-up deadline passes, so that every
/// read still waiting returns at once: a socket timeout bounds each read, not their sum (a server
/// may answer slowly, a byte at a time). Stopped, its thread joined, by [`Watchdog::stop`] or on
/// drop, so no thread outlives the start-up (the mount forks after it).
struct Watchdog {
    deadline: Instant,
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    fn start(tcp: &TcpStream, deadline: Instant) -> Result<Watchdog> {
        let sock = tcp.try_clone()?;
        let (cancel, cancelled) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("connect-deadline".into()).spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            match cancelled.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = sock.shutdown(Shutdown::Both);
                    true
                }
                _ => false,
            }
        })?;
        Ok(Watchdog { deadline, cancel: Some(cancel), thread: Some(thread) })
    }

    /// Stops the watchdog (at once: the thread only waits for the cancel). True when it had
    /// fired already and the socket is shut down.
    fn stop(&mut self) -> bool {
        drop(self.cancel.take());
        self.thread.take().is_some_and(|t| t.join().unwrap_or(true))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Connection {
    /// Connects, reads the greeting, logs in and prepares the session (FEAT, UTF8, TYPE I).
    /// Each wait is bounded by the `timeout` option; one that runs out fails with a `TimedOut`
    /// network error naming the step.
    pub fn connect(opts: &ConnectOptions) -> Result<Connection> {
        Connection::open(opts, None)
    }

    /// [`Connection::connect`] bounded as a whole by `deadline`: the TCP connect, TLS, greeting,
    /// login and session set-up together, and after them the commands run through
    /// [`Connection::timed_step`], until [`Connection::clear_deadline`]. A step that runs out of
    /// time fails with a `TimedOut` network error naming it, e.g. `no greeting from the server
    /// within 30 s` (the `timeout` option, which the caller's deadline is meant to be).
    pub fn connect_until(opts: &ConnectOptions, deadline: Instant) -> Result<Connection> {
        Connection::open(opts, Some(deadline))
    }

    fn open(opts: &ConnectOptions, deadline: Option<Instant>) -> Result<Connection> {
        check_arg(&opts.user)?;
        check_arg_of("PASS", opts.password.expose())?;
        let within = opts.timeout;
        let tcp = match &opts.proxy {
            None => connect_tcp(&opts.host, opts.port, opts.timeout, deadline),
            Some(proxy) => proxy.connect(&opts.host, opts.port, opts.timeout, deadline),
        }
        .map_err(|e| name_timeout(e, &format!("no TCP connection to {}:{}", opts.host, opts.port), deadline, within))?;
        // Past the deadline already: the watchdog shuts the socket down at once.
        let wait = time_left(opts.timeout, deadline).unwrap_or(Duration::from_millis(1));
        tcp.set_nodelay(true)?;
        super::keepalive::set_tcp_keepalive(&tcp);
        tcp.set_read_timeout(Some(wait))?;
        tcp.set_write_timeout(Some(wait))?;
        let watchdog = match deadline {
            Some(d) => Some(Watchdog::start(&tcp, d)?),
            None => None,
        };
        let tls = match (opts.tls_mode, &opts.tls) {
            (TlsMode::Off, _) => None,
            (_, Some(ctx)) => Some((ctx.for_connection(), ctx.server_name())),
            (_, None) => return Err(FtpError::InvalidArgument("TLS requested without a TLS configuration".into())),
        };
        let stream = match (&tls, opts.tls_mode) {
            (Some((cfg, name)), TlsMode::Implicit) => handshake(tcp, cfg.clone(), name.clone())
                .map_err(|e| name_timeout(e, "TLS handshake not done", deadline, within))?,
            _ => NetStream::Plain(tcp),
        };
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        let mut conn = Connection {
            ctrl: BufReader::with_capacity(16 * 1024, stream),
            opts: opts.clone(),
            peer,
            local,
            features: Features::default(),
            epsv_failed: false,
            epsv_worked: false,
            ahead: None,
            ahead_refused: false,
            ahead_accepted: false,
            open_ahead: false,
            epsv_pending: false,
            ahead_port: None,
            pipeline_size: true,
            list_a: None,
            dead: false,
            logged_in: false,
            transfer_type: TransferType::Binary,
            welcome: String::new(),
            tls_config: tls.as_ref().map(|t| t.0.clone()),
            protect_data: false,
            watchdog,
            noop_in_transfer: false,
            noops_unanswered: 0,
            noops_sent: 0,
            last_sent: Instant::now(),
            round_trip: None,
        };
        let greeting = conn.timed_step("no greeting from the server", |c| {
            let greeting = c.read_reply()?;
            if greeting.code == 120 { c.read_reply() } else { Ok(greeting) }
        })?;
        if greeting.code != 220 {
            return Err(greeting.into_error());
        }
        conn.welcome = greeting.text();
        conn.noop_in_transfer = super::keepalive::tolerates_noop_in_transfer(&conn.welcome);
        if let (Some((cfg, name)), TlsMode::Explicit) = (tls, opts.tls_mode) {
            conn.timed_step("TLS set-up (AUTH TLS) not done", |c| {
                c.command_expect("AUTH", Some("TLS"), |code| code == 234)?;
                // Bytes that came with the 234, in clear, would be read after the handshake as
                // if the server had sent them protected (a man in the middle injecting replies:
                // CVE-2021-22947). Later ones reach the handshake itself, which refuses them.
                let early = c.ctrl.buffer().len();
                if early > 0 {
                    return Err(FtpError::protocol(format!(
                        "the server sent {early} bytes after its 234 reply to AUTH TLS, before the TLS \
                         handshake: refused, as they could have been injected in clear"
                    )));
                }
                let plain = std::mem::replace(c.ctrl.get_mut(), NetStream::Detached);
                let tcp = plain.into_plain().ok_or_else(|| FtpError::protocol("control stream is not plain TCP"))?;
                *c.ctrl.get_mut() = handshake(tcp, cfg, name)?;
                Ok(())
            })?;
        }
        if let Some(features) = opts.known_features.clone().filter(|_| reads_pipelined_login(&conn.welcome)) {
            // A later connection to a server known to read ahead: one round trip, not four.
            conn.features = features;
            conn.timed_step("no answer to the login and session set-up", Connection::login_pipelined)?;
            conn.logged_in = true;
            return Ok(conn);
        }
        conn.timed_step("no answer to the login (USER/PASS)", Connection::login)?;
        if conn.tls_config.is_some() {
            conn.timed_step("no answer to PBSZ/PROT", |c| {
                c.command_expect("PBSZ", Some("0"), |code| code == 200)?;
                c.command_expect("PROT", Some("P"), |code| code == 200)
            })?;
            conn.protect_data = true;
        }
        conn.timed_step("no answer to the session set-up (FEAT, OPTS, TYPE)", Connection::setup_session)?;
        conn.logged_in = true;
        Ok(conn)
    }

    /// Runs one step of a start-up (for instance PWD) under this connection's deadline, if it
    /// has one: when the step runs out of time (a socket timeout, or the deadline passed), its
    /// error becomes a `TimedOut` network error `{step} within {timeout}`.
    pub fn timed_step<T>(&mut self, step: &str, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let deadline = self.watchdog.as_ref().map(|w| w.deadline);
        let within = self.opts.timeout;
        f(self).map_err(|e| name_timeout(e, step, deadline, within))
    }

    /// Ends the deadline of [`Connection::connect_until`]: from now on each reply may take the
    /// `timeout` option again. Fails (the connection is dead) when the deadline passed already.
    pub fn clear_deadline(&mut self) -> Result<()> {
        let Some(mut watchdog) = self.watchdog.take() else { return Ok(()) };
        if watchdog.stop() {
            self.dead = true;
            let step = "start-up (connect, login, remote directory) not done";
            return Err(FtpError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{step} within {}", seconds(self.opts.timeout)),
            )));
        }
        let res = self.ctrl.get_ref().set_timeouts(Some(self.opts.timeout)).map_err(FtpError::Io);
        self.mark_dead_on(res)
    }

    /// The TLS version of the control connection, if it is encrypted.
    pub fn tls_version(&self) -> Option<String> {
        self.ctrl.get_ref().tls_version()
    }

    /// The SHA-256 fingerprint of the server's certificate, if the connection is encrypted.
    pub fn tls_fingerprint(&self) -> Option<super::trust::Fingerprint> {
        self.ctrl.get_ref().peer_fingerprint()
    }

    fn login(&mut self) -> Result<()> {
        let user = self.opts.user.clone();
        let reply = self.command("USER", Some(&user))?;
        let reply = match reply.code {
            230 => return Ok(()),
            331 | 332 => {
                let pass = self.opts.password.clone();
                self.command("PASS", Some(pass.expose()))?
            }
            _ => return Err(reply.into_error()),
        };
        match reply.code {
            230 | 202 => Ok(()),
            _ => Err(reply.into_error()),
        }
    }

    /// USER, PASS, (PBSZ and PROT on TLS), the OPTS the known features call for and TYPE I in
    /// one write, their replies read in order: a login in one round trip. Only for a server
    /// known to read commands sent ahead of its replies ([`reads_pipelined_login`]), with the
    /// features an earlier connection learned.
    fn login_pipelined(&mut self) -> Result<()> {
        let options = self.session_options();
        let mut lines = self.command_line("USER", Some(&self.opts.user))?;
        lines.extend(self.command_line("PASS", Some(self.opts.password.expose()))?);
        let tls = self.tls_config.is_some();
        if tls {
            lines.extend(self.command_line("PBSZ", Some("0"))?);
            lines.extend(self.command_line("PROT", Some("P"))?);
        }
        for arg in &options {
            lines.extend(self.command_line("OPTS", Some(arg))?);
        }
        lines.extend(self.command_line("TYPE", Some("I"))?);
        self.send_lines(&lines)?;
        let user = self.read_reply()?;
        if !matches!(user.code, 230 | 331 | 332) {
            return Err(user.into_error());
        }
        let pass = self.read_reply()?;
        // Logged in by USER alone: the PASS that followed is refused as out of sequence.
        let logged_in = matches!(pass.code, 230 | 202) || (user.code == 230 && pass.code == 503);
        if !logged_in {
            return Err(pass.into_error());
        }
        if tls {
            for _ in 0..2 {
                let reply = self.read_reply()?;
                if reply.code != 200 {
                    return Err(reply.into_error());
                }
            }
            self.protect_data = true;
        }
        for _ in &options {
            self.read_reply()?;
        }
        self.expect_type_reply()
    }

    /// The OPTS arguments the features call for: MLST facts we use, UTF8 ON.
    fn session_options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if let Some(offered) = &self.features.mlst {
            // Ask for the facts we use; some (unix.mode) are off unless asked for.
            let wanted: Vec<&str> = ["type", "size", "modify", "perm", "unix.mode"]
                .into_iter()
                .filter(|f| offered.iter().any(|o| o == f))
                .collect();
            if !wanted.is_empty() {
                options.push(format!("MLST {};", wanted.join(";")));
            }
        }
        if self.features.utf8 && self.opts.encoding.is_none() {
            // 200, 202 ("always on") and 501/504 are all fine: the answer changes nothing for us.
            options.push("UTF8 ON".to_string());
        }
        options
    }

    /// FEAT (unless an earlier connection asked it), the OPTS the features call for and TYPE I,
    /// pipelined: two round trips, or one when the features are known.
    fn setup_session(&mut self) -> Result<()> {
        let known = self.opts.known_features.clone();
        let typed = match known {
            Some(features) => {
                self.features = features;
                false
            }
            None => {
                self.send("FEAT", None)?;
                self.send("TYPE", Some("I"))?;
                let feat = self.read_reply()?;
                if feat.code == 211 {
                    self.features = Features::parse(&feat.lines);
                }
                self.expect_type_reply()?;
                true
            }
        };
        let options = self.session_options();
        for arg in &options {
            self.send("OPTS", Some(arg))?;
        }
        if !typed {
            self.send("TYPE", Some("I"))?;
        }
        for _ in &options {
            self.read_reply()?;
        }
        if !typed {
            self.expect_type_reply()?;
        }
        Ok(())
    }

    /// Reads the reply to a TYPE I sent ahead.
    fn expect_type_reply(&mut self) -> Result<()> {
        let reply = self.read_reply()?;
        if reply.code != 200 {
            return Err(reply.into_error());
        }
        self.transfer_type = TransferType::Binary;
        Ok(())
    }

    /// The server's features as FEAT listed them.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The greeting's text.
    /// The longest command line (with its CR LF) the server reads as one: vsftpd reads 4096
    /// bytes; pyftpdlib answers "500 Command too long" past 2048 and takes the rest for another
    /// command (two replies to one command). 2048 for every server not known to read more.
    pub fn max_line(&self) -> usize {
        if self.welcome.contains("vsFTPd") { 4096 } else { 2048 }
    }

    pub fn welcome(&self) -> &str {
        &self.welcome
    }

    /// The character set of names on this server (None: UTF-8).
    pub fn encoding(&self) -> Option<&'static encoding_rs::Encoding> {
        self.opts.encoding
    }

    /// The control connection's remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// True when the connection saw an error that makes it unusable.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// True when passive mode had to fall back from EPSV to PASV.
    pub fn uses_pasv_fallback(&self) -> bool {
        self.epsv_failed
    }

    /// Marks the connection unusable after an error that leaves it out of sync.
    pub(super) fn mark_dead_on<T>(&mut self, res: Result<T>) -> Result<T> {
        if let Err(e) = &res
            && e.is_fatal_for_connection()
        {
            self.dead = true;
        }
        res
    }

    /// Reads the next reply from the server that does not answer a NOOP sent during a
    /// transfer: while such NOOPs are unanswered, a `200` is theirs (each is answered with one
    /// `200`, before or after the transfer's own final reply, which is never a 200).
    pub(super) fn read_reply(&mut self) -> Result<Reply> {
        loop {
            let reply = self.read_one_reply()?;
            if self.noops_unanswered > 0 && reply.code == 200 {
                self.noops_unanswered -= 1;
                continue;
            }
            return Ok(reply);
        }
    }

    /// Reads one reply from the server.
    pub(super) fn read_one_reply(&mut self) -> Result<Reply> {
        if self.dead {
            return Err(FtpError::Closed);
        }
        self.settle_epsv_ahead()?;
        let res = read_reply_in(&mut self.ctrl, self.opts.encoding);
        let res = self.mark_dead_on(res);
        if let Ok(r) = &res {
            log::trace!("<- {} {}", r.code, r.text());
            if r.ends_session() {
                log::debug!("the server ends this session: {r}");
                self.dead = true;
            }
            if self.logged_in && super::error::is_logged_out(r.code, &r.text()) {
                log::info!("the server dropped this session's login: {r}");
                self.dead = true;
                return Err(FtpError::LoggedOut(r.text()));
            }
        }
        res
    }

    /// Sends one command line without reading the reply.
    pub(super) fn send(&mut self, verb: &str, arg: Option<&str>) -> Result<()> {
        let line = self.command_line(verb, arg)?;
        self.send_lines(&line)
    }

    /// Notes how long a command sent alone took to be answered.
    fn note_round_trip(&mut self, took: Duration) {
        self.round_trip = Some(self.round_trip.map_or(took, |t| t.min(took)));
    }

    /// Writes command lines made by [`Connection::command_line`] in one go.
    pub(super) fn send_lines(&mut self, lines: &[u8]) -> Result<()> {
        if self.dead {
            return Err(FtpError::Closed);
        }
        // QUIT is not held back: an unmount waits for nothing.
        if let Some(rate) = &self.opts.limits.commands
            && !lines.starts_with(b"QUIT")
        {
            rate.take(lines.iter().filter(|&&b| b == b'\n').count() as u64);
        }
        let res = self.ctrl.get_mut().write_all(lines).map_err(FtpError::Io);
        self.last_sent = Instant::now();
        self.mark_dead_on(res)
    }

    /// The line `verb arg` as it goes on the wire (in the connection's encoding, CR LF ended),
    /// logged; an error and nothing to send when the argument cannot be sent safely.
    pub(super) fn command_line(&self, verb: &str, arg: Option<&str>) -> Result<Vec<u8>> {
        if self.dead {
            return Err(FtpError::Closed);
        }
        if let Some(a) = arg {
            check_arg_of(verb, a)?;
        }
        let encoded = match (arg, self.opts.encoding) {
            (Some(a), Some(enc)) => {
                let (bytes, _, unmappable) = enc.encode(a);
                if unmappable {
                    let shown =
                        if is_secret(verb) { format!("the argument of {verb} (not shown)") } else { format!("{a:?}") };
                    return Err(FtpError::InvalidArgument(format!("{shown} cannot be written in {}", enc.name())));
                }
                Some(bytes)
            }
            (Some(a), None) => Some(std::borrow::Cow::Borrowed(a.as_bytes())),
            (None, _) => None,
        };
        let line = encode_line(verb, encoded.as_deref())?;
        if line.len() > self.max_line() {
            return Err(FtpError::LineTooLong(line.len()));
        }
        log::debug!("-> {}", loggable(verb, arg));
        Ok(line)
    }

    /// Sends a command and returns its final reply, whatever its code. A reply that ends the
    /// session (421, `500 OOPS`) has marked the connection dead and is returned as an error.
    pub fn command(&mut self, verb: &str, arg: Option<&str>) -> Result<Reply> {
        self.send(verb, arg)?;
        let sent = Instant::now();
        let reply = self.final_reply(verb)?;
        self.note_round_trip(sent.elapsed());
        Ok(reply)
    }

    /// Reads the final reply to `verb` (sent already), whatever its code.
    fn final_reply(&mut self, verb: &str) -> Result<Reply> {
        let mut reply = self.read_reply()?;
        // A stray preliminary reply to a command without data: read on to the final one, but
        // not forever (a hostile server may send nothing else).
        let mut preliminary = 0;
        while reply.is_preliminary() {
            preliminary += 1;
            if preliminary > MAX_PRELIMINARY {
                self.dead = true;
                return Err(FtpError::protocol(format!(
                    "more than {MAX_PRELIMINARY} preliminary replies to {verb} and no final one"
                )));
            }
            reply = self.read_reply()?;
        }
        if reply.ends_session() {
            return Err(reply.into_error());
        }
        Ok(reply)
    }

    /// Sends a command and requires a reply accepted by `ok`; anything else becomes an error.
    pub fn command_expect(&mut self, verb: &str, arg: Option<&str>, ok: impl Fn(u16) -> bool) -> Result<Reply> {
        let reply = self.command(verb, arg)?;
        if ok(reply.code) { Ok(reply) } else { Err(reply.into_error()) }
    }

    /// Selects the representation type (TYPE I or TYPE A).
    pub fn set_type(&mut self, t: TransferType) -> Result<()> {
        let arg = match t {
            TransferType::Binary => "I",
            TransferType::Ascii => "A",
        };
        self.command_expect("TYPE", Some(arg), |c| c == 200)?;
        self.transfer_type = t;
        Ok(())
    }

    /// The current representation type.
    pub fn transfer_type(&self) -> TransferType {
        self.transfer_type
    }

    /// PWD: the current directory (257 "path", with doubled quotes inside the path).
    pub fn pwd(&mut self) -> Result<String> {
        let reply = self.command_expect("PWD", None, |c| c == 257)?;
        parse_257(&reply.text()).ok_or_else(|| FtpError::protocol(format!("bad PWD reply: {}", reply.text())))
    }

    pub fn cwd(&mut self, path: &str) -> Result<()> {
        self.command_expect("CWD", Some(path), |c| c == 250 || c == 200).map(drop)
    }

    pub fn syst(&mut self) -> Result<String> {
        self.command_expect("SYST", None, |c| c == 215).map(|r| r.text())
    }

    /// Checks with NOOP, waiting at most `wait` for the answer, that the connection still works.
    pub fn probe(&mut self, wait: Duration) -> bool {
        let short = wait.min(self.opts.timeout);
        if self.ctrl.get_ref().set_timeouts(Some(short)).is_err() {
            return false;
        }
        let ok = self.noop().is_ok();
        ok && self.ctrl.get_ref().set_timeouts(Some(self.opts.timeout)).is_ok()
    }

    /// Closes the connection at once, without QUIT (for a connection that may not answer).
    pub fn abandon(mut self) {
        let _ = self.ctrl.get_mut().shutdown();
    }

    pub fn noop(&mut self) -> Result<()> {
        self.command_expect("NOOP", None, |c| (200..300).contains(&c)).map(drop)
    }

    /// QUIT and close. Errors are ignored: the connection is going away either way.
    pub fn quit(mut self) {
        if !self.dead {
            let _ = self.command("QUIT", None);
        }
        let _ = self.ctrl.get_mut().shutdown();
    }

    /// SIZE (RFC 3659): the size in bytes in the current TYPE.
    pub fn size(&mut self, path: &str) -> Result<u64> {
        let reply = self.command_expect("SIZE", Some(path), |c| c == 213)?;
        reply.text().trim().parse().map_err(|_| FtpError::protocol(format!("bad SIZE reply: {}", reply.text())))
    }

    /// MDTM (RFC 3659): modification time as (seconds since epoch, nanoseconds), UTC.
    pub fn mdtm(&mut self, path: &str) -> Result<(i64, u32)> {
        let reply = self.command_expect("MDTM", Some(path), |c| c == 213)?;
        parse_mlsd_time(reply.text().trim())
            .ok_or_else(|| FtpError::protocol(format!("bad MDTM reply: {}", reply.text())))
    }

    /// MFMT: sets the modification time (seconds since epoch, UTC).
    pub fn mfmt(&mut self, path: &str, mtime: i64) -> Result<()> {
        check_arg(path)?;
        let arg = time_arg(path, mtime)?;
        self.command_expect("MFMT", Some(&arg), time_set).map(drop)
    }

    /// The two-argument MDTM (`MDTM YYYYMMDDHHMMSS path`, vsftpd with `mdtm_write`, as rclone
    /// and lftp use it): sets the modification time (seconds since epoch, UTC). A server that
    /// takes the time for part of a file name answers 550 or reports a time without setting
    /// it: the caller confirms by reading the time back.
    pub fn mdtm_set(&mut self, path: &str, mtime: i64) -> Result<()> {
        check_arg(path)?;
        let arg = time_arg(path, mtime)?;
        self.command_expect("MDTM", Some(&arg), time_set).map(drop)
    }

    /// MLST (RFC 3659): facts about one path.
    pub fn mlst(&mut self, path: &str) -> Result<Entry> {
        let reply = self.command_expect("MLST", Some(path), |c| c == 250)?;
        let line = reply.lines.iter().skip(1).find(|l| l.contains('=')).or_else(|| reply.lines.first());
        let mut entry = line
            .and_then(|l| parse_mlsd_line(l))
            .ok_or_else(|| FtpError::protocol(format!("bad MLST reply: {}", reply.text())))?;
        // MLST gives the full path as the name: keep the last component.
        if let Some(last) = entry.name.trim_end_matches('/').rsplit('/').next()
            && !last.is_empty()
        {
            entry.name = last.to_string();
        }
        Ok(entry)
    }

    pub fn dele(&mut self, path: &str) -> Result<()> {
        self.command_expect("DELE", Some(path), |c| c == 250 || c == 200).map(drop)
    }

    /// MKD: creates a directory; returns the path the server reports (or the one given).
    pub fn mkd(&mut self, path: &str) -> Result<String> {
        let reply = self.command_expect("MKD", Some(path), |c| c == 257 || c == 250)?;
        Ok(parse_257(&reply.text()).unwrap_or_else(|| path.to_string()))
    }

    pub fn rmd(&mut self, path: &str) -> Result<()> {
        self.command_expect("RMD", Some(path), |c| c == 250 || c == 200).map(drop)
    }

    /// RNFR + RNTO.
    ///
    /// Where the server reads commands sent ahead of its replies ([`reads_pipelined_login`]),
    /// RNTO goes out with RNFR: one round trip. A refused RNFR then gets its RNTO refused too
    /// (503, bad sequence: nothing renamed), and the RNFR's refusal is the error.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        check_arg(to)?;
        let renamed = |c| c == 250 || c == 200;
        if !reads_pipelined_login(&self.welcome) {
            self.command_expect("RNFR", Some(from), |c| c == 350)?;
            return self.command_expect("RNTO", Some(to), renamed).map(drop);
        }
        let mut lines = self.command_line("RNFR", Some(from))?;
        lines.extend(self.command_line("RNTO", Some(to))?);
        self.send_lines(&lines)?;
        let first = self.final_reply("RNFR")?;
        let second = self.final_reply("RNTO");
        match (first.code, second) {
            // Done, whatever the RNFR's reply said (a server that answers it oddly).
            (_, Ok(r)) if renamed(r.code) => Ok(()),
            (350, Ok(r)) => Err(r.into_error()),
            (350, Err(e)) => Err(e),
            _ => Err(first.into_error()),
        }
    }

    /// SITE CHMOD with an octal mode.
    pub fn site_chmod(&mut self, path: &str, mode: u32) -> Result<()> {
        check_arg(path)?;
        let arg = chmod_arg(path, mode);
        self.command_expect("SITE", Some(&arg), mode_set).map(drop)
    }
}

/// The argument of MFMT or the two-argument MDTM setting `path`'s time to `mtime` (seconds
/// since the epoch, UTC).
pub(super) fn time_arg(path: &str, mtime: i64) -> Result<String> {
    let stamp = format_mlsd_time(mtime).ok_or_else(|| FtpError::InvalidArgument(format!("time {mtime}")))?;
    Ok(format!("{stamp} {path}"))
}

/// Whether a reply to MFMT or the two-argument MDTM says the time was set.
pub(super) fn time_set(code: u16) -> bool {
    matches!(code, 213 | 200 | 250)
}

/// Whether a reply to SITE CHMOD says the mode was set.
pub(super) fn mode_set(code: u16) -> bool {
    matches!(code, 200 | 250)
}

/// The argument of `SITE CHMOD` setting `mode` on `path`.
pub(super) fn chmod_arg(path: &str, mode: u32) -> String {
    // Three digits at least: pyftpdlib takes only 3 or 4 ("501 Invalid SITE CHMOD format"
    // for mode 0 written "0").
    format!("CHMOD {:03o} {path}", mode & 0o7777)
}

/// Whether a server with this greeting reads the commands of a login sent in one write, each
/// after the reply to the one before (verified on each, tests/wire.rs `pipelined_login`).
pub fn reads_pipelined_login(welcome: &str) -> bool {
    PIPELINED_LOGIN.iter().any(|w| welcome.contains(w))
}

/// Greetings of the servers [`reads_pipelined_login`] is true for.
const PIPELINED_LOGIN: [&str; 4] = ["vsFTPd", "ProFTPD", "Pure-FTPd", "pyftpdlib"];

/// Extracts the quoted path of a 257 reply: `"dir ""quoted"" name" created` → `dir "quoted" name`.
pub fn parse_257(text: &str) -> Option<String> {
    let start = text.find('"')?;
    let mut out = String::new();
    let mut chars = text[start + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwd_parsing() {
        assert_eq!(parse_257("\"/home/user\" is the current directory").as_deref(), Some("/home/user"));
        assert_eq!(parse_257("\"/a \"\"b\"\" c\" created").as_deref(), Some("/a \"b\" c"));
        assert_eq!(parse_257("\"/\"").as_deref(), Some("/"));
        assert_eq!(parse_257("no quotes"), None);
        assert_eq!(parse_257("\"unterminated"), None);
    }

    #[test]
    fn secret_hidden_in_debug() {
        let o = ConnectOptions::new("h", 21, "u", "hunter2");
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
