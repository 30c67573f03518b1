//! What a hostile network (or server) tries below the FTP commands, against the scripted fake
//! (tests/support/fake_ftpd.py): a TLS data connection cut without close_notify is an error,
//! not a short file (also through a mount: EIO); bytes sent in clear after the 234 reply to
//! AUTH TLS, before the handshake, end the connection before any credential is sent; in active
//! mode, a data connection from another address than the control connection's peer is refused.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftpfs::ftp::{Connection, DataMode, FtpError, Op, TlsContext, TlsMode, TlsSettings};
use support::mount::fuse_available;
use support::{DataGen, FakeServer, fetch, test_ca};

/// The fake with explicit FTPS (the test CA's server certificate) and `flags`.
fn tls_fake(flags: &[&str]) -> FakeServer {
    let ca = test_ca();
    let (cert, key) = (ca.server_cert.to_str().unwrap(), ca.server_key.to_str().unwrap());
    let mut all = vec!["--tls-cert", cert, "--tls-key", key];
    all.extend_from_slice(flags);
    FakeServer::start(&all)
}

/// Options for explicit FTPS to the fake, trusting the test CA.
fn tls_options(srv: &FakeServer, timeout_secs: u64) -> ftpfs::ftp::ConnectOptions {
    let mut o = srv.options(timeout_secs);
    o.tls_mode = TlsMode::Explicit;
    let settings = TlsSettings { cafile: Some(test_ca().ca.clone()), ..Default::default() };
    o.tls = Some(Arc::new(TlsContext::new("127.0.0.1", &settings).expect("tls context")));
    o
}

const BIG: usize = 300_000;

/// Uploads BIG bytes of DataGen seed 7 as /big.bin over `c`.
fn upload_big(c: &mut Connection) -> Vec<u8> {
    let data = DataGen::bytes(7, BIG);
    let mut up = c.stor("/big.bin").expect("STOR over TLS");
    up.write_all(&data).expect("upload over TLS");
    up.finish().expect("end of the upload over TLS");
    data
}

#[test]
fn tls_data_cut_without_close_notify_is_an_error() {
    let srv = tls_fake(&["--tls-truncate"]);
    let mut c = Connection::connect(&tls_options(&srv, 5)).expect("explicit TLS to the fake");
    assert!(c.tls_version().is_some(), "the control connection is encrypted");
    // Uploads and listings end with close_notify as before.
    upload_big(&mut c);
    let listed = c.mlsd("/").expect("MLSD over TLS");
    assert!(listed.iter().any(|e| e.name == "big.bin" && e.size == Some(BIG as u64)), "{listed:?}");

    // The server sends half of the file, ends the TCP stream without close_notify and says 226.
    let mut dl = c.retr("/big.bin", 0).expect("RETR over TLS");
    let mut got = Vec::new();
    let err = dl.read_to_end(&mut got).expect_err("a TLS data connection cut without close_notify must be an error");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert!(err.to_string().contains("close_notify") && err.to_string().contains("truncated"), "{err}");
    assert!(got.len() < BIG, "{} bytes", got.len());
    assert_eq!(FtpError::Io(err).errno(Op::Read), libc::EIO);
    drop(dl);
    // The control connection is back in sync and usable.
    assert!(!c.is_dead());
    c.noop().expect("NOOP after the cut transfer");
    assert!(c.mlsd("/").expect("MLSD after the cut transfer").iter().any(|e| e.name == "big.bin"));
}

#[test]
fn mount_reports_eio_for_a_tls_download_cut_without_close_notify() {
    if !fuse_available() {
        return;
    }
    let srv = tls_fake(&["--tls-truncate"]);
    let mut c = Connection::connect(&tls_options(&srv, 5)).expect("explicit TLS to the fake");
    upload_big(&mut c);
    c.quit();
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let opts = format!("tls,cafile={},timeout=5,cache_timeout=0", test_ca().ca.display());
    let opts = support::mount::pin_work_ahead(&[&opts]).join(",");
    let out = support::mount::ftpfs_command(&[&srv.url(), dir.path().to_str().unwrap(), "-o", &opts])
        .env("FTPFS_PASSWORD", "p")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    let _guard = support::mount::MountGuard::new(dir.path());
    let out = Command::new("cat").arg(dir.path().join("big.bin")).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cat read {} bytes of {BIG} and succeeded", out.stdout.len());
    assert!(err.contains("Input/output error"), "{err}");
    // Still mounted and answering.
    assert!(std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| e.file_name() == "big.bin"));
}

#[test]
fn starttls_refuses_bytes_sent_before_the_handshake() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let srv = tls_fake(&["--auth-tls-extra", "--log-commands", log.path().to_str().unwrap()]);
    let started = Instant::now();
    let res = Connection::connect(&tls_options(&srv, 5));
    // Nothing after AUTH TLS: the injected `230` must not answer a USER.
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(!said.contains("USER") && !said.contains("PASS"), "sent after the injection:\n{said}{:?}", res.err());
    let err = res.expect_err("bytes after 234 must be refused");
    assert!(matches!(err, FtpError::Protocol(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("234") && msg.contains("before the TLS handshake"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once, not by a timeout");

    // The same server without the injection: explicit TLS works.
    let srv = tls_fake(&[]);
    let mut c = Connection::connect(&tls_options(&srv, 5)).expect("explicit TLS to the fake");
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
}

/// Whether this machine lets a socket bind 127.0.0.2 and reach 127.0.0.1 from it.
fn second_loopback_address() -> bool {
    let Ok(l) = TcpListener::bind("127.0.0.1:0") else { return false };
    let Ok(addr) = l.local_addr() else { return false };
    // std has no bind-then-connect; python3 (which the fake needs anyway) does it.
    let script = format!(
        "import socket; s=socket.socket(); s.bind(('127.0.0.2',0)); s.connect(('127.0.0.1',{})); s.close()",
        addr.port()
    );
    Command::new("python3").args(["-c", &script]).status().is_ok_and(|s| s.success())
}

#[test]
fn active_mode_refuses_a_data_connection_from_another_address() {
    if !second_loopback_address() {
        support::skip("127.0.0.2 cannot be bound here");
        return;
    }
    let srv = FakeServer::start(&["--active-from", "127.0.0.2"]);
    let mut o = srv.options(2);
    o.data_mode = DataMode::Active;
    let mut c = Connection::connect(&o).expect("connect");
    let started = Instant::now();
    let res = c.retr("/hello.txt", 0).map(|mut dl| {
        let mut got = Vec::new();
        let _ = dl.read_to_end(&mut got);
        got
    });
    let err = match res {
        Ok(got) => panic!("a data connection from 127.0.0.2 was taken: {:?}", String::from_utf8_lossy(&got)),
        Err(e) => e,
    };
    assert!(matches!(&err, FtpError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut), "{err:?}");
    assert!(err.to_string().contains("active-mode data connection"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(1900), "gave up before the timeout: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn active_mode_works_from_the_control_peer() {
    let srv = FakeServer::start(&[]);
    let mut o = srv.options(5);
    o.data_mode = DataMode::Active;
    let mut c = Connection::connect(&o).expect("connect");
    assert_eq!(fetch(&mut c, "/hello.txt", 0), b"hello world\n");
    let data = DataGen::bytes(3, 100_000);
    let mut up = c.stor("/up.bin").expect("STOR");
    up.write_all(&data).unwrap();
    up.finish().expect("upload in active mode");
    assert!(c.mlsd("/").unwrap().iter().any(|e| e.name == "up.bin" && e.size == Some(data.len() as u64)));
    assert!(fetch(&mut c, "/up.bin", 0) == data);
    // The data connection came from the control connection's peer, as a real server's does.
    assert_eq!(c.peer_addr(), SocketAddr::from((Ipv4Addr::LOCALHOST, srv.port)));
}
