//! `-o proxy=`: control and data connections through a SOCKS5 proxy (with and without a
//! password, EPSV and PASV, FTPS pinned by fingerprint) and an HTTP CONNECT proxy, against a
//! proxy the test starts ([`support::proxy`]). The server is named by a host name only the proxy
//! resolves, and the proxy listens on another address than the server, so nothing reaches the
//! server except through the proxy; the proxy's record shows every data connection asked for by
//! that name, never by the address a PASV reply gave.

mod support;

use support::mount::{Mount, ftpfs_command, fuse_available};
use support::proxy::{ProxyProtocol, TestProxy};
use support::{FtpServer, ServerConfig, ServerKind, TlsServer, USER, openssl_fingerprint, test_ca};

/// A name that resolves for the test proxy only.
const NAME: &str = "ftp.proxied.test";

fn url_by_name(srv: &FtpServer) -> String {
    format!("ftp://{USER}@{NAME}:{}/", srv.port)
}

/// Mounts `srv` through `proxy` with `options`, copies files both ways and checks that every
/// connection went through the proxy to `NAME`.
fn round_trip(srv: &FtpServer, proxy: &TestProxy, options: &[&str]) {
    srv.put_file("a.txt", b"first file\n");
    srv.put_file("sub/b.txt", b"second file\n");
    let m = Mount::try_new(srv, options, Some(&url_by_name(srv)))
        .unwrap_or_else(|e| panic!("mount through {:?} proxy: {e}\n{}", proxy.protocol, srv.log()));
    assert_eq!(m.sh_ok("cat a.txt sub/b.txt"), "first file\nsecond file\n");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 249) as u8).collect();
    std::fs::write(m.p("sub/up.bin"), &data).unwrap();
    assert!(std::fs::read(srv.disk("sub/up.bin")).unwrap() == data, "upload through the proxy differs on disk");
    m.sh_ok("mv sub/up.bin moved.bin && ls -l moved.bin");
    assert!(std::fs::read(m.p("moved.bin")).unwrap() == data, "download through the proxy differs");
    let pid = m.daemon_pid().expect("the mount's process");
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
    assert!(!cmdline.contains("proxy-secret"), "proxy password visible in ps: {cmdline}");
    drop(m);
    let asked = proxy.requests();
    assert!(asked.iter().all(|(host, _)| host == NAME), "the proxy was asked for other hosts: {asked:?}");
    let control = asked.iter().filter(|(_, port)| *port == srv.port).count();
    let data_ports = srv.pasv_range.0..=srv.pasv_range.1;
    let data = asked.iter().filter(|(_, port)| data_ports.contains(port)).count();
    assert!(control >= 1, "{asked:?}");
    // Two listings, two reads, an upload and a read back at least.
    assert!(data >= 5, "data connections through the proxy: {asked:?}");
    assert_eq!(control + data, asked.len(), "{asked:?}");
}

#[test]
fn socks5_with_password_epsv_and_pasv() {
    if !fuse_available() {
        return;
    }
    // pasv_ip changes nothing here: vsftpd offers EPSV, whose replies carry no address.
    for extra in [None, Some("no_epsv"), Some("pasv_ip")] {
        let srv = FtpServer::start(ServerKind::Vsftpd);
        let proxy = TestProxy::start(ProxyProtocol::Socks5, Some(("alice", "proxy-secret")), &[(NAME, "127.0.0.1")]);
        let option = format!("proxy={}", proxy.url(Some(("alice", "proxy-secret"))));
        let mut options = vec![option.as_str()];
        options.extend(extra);
        round_trip(&srv, &proxy, &options);
    }
}

#[test]
fn http_connect_with_password() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Pyftpdlib);
    let proxy = TestProxy::start(ProxyProtocol::Http, Some(("bob", "proxy-secret")), &[(NAME, "127.0.0.1")]);
    let option = format!("proxy={}", proxy.url(Some(("bob", "proxy-secret"))));
    round_trip(&srv, &proxy, &[&option]);
}

#[test]
fn ftps_through_socks5_pinned_by_fingerprint() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start_with(
        ServerKind::Vsftpd,
        ServerConfig { tls: Some(TlsServer::Explicit), ..Default::default() },
    );
    let proxy = TestProxy::start(ProxyProtocol::Socks5, None, &[(NAME, "127.0.0.1")]);
    // The certificate is for 127.0.0.1 and localhost, not for the name: pinning trusts it.
    let fp = openssl_fingerprint(&test_ca().server_cert).replace("sha256 Fingerprint=", "SHA256:");
    let option = format!("proxy={}", proxy.url(None));
    round_trip(&srv, &proxy, &["tls", &format!("fingerprint={fp}"), &option]);
}

/// The wire layer through the proxy, without FUSE: by name and by IP literal (SOCKS5 address
/// types 3 and 1), EPSV and PASV, and with `pasv_ip` a PASV reply's address asked of the proxy.
#[test]
fn connections_through_a_proxy_without_the_kernel() {
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("f.txt", b"through the proxy\n");
    let cases = [
        (NAME, true, false),
        ("127.0.0.1", true, false),
        (NAME, false, false),
        (NAME, false, true),
        (NAME, true, true),
    ];
    for (host, epsv, pasv_ip) in cases {
        let proxy = TestProxy::start(ProxyProtocol::Socks5, None, &[(NAME, "127.0.0.1")]);
        let mut o = srv.options();
        o.host = host.to_string();
        o.use_epsv = epsv;
        o.trust_pasv_address = pasv_ip;
        o.proxy = Some(std::sync::Arc::new(ftpfs::ftp::Proxy::parse(&proxy.url(None)).unwrap()));
        let mut c = ftpfs::ftp::Connection::connect(&o).unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(support::fetch(&mut c, "/f.txt", 0), b"through the proxy\n");
        let mut up = c.stor("/up.txt").unwrap();
        std::io::Write::write_all(&mut up, b"up through the proxy").unwrap();
        up.finish().unwrap();
        assert_eq!(std::fs::read(srv.disk("up.txt")).unwrap(), b"up through the proxy");
        c.quit();
        let asked = proxy.requests();
        // vsftpd's PASV replies announce 127.0.0.1: asked as such only with pasv_ip (EPSV
        // replies announce no address: the server's name always).
        let data_host = if pasv_ip && !epsv { "127.0.0.1" } else { host };
        let data_ports = srv.pasv_range.0..=srv.pasv_range.1;
        assert_eq!(asked[0], (host.to_string(), srv.port), "{asked:?}");
        assert!(asked[1..].len() >= 2, "{asked:?}");
        assert!(
            asked[1..].iter().all(|(h, p)| h == data_host && data_ports.contains(p)),
            "{host} epsv={epsv} pasv_ip={pasv_ip}: {asked:?}"
        );
    }
}

#[test]
fn proxy_failures_are_clear_errors() {
    let srv = FtpServer::start(ServerKind::Pyftpdlib);
    let socks = TestProxy::start(ProxyProtocol::Socks5, Some(("alice", "right")), &[(NAME, "127.0.0.1")]);
    let http = TestProxy::start(ProxyProtocol::Http, Some(("bob", "right")), &[(NAME, "127.0.0.1")]);
    let closed = std::net::TcpListener::bind("127.0.0.3:0").unwrap().local_addr().unwrap().port();
    let url = url_by_name(&srv);
    let cases = [
        (socks.url(Some(("alice", "wrong"))), "refused the user name or password"),
        (socks.url(None), "accepts none of our ways to log in"),
        (http.url(None), "wants a user name and password"),
        (format!("socks5://127.0.0.3:{closed}"), "cannot reach"),
    ];
    for (proxy, expected) in &cases {
        let out = ftpfs_command(&["--probe", &url, "-o", &format!("proxy={proxy},timeout=5")]).output().unwrap();
        let msg = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{proxy}: {msg}");
        assert!(msg.contains(expected), "{proxy}: expected {expected:?} in {msg}");
        assert!(!msg.contains("wrong") || !proxy.contains("wrong"), "the proxy password is shown: {msg}");
    }
    let out = ftpfs_command(&["--probe", &url, "-o", &format!("proxy={}", http.url(Some(("bob", "right"))))])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("proxy         http://bob@127.0.0.3"), "{text}");
    assert!(!text.contains("right"), "{text}");
    // A proxy that answers a byte every 300 ms cannot stretch the start-up past `timeout`.
    let drip = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let drip_port = drip.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = drip.accept() {
            let mut request = [0u8; 512];
            let _ = std::io::Read::read(&mut c, &mut request);
            for _ in 0..1000 {
                if std::io::Write::write_all(&mut c, b"X").is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
    });
    let started = std::time::Instant::now();
    let out = ftpfs_command(&["--probe", &url, "-o", &format!("proxy=http://127.0.0.3:{drip_port},timeout=2")])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "a dripping proxy held the start-up: {msg}");
    assert!(msg.contains("in time") || msg.contains("within"), "{msg}");
    let out =
        ftpfs_command(&[&url, "/nonexistent", "-o", &format!("proxy={},active", http.url(None))]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("active mode cannot work through a proxy"));
}
