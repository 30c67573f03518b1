//! A fake wide-area link for tests: `examples/wan_proxy` on 127.0.0.2 in front of a server's
//! control port and passive range, each direction delayed by half the round trip (and limited
//! to a rate, when given). Stopped when dropped; it stays up when the server is killed and
//! started again, as the network would. [`Wan::nat`] is the same proxy as a NAT that forgets
//! idle connections, on 127.0.0.4.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FtpServer, USER};

/// The proxy's address (all of 127/8 is loopback).
pub const WAN_HOST: &str = "127.0.0.2";

/// The NAT's address ([`Wan::nat`]).
pub const NAT_HOST: &str = "127.0.0.4";

/// A running wan_proxy in front of a server.
pub struct Wan {
    child: Child,
    /// What the proxy printed after `ready` (the connections it dropped).
    lines: Arc<Mutex<Vec<String>>>,
}

impl Wan {
    /// A link of `rtt_ms` round trips (and `rate_mbit` each way, if given) in front of `srv`.
    pub fn start(srv: &FtpServer, rtt_ms: u32, rate_mbit: Option<u32>) -> Wan {
        let mut args = vec!["--rtt-ms".to_string(), rtt_ms.to_string()];
        if let Some(rate) = rate_mbit {
            args.extend(["--rate-mbit".to_string(), rate.to_string()]);
        }
        Wan::spawn(srv, WAN_HOST, &args)
    }

    /// A NAT in front of `srv` on [`NAT_HOST`] (control port and passive range): no delay,
    /// `rate_mbit` each way, and a connection that carried no payload either way for `idle` is
    /// closed on both sides, as a NAT that forgot its mapping (TCP keepalive does not count).
    pub fn nat(srv: &FtpServer, idle: Duration, rate_mbit: u32) -> Wan {
        let args = ["--rtt-ms", "0", "--no-handshake", "--rate-mbit", &rate_mbit.to_string()];
        let idle = idle.as_millis().to_string();
        let args: Vec<String> =
            args.iter().map(|a| a.to_string()).chain(["--drop-idle-ms".to_string(), idle]).collect();
        Wan::spawn(srv, NAT_HOST, &args)
    }

    fn spawn(srv: &FtpServer, listen: &str, args: &[String]) -> Wan {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test>-… → target/<profile>/examples/wan_proxy
        let proxy = exe.parent().and_then(Path::parent).map(|p| p.join("examples/wan_proxy")).expect("target dir");
        assert!(proxy.exists(), "{} missing: cargo build --release --example wan_proxy", proxy.display());
        let ports = format!("{},{}-{}", srv.port, srv.pasv_range.0, srv.pasv_range.1);
        let mut cmd = Command::new(proxy);
        cmd.args(["--listen", listen, "--to", &srv.host, "--ports", &ports]).args(args);
        let mut child = cmd
            .args(["--max-seconds", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start wan_proxy");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("proxy stdout");
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("proxy says ready");
        assert_eq!(line.trim(), "ready", "wan_proxy did not start");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Wan { child, lines }
    }

    /// The server's URL through the link (no password).
    pub fn url(srv: &FtpServer) -> String {
        format!("ftp://{USER}@{WAN_HOST}:{}/", srv.port)
    }

    /// The server's URL through [`Wan::nat`] (no password).
    pub fn nat_url(srv: &FtpServer) -> String {
        format!("ftp://{USER}@{NAT_HOST}:{}/", srv.port)
    }

    /// The ports of the connections the NAT dropped so far, in order.
    pub fn dropped(&self) -> Vec<u16> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter_map(|l| l.strip_prefix("dropped ")?.split(' ').next()?.parse().ok()).collect()
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
