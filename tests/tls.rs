//! FTPS against vsftpd (explicit and implicit; require_ssl_reuse=YES, force_local_data_ssl=YES)
//! and pyftpdlib (explicit), with a CA and certificate made by the test; the mount's core file
//! operations over TLS; certificate errors; a self-signed CA:TRUE certificate trusted by
//! `cafile=` or `fingerprint=` (vsftpd and pure-ftpd); `--probe`; and `mount -t fuse.ftpfs`.

mod support;

use std::io::Write;

use ftpfs::ftp::{Connection, ListContext, TlsContext, TlsSettings};
use support::mount::{Mount, ftpfs_command, fuse_available, server_url};
use support::{
    FtpServer, PASSWORD, ServerConfig, ServerKind, TlsServer, USER, fetch, openssl_fingerprint, test_ca,
    tutorial_certificate,
};

fn start(kind: ServerKind, tls: TlsServer) -> FtpServer {
    FtpServer::start_with(kind, ServerConfig { tls: Some(tls), ..Default::default() })
}

fn url(srv: &FtpServer) -> String {
    match srv.tls() {
        Some(TlsServer::Implicit) => format!("ftps://{USER}@127.0.0.1:{}/", srv.port),
        _ => server_url(srv, ""),
    }
}

fn tls_options(srv: &FtpServer) -> String {
    let ca = test_ca().ca.display().to_string();
    match srv.tls() {
        Some(TlsServer::Implicit) => format!("cafile={ca}"),
        _ => format!("tls,cafile={ca}"),
    }
}

fn wire_round_trip(kind: ServerKind, tls: TlsServer) {
    let srv = start(kind, tls);
    srv.put_file("in.txt", b"secret content");
    let mut c = srv.connect();
    let version = c.tls_version().expect("control connection is encrypted");
    assert!(version.contains("TLS"), "{version}");
    let listed = if kind.has_mlsd() { c.mlsd("/").unwrap() } else { c.list("/", &ListContext::now_utc()).unwrap() };
    assert!(listed.iter().any(|e| e.name == "in.txt"));
    let got = fetch(&mut c, "/in.txt", 7);
    assert_eq!(got, b"content");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut up = c.stor("/out.bin").unwrap();
    up.write_all(&data).unwrap();
    up.finish().unwrap();
    assert!(std::fs::read(srv.disk("out.bin")).unwrap() == data, "upload differs on disk");
    // Several data connections in a row, each resuming the control connection's session.
    for _ in 0..3 {
        assert_eq!(c.size("/out.bin").unwrap(), data.len() as u64);
        let back = fetch(&mut c, "/out.bin", 0);
        assert!(back == data);
    }
    // A later connection logs in pipelined (PBSZ and PROT with it) and its data is encrypted.
    let mut o = srv.options();
    o.known_features = Some(c.features().clone());
    let mut later = Connection::connect(&o).unwrap_or_else(|e| panic!("pipelined TLS login: {e}\n{}", srv.log()));
    assert!(later.tls_version().is_some());
    assert_eq!(fetch(&mut later, "/in.txt", 0), b"secret content");
}

#[test]
fn vsftpd_explicit_wire() {
    wire_round_trip(ServerKind::Vsftpd, TlsServer::Explicit);
}

#[test]
fn vsftpd_implicit_wire() {
    wire_round_trip(ServerKind::Vsftpd, TlsServer::Implicit);
}

#[test]
fn pyftpdlib_explicit_wire() {
    wire_round_trip(ServerKind::Pyftpdlib, TlsServer::Explicit);
}

fn mount_core_operations(kind: ServerKind, tls: TlsServer) {
    if !fuse_available() {
        return;
    }
    let srv = start(kind, tls);
    srv.put_file("hello.txt", b"hello over tls\n");
    let m =
        Mount::try_new(&srv, &[&tls_options(&srv)], Some(&url(&srv))).unwrap_or_else(|e| panic!("{e}\n{}", srv.log()));
    assert!(m.sh_ok("ls -la").contains("hello.txt"));
    assert_eq!(m.sh_ok("cat hello.txt"), "hello over tls\n");
    let local = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(local.path().join("big.bin"), &big).unwrap();
    m.sh_ok(&format!(
        "cp {} big.bin && mkdir d && mv big.bin d/ && echo more >> hello.txt",
        local.path().join("big.bin").display()
    ));
    assert!(std::fs::read(srv.disk("d/big.bin")).unwrap() == big, "upload differs on disk");
    assert_eq!(std::fs::read(srv.disk("hello.txt")).unwrap(), b"hello over tls\nmore\n");
    assert!(std::fs::read(m.p("d/big.bin")).unwrap() == big, "download differs");
    m.sh_ok("printf XY | dd of=hello.txt bs=1 seek=2 conv=notrunc status=none && rm d/big.bin && rmdir d");
    assert_eq!(std::fs::read(srv.disk("hello.txt")).unwrap(), b"heXYo over tls\nmore\n");
    assert!(!srv.disk("d").exists());
}

#[test]
fn vsftpd_explicit_mount() {
    mount_core_operations(ServerKind::Vsftpd, TlsServer::Explicit);
}

#[test]
fn vsftpd_implicit_mount() {
    mount_core_operations(ServerKind::Vsftpd, TlsServer::Implicit);
}

#[test]
fn pyftpdlib_explicit_mount() {
    mount_core_operations(ServerKind::Pyftpdlib, TlsServer::Explicit);
}

#[test]
fn wrong_certificate_is_a_clear_error_and_no_verify_works() {
    let srv = start(ServerKind::Vsftpd, TlsServer::Explicit);
    // Wire level: a CA that did not sign the server's certificate.
    let mut o = srv.options();
    let settings = TlsSettings { cafile: Some(test_ca().other_ca.clone()), no_verify: false, ..Default::default() };
    o.tls = Some(std::sync::Arc::new(TlsContext::new("127.0.0.1", &settings).unwrap()));
    let err = Connection::connect(&o).expect_err("untrusted certificate");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    let settings = TlsSettings { cafile: None, no_verify: true, ..Default::default() };
    o.tls = Some(std::sync::Arc::new(TlsContext::new("127.0.0.1", &settings).unwrap()));
    let mut c = Connection::connect(&o).expect("no_verify accepts it");
    c.noop().expect("the session works over the unverified TLS connection");
    assert!(c.list("/", &ListContext::now_utc()).is_ok(), "a data connection works too");

    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let u = url(&srv);
    for opts in [format!("tls,cafile={}", test_ca().other_ca.display()), "tls".to_string()] {
        let out = ftpfs_command(&[&u, d, "-o", &opts]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{opts}");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(msg.contains("certificate"), "{opts}: {msg}");
    }
    let m = Mount::try_new(&srv, &["tls", "no_verify"], None).unwrap();
    assert!(m.stderr.contains("not checked"), "no_verify must warn: {}", m.stderr);
    m.sh_ok("echo ok > f && cat f");
    assert_eq!(std::fs::read(srv.disk("f")).unwrap(), b"ok\n");
}

/// vsftpd with `require_cert=YES` and `validate_cert=YES` (client certificates from the test
/// CA): refused without one, a session and a mount with `cert=` and `key=`; a key file other
/// users can read gets a warning.
#[test]
fn vsftpd_requires_a_client_certificate() {
    let ca = test_ca();
    let (cert, key) = support::client_certificate();
    let cfg = ServerConfig {
        tls: Some(TlsServer::Explicit),
        vsftpd_extra: vec![
            "require_cert=YES".into(),
            "validate_cert=YES".into(),
            format!("ca_certs_file={}", ca.ca.display()),
        ],
        ..Default::default()
    };
    let srv = FtpServer::start_with(ServerKind::Vsftpd, cfg);
    let mut o = srv.options();
    assert!(Connection::connect(&o).is_err(), "vsftpd took a session without a client certificate");
    let settings = TlsSettings {
        cafile: Some(ca.ca.clone()),
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        ..Default::default()
    };
    o.tls = Some(std::sync::Arc::new(TlsContext::new("127.0.0.1", &settings).unwrap()));
    let mut c = Connection::connect(&o).unwrap_or_else(|e| panic!("{e}\n{}", srv.log()));
    assert!(c.list("/", &ListContext::now_utc()).is_ok(), "a data connection with the certificate too");

    if !fuse_available() {
        return;
    }
    let Err(refused) = Mount::try_new(&srv, &[&tls_options(&srv)], None) else {
        panic!("mounted without a certificate")
    };
    assert!(refused.contains("certificate"), "{refused}");
    let with = format!("{},cert={},key={}", tls_options(&srv), cert.display(), key.display());
    let m = Mount::try_new(&srv, &[&with], None).unwrap_or_else(|e| panic!("{e}\n{}", srv.log()));
    assert!(!m.stderr.contains("other users"), "{}", m.stderr);
    m.sh_ok("echo ok > f");
    assert_eq!(std::fs::read(srv.disk("f")).unwrap(), b"ok\n");
    assert_eq!(m.sh_ok("cat f"), "ok\n");
    // One file with both, readable by others: it mounts, with a warning.
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pem");
    let pem = [std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()].concat();
    std::fs::write(&both, pem).unwrap();
    std::fs::set_permissions(&both, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let m2 = Mount::try_new(&srv, &[&format!("{},cert={}", tls_options(&srv), both.display())], None)
        .unwrap_or_else(|e| panic!("{e}\n{}", srv.log()));
    assert!(m2.stderr.contains("can be read by other users"), "{}", m2.stderr);
    m2.sh_ok("cat f");
}

#[test]
fn probe_reports_the_server() {
    let srv = start(ServerKind::Vsftpd, TlsServer::Explicit);
    let out = ftpfs_command(&["--probe", &url(&srv), "-o", &tls_options(&srv)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("TLS           TLS"), "{text}");
    assert!(text.contains("listing       LIST, Unix ls -l dialect"), "{text}");
    assert!(text.contains("data channel  EPSV"), "{text}");
    assert!(text.contains("MFMT no"), "{text}");
    assert!(!text.contains(PASSWORD));

    let plain = FtpServer::start(ServerKind::Pyftpdlib);
    let out = ftpfs_command(&["--probe", &server_url(&plain, "")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("TLS           not used"), "{text}");
    assert!(text.contains("listing       MLSD"), "{text}");
    assert!(text.contains("MFMT yes"), "{text}");
}

#[test]
fn mount_dash_t_fuse_ftpfs_and_password_file() {
    if !fuse_available() {
        return;
    }
    let srv = FtpServer::start(ServerKind::Vsftpd);
    srv.put_file("via-mount.txt", b"mounted by mount(8)\n");
    // mount(8) runs mount.fuse with a fixed PATH, which runs `ftpfs` from it: the binary under
    // test is linked as /usr/local/bin/ftpfs for the test, any installed one set aside.
    let _install = InstalledLink::new();
    let bin = tempfile::tempdir().unwrap();
    let secret = bin.path().join("password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let dir = tempfile::Builder::new().prefix("ftpfs-mnt-").tempdir().unwrap();
    let guard = support::mount::MountGuard::new(dir.path());
    let out = std::process::Command::new("mount")
        .args(["-t", "fuse.ftpfs", &server_url(&srv, ""), dir.path().to_str().unwrap()])
        .args([
            "-o",
            &format!("password_file={},_netdev,noatime,cache_timeout=5,x-systemd.automount", secret.display()),
        ])
        .env_remove("FTPFS_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount -t fuse.ftpfs: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.path().join("via-mount.txt")).unwrap(), b"mounted by mount(8)\n");
    let pid = support::mount::daemon_pid_of(dir.path()).expect("the mount's process");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let ours = std::fs::canonicalize(env!("CARGO_BIN_EXE_ftpfs")).unwrap();
    assert_eq!(exe, ours, "mount(8) ran another ftpfs than the one under test");
    let line = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(line.lines().any(|l| l.contains(dir.path().to_str().unwrap()) && !l.contains(PASSWORD)));
    // umount(8) as a user would; "target is busy" while another process of the machine happens
    // to be inside the directory (a scan of /tmp) is tried again, for 10 s at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::process::Command::new("umount").arg(dir.path()).status().unwrap().success() {
        assert!(std::time::Instant::now() < deadline, "umount of the mount -t fuse.ftpfs mount");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(guard);
}

/// /usr/local/bin/ftpfs pointing at the binary under test while it lives. An ftpfs installed in
/// /usr/local/sbin or /usr/local/bin (both on mount.fuse's PATH, sbin first) is set aside
/// meanwhile and put back on drop.
struct InstalledLink {
    aside: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

const LINK: &str = "/usr/local/bin/ftpfs";

impl InstalledLink {
    fn new() -> InstalledLink {
        let mut aside = Vec::new();
        for p in ["/usr/local/sbin/ftpfs", LINK] {
            let p = std::path::PathBuf::from(p);
            if std::fs::symlink_metadata(&p).is_ok() {
                let kept = p.with_extension("set-aside-by-ftpfs-tests");
                std::fs::rename(&p, &kept).expect("set the installed ftpfs aside");
                aside.push((p, kept));
            }
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ftpfs"), LINK).expect("link the binary under test");
        InstalledLink { aside }
    }
}

impl Drop for InstalledLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LINK);
        for (p, kept) in &self.aside {
            let _ = std::fs::rename(kept, p);
        }
    }
}

/// A server with the tutorial's self-signed certificate: `cafile=` with that file trusts it as
/// itself, `fingerprint=` pins it, a wrong fingerprint and the system roots refuse it with a
/// message that gives the right fingerprint and the option.
fn self_signed_certificate(kind: ServerKind) {
    let pem = tutorial_certificate().to_path_buf();
    let cfg = ServerConfig {
        tls: Some(TlsServer::Explicit),
        certificate: Some((pem.clone(), pem.clone())),
        ..Default::default()
    };
    let srv = FtpServer::start_with(kind, cfg);
    srv.put_file("in.txt", b"self-signed\n");
    let openssl_says = openssl_fingerprint(&pem);
    let fp = ftpfs::ftp::Fingerprint::parse(&openssl_says).expect("openssl's form parses");

    // Wire level: cafile= with the certificate itself (key in the same file) is enough.
    let mut o = srv.options();
    let settings = TlsSettings { cafile: Some(pem.clone()), ..Default::default() };
    o.tls = Some(std::sync::Arc::new(TlsContext::new("127.0.0.1", &settings).unwrap()));
    let mut c = Connection::connect(&o).unwrap_or_else(|e| panic!("cafile=<self-signed>: {e}\n{}", srv.log()));
    assert_eq!(c.tls_fingerprint(), Some(fp), "the fingerprint we compute is OpenSSL's");
    assert_eq!(fetch(&mut c, "/in.txt", 0), b"self-signed\n");
    // The system roots (or the test CA) refuse it, naming the fingerprint and the option.
    for settings in [TlsSettings::default(), TlsSettings { cafile: Some(test_ca().ca.clone()), ..Default::default() }] {
        o.tls = Some(std::sync::Arc::new(TlsContext::new("127.0.0.1", &settings).unwrap()));
        let msg = Connection::connect(&o).expect_err("untrusted self-signed certificate").to_string();
        assert!(msg.contains(&format!("-o fingerprint={fp}")), "{msg}");
    }
    // A pinned fingerprint is trusted whatever the name and the chain; another one is not.
    o.tls = Some(std::sync::Arc::new(
        TlsContext::new("127.0.0.1", &TlsSettings { fingerprint: Some(fp), ..Default::default() }).unwrap(),
    ));
    Connection::connect(&o).unwrap_or_else(|e| panic!("fingerprint=: {e}"));
    let wrong = ftpfs::ftp::Fingerprint::of(b"another certificate");
    o.tls = Some(std::sync::Arc::new(
        TlsContext::new("127.0.0.1", &TlsSettings { fingerprint: Some(wrong), ..Default::default() }).unwrap(),
    ));
    let msg = Connection::connect(&o).expect_err("wrong fingerprint").to_string();
    assert!(msg.contains("does not match") && msg.contains(&fp.to_string()), "{msg}");

    // --probe prints it in the form fingerprint= takes.
    let url = server_url(&srv, "");
    let out = ftpfs_command(&["--probe", &url, "-o", &format!("tls,cafile={}", pem.display())]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("certificate   {fp}")), "{text}");

    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let refused = ftpfs_command(&[&url, d, "-o", "tls"]).output().unwrap();
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{msg}");
    assert!(msg.contains(&format!("-o fingerprint={fp}")) && msg.contains("not trusted"), "{msg}");
    let bad = ftpfs_command(&[&url, d, "-o", &format!("tls,fingerprint={wrong}")]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not match"));
    for opts in [
        format!("tls,fingerprint={}", openssl_says.replace(' ', "").replace("Fingerprint=", ":")),
        format!("tls,cafile={}", pem.display()),
    ] {
        let opts: Vec<&str> = opts.split(',').collect();
        let m = Mount::try_new(&srv, &opts, None).unwrap_or_else(|e| panic!("{opts:?}: {e}\n{}", srv.log()));
        assert_eq!(std::fs::read(m.p("in.txt")).unwrap(), b"self-signed\n");
        m.sh_ok("echo written > out.txt");
        assert_eq!(std::fs::read(srv.disk("out.txt")).unwrap(), b"written\n", "{opts:?}");
    }
}

#[test]
fn vsftpd_self_signed_certificate() {
    self_signed_certificate(ServerKind::Vsftpd);
}

#[test]
fn pureftpd_self_signed_certificate() {
    self_signed_certificate(ServerKind::PureFtpd);
}
