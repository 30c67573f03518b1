//! A TCP proxy that makes loopback look like a wide-area link, for benchmarks and tests of ftpfs.
//!
//! ```text
//! wan_proxy --listen 127.0.0.2 --to 127.0.0.1 --ports 2121,10000-10039 --rtt-ms 50
//!           [--rate-mbit 100] [--max-seconds 3600] [--no-handshake] [--drop-idle-ms 3000]
//! ```
//!
//! It listens on `listen:port` for every given port (the FTP control port first, then the server's
//! passive data ports) and forwards each connection to `to:port`. Per direction one reader thread
//! stamps every chunk with the time it would arrive across the link, and one writer thread delivers
//! it then; a bounded channel between them gives backpressure. The link model, one per direction
//! and shared by all connections: a chunk of `len` bytes read at `t` departs at
//! `max(previous departure, t) + len * 8 / rate` and arrives `rtt / 2` later. End of stream
//! (half-close) travels the same way, in order; a reset or error closes both sides.
//!
//! The kernel completes a client's connect to the proxy at once, so the proxy charges the TCP
//! handshake itself: it connects to the server 1.5 RTT after accepting (when the handshake's last
//! ACK would reach the server), and what the client sent before then waits for it. A server's
//! greeting thus reaches the client 2 RTT after its connect, as over a real link (`--no-handshake`
//! connects at once).
//!
//! On the control connection (the first port), passive replies (`227 ... (h1,h2,h3,h4,p1,p2)`)
//! naming `to` are rewritten, line by line, to name `listen`, so data connections come back through
//! the proxy. EPSV replies carry only a port and need nothing. Active mode (PORT) is not supported.
//!
//! With `--drop-idle-ms`, it behaves like a NAT or firewall that forgets idle connections: a
//! connection that carried no payload either way for that long is closed on both sides (TCP
//! keepalive probes carry none, so they do not count), and `dropped PORT after MS ms idle` is
//! printed on stdout.
//!
//! It prints `ready` on stdout once every listener is bound, and exits when stdin reaches end of
//! file (so it dies with the script that holds the other end of a pipe: do not start it with stdin
//! on /dev/null) or after `--max-seconds`. Build: `cargo build --release --example wan_proxy`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

/// Largest chunk one read takes.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction of a connection (backpressure beyond this).
const QUEUE: usize = 256;
/// A control line longer than this is passed on unfinished.
const MAX_LINE: usize = 64 * 1024;

struct Config {
    listen: IpAddr,
    to: IpAddr,
    ports: Vec<u16>,
    half_rtt: Duration,
    /// Bits per second; `None`: unlimited.
    rate: Option<f64>,
    max_seconds: Option<u64>,
    handshake: bool,
    /// Close connections idle (no payload either way) this long.
    drop_idle: Option<Duration>,
}

/// When a connection last carried payload, for `--drop-idle-ms`.
struct Activity {
    last: Mutex<Instant>,
    /// Directions that reached their end (2: the connection is over).
    ended: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// Closes both sides of the connection once it has been idle for `limit`; ends with it.
fn drop_when_idle(client: TcpStream, server: TcpStream, port: u16, limit: Duration, activity: Arc<Activity>) {
    loop {
        thread::sleep(Duration::from_millis(50));
        if activity.ended.load(std::sync::atomic::Ordering::Relaxed) >= 2 {
            return;
        }
        let idle = activity.idle();
        if idle >= limit {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            println!("dropped {port} after {} ms idle", idle.as_millis());
            let _ = io::stdout().flush();
            return;
        }
    }
}

/// One direction of the emulated link, shared by every connection.
struct Link {
    half_rtt: Duration,
    rate: Option<f64>,
    /// When the link finishes sending what it has been given so far.
    free_at: Mutex<Instant>,
}

impl Link {
    fn new(half_rtt: Duration, rate: Option<f64>) -> Link {
        Link { half_rtt, rate, free_at: Mutex::new(Instant::now()) }
    }

    /// When `len` bytes handed to the link at `t` arrive at the far end.
    fn arrival(&self, t: Instant, len: usize) -> Instant {
        let Some(rate) = self.rate else { return t + self.half_rtt };
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let departure = (*free_at).max(t) + Duration::from_secs_f64(len as f64 * 8.0 / rate);
        *free_at = departure;
        departure + self.half_rtt
    }
}

/// What a reader hands its writer, with the instant it is due at the far end.
enum Msg {
    Data(Vec<u8>, Instant),
    Eof(Instant),
    Reset(Instant),
}

/// Rewrites passive replies that name one address so that they name another.
struct PasvRewrite {
    from: Vec<u8>,
    to: Vec<u8>,
    /// The start of a line held back until its end comes.
    pending: Vec<u8>,
    /// Whether the last bytes passed on ended inside a line.
    mid_line: bool,
}

impl PasvRewrite {
    fn new(from: IpAddr, to: IpAddr) -> PasvRewrite {
        let commas = |ip: IpAddr| format!("{},", ip.to_string().replace('.', ",")).into_bytes();
        PasvRewrite { from: commas(from), to: commas(to), pending: Vec::new(), mid_line: false }
    }

    /// Takes the next bytes of the stream; returns what can go on, rewritten. Only an unfinished
    /// line that is or may become a 227 reply is held back (unless `flush`).
    fn feed(&mut self, data: &[u8], flush: bool) -> Vec<u8> {
        let joined;
        let mut rest = data;
        if !self.pending.is_empty() {
            joined = [std::mem::take(&mut self.pending), data.to_vec()].concat();
            rest = &joined;
        }
        let mut out = Vec::with_capacity(rest.len());
        while !rest.is_empty() {
            let line_start = !self.mid_line;
            if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                let (line, tail) = rest.split_at(i + 1);
                out.extend_from_slice(&if line_start { self.rewrite_line(line) } else { line.to_vec() });
                (rest, self.mid_line) = (tail, false);
            } else if line_start
                && !flush
                && rest.len() <= MAX_LINE
                && (rest.starts_with(b"227") || b"227".starts_with(rest))
            {
                self.pending = rest.to_vec();
                break;
            } else {
                out.extend_from_slice(rest);
                (rest, self.mid_line) = (&[], true);
            }
        }
        out
    }

    /// Clients take the address from the first digits after the code (RFC 1123 4.1.2.6).
    fn rewrite_line(&self, line: &[u8]) -> Vec<u8> {
        let mut line = line.to_vec();
        if line.starts_with(b"227") {
            let first_digit = line.iter().skip(3).position(u8::is_ascii_digit).map(|i| i + 3);
            if let Some(i) = first_digit.filter(|&i| line[i..].starts_with(&self.from)) {
                line.splice(i..i + self.from.len(), self.to.iter().copied());
            }
        }
        line
    }
}

/// Reads `src` until end of stream or error, stamping each chunk with its arrival time.
fn reader(mut src: TcpStream, link: &Link, tx: Sender<Msg>, mut rewrite: Option<PasvRewrite>, activity: &Activity) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let (n, failed) = match src.read(&mut buf) {
            Ok(n) => (n, false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => (0, true),
        };
        if n > 0 {
            activity.touch();
        } else {
            activity.ended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let t = Instant::now();
        let data = match rewrite.as_mut() {
            Some(r) => r.feed(&buf[..n], n == 0),
            None => buf[..n].to_vec(),
        };
        if !data.is_empty() {
            let at = link.arrival(t, data.len());
            if tx.send(Msg::Data(data, at)).is_err() {
                return; // The writer gave up (and closed both sockets).
            }
        }
        if n == 0 {
            let at = link.arrival(t, 0);
            let _ = tx.send(if failed { Msg::Reset(at) } else { Msg::Eof(at) });
            return;
        }
    }
}

/// Delivers what `reader` sends to `dst` when it is due; carries end of stream as a half-close.
fn writer(src: TcpStream, mut dst: TcpStream, rx: Receiver<Msg>) {
    let close_both = |src: &TcpStream, dst: &TcpStream| {
        let _ = src.shutdown(Shutdown::Both);
        let _ = dst.shutdown(Shutdown::Both);
    };
    for msg in rx {
        let (Msg::Data(_, at) | Msg::Eof(at) | Msg::Reset(at)) = msg;
        let now = Instant::now();
        if at > now {
            thread::sleep(at - now);
        }
        match msg {
            Msg::Data(data, _) => {
                if dst.write_all(&data).is_err() {
                    return close_both(&src, &dst);
                }
            }
            Msg::Eof(_) => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Msg::Reset(_) => return close_both(&src, &dst),
        }
    }
}

/// Starts the reader of one direction; `spawn_writer` starts its writer once the far end is connected.
fn spawn_reader(
    src: &TcpStream,
    link: Arc<Link>,
    rewrite: Option<PasvRewrite>,
    activity: Arc<Activity>,
) -> io::Result<Receiver<Msg>> {
    let (tx, rx) = bounded(QUEUE);
    let src = src.try_clone()?;
    thread::spawn(move || reader(src, &link, tx, rewrite, &activity));
    Ok(rx)
}

fn spawn_writer(src: &TcpStream, dst: &TcpStream, rx: Receiver<Msg>) -> io::Result<()> {
    let (src, dst) = (src.try_clone()?, dst.try_clone()?);
    thread::spawn(move || writer(src, dst, rx));
    Ok(())
}

/// Serves one accepted connection.
fn serve(client: TcpStream, port: u16, cfg: &Config, up: Arc<Link>, down: Arc<Link>) -> io::Result<()> {
    let accepted = Instant::now();
    client.set_nodelay(true)?;
    let activity = Arc::new(Activity { last: Mutex::new(accepted), ended: Default::default() });
    // The client may talk at once: its bytes are stamped now and wait for the server below.
    let to_server = spawn_reader(&client, up, None, activity.clone())?;
    if cfg.handshake {
        thread::sleep((accepted + cfg.half_rtt * 3).saturating_duration_since(Instant::now()));
    }
    let server = match TcpStream::connect(SocketAddr::new(cfg.to, port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wan_proxy: connecting to {}:{port}: {e}", cfg.to);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    };
    server.set_nodelay(true)?;
    spawn_writer(&client, &server, to_server)?;
    let rewrite = (port == cfg.ports[0]).then(|| PasvRewrite::new(cfg.to, cfg.listen));
    let to_client = spawn_reader(&server, down, rewrite, activity.clone())?;
    spawn_writer(&server, &client, to_client)?;
    if let Some(limit) = cfg.drop_idle {
        let (client, server) = (client.try_clone()?, server.try_clone()?);
        thread::spawn(move || drop_when_idle(client, server, port, limit, activity));
    }
    Ok(())
}

fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad port or range {part:?}");
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u16, u16) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
                if lo > hi {
                    return Err(bad());
                }
                ports.extend(lo..=hi);
            }
            None => ports.push(part.parse().map_err(|_| bad())?),
        }
    }
    if ports.is_empty() {
        return Err("no ports".into());
    }
    Ok(ports)
}

fn parse_args() -> Result<Config, String> {
    let (mut listen, mut to, mut ports, mut rtt_ms, mut rate, mut max_seconds, mut handshake) =
        (None, None, None, None, None, None, true);
    let mut drop_idle = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--no-handshake" {
            handshake = false;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let bad = |what: &str| format!("{arg}: bad {what} {value:?}");
        match arg.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|_| bad("address"))?),
            "--to" => to = Some(value.parse().map_err(|_| bad("address"))?),
            "--ports" => ports = Some(parse_ports(&value)?),
            "--rtt-ms" => rtt_ms = Some(value.parse::<f64>().ok().filter(|v| *v >= 0.0).ok_or(bad("number"))?),
            "--rate-mbit" => rate = Some(value.parse::<f64>().ok().filter(|v| *v > 0.0).ok_or(bad("number"))?),
            "--max-seconds" => max_seconds = Some(value.parse().map_err(|_| bad("number"))?),
            "--drop-idle-ms" => drop_idle = Some(Duration::from_millis(value.parse().map_err(|_| bad("number"))?)),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Config {
        listen: listen.ok_or("--listen is required")?,
        to: to.ok_or("--to is required")?,
        ports: ports.ok_or("--ports is required")?,
        half_rtt: Duration::from_secs_f64(rtt_ms.ok_or("--rtt-ms is required")? / 2000.0),
        rate: rate.map(|mbit| mbit * 1e6),
        max_seconds,
        handshake,
        drop_idle,
    })
}

fn main() {
    let cfg = parse_args().unwrap_or_else(|e| {
        eprintln!("wan_proxy: {e}");
        eprintln!(
            "usage: wan_proxy --listen IP --to IP --ports PORT[,LO-HI...] --rtt-ms MS [--rate-mbit MBIT] \
             [--max-seconds S] [--no-handshake] [--drop-idle-ms MS]"
        );
        std::process::exit(2);
    });
    let listeners: Vec<_> = cfg
        .ports
        .iter()
        .map(|&port| {
            TcpListener::bind(SocketAddr::new(cfg.listen, port)).unwrap_or_else(|e| {
                eprintln!("wan_proxy: binding {}:{port}: {e}", cfg.listen);
                std::process::exit(1);
            })
        })
        .collect();
    let cfg = Arc::new(cfg);
    let up = Arc::new(Link::new(cfg.half_rtt, cfg.rate));
    let down = Arc::new(Link::new(cfg.half_rtt, cfg.rate));
    for (listener, &port) in listeners.into_iter().zip(&cfg.ports) {
        let (cfg, up, down) = (cfg.clone(), up.clone(), down.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (cfg, up, down) = (cfg.clone(), up.clone(), down.clone());
                thread::spawn(move || {
                    if let Err(e) = serve(client, port, &cfg, up, down) {
                        eprintln!("wan_proxy: port {port}: {e}");
                    }
                });
            }
        });
    }
    if let Some(secs) = cfg.max_seconds {
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(secs));
            std::process::exit(0);
        });
    }
    println!("ready");
    let _ = io::stdout().flush();
    // Stop when whoever started us closes our stdin (or dies).
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> PasvRewrite {
        PasvRewrite::new("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap())
    }

    #[test]
    fn rewrites_pasv_replies_split_anywhere() {
        let stream =
            b"230 Login successful.\r\n227 Entering Passive Mode (127,0,0,1,39,16).\r\n150 ok (127,0,0,1,1,2)\r\n";
        let want =
            b"230 Login successful.\r\n227 Entering Passive Mode (127,0,0,2,39,16).\r\n150 ok (127,0,0,1,1,2)\r\n";
        for cut in 0..stream.len() {
            let mut r = rewriter();
            let mut out = r.feed(&stream[..cut], false);
            out.extend(r.feed(&stream[cut..], false));
            assert_eq!(out, want, "cut at {cut}");
        }
    }

    #[test]
    fn holds_back_only_what_may_be_a_pasv_reply() {
        let mut r = rewriter();
        assert_eq!(r.feed(b"hello", false), b"hello");
        assert_eq!(r.feed(b" 227 (127,0,0,1,", false), b" 227 (127,0,0,1,");
        assert_eq!(r.feed(b"\n22", false), b"\n");
        assert_eq!(r.feed(b"7 (127,0,0,1,", false), b"");
        assert_eq!(r.feed(b"3,4)\r\n227 =127,0,0,1,4,5\n", false), b"227 (127,0,0,2,3,4)\r\n227 =127,0,0,2,4,5\n");
        assert_eq!(r.feed(b"227 (10,127,0,0,1,4)\n227 (127,0,0,1,", false), b"227 (10,127,0,0,1,4)\n");
        assert_eq!(r.feed(b"", true), b"227 (127,0,0,1,");
    }

    #[test]
    fn link_queues_chunks_at_its_rate() {
        let link = Link::new(Duration::from_millis(25), Some(8e6)); // 1 byte per microsecond
        let t = Instant::now() + Duration::from_secs(1);
        assert_eq!(link.arrival(t, 1000), t + Duration::from_micros(26_000));
        assert_eq!(link.arrival(t, 1000), t + Duration::from_micros(27_000));
        assert_eq!(link.arrival(t + Duration::from_secs(1), 0), t + Duration::from_millis(1025));
    }

    #[test]
    fn parses_port_lists() {
        assert_eq!(parse_ports("21,100-102").unwrap(), vec![21, 100, 101, 102]);
        assert!(parse_ports("5-4").is_err());
        assert!(parse_ports("x").is_err());
    }
}
