//! The byte stream under a control or data connection: plain TCP, or TLS (FTPS) over TCP.
//! The rest of the wire layer reads and writes through this type and does not care which. A
//! TLS stream ends only with the peer's close_notify: one that ends without it (the TCP stream
//! closed, which anyone on the path can forge) is a read error, never a short, complete transfer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

/// A connected stream.
#[derive(Debug)]
pub enum NetStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Left behind while a control connection is being upgraded to TLS.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream detached")
}

impl NetStream {
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            NetStream::Plain(s) => Some(s),
            NetStream::Tls(s) => Some(&s.sock),
            NetStream::Detached => None,
        }
    }

    /// Takes the TCP socket out of a plain stream (for a TLS upgrade).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            NetStream::Plain(s) => Some(s),
            _ => None,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().ok_or_else(detached)?.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().ok_or_else(detached)?.local_addr()
    }

    /// The TLS protocol version in use, if any.
    pub fn tls_version(&self) -> Option<String> {
        match self {
            NetStream::Tls(s) => s.conn.protocol_version().map(|v| format!("{v:?}")),
            _ => None,
        }
    }

    /// The fingerprint of the server's certificate, if the stream is encrypted.
    pub fn peer_fingerprint(&self) -> Option<super::trust::Fingerprint> {
        match self {
            NetStream::Tls(s) => s.conn.peer_certificates()?.first().map(|c| super::trust::Fingerprint::of(c)),
            _ => None,
        }
    }

    /// Sets both read and write timeouts (`None` disables them; zero is treated as `None`).
    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        let t = timeout.filter(|d| !d.is_zero());
        let tcp = self.tcp().ok_or_else(detached)?;
        tcp.set_read_timeout(t)?;
        tcp.set_write_timeout(t)
    }

    /// Ends the stream at once in both directions (aborting a transfer).
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self.tcp() {
            Some(s) => s.shutdown(Shutdown::Both),
            None => Ok(()),
        }
    }

    /// Ends the stream cleanly after a complete transfer: TLS close_notify (vsftpd answers 426
    /// without it), end of our direction, then whatever the peer still sends (TLS session
    /// tickets, its close_notify) is read until it closes, so the close is a FIN, not a reset
    /// that would make the server discard the end of an upload.
    pub fn close_gracefully(&mut self) -> io::Result<()> {
        self.end_our_side()?;
        self.drain_until_closed()
    }

    /// The first half of [`NetStream::close_gracefully`]: TLS close_notify, then end of our
    /// direction. The peer learns the transfer is complete.
    pub fn end_our_side(&mut self) -> io::Result<()> {
        if let NetStream::Tls(s) = self {
            s.conn.send_close_notify();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock)?;
            }
        }
        match self.tcp() {
            Some(tcp) => tcp.shutdown(Shutdown::Write),
            None => Ok(()),
        }
    }

    /// The second half: reads what the peer still sends until it closes (bounded by the read
    /// timeout and 1 MiB).
    pub fn drain_until_closed(&mut self) -> io::Result<()> {
        self.drain_to_end();
        Ok(())
    }

    /// As [`NetStream::drain_until_closed`]; true when the peer ended the stream in order (end
    /// of stream, after close_notify on TLS), false after an error, a timeout or 1 MiB.
    pub fn drain_to_end(&mut self) -> bool {
        self.drain_to_end_ticking(None, || {})
    }

    /// As [`NetStream::drain_to_end`]. With `tick` = `(every, within)`: waits at most `within`
    /// in all and calls `on_tick` after each `every` of silence meanwhile (the read timeout is
    /// `every` from then on); without, each read waits for the stream's read timeout.
    pub fn drain_to_end_ticking(&mut self, tick: Option<(Duration, Duration)>, mut on_tick: impl FnMut()) -> bool {
        let Some(tcp) = self.tcp() else { return false };
        let deadline = match tick {
            Some((every, within)) => {
                if tcp.set_read_timeout(Some(every.max(Duration::from_millis(1)))).is_err() {
                    return false;
                }
                Some(std::time::Instant::now() + within)
            }
            None => None,
        };
        let mut sink = [0u8; 16 * 1024];
        let mut drained = 0usize;
        while drained < (1 << 20) {
            match self.read(&mut sink) {
                Ok(0) => return true,
                Ok(n) => drained += n,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                        && deadline.is_some_and(|d| std::time::Instant::now() < d) =>
                {
                    on_tick()
                }
                Err(_) => return false,
            }
        }
        false
    }
}

/// Whether `e` is the server's TLS alert that it wants a client certificate.
fn asked_for_our_certificate(e: &io::Error) -> bool {
    let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) == Some(&alert)
}

/// The error a read of a TLS stream that ended without close_notify returns.
const TRUNCATED: &str = "the TLS connection ended without close_notify: the data may be truncated";

impl Read for NetStream {
    /// Reads as the stream's own `read`, except that a TLS stream that ends without
    /// close_notify is an error (`UnexpectedEof`), not an end of stream, as in curl: anyone on
    /// the path can end the TCP stream (a forged FIN), and the server, which sent everything,
    /// still answers 226 on the control connection: only close_notify proves the data whole.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => s.read(buf),
            NetStream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, TRUNCATED))
                }
                // TLS 1.3 ends the handshake before the server checks ours: its refusal comes
                // with the first reply.
                Err(e) if asked_for_our_certificate(&e) => Err(io::Error::new(
                    e.kind(),
                    "the server requires a client certificate (give yours with -o cert=FILE,key=FILE): \
                     it sent CertificateRequired",
                )),
                other => other,
            },
            NetStream::Detached => Err(detached()),
        }
    }
}

impl Write for NetStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => s.write(buf),
            NetStream::Tls(s) => s.write(buf),
            NetStream::Detached => Err(detached()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            NetStream::Plain(s) => s.flush(),
            NetStream::Tls(s) => s.flush(),
            NetStream::Detached => Err(detached()),
        }
    }
}
