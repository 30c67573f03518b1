//! Reaching the server through a proxy (`-o proxy=…`): SOCKS5 (RFC 1928, with the user name and
//! password of RFC 1929) or an HTTP proxy's CONNECT method (RFC 9110 §9.3.6).
//!
//! Control and data connections both go through it. The proxy is always asked for the server
//! by the name the user gave (the proxy resolves it, as curl's `socks5h://` does), and data
//! connections for that same name with the port EPSV or PASV announced: never for the address
//! in a PASV reply (unless `pasv_ip` asks for it) and never for the proxy's own address, which
//! is all the control socket knows of its peer.
//!
//! Written here rather than taken from a crate: the `socks` crate cannot bound its connect and
//! handshake in time, and every wait here must have one.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use percent_encoding::percent_decode_str;

use super::control::{Secret, connect_tcp};
use super::error::{FtpError, Result};

/// Which protocol the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Socks5,
    HttpConnect,
}

/// A proxy from `-o proxy=socks5://[user:pass@]host:port` or `http://[user:pass@]host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Secret)>,
}

fn failed(msg: impl Into<String>) -> FtpError {
    FtpError::Io(io::Error::new(io::ErrorKind::ConnectionRefused, format!("proxy: {}", msg.into())))
}

fn decode(s: &str) -> std::result::Result<String, String> {
    percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| "the proxy URL is not valid UTF-8".into())
}

impl Proxy {
    /// Parses the value of `-o proxy=`. The port defaults to 1080 (SOCKS) or 8080 (HTTP).
    pub fn parse(s: &str) -> std::result::Result<Proxy, String> {
        // The text is not shown: `-o` splits at commas, so a password may be cut anywhere.
        let url = url::Url::parse(s).map_err(|e| {
            format!(
                "invalid proxy URL ({e}): use socks5://[user:password@]host:port or http://[user:password@]host:port"
            )
        })?;
        let (kind, default_port) = match url.scheme() {
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            "http" => (ProxyKind::HttpConnect, 8080),
            other => return Err(format!("unsupported proxy scheme {other:?}: use socks5:// or http://")),
        };
        let host = url.host_str().ok_or("the proxy URL has no host")?.trim_start_matches('[').trim_end_matches(']');
        if url.path().len() > 1 || url.query().is_some() {
            return Err("the proxy URL is socks5://[user:password@]host:port or http://…, without a path".into());
        }
        let user = decode(url.username())?;
        let credentials = match (user.is_empty(), url.password()) {
            (true, None) => None,
            (_, password) => Some((user, Secret::new(&decode(password.unwrap_or(""))?))),
        };
        if let Some((u, p)) = &credentials
            && kind == ProxyKind::Socks5
            && (!(1..=255).contains(&u.len()) || !(1..=255).contains(&p.expose().len()))
        {
            return Err("a SOCKS5 user name and password are each 1 to 255 bytes (give both: \
                        socks5://user:password@host:port)"
                .into());
        }
        // `Url::port` hides a port equal to the scheme's default (`http://p:80`): then the text
        // says whether one was written.
        let port = match (url.port(), has_explicit_port(s)) {
            (Some(p), _) => p,
            (None, true) => url.port_or_known_default().unwrap_or(default_port),
            (None, false) => default_port,
        };
        Ok(Proxy { kind, host: host.to_string(), port, credentials })
    }

    /// `socks5://user@host:port`, without the password: for messages.
    pub fn display(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::HttpConnect => "http",
        };
        let user = self.credentials.as_ref().map(|(u, _)| format!("{u}@")).unwrap_or_default();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{user}{host}:{}", self.port)
    }

    /// A TCP stream to `host:port` through the proxy. The proxy's connect and handshake end
    /// within `timeout` together, and by `deadline` when there is one (a proxy that answers a
    /// byte at a time cannot stretch it). The stream's timeouts are left set.
    pub fn connect(&self, host: &str, port: u16, timeout: Duration, deadline: Option<Instant>) -> Result<TcpStream> {
        let end = match deadline {
            Some(d) => d.min(Instant::now() + timeout),
            None => Instant::now() + timeout,
        };
        let tcp = connect_tcp(&self.host, self.port, timeout, Some(end)).map_err(|e| match e {
            FtpError::Io(io) => failed(format!("cannot reach {}: {io}", self.display())),
            other => other,
        })?;
        tcp.set_nodelay(true)?;
        let mut s = Timed { tcp, end };
        match self.kind {
            ProxyKind::Socks5 => self.socks5(&mut s, host, port)?,
            ProxyKind::HttpConnect => self.http_connect(&mut s, host, port)?,
        }
        log::debug!("connected to {host}:{port} through {}", self.display());
        Ok(s.tcp)
    }

    fn socks5(&self, s: &mut Timed, host: &str, port: u16) -> Result<()> {
        let offer: &[u8] = if self.credentials.is_some() { &[5, 2, 0, 2] } else { &[5, 1, 0] };
        s.write_all(offer)?;
        let mut choice = [0u8; 2];
        read_exact(s, &mut choice)?;
        match choice {
            [5, 0] => {}
            [5, 2] => {
                let Some((user, password)) = &self.credentials else {
                    return Err(failed("the SOCKS5 proxy asked for a password we did not offer"));
                };
                let mut auth = vec![1, user.len() as u8];
                auth.extend_from_slice(user.as_bytes());
                auth.push(password.expose().len() as u8);
                auth.extend_from_slice(password.expose().as_bytes());
                s.write_all(&auth)?;
                let mut status = [0u8; 2];
                read_exact(s, &mut status)?;
                if status[1] != 0 {
                    return Err(failed(format!("{} refused the user name or password", self.display())));
                }
            }
            [5, 0xff] => {
                return Err(failed(format!(
                    "{} accepts none of our ways to log in (none, or a user name and password)",
                    self.display()
                )));
            }
            other => return Err(failed(format!("{} does not speak SOCKS5 (answered {other:?})", self.display()))),
        }
        let mut request = vec![5, 1, 0];
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                request.push(1);
                request.extend_from_slice(&ip.octets());
            }
            Ok(IpAddr::V6(ip)) => {
                request.push(4);
                request.extend_from_slice(&ip.octets());
            }
            Err(_) => {
                let name = host.as_bytes();
                if name.len() > 255 {
                    return Err(failed("host name too long for SOCKS5"));
                }
                request.push(3);
                request.push(name.len() as u8);
                request.extend_from_slice(name);
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        s.write_all(&request)?;
        let mut head = [0u8; 4];
        read_exact(s, &mut head)?;
        if head[0] != 5 {
            return Err(failed("bad SOCKS5 reply"));
        }
        if head[1] != 0 {
            return Err(failed(format!(
                "{} could not connect to {host}:{port}: {}",
                self.display(),
                socks5_reason(head[1])
            )));
        }
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                read_exact(s, &mut len)?;
                len[0] as usize + 2
            }
            _ => return Err(failed("bad SOCKS5 reply address")),
        };
        let mut bound = vec![0u8; rest];
        read_exact(s, &mut bound)
    }

    fn http_connect(&self, s: &mut Timed, host: &str, port: u16) -> Result<()> {
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        s.write_all(request.as_bytes())?;
        // The header, a byte at a time: what follows it is the FTP server's and must stay unread.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
            if head.len() >= 16 * 1024 {
                return Err(failed("the HTTP proxy's answer has no end"));
            }
            read_exact(s, &mut byte)?;
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or("").trim();
        let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(200..=299) if status_line.starts_with("HTTP/") => Ok(()),
            Some(407) => Err(failed(format!(
                "{} wants a user name and password (proxy=http://user:password@host:port): {status_line}",
                self.display()
            ))),
            _ => Err(failed(format!("{} refused CONNECT {authority}: {status_line}", self.display()))),
        }
    }
}

/// The proxy's socket with the end of the handshake: every read and write waits only for what
/// is left of it.
struct Timed {
    tcp: TcpStream,
    end: Instant,
}

impl Timed {
    fn left(&self) -> io::Result<Duration> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "proxy: no answer in time"));
        }
        Ok(left)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write_all(buf)
    }
}

fn read_exact(s: &mut Timed, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        s.tcp.set_read_timeout(Some(s.left()?))?;
        match s.tcp.read(&mut buf[filled..]) {
            Ok(0) => return Err(failed("the proxy closed the connection")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FtpError::Io(e)),
        }
    }
    Ok(())
}

/// Whether a URL's authority has a port written in it.
fn has_explicit_port(url: &str) -> bool {
    let Some(scheme_end) = url.find("://") else { return false };
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = &authority[authority.rfind('@').map_or(0, |at| at + 1)..];
    let Some((host, port)) = host_port.rsplit_once(':') else { return false };
    // `[::1]` alone has colons but no port.
    let bracketed = host.starts_with('[') && host.ends_with(']');
    !port.is_empty() && (bracketed || !host.contains(':'))
}

/// RFC 1928's reply codes in words.
fn socks5_reason(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("socks5://alice:s%40cret@proxy.example:1081").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Socks5, "proxy.example", 1081));
        let (u, pw) = p.credentials.as_ref().unwrap();
        assert_eq!((u.as_str(), pw.expose()), ("alice", "s@cret"));
        assert_eq!(p.display(), "socks5://alice@proxy.example:1081");
        let h = Proxy::parse("http://[::1]").unwrap();
        assert_eq!(
            (h.kind, h.host.as_str(), h.port, h.credentials.is_none()),
            (ProxyKind::HttpConnect, "::1", 8080, true)
        );
        assert_eq!(Proxy::parse("socks5h://p").unwrap().port, 1080);
        assert!(Proxy::parse("https://p:1").is_err());
        assert!(Proxy::parse("socks5://p:1/path").is_err());
        let err = Proxy::parse("socks4://u:hidden@p").unwrap_err();
        assert!(!err.contains("hidden"), "{err}");
        for cut in ["0u:hidden@127.0.0.1:1080", "socks5://alice:hidden"] {
            let err = Proxy::parse(cut).unwrap_err();
            assert!(!err.contains("hid"), "{err}");
        }
        assert_eq!(Proxy::parse("http:/h:3128").map(|p| p.port), Ok(3128));
        // A port equal to the scheme's default is still the one written.
        assert_eq!(Proxy::parse("http://127.0.0.1:80").unwrap().port, 80);
        assert_eq!(Proxy::parse("http://u:p@[::1]:80").unwrap().port, 80);
        assert_eq!(Proxy::parse("http://[::1]").unwrap().port, 8080);
        assert_eq!(Proxy::parse("socks5://h:1081/").unwrap().port, 1081);
        // RFC 1929: neither may be empty.
        assert!(Proxy::parse("socks5://u@h").is_err());
        assert!(Proxy::parse("socks5://:p@h").is_err());
        assert!(Proxy::parse("http://u@h").is_ok());
    }

    proptest! {
        #[test]
        fn proxy_parser_never_panics(s in "\\PC{0,80}") {
            let _ = Proxy::parse(&s);
        }
    }
}
