//! A fake wide-area link for tests: `examples/wan_proxy` on 127.0.0.2 in front of a server's
//! control port and passive range, each direction delayed by half the round trip (and limited
//! to a rate, when given). Stopped when dropped; it stays up when the server is killed and
//! started again, as the network would.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{FtpServer, USER};

/// The proxy's address (all of 127/8 is loopback).
pub const WAN_HOST: &str = "127.0.0.2";

/// A running wan_proxy in front of a server.
pub struct Wan {
    child: Child,
}

impl Wan {
    /// A link of `rtt_ms` round trips (and `rate_mbit` each way, if given) in front of `srv`.
    pub fn start(srv: &FtpServer, rtt_ms: u32, rate_mbit: Option<u32>) -> Wan {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test>-… → target/<profile>/examples/wan_proxy
        let proxy = exe.parent().and_then(Path::parent).map(|p| p.join("examples/wan_proxy")).expect("target dir");
        assert!(proxy.exists(), "{} missing: cargo build --release --example wan_proxy", proxy.display());
        let ports = format!("{},{}-{}", srv.port, srv.pasv_range.0, srv.pasv_range.1);
        let mut cmd = Command::new(proxy);
        cmd.args(["--listen", WAN_HOST, "--to", &srv.host, "--ports", &ports, "--rtt-ms", &rtt_ms.to_string()]);
        if let Some(rate) = rate_mbit {
            cmd.args(["--rate-mbit", &rate.to_string()]);
        }
        let mut child = cmd
            .args(["--max-seconds", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start wan_proxy");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("proxy stdout");
        BufReader::new(stdout).read_line(&mut line).expect("proxy says ready");
        assert_eq!(line.trim(), "ready", "wan_proxy did not start");
        Wan { child }
    }

    /// The server's URL through the link (no password).
    pub fn url(srv: &FtpServer) -> String {
        format!("ftp://{USER}@{WAN_HOST}:{}/", srv.port)
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
