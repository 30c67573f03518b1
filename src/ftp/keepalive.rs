//! Keeping connections alive through NATs and firewalls during long transfers.
//!
//! A control connection carries nothing while a long transfer runs on its data connection;
//! home routers and cloud NATs forget TCP mappings that stay idle for minutes, and the final
//! reply (226) of such a transfer never arrives. Two measures, both bounded:
//!
//! - TCP keepalive on every control and data socket ([`set_tcp_keepalive`]): probes after
//!   [`TCP_IDLE`] of silence, every [`TCP_INTERVAL`], the connection given up after
//!   [`TCP_PROBES`] unanswered ones. They refresh the mapping of a NAT that looks at packets,
//!   but carry no payload: a proxy or middlebox that times out on idle payload ignores them.
//! - NOOP on the control connection during a transfer, after the `keepalive` option's silence
//!   on it ([`Connection::keep_alive_in_transfer`]), only on servers where it was verified to
//!   be safe ([`tolerates_noop_in_transfer`]). Their replies are counted and read in whatever
//!   order the server sends them around the transfer's final reply
//!   ([`Connection::settle_noops`] and the control connection's reply reader), never left
//!   behind for a later command.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::control::Connection;
use super::error::{FtpError, Result};

/// Silence on a socket before the first TCP keepalive probe.
pub const TCP_IDLE: Duration = Duration::from_secs(15);
/// Time between unanswered probes.
pub const TCP_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the kernel gives the connection up.
pub const TCP_PROBES: u32 = 4;

/// NOOPs sent during one transfer whose replies may still be unread. A server that answers
/// them only after the transfer (vsftpd) keeps them in its socket buffer meanwhile: 4096 are
/// 24 KiB, and at the default interval of 30 s last 34 hours of one transfer. Past that, no
/// more are sent (TCP keepalive still runs).
pub const MAX_UNANSWERED_NOOPS: usize = 4096;

/// Turns TCP keepalive on for `s` with a short idle time. A failure is logged, never fatal:
/// the connection works without it.
pub fn set_tcp_keepalive(s: &TcpStream) {
    let fd = s.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int, what: &str| {
        // SAFETY: `fd` is an open socket owned by `s` for the duration of the call; the value
        // is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            log::debug!("setting {what} on a socket failed: {}", std::io::Error::last_os_error());
        }
        rc == 0
    };
    if !set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE") {
        return;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, TCP_IDLE.as_secs() as libc::c_int, "TCP_KEEPIDLE");
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, TCP_INTERVAL.as_secs() as libc::c_int, "TCP_KEEPINTVL");
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, TCP_PROBES as libc::c_int, "TCP_KEEPCNT");
    }
}

/// Servers (by greeting) that answer each NOOP sent during a transfer with exactly one `200`
/// and finish the transfer normally (tests/wire.rs `noop_during_transfers` checks each):
/// - vsftpd 3.0.3 reads no command during a transfer: the NOOPs wait in its socket and are
///   answered after the transfer's 226, in order.
/// - ProFTPD 1.3.8 answers them at once during an upload ("200 NOOP: data transfer in
///   progress"), after the 226 during a download.
/// - pyftpdlib 2.2 answers them at once.
///
/// Not Pure-FTPd 1.0.50: it answers a command read during a transfer "500 Unknown command"
/// without carrying it out, and of three NOOPs sent during a download one got no reply at all
/// (seen in every try): counting replies is not possible there. Nor any server not known:
/// TCP keepalive is all they get.
pub fn tolerates_noop_in_transfer(welcome: &str) -> bool {
    ["vsFTPd", "ProFTPD", "pyftpdlib"].iter().any(|name| welcome.contains(name))
}

impl Connection {
    /// Called while a transfer moves data: sends NOOP on the control connection when nothing
    /// was sent on it for the `keepalive` option's time, on servers that take it
    /// ([`tolerates_noop_in_transfer`]). The reply is read after the transfer. A failure to
    /// send marks the connection dead (as any failed send does) and leaves the data alone: the
    /// transfer's end finds out.
    pub(super) fn keep_alive_in_transfer(&mut self) {
        let every = self.opts.keepalive;
        if every.is_zero() || !self.noop_in_transfer || self.dead || self.last_sent.elapsed() < every {
            return;
        }
        if self.noops_unanswered >= MAX_UNANSWERED_NOOPS {
            return;
        }
        match self.send("NOOP", None) {
            Ok(()) => {
                self.noops_unanswered += 1;
                self.noops_sent += 1;
            }
            Err(e) => log::debug!("NOOP during a transfer not sent: {e}"),
        }
    }

    /// After a transfer's final reply: reads the replies of the NOOPs sent during it that have
    /// not come yet (a server that answers in order sends them now). Each must be a 200;
    /// anything else leaves the connection out of step, and dead.
    pub(super) fn settle_noops(&mut self) -> Result<()> {
        while self.noops_unanswered > 0 {
            let reply = self.read_one_reply()?;
            if reply.code != 200 {
                self.dead = true;
                return Err(FtpError::protocol(format!(
                    "reply {} to a NOOP sent during a transfer: {}",
                    reply.code,
                    reply.text()
                )));
            }
            self.noops_unanswered -= 1;
        }
        Ok(())
    }

    /// NOOPs sent during transfers on this connection so far.
    pub fn keepalive_noops(&self) -> u64 {
        self.noops_sent
    }

    /// Whether NOOPs are sent during this connection's transfers (the server is known to take
    /// them and the `keepalive` option is not 0).
    pub fn keeps_transfers_alive(&self) -> bool {
        self.noop_in_transfer && !self.opts.keepalive.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn get(s: &TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid socket, value and length pointers for the call.
        let rc =
            unsafe { libc::getsockopt(s.as_raw_fd(), level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value
    }

    #[test]
    fn keepalive_is_set_with_a_short_idle_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(get(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        set_tcp_keepalive(&s);
        assert_eq!(get(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 15);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 5);
        assert_eq!(get(&s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 4);
    }

    #[test]
    fn noop_only_where_verified() {
        assert!(tolerates_noop_in_transfer("(vsFTPd 3.0.3)"));
        assert!(tolerates_noop_in_transfer("ProFTPD Server (ftpfs test proftpd) [127.0.0.1]"));
        assert!(tolerates_noop_in_transfer("pyftpdlib 2.2.0 ready."));
        assert!(!tolerates_noop_in_transfer("---------- Welcome to Pure-FTPd [privsep] [TLS] ----------"));
        assert!(!tolerates_noop_in_transfer("Microsoft FTP Service"));
        assert!(!tolerates_noop_in_transfer("fake server ready"));
    }
}
