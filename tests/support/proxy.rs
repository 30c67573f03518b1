//! A small SOCKS5 (RFC 1928/1929) and HTTP CONNECT proxy for tests, started by the test itself.
//!
//! It listens on 127.0.0.3, so that a client that wrongly connects to "the control
//! connection's peer" reaches nothing (the FTP servers listen on 127.0.0.1), and it resolves
//! names from its own table only: a name like `ftp.proxied.test` exists for the proxy and
//! nowhere else, so the mount can reach the server only through it. Every CONNECT it serves is
//! recorded as (host as asked, port).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The protocol a test proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    Socks5,
    Http,
}

/// A running proxy; it stops accepting when dropped.
pub struct TestProxy {
    pub port: u16,
    pub protocol: ProxyProtocol,
    requests: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

struct Rules {
    /// Required user name and password, if any.
    credentials: Option<(String, String)>,
    /// Names the proxy resolves, to addresses.
    names: HashMap<String, String>,
}

impl TestProxy {
    /// Starts a proxy that resolves `names` (name → IP) and, when `credentials` is given,
    /// wants them.
    pub fn start(protocol: ProxyProtocol, credentials: Option<(&str, &str)>, names: &[(&str, &str)]) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.3:0").expect("bind 127.0.0.3");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let rules = Arc::new(Rules {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            names: names.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect(),
        });
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (rules, requests) = (rules.clone(), r.clone());
                        std::thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            let _ = serve(client, protocol, &rules, &requests);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestProxy { port, protocol, requests, stop }
    }

    /// `socks5://user:pass@127.0.0.3:port` or `http://…`.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        let scheme = match self.protocol {
            ProxyProtocol::Socks5 => "socks5",
            ProxyProtocol::Http => "http",
        };
        let auth = credentials.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.3:{}", self.port)
    }

    /// Every (host, port) the proxy was asked to connect to, in order.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve(
    mut client: TcpStream,
    protocol: ProxyProtocol,
    rules: &Rules,
    requests: &Mutex<Vec<(String, u16)>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (host, port) = match protocol {
        ProxyProtocol::Socks5 => match socks5_request(&mut client, rules)? {
            Some(target) => target,
            None => return Ok(()),
        },
        ProxyProtocol::Http => match http_request(&mut client, rules)? {
            Some(target) => target,
            None => return Ok(()),
        },
    };
    requests.lock().unwrap().push((host.clone(), port));
    let address = rules.names.get(&host).cloned().unwrap_or(host);
    let upstream = TcpStream::connect((address.as_str(), port));
    let ok = upstream.is_ok();
    match protocol {
        ProxyProtocol::Socks5 => client.write_all(&[5, if ok { 0 } else { 5 }, 0, 1, 0, 0, 0, 0, 0, 0])?,
        ProxyProtocol::Http => client.write_all(if ok {
            b"HTTP/1.1 200 Connection established\r\n\r\n"
        } else {
            b"HTTP/1.1 502 Bad Gateway\r\n\r\n"
        })?,
    }
    let upstream = upstream?;
    client.set_read_timeout(None)?;
    pipe(client, upstream)
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) -> std::io::Result<()> {
    let (mut a_in, mut b_out) = (a.try_clone()?, b.try_clone()?);
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_in, &mut b_out);
        let _ = b_out.shutdown(Shutdown::Write);
    });
    let (mut b_in, mut a_out) = (b, a);
    let _ = std::io::copy(&mut b_in, &mut a_out);
    let _ = a_out.shutdown(Shutdown::Write);
    let _ = forward.join();
    Ok(())
}

fn socks5_request(c: &mut TcpStream, rules: &Rules) -> std::io::Result<Option<(String, u16)>> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head)?;
    let mut methods = vec![0u8; head[1] as usize];
    c.read_exact(&mut methods)?;
    let want = if rules.credentials.is_some() { 2 } else { 0 };
    if head[0] != 5 || !methods.contains(&want) {
        c.write_all(&[5, 0xff])?;
        return Ok(None);
    }
    c.write_all(&[5, want])?;
    if let Some((user, password)) = &rules.credentials {
        let mut v = [0u8; 2];
        c.read_exact(&mut v)?;
        let mut u = vec![0u8; v[1] as usize];
        c.read_exact(&mut u)?;
        let mut l = [0u8; 1];
        c.read_exact(&mut l)?;
        let mut p = vec![0u8; l[0] as usize];
        c.read_exact(&mut p)?;
        let good = u == user.as_bytes() && p == password.as_bytes();
        c.write_all(&[1, if good { 0 } else { 1 }])?;
        if !good {
            return Ok(None);
        }
    }
    let mut req = [0u8; 4];
    c.read_exact(&mut req)?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a)?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => {
            let mut l = [0u8; 1];
            c.read_exact(&mut l)?;
            let mut name = vec![0u8; l[0] as usize];
            c.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port)?;
    Ok(Some((host, u16::from_be_bytes(port))))
}

fn http_request(c: &mut TcpStream, rules: &Rules) -> std::io::Result<Option<(String, u16)>> {
    // The header only: nothing follows a CONNECT before our answer.
    let mut reader = BufReader::new(c.try_clone()?);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    let first = lines.first().cloned().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, authority) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        c.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")?;
        return Ok(None);
    }
    if let Some((user, password)) = &rules.credentials {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if !lines.iter().any(|l| l.eq_ignore_ascii_case(&format!("proxy-authorization: basic {token}"))) {
            c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")?;
            return Ok(None);
        }
    }
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "0"));
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(Some((host, port.parse().unwrap_or(0))))
}
