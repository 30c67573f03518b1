//! The byte stream under a control or data connection.
//!
//! Today a plain TCP socket; FTPS (RFC 4217) adds a TLS variant here, so the rest of the wire
//! layer reads and writes through this type and does not care which one it has.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// A connected stream, plain or (later) encrypted.
#[derive(Debug)]
pub enum NetStream {
    Plain(TcpStream),
}

impl NetStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            NetStream::Plain(s) => s,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Sets both read and write timeouts (`None` disables them; zero is treated as `None`).
    pub fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        let t = timeout.filter(|d| !d.is_zero());
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }

    /// Ends the stream cleanly in both directions.
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self {
            NetStream::Plain(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl Read for NetStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => s.read(buf),
        }
    }
}

impl Write for NetStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            NetStream::Plain(s) => s.flush(),
        }
    }
}
